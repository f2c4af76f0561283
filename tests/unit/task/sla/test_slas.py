import pytest

from rally_lm.task.output import (
    EVACUATION_TITLE,
    MIGRATION_COLUMNS,
    MIGRATIONS_TITLE,
    PER_VM_COLUMNS,
    PER_VM_TITLE,
)
from rally_lm.task.sla.downtime import MaxDowntime
from rally_lm.task.sla.durations import MaxEvacuationDuration, MaxMigrationDuration
from rally_lm.task.sla.success_rate import SuccessRate
from rally_lm.task.sla.tcp_continuity import TcpContinuity


def migration(outcome="completed", duration=5.0, client=200.0, hypervisor=100.0,
              stall=250.0, network=None, pause=None):
    row = dict.fromkeys(MIGRATION_COLUMNS)
    row.update(vm="vm0", direction="out", outcome=outcome, duration_s=duration,
               client_downtime_ms=client, pause_ms=pause,
               network_downtime_ms=network if network is not None else client,
               hypervisor_downtime_ms=hypervisor, tcp_max_stall_ms=stall, error="")
    return [row[c] for c in MIGRATION_COLUMNS]


def vm(lost=0, corrupted=0, kept=True):
    row = dict.fromkeys(PER_VM_COLUMNS)
    row.update({"vm": "vm0", "TCP bytes lost": lost, "TCP bytes corrupted": corrupted,
                "TCP connection kept": kept})
    return [row[c] for c in PER_VM_COLUMNS]


def iteration(rows, per_vm=None, error=None, drains=((30.0, 2), (28.0, 2))):
    complete = [{"title": MIGRATIONS_TITLE, "chart_plugin": "Table",
                 "data": {"cols": MIGRATION_COLUMNS, "rows": rows}}]
    if per_vm is not None:
        complete.append({"title": PER_VM_TITLE, "chart_plugin": "Table",
                         "data": {"cols": PER_VM_COLUMNS, "rows": per_vm}})
    complete.append({"title": EVACUATION_TITLE, "chart_plugin": "Table", "data": {
        "cols": ["direction", "source", "target", "planned", "attempted", "succeeded",
                 "seconds"],
        "rows": [[d, "hv1", "hv2", 2, attempted, attempted, seconds]
                 for d, (seconds, attempted) in zip(("out", "back"), drains, strict=True)]}})
    return {"output": {"complete": complete, "additive": []}, "error": error or [],
            "atomic_actions": [], "duration": 60.0}


ITERATIONS = [
    iteration([migration(client=120.0), migration(client=300.0)], [vm()]),
    iteration([migration(client=900.0), migration(outcome="error", client=50.0,
                                                   hypervisor=None)],
              [vm(lost=512, kept=False)], drains=((45.0, 2), (20.0, 2))),
    iteration([], error=["TimeoutError", "boom", ""]),
]


