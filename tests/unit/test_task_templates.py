"""The task template: every args file renders into a valid task, user values pass unchanged.

Like rally-openstack's certification-task test: rendered with no args beyond
the hosts, with every args file, and with boolean args toggled; each result
passes Rally's own syntax validation (scenario args-spec, context and SLA
schemas, our syntax validators).
"""

from pathlib import Path
from unittest import mock

import pytest
import yaml

from rally_lm.migration import sdn
from tests.bad_inputs import BAD_INPUTS, FALSY_BUT_VALID

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "task_templates" / "evacuate_host.yaml.j2"
ARGS = sorted((ROOT / "task_templates" / "args").glob("*.yaml"))
BASE = ROOT / "task_templates" / "args" / "testbed-local-off.yaml"


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    from rally import plugins

    monkeypatch.setenv("HOME", str(tmp_path))
    plugins.load()


def render(**args):
    from rally import api

    return yaml.safe_load(api._Task(None).render_template(task_template=TEMPLATE.read_text(),
                                                          **args))


def workload_of(task):
    from rally.task import task_cfg

    (workload,) = task_cfg.TaskConfig(task).subtasks[0]["workloads"]
    return workload


def syntax_errors(task) -> str:
    """Rally's own syntax validation of a whole task: "" when valid."""
    from rally.task import engine, task_cfg

    eng = engine.TaskEngine(task_cfg.TaskConfig(task), mock.MagicMock(), mock.Mock())
    try:
        eng.validate(only_syntax=True)
    except Exception as exc:  # noqa: BLE001 - the message is what is tested
        return str(exc)
    return ""


def test_the_seed_matrix_is_complete():
    names = {p.stem for p in ARGS}
    for storage in ("shared", "local"):
        for tunnelling in ("on", "off"):
            for flavor in ("small", "medium", "large"):
                assert f"seed-{storage}-{tunnelling}-{flavor}" in names


@pytest.mark.parametrize("args_file", ARGS, ids=lambda p: p.stem)
def test_every_args_file_renders_a_valid_task(args_file, monkeypatch):
    # A task that exports to InfluxDB is valid where its token is set.
    monkeypatch.setenv("INFLUX_TOKEN", "s3cret")
    # Validation here runs the platform validators too, against a mocked cloud:
    # OVN's southbound database is that cloud's, never to be asked from here.
    monkeypatch.setattr(sdn.SouthboundListener, "chassis_names",
                        lambda self, timeout=10.0: {"c0ffee": "hv1"})
    # So are the computes a chassis watch would ssh into.
    watched: list[str] = []
    monkeypatch.setattr(sdn, "check_chassis", lambda shell: watched.append(shell[-2]))
    args = yaml.safe_load(args_file.read_text())
    task = render(**args)
    assert syntax_errors(task) == ""
    workload = workload_of(task)
    assert workload["name"] == "LiveMigration.evacuate_host"
    assert workload["args"]["labels"]["storage"] == args["storage"]
    assert workload["contexts"]["lm_workload"]["source_host"] == args["source_host"]
    assert set(workload["sla"]) >= {"lm_success_rate", "lm_max_downtime", "lm_tcp_continuity"}
    # The args file's chassis watch reaches the scenario, and its check each compute.
    assert workload["args"].get("ovn_chassis_watch", False) == args.get("ovn_chassis_watch",
                                                                        False)
    assert watched == (["root@10.231.0.11", "root@10.231.0.12"]
                       if args.get("ovn_chassis_watch") else [])


@pytest.mark.parametrize("rate, label", [([4, 16, 48], "4,16,48"), (8, "8"), (2.5, "2.5")])
def test_a_policy_task_labels_its_dirty_rates_and_gives_them_to_the_vms(rate, label):
    args = yaml.safe_load((ROOT / "task_templates" / "args" / "policy-pre-copy.yaml").read_text())
    workload = workload_of(render(**{**args, "dirty_rate_mib": rate}))
    assert workload["args"]["labels"]["dirty_rate_mib"] == label
    assert workload["contexts"]["lm_workload"]["agent"]["dirty_rate_mib"] == rate


def test_no_argument_is_needed():
    # rally-openstack's certification test renders its task with no args at all:
    # without hosts, lm_workload picks two.
    task = render()
    assert syntax_errors(task) == ""
    workload = workload_of(task)
    assert "source_host" not in workload["args"] and "target_host" not in workload["args"]
    assert "source_host" not in workload["contexts"]["lm_workload"]
    named = workload_of(render(source_host="hv1", target_host="hv2"))
    assert named["contexts"]["lm_workload"]["source_host"] == "hv1"
    assert named["contexts"]["lm_workload"]["target_host"] == "hv2"


def test_toggled_booleans_still_render_valid_tasks():
    args = {**yaml.safe_load(BASE.read_text()), "icmp_probe": False, "block_migration": True}
    assert syntax_errors(render(**args)) == ""


def test_the_default_downtime_gate_is_the_maximum_of_client_downtime():
    sla = workload_of(render(source_host="hv1", target_host="hv2"))["sla"]["lm_max_downtime"]
    assert sla["percentile"] == 100 and sla["measure"] == "client"


@pytest.mark.parametrize("name, value", sorted(FALSY_BUT_VALID.items()))
def test_a_falsy_user_value_reaches_the_task_unchanged(name, value):
    task = render(**{**yaml.safe_load(BASE.read_text()), name: value})
    workload = workload_of(task)
    found = {**workload["args"], **workload["contexts"]["lm_workload"]["agent"],
             "sla_min_success_percent": workload["sla"]["lm_success_rate"]["min_percent"]}
    assert found[name] == value and type(found[name]) is type(value)
    assert syntax_errors(task) == ""


def test_seed_templates_never_write_a_raw_device():
    for args_file in ARGS:
        args = yaml.safe_load(args_file.read_text())
        agent = workload_of(render(**args))["contexts"]["lm_workload"]["agent"]
        if args_file.stem.startswith("seed-"):
            # A stock image's root is /dev/vda1: fill files, never raw blocks.
            assert "disk_device" not in agent and agent["disk_fill_path"] == "/"


def test_flavor_spec_adds_rally_openstacks_flavors_context():
    from rally.task import context

    args = {**yaml.safe_load(BASE.read_text()), "flavor": "rally-lm-task-flavor",
            "flavor_spec": {"ram": 256, "disk": 1}}
    workload = workload_of(render(**args))
    flavors = workload["contexts"]["flavors"]
    assert flavors == [{"name": "rally-lm-task-flavor", "ram": 256, "vcpus": 1, "disk": 1}]
    assert workload["contexts"]["lm_workload"]["flavor"] == "rally-lm-task-flavor"
    flavors_ctx = context.Context.get("flavors", platform="openstack")
    assert context.Context.validate("flavors", {}, {}, flavors, vtype="syntax") == []
    # Created before the workload boots, removed after it is gone.
    assert flavors_ctx.get_order() < context.Context.get("lm_workload").get_order()


SYNTAX = [b for b in BAD_INPUTS if b[3] == "syntax"]


@pytest.mark.parametrize("name, bad, message, _phase", SYNTAX, ids=[b[0] for b in SYNTAX])
def test_bad_input_is_refused_by_rallys_syntax_validation(name, bad, message, _phase):
    errors = syntax_errors(render(**{**yaml.safe_load(BASE.read_text()), **bad}))
    assert message in errors, errors[-1500:]


def test_there_are_at_least_thirty_distinct_bad_inputs():
    assert len({b[0] for b in BAD_INPUTS}) == len(BAD_INPUTS) >= 30
