"""rally-openstack's task-sample conventions, applied to rally_lm.

Our equivalent of tests/unit/doc/test_task_samples.py of
openstack/rally-openstack: every rally_lm scenario and context has a sample
under samples/tasks, every sample renders and passes Rally's own syntax
validation, has an SLA section, comes as an equal JSON/YAML pair, and is
named with dashes. The task templates get the same treatment in
tests/unit/test_task_templates.py.
"""

from pathlib import Path
from unittest import mock

import pytest
import yaml
from rally import api, plugins
from rally.task import context, engine, scenario, task_cfg

ROOT = Path(__file__).resolve().parents[3]
SAMPLES = ROOT / "samples" / "tasks"


def sample_files(suffix=".json"):
    return sorted(SAMPLES.rglob(f"*{suffix}"))


def load(path, **args):
    rendered = api._Task(None).render_template(task_template=path.read_text(), **args)
    return task_cfg.TaskConfig(yaml.safe_load(rendered))


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    plugins.load()


@pytest.mark.parametrize("path", sample_files(), ids=lambda p: p.stem)
def test_sample_passes_rallys_syntax_validation(path):
    config = load(path)
    eng = engine.TaskEngine(config, mock.MagicMock(), mock.Mock())
    eng.validate(only_syntax=True)


@pytest.mark.parametrize("path", sample_files(), ids=lambda p: p.stem)
def test_every_workload_has_an_sla(path):
    for subtask in load(path).subtasks:
        for workload in subtask["workloads"]:
            assert workload.get("sla"), f"{path}: {workload['name']} has no SLA section"


def test_json_and_yaml_samples_come_in_equal_pairs():
    for json_path in sample_files():
        yaml_path = json_path.with_suffix(".yaml")
        assert yaml_path.exists(), f"{yaml_path} is missing"
        assert yaml.safe_load(json_path.read_text()) == yaml.safe_load(yaml_path.read_text())
    assert {p.with_suffix("") for p in sample_files(".yaml")} == \
        {p.with_suffix("") for p in sample_files()}


def test_no_underscores_in_sample_names():
    assert [p for p in SAMPLES.rglob("*") if "_" in p.name] == []


def test_every_scenario_of_ours_has_a_sample():
    used = {w["name"] for path in sample_files() for s in load(path).subtasks
            for w in s["workloads"]}
    ours = {s.get_name() for s in scenario.Scenario.get_all()
            if s.__module__.startswith("rally_lm.")}
    assert ours - used == set()


def test_every_context_of_ours_has_a_sample():
    ours = [c for c in context.Context.get_all() if c.__module__.startswith("rally_lm.")]
    assert ours
    for ctx in ours:
        path = SAMPLES / "contexts" / (ctx.get_name().replace("_", "-") + ".json")
        assert path.exists(), f"no sample for context {ctx.get_name()}"
        contexts = [w["contexts"] for s in load(path).subtasks for w in s["workloads"]]
        assert any(ctx.get_name() in c for c in contexts)
