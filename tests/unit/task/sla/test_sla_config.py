"""SLA thresholds out of range are rejected by Rally's own validation, before a run."""

import pytest
from rally import plugins
from rally.task import sla


@pytest.fixture(scope="module", autouse=True)
def loaded():
    plugins.load()


def errors(name, criterion):
    return sla.SLA.validate(name=name, context=None, config=None, plugin_cfg=criterion,
                            vtype="syntax")


@pytest.mark.parametrize("name, criterion", [
    ("lm_max_downtime", {"max_ms": 0}),
    ("lm_max_downtime", {"max_ms": 500, "percentile": 101}),
    ("lm_max_downtime", {"max_ms": 500, "measure": "guessed"}),
    ("lm_success_rate", {"min_percent": 120}),
    ("lm_success_rate", {"min_percent": -1}),
    ("lm_tcp_continuity", {"max_stall_ms": -5}),
    ("lm_max_migration_duration", {"max_seconds": 0}),
    ("lm_max_evacuation_duration", {"max_seconds": "an hour"}),
])
def test_out_of_range_thresholds_are_rejected(name, criterion):
    assert errors(name, criterion), f"{name} accepted {criterion}"


@pytest.mark.parametrize("name, criterion", [
    ("lm_max_downtime", {"max_ms": 500, "percentile": 95}),
    ("lm_success_rate", {"min_percent": 97}),
    ("lm_tcp_continuity", {"max_stall_ms": 3000}),
    ("lm_max_migration_duration", {"max_seconds": 600}),
])
def test_sensible_thresholds_pass(name, criterion):
    assert errors(name, criterion) == []
