"""A mode switch to the mode the testbed is in restarts nothing only when its computes match."""

import pytest

from rally_lm_testbed import hosts, policy, testbed


@pytest.fixture
def computes(monkeypatch):
    state = {"running": True, "links": {"hv1": {"shaped": False}, "hv2": {"shaped": False}}}
    monkeypatch.setattr(hosts, "running_pid", lambda daemon: 42 if state["running"] else None)
    monkeypatch.setattr(policy, "link_state", lambda host: state["links"][host.name])
    return state


def test_running_and_unshaped_as_nova_defaults_want(computes):
    assert testbed._computes_as_configured(policy.Policy())


def test_a_stopped_daemon_needs_the_restart(computes):
    computes["running"] = False
    assert not testbed._computes_as_configured(policy.Policy())


def test_a_shaped_link_where_the_policy_wants_none_needs_the_restart(computes):
    computes["links"]["hv2"] = {"shaped": True, "rate": "16Mbit", "bytes_sent_shaped": 0}
    assert not testbed._computes_as_configured(policy.Policy())


def test_the_link_at_the_policys_rate_on_both_hosts(computes):
    shaped = {"shaped": True, "rate": "160Mbit", "bytes_sent_shaped": 123}
    computes["links"] = {"hv1": shaped, "hv2": shaped}
    assert testbed._computes_as_configured(policy.Policy(link_mbit=160))
    computes["links"]["hv1"] = {"shaped": True, "rate": "40Mbit", "bytes_sent_shaped": 0}
    assert not testbed._computes_as_configured(policy.Policy(link_mbit=160))
    computes["links"]["hv1"] = {"shaped": False}
    assert not testbed._computes_as_configured(policy.Policy(link_mbit=160))


def test_a_compute_counts_as_restarted_only_after_reporting_in_a_later_second():
    from rally_lm_testbed import bootstrap

    stopped = 1796405667.8  # 2026-12-04T17:34:27.8Z
    # The old process's last report, in the same second: Nova keeps no fractions.
    assert not bootstrap._reported_after({"updated_at": "2026-12-04T17:34:27.000000"}, stopped)
    assert not bootstrap._reported_after({"updated_at": "2026-12-04T17:33:59.000000"}, stopped)
    assert not bootstrap._reported_after({"updated_at": None}, stopped)
    assert bootstrap._reported_after({"updated_at": "2026-12-04T17:34:28.000000"}, stopped)
