"""Every args file renders the template into a task Rally accepts (syntax)."""

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "task_templates" / "evacuate_host.yaml.j2"
ARGS = sorted((ROOT / "task_templates" / "args").glob("*.yaml"))


def test_the_seed_matrix_is_complete():
    names = {p.stem for p in ARGS}
    for storage in ("shared", "local"):
        for tunnelling in ("on", "off"):
            for flavor in ("small", "medium", "large"):
                assert f"seed-{storage}-{tunnelling}-{flavor}" in names


@pytest.mark.parametrize("args_file", ARGS, ids=lambda p: p.stem)
def test_template_renders_and_validates(args_file, tmp_path, monkeypatch):
    from rally import api
    from rally.task import task_cfg

    monkeypatch.setenv("HOME", str(tmp_path))
    args = yaml.safe_load(args_file.read_text())
    rendered = api._Task(None).render_template(task_template=TEMPLATE.read_text(), **args)
    config = task_cfg.TaskConfig(yaml.safe_load(rendered))
    (workload,) = config.subtasks[0]["workloads"]
    assert workload["name"] == "LiveMigration.evacuate_host"
    assert workload["args"]["labels"]["storage"] == args["storage"]
    assert workload["contexts"]["lm_workload"]["source_host"] == args["source_host"]
    assert set(workload["sla"]) >= {"lm_success_rate", "lm_max_downtime", "lm_tcp_continuity"}

    from rally import plugins

    plugins.load()
    from rally.task import scenario

    results = scenario.Scenario.validate(
        name="LiveMigration.evacuate_host", context={}, config={"args": workload["args"]},
        plugin_cfg=workload["args"], vtype="syntax")
    assert results == [], results


def test_flavor_spec_adds_rally_openstacks_flavors_context(tmp_path, monkeypatch):
    from rally import api, plugins
    from rally.task import context, task_cfg

    monkeypatch.setenv("HOME", str(tmp_path))
    args = {**yaml.safe_load((ROOT / "task_templates" / "args" /
                              "testbed-shared-off.yaml").read_text()),
            "flavor": "rally-lm-task-flavor", "flavor_spec": {"ram": 256, "disk": 1}}
    rendered = api._Task(None).render_template(task_template=TEMPLATE.read_text(), **args)
    (workload,) = task_cfg.TaskConfig(yaml.safe_load(rendered)).subtasks[0]["workloads"]
    flavors = workload["contexts"]["flavors"]
    assert flavors == [{"name": "rally-lm-task-flavor", "ram": 256, "vcpus": 1, "disk": 1}]
    assert workload["contexts"]["lm_workload"]["flavor"] == "rally-lm-task-flavor"
    plugins.load()
    flavors_ctx = context.Context.get("flavors", platform="openstack")
    assert context.Context.validate("flavors", {}, {}, flavors, vtype="syntax") == []
    # Created before the workload boots, removed after it is gone.
    assert flavors_ctx.get_order() < context.Context.get("lm_workload").get_order()


@pytest.mark.parametrize("bad, message", [
    ({"probe_interval": 0.0001}, "probe_interval"),
    ({"probe_interval": 5}, "probe_interval"),
    ({"max_parallel": 0}, "max_parallel"),
    ({"migration_timeout": -1}, "migration_timeout"),
    ({"on_timeout": "retry"}, "on_timeout"),
])
def test_bad_scenario_arguments_fail_syntax_validation(bad, message, monkeypatch, tmp_path):
    from rally import plugins
    from rally.task import scenario

    monkeypatch.setenv("HOME", str(tmp_path))
    plugins.load()
    args = {"source_host": "hv1", "target_host": "hv2", **bad}
    results = scenario.Scenario.validate(
        name="LiveMigration.evacuate_host", context={}, config={"args": args},
        plugin_cfg=args, vtype="syntax")
    assert results and message in " ".join(results)


@pytest.mark.parametrize("bad", [
    {"count": 0}, {"count": 101}, {"agent": {"disk_fill_percent": 150}},
    {"agent": {"udp_echo_port": 70000}}, {"unknown_option": 1},
])
def test_bad_workload_context_config_is_rejected(bad):
    import jsonschema

    from rally_lm.task.contexts.nova.lm_workload import LiveMigrationWorkload

    config = {"source_host": "hv1", "flavor": "f", "image": "i", "network": "n", **bad}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, LiveMigrationWorkload.CONFIG_SCHEMA)