@pytest.mark.parametrize("sla_cls, config", [
    (MaxDowntime, {"max_ms": 500}),
    (MaxDowntime, {"max_ms": 500, "percentile": 50}),
    (MaxDowntime, {"max_ms": 500, "measure": "hypervisor"}),
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


def test_max_downtime_judges_the_maximum_by_default():
    strict = MaxDowntime({"max_ms": 500})
    for it in ITERATIONS:
        strict.add_iteration(it)
    assert not strict.success
    assert strict.details().startswith("client downtime max 900.0 ms <= 500 ms over 4 ")


def test_a_percentile_gate_says_so_and_lets_the_worst_through():
    median = MaxDowntime({"max_ms": 500, "percentile": 50})
    for it in ITERATIONS:
        median.add_iteration(it)
    # 50, 120, 300, 900: the failed migration's downtime counts too.
    assert median.success and "client downtime p50 210.0 ms" in median.details()


def test_failed_migrations_count_refused_and_skipped_do_not():
    sla = MaxDowntime({"max_ms": 100})
    sla.add_iteration(iteration([migration(outcome="timeout_aborted", client=150.0)]))
    assert not sla.success
    calm = MaxDowntime({"max_ms": 100})
    calm.add_iteration(iteration([migration(client=50.0),
                                  migration(outcome="refused", client=None),
                                  migration(outcome="skipped", client=None)]))
    assert calm.success and "over 1 migration" in calm.details()


def test_max_downtime_never_passes_an_unmeasured_migration():
    sla = MaxDowntime({"max_ms": 500})
    sla.add_iteration(iteration([migration(client=50.0), migration(client=None)]))
    assert not sla.success and "1 migration(s) not measured" in sla.details()


@pytest.mark.parametrize("config", [{"max_ms": 500}, {"max_ms": 500, "percentile": 95},
                                    {"max_ms": 500, "measure": "hypervisor"}])
def test_max_downtime_with_nothing_measured_fails(config):
    sla = MaxDowntime(config)
    sla.add_iteration(iteration([migration(outcome="refused", client=None,
                                           hypervisor=None)]))
    assert not sla.success and "nothing measured" in sla.details()
    assert not MaxDowntime(config).merge(MaxDowntime(config))


def test_hypervisor_downtime_counts_successful_migrations_only():
    sla = MaxDowntime({"max_ms": 150, "measure": "hypervisor"})
    sla.add_iteration(iteration([migration(client=900.0, hypervisor=100.0),
                                 migration(outcome="error", hypervisor=None)]))
    assert sla.success and sla.details().startswith("hypervisor downtime max 100.0 ms")


def test_pause_and_whole_outage_can_be_judged():
    row = migration(client=200.0, pause=80.0, network=260.0)
    pause = MaxDowntime({"max_ms": 100, "measure": "pause"})
    outage = MaxDowntime({"max_ms": 250, "measure": "network"})
    pause.add_iteration(iteration([row]))
    outage.add_iteration(iteration([row]))
    assert pause.success and not outage.success


def test_success_rate_counts_every_planned_migration_and_broken_iterations():
    sla = SuccessRate({"min_percent": 60})
    for it in ITERATIONS:
        sla.add_iteration(it)
    assert sla.total == 5 and sla.succeeded == 3
    assert sla.success and "3/5 planned" in sla.details()
    assert "iteration_error: 1" in sla.details()
    assert not SuccessRate({"min_percent": 61}).merge(sla)


def test_skipped_and_unknown_migrations_are_not_successes():
    sla = SuccessRate({"min_percent": 50})
    sla.add_iteration(iteration([migration(), migration(outcome="skipped"),
                                 migration(outcome="unknown")]))
    assert not sla.success and "skipped: 1" in sla.details() and "unknown: 1" in sla.details()


def test_an_iteration_that_broke_after_reporting_counts_its_rest_as_a_failure():
    sla = SuccessRate({"min_percent": 100})
    sla.add_iteration(iteration([migration()], error=["KeyboardInterrupt", "", ""]))
    assert sla.total == 2 and not sla.success


def test_success_rate_with_nothing_run_fails():
    sla = SuccessRate({"min_percent": 0})
    assert not sla.merge(SuccessRate({"min_percent": 0}))
    assert "no live migration ran" in sla.details()


def test_tcp_continuity_fails_on_lost_bytes_and_broken_connections():
    sla = TcpContinuity({})
    sla.add_iteration(ITERATIONS[0])
    assert sla.success
    sla.add_iteration(ITERATIONS[1])
    assert not sla.success and "lost 512" in sla.details()
    assert "connections broken 1" in sla.details()


def test_tcp_continuity_with_no_stream_fails():
    sla = TcpContinuity({})
    sla.add_iteration(iteration([migration()]))
    assert not sla.success and "no TCP stream was measured" in sla.details()


def test_an_unmeasured_tcp_stream_fails():
    sla = TcpContinuity({})
    sla.add_iteration(iteration([migration()], [vm(), vm(lost=None)]))
    assert not sla.success and "1 VM(s) not measured" in sla.details()


def test_tcp_stall_limit():
    sla = TcpContinuity({"max_stall_ms": 200})
    sla.add_iteration(iteration([migration(stall=250.0)], [vm()]))
    assert not sla.success


def test_durations():
    migration_sla = MaxMigrationDuration({"max_seconds": 6})
    migration_sla.add_iteration(iteration([migration(duration=7.0)]))
    assert not migration_sla.success
    drain = MaxEvacuationDuration({"max_seconds": 40})
    drain.add_iteration(ITERATIONS[1])
    assert not drain.success and "45.00s" in drain.details() and "over 2" in drain.details()


def test_a_drain_that_moved_nothing_is_not_judged():
    drain = MaxEvacuationDuration({"max_seconds": 40})
    drain.add_iteration(iteration([migration()], drains=((30.0, 2), (99.0, 0))))
    assert drain.success and "over 1" in drain.details()


@pytest.mark.parametrize("sla_cls, config, message", [
    (MaxMigrationDuration, {"max_seconds": 6}, "no successful live migration to judge"),
    (MaxEvacuationDuration, {"max_seconds": 6}, "no host drain moved any VM"),
])
def test_durations_with_nothing_measured_fail(sla_cls, config, message):
    sla = sla_cls(config)
    sla.add_iteration(iteration([migration(outcome="refused", duration=None)],
                                drains=((1.0, 0), (1.0, 0))))
    assert not sla.success and message in sla.details()


# -- what mutation testing showed no test pinned down ----------------------------


def test_tcp_losses_add_up_over_vms_and_iterations():
    sla = TcpContinuity({})
    sla.add_iteration(iteration([migration()], [vm(lost=100, corrupted=1, kept=False),
                                                vm(lost=200, corrupted=2, kept=False)]))
    other = TcpContinuity({})
    other.add_iteration(iteration([migration()], [vm(lost=5, corrupted=3, kept=False)]))
    sla.merge(other)
    assert sla.details() == ("TCP bytes lost 305, corrupted 6, connections broken 3, "
                             "longest stall 250 ms over 3 stream(s) - Failed")


def test_tcp_an_unmeasured_vm_does_not_hide_the_next_ones_losses():
    sla = TcpContinuity({"require_connection_kept": False})
    sla.add_iteration(iteration([migration(stall=None)], [vm(lost=None), vm(lost=64),
                                                          vm(lost=None)]))
    second = TcpContinuity({"require_connection_kept": False})
    second.add_iteration(iteration([migration(stall=None)], [vm(lost=None)]))
    sla.merge(second)
    assert sla.bytes_lost == 64 and sla.unmeasured == 3
    assert sla.details().endswith("longest stall 0 ms, 3 VM(s) not measured over 1 "
                                  "stream(s) - Failed")


def test_a_broken_connection_fails_by_default_and_can_be_allowed():
    broken = iteration([migration()], [vm(kept=False)])
    strict = TcpContinuity({})
    strict.add_iteration(broken)
    lenient = TcpContinuity({"require_connection_kept": False})
    lenient.add_iteration(broken)
    assert not strict.success and lenient.success


def test_a_stall_exactly_at_the_limit_passes():
    sla = TcpContinuity({"max_stall_ms": 250})
    sla.add_iteration(iteration([migration(stall=250.0)], [vm()]))
    assert sla.success and "longest stall 250 ms <= 250 ms over 1" in sla.details()


def test_tcp_details_without_unmeasured_say_nothing_of_it():
    sla = TcpContinuity({})
    sla.add_iteration(iteration([migration()], [vm()]))
    assert "not measured" not in sla.details()


def test_an_iteration_without_output_is_nothing_measured():
    for sla in (TcpContinuity({}), MaxDowntime({"max_ms": 1}), SuccessRate({"min_percent": 0}),
                MaxMigrationDuration({"max_seconds": 1}),
                MaxEvacuationDuration({"max_seconds": 1})):
        sla.add_iteration({"error": [], "atomic_actions": [], "duration": 1.0})
        assert not sla.success


def test_downtime_judges_migrations_after_a_refused_one():
    sla = MaxDowntime({"max_ms": 500})
    sla.add_iteration(iteration([migration(outcome="refused", client=None),
                                 migration(client=900.0)]))
    assert not sla.success and "max 900.0 ms" in sla.details()


def test_downtime_exactly_at_the_limit_passes():
    sla = MaxDowntime({"max_ms": 200})
    sla.add_iteration(iteration([migration(client=200.0)]))
    assert sla.success


def test_unmeasured_migrations_add_up_and_are_only_mentioned_when_there_are_some():
    sla = MaxDowntime({"max_ms": 500})
    sla.add_iteration(iteration([migration(client=None), migration(client=None),
                                 migration(client=10.0)]))
    other = MaxDowntime({"max_ms": 500})
    other.add_iteration(iteration([migration(client=None)]))
    sla.merge(other)
    assert sla.details() == ("client downtime max 10.0 ms <= 500 ms over 1 migration(s), "
                             "3 migration(s) not measured - Failed")
    clean = MaxDowntime({"max_ms": 500})
    clean.add_iteration(iteration([migration(client=10.0)]))
    assert clean.details() == "client downtime max 10.0 ms <= 500 ms over 1 migration(s) - Passed"
    empty = MaxDowntime({"max_ms": 500})
    empty.add_iteration(iteration([]))
    assert empty.details() == "client downtime max nothing measured <= 500 ms over 0 " \
                              "migration(s) - Failed"


def test_failure_classes_are_counted_each():
    sla = SuccessRate({"min_percent": 0})
    sla.add_iteration(iteration([migration(outcome="error"), migration(outcome="error"),
                                 migration(outcome="refused")]))
    other = SuccessRate({"min_percent": 0})
    other.add_iteration(iteration([migration(outcome="error")]))
    sla.merge(other)
    assert sla.failures == {"error": 3, "refused": 1}
    assert "failed: error: 3, refused: 1" in sla.details()


def test_success_rate_boundaries_and_its_sentence():
    half = iteration([migration(), migration(outcome="error")])
    below = SuccessRate({"min_percent": 50.5})
    below.add_iteration(half)
    at = SuccessRate({"min_percent": 50})
    at.add_iteration(half)
    assert not below.success and at.success
    assert at.details() == ("1/2 planned live migrations succeeded (50.0% >= 50%) - failed: "
                            "error: 1 - Passed")
    one = SuccessRate({"min_percent": 100})
    one.add_iteration(iteration([migration()]))
    assert one.success and one.details() == ("1/1 planned live migrations succeeded "
                                             "(100.0% >= 100%) - Passed")


def test_only_successful_migrations_with_a_duration_are_judged():
    sla = MaxMigrationDuration({"max_seconds": 10})
    sla.add_iteration(iteration([migration(outcome="error", duration=99.0),
                                 migration(outcome="completed", duration=None),
                                 migration(outcome="timeout_forced", duration=4.0)]))
    assert sla.success and sla.details() == "longest live migration 4.00s <= 10s over 1 - Passed"
    assert MaxMigrationDuration({"max_seconds": 4}).merge(sla)  # at the limit: passes


def test_duration_merge_keeps_the_longest_whichever_side_has_it():
    empty, full = MaxMigrationDuration({"max_seconds": 10}), \
        MaxMigrationDuration({"max_seconds": 10})
    full.add_iteration(iteration([migration(duration=12.0)]))
    assert not empty.merge(full) and empty.longest == 12.0
    shorter = MaxMigrationDuration({"max_seconds": 10})
    shorter.add_iteration(iteration([migration(duration=3.0)]))
    assert not full.merge(shorter) and full.longest == 12.0
    assert not full.merge(MaxMigrationDuration({"max_seconds": 10})) and full.longest == 12.0


@pytest.mark.parametrize("sla", [
    MaxDowntime({"max_ms": 1}), SuccessRate({"min_percent": 0}), TcpContinuity({}),
    MaxMigrationDuration({"max_seconds": 1}), MaxEvacuationDuration({"max_seconds": 1})],
    ids=lambda s: s.get_name())
def test_a_run_rally_never_fed_an_iteration_fails(sla):
    # A context that fails in setup: Rally asks for the verdict without any iteration.
    assert sla.result()["success"] is False
    assert sla.details().endswith("- Failed")
