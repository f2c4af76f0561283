"""Bad input is refused by Rally before anything exists, against the real testbed.

Every entry of tests/bad_inputs.py - syntax and semantic - goes through
Rally's own validation (what `rally task validate` and `rally task start`
run before any context creates anything) against the testbed's cloud; each
answer must carry its message, and afterwards no server, flavor, keypair or
security group of a task may exist and no guest may run.
"""

import json
import subprocess

import pytest

from rally_lm_testbed import layout, rally_runner, testbed
from tests.bad_inputs import BAD_INPUTS
from tests.functional.test_testbed import ARGS, RESULTS, TEMPLATE, record

pytestmark = [pytest.mark.functional, pytest.mark.testbed]
BASE = ARGS / "testbed-local-off.yaml"


@pytest.fixture(scope="module")
def answers(testbed_session):
    testbed.up()  # a no-op unless an earlier test left it down
    before = testbed.bootstrap("leftovers")
    found = rally_runner.validate_many(TEMPLATE, BASE,
                                       [(name, args) for name, args, _m, _p in BAD_INPUTS]
                                       + [("the good base", {})])
    after = testbed.bootstrap("leftovers")
    guests = testbed.guests_on(layout.COMPUTES[0]) + testbed.guests_on(layout.COMPUTES[1])
    record("bad_input", {"inputs": len(BAD_INPUTS), "leftovers": after, "guests": guests})
    return found, before, after, guests


def test_the_good_base_is_valid(answers):
    found, *_ = answers
    assert found["the good base"] == ""


@pytest.mark.parametrize("name, bad, message, phase", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_refused_with_what_to_fix(answers, name, bad, message, phase):
    found, *_ = answers
    assert message in found[name], found[name][-2000:]


def test_nothing_was_created(answers):
    _found, before, after, guests = answers
    assert after == before == {"servers": [], "security_groups": [], "keypairs": [],
                               "flavors": []}
    assert guests == []


def test_task_start_refuses_an_unquoted_off_before_anything_runs(testbed_session):
    testbed.up()
    run = rally_runner.run_task(TEMPLATE, BASE, RESULTS,
                                extra_args=json.dumps({"tunnelling": False}))
    assert run.exit_code != 0 and run.html is None
    assert "quote it (\"off\")" in run.log.read_text()
    assert testbed.bootstrap("leftovers")["servers"] == []


def test_compute_name_check_reads_the_real_computes(testbed_session):
    """lm_hosts' shell probe, run over the testbed's own ssh as libvirt's URI gives it."""
    from rally_lm.clients import hosts
    from rally_lm_testbed import migration_check

    testbed.up()
    uris = migration_check.hypervisor_uris()

    def in_probe_namespace(command, **kwargs):
        return subprocess.run(["ip", "netns", "exec", layout.PROBE, *command], **kwargs)

    known = hosts.peer_view("hv1", uris["hv1"], "hv2", run=in_probe_namespace)
    unknown = hosts.peer_view("hv2", uris["hv2"], "no-such-host.invalid",
                              run=in_probe_namespace)
    # The testbed's computes know each other from /etc/hosts and set inbound addresses.
    assert known == hosts.PeerView("hv1", "hv2", True, "10.231.0.11")
    assert unknown == hosts.PeerView("hv2", "no-such-host.invalid", False, "10.231.0.12")
