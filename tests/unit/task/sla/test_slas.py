import pytest

from rally_lm.task.output import MIGRATION_COLUMNS, MIGRATIONS_TITLE
from rally_lm.task.sla.downtime import MaxDowntime
from rally_lm.task.sla.durations import MaxEvacuationDuration, MaxMigrationDuration
from rally_lm.task.sla.success_rate import SuccessRate
from rally_lm.task.sla.tcp_continuity import TcpContinuity


def migration(outcome="completed", duration=5.0, network=200.0, hypervisor=100.0, stall=250.0):
    row = dict.fromkeys(MIGRATION_COLUMNS)
    row.update(vm="vm0", direction="out", outcome=outcome, duration_s=duration,
               network_downtime_ms=network, hypervisor_downtime_ms=hypervisor,
               tcp_max_stall_ms=stall, error="")
    return [row[c] for c in MIGRATION_COLUMNS]


def iteration(rows, per_vm=None, error=None, drains=(30.0, 28.0)):
    complete = [{"title": MIGRATIONS_TITLE, "chart_plugin": "Table",
                 "data": {"cols": MIGRATION_COLUMNS, "rows": rows}}]
    if per_vm is not None:
        complete.append({"title": "Per VM", "chart_plugin": "Table", "data": {
            "cols": ["vm", "TCP bytes lost", "TCP bytes corrupted", "TCP connection kept"],
            "rows": per_vm}})
    actions = [{"name": f"nova.drain_host_{d}", "started_at": 0.0, "finished_at": s}
               for d, s in zip(("out", "back"), drains, strict=True)]
    return {"output": {"complete": complete, "additive": []}, "error": error or [],
            "atomic_actions": actions, "duration": 60.0}


ITERATIONS = [
    iteration([migration(network=120.0), migration(network=300.0)], [["vm0", 0, 0, True]]),
    iteration([migration(network=900.0), migration(outcome="error", network=None)],
              [["vm0", 512, 0, False]], drains=(45.0, 20.0)),
    iteration([], error=["TimeoutError", "boom", ""]),
]


@pytest.mark.parametrize("sla_cls, config", [
    (MaxDowntime, {"max_ms": 500}),
    (MaxDowntime, {"max_ms": 500, "percentile": 50}),
    (SuccessRate, {"min_percent": 80}),
    (TcpContinuity, {"max_stall_ms": 1000}),
    (MaxMigrationDuration, {"max_seconds": 10}),
    (MaxEvacuationDuration, {"max_seconds": 40}),
])
def test_merge_equals_one_instance_fed_everything(sla_cls, config):
    whole = sla_cls(config)
    for it in ITERATIONS:
        whole.add_iteration(it)
    first, second = sla_cls(config), sla_cls(config)
    first.add_iteration(ITERATIONS[0])
    for it in ITERATIONS[1:]:
        second.add_iteration(it)
    first.merge(second)
    assert first.success == whole.success
    assert first.details() == whole.details()


def test_max_downtime_judges_max_or_percentile():
    strict = MaxDowntime({"max_ms": 500})
    median = MaxDowntime({"max_ms": 500, "percentile": 50})
    for sla in (strict, median):
        for it in ITERATIONS:
            sla.add_iteration(it)
    assert not strict.success and "900.0 ms" in strict.details()
    assert median.success and "p50 300.0 ms" in median.details()


def test_max_downtime_never_passes_an_unmeasured_migration():
    sla = MaxDowntime({"max_ms": 500})
    sla.add_iteration(iteration([migration(network=None)]))
    assert not sla.success and "not measured" in sla.details()


def test_hypervisor_downtime_can_be_judged_instead():
    sla = MaxDowntime({"max_ms": 150, "measure": "hypervisor"})
    sla.add_iteration(iteration([migration(network=900.0, hypervisor=100.0)]))
    assert sla.success


def test_success_rate_counts_failed_migrations_and_broken_iterations():
    sla = SuccessRate({"min_percent": 60})
    for it in ITERATIONS:
        sla.add_iteration(it)
    assert sla.total == 5 and sla.succeeded == 3
    assert sla.success and "3/5" in sla.details() and "iteration_error: 1" in sla.details()
    assert not SuccessRate({"min_percent": 61}).merge(sla)


def test_success_rate_with_nothing_run_fails():
    sla = SuccessRate({"min_percent": 0})
    assert not sla.merge(SuccessRate({"min_percent": 0}))


def test_tcp_continuity_fails_on_lost_bytes_and_broken_connections():
    sla = TcpContinuity({})
    sla.add_iteration(ITERATIONS[0])
    assert sla.success
    sla.add_iteration(ITERATIONS[1])
    assert not sla.success and "lost 512" in sla.details()


def test_tcp_stall_limit():
    sla = TcpContinuity({"max_stall_ms": 200})
    sla.add_iteration(iteration([migration(stall=250.0)], [["vm0", 0, 0, True]]))
    assert not sla.success


def test_durations():
    migration_sla = MaxMigrationDuration({"max_seconds": 6})
    migration_sla.add_iteration(iteration([migration(duration=7.0)]))
    assert not migration_sla.success
    drain = MaxEvacuationDuration({"max_seconds": 40})
    drain.add_iteration(ITERATIONS[1])
    assert not drain.success and "45.00s" in drain.details()
