"""The migration driver against FakeNova (real novaclient, real HTTP, fake clock)."""

import collections
import contextlib

import pytest
from keystoneauth1 import session as ks_session
from keystoneauth1 import token_endpoint

from rally_lm.clients.nova import NovaAdapter, NovaError, exception_line, make_client
from rally_lm.migration.driver import (
    MAX_REQUESTS_PER_SECOND,
    MigrationDriver,
    MigrationFinished,
    MigrationPolicy,
    MigrationRecord,
    _Following,
    classify,
    reconcile_with_hypervisor,
)
from tests.fakes.fake_nova import FakeClock, FakeNova, Plan


@pytest.fixture
def cloud():
    clock = FakeClock()
    nova = FakeNova(clock).start()
    sess = ks_session.Session(auth=token_endpoint.Token(nova.url, "fake-token"))
    adapter = NovaAdapter(make_client(sess))
    yield nova, adapter, clock
    nova.stop()


def driver(adapter, clock, **policy):
    return MigrationDriver(adapter, MigrationPolicy(**{"status_grace": 5.0, **policy}),
                           clock=clock, sleep=clock.sleep)


def test_completed_migration_is_timed_to_a_poll_interval(cloud):
    nova, adapter, clock = cloud
    server = nova.add_server("vm0")
    nova.plan(server, Plan(preparing=1.0, running=3.0, post=1.0))
    record = driver(adapter, clock).migrate(server, "vm0", "hv1", "hv2", "out")
    assert record.outcome == "completed", record.error
    assert record.final_host == "hv2"
    # Nova's record completed 5 s after the call; without an end hint a running
    # migration is looked at every 0.25 s.
    assert 5.0 <= record.duration <= 5.0 + 0.25
    assert record.end_resolution == 0.25
    assert record.nova_status == "completed" and record.migration_id == 1
    assert record.nova_completed_after == record.duration
    assert any(p.get("memory_total_bytes") for p in record.progress)
    # Nova's database only while it ran: the server itself read once, at the end.
    assert record.api_requests["GET /servers/{id}"] == 1
    assert record.api_requests["POST /servers/{id}/action"] == 1


def test_the_first_look_waits_for_the_conductor_and_the_phases_cost_one_request(cloud):
    nova, adapter, clock = cloud
    server = nova.add_server("vm0")
    nova.plan(server, Plan(preparing=1.0, running=3.0, post=1.0))
    drv = driver(adapter, clock)
    record = drv.migrate(server, "vm0", "hv1", "hv2", "out")
    # No look at Nova's record before the conductor can have made it.
    assert record.progress[0]["t"] == 0.5 and record.progress[0]["status"] is not None
    assert record.request_id and record.request_id.startswith("req-")
    before = dict(record.api_requests)
    drv.read_events(record)
    spent = {k: v - before.get(k, 0) for k, v in record.api_requests.items()
             if v != before.get(k, 0)}
    # The call's request id names its instance action: no listing of them.
    assert spent == {"GET /servers/{id}/os-instance-actions/{id}": 1}
    assert "compute_live_migration" in [e["event"] for e in record.events]


def test_phases_of_a_call_nova_did_not_name_are_found_by_listing(cloud):
    nova, adapter, clock = cloud
    server = nova.add_server("vm0")
    nova.plan(server, Plan())
    drv = driver(adapter, clock)
    record = drv.migrate(server, "vm0", "hv1", "hv2", "out")
    record.request_id = "req-not-known-to-nova"
    drv.read_events(record)
    assert record.api_requests["GET /servers/{id}/os-instance-actions"] == 1
    assert "compute_live_migration" in [e["event"] for e in record.events]


def test_polling_stays_under_the_request_budget(cloud):
    nova, adapter, clock = cloud
    server = nova.add_server("vm0")
    nova.plan(server, Plan(running=20.0))
    start = clock()
    driver(adapter, clock).migrate(server, "vm0", "hv1", "hv2", "out")
    # Steady polling, away from the one-off requests around the API call.
    during = [t for t, _method, _path in nova.requests if start + 1 <= t < start + 21]
    assert len(during) / 20 <= MAX_REQUESTS_PER_SECOND


def test_policy_refuses_polling_faster_than_the_budget():
    with pytest.raises(ValueError, match="requests/s"):
        MigrationPolicy(poll_interval=0.1)


def hint_at(clock, when):
    """An end hint that says the copy was over at ``when`` (fake time), once it was."""
    return lambda: when if clock() >= when else None


def test_with_an_end_hint_a_long_copy_costs_few_looks_and_keeps_its_precision(cloud):
    # 60 s of copy: sparse looks while it runs, dense ones once the hint came.
    nova, adapter, clock = cloud
    server = nova.add_server("vm0")
    nova.plan(server, Plan(preparing=2.0, running=60.0, post=2.0))
    start = clock()
    record = driver(adapter, clock).migrate(server, "vm0", "hv1", "hv2", "out",
                                            end_hint=hint_at(clock, start + 62.0))
    assert record.outcome == "completed"
    assert 64.0 <= record.duration <= 64.25 and record.end_resolution == 0.25
    assert record.end_hinted_at == 62.0
    assert sum(record.api_requests.values()) <= 35
    assert not any(k.startswith("GET /servers/{id}") and k.endswith("{id}") and v > 1
                   for k, v in record.api_requests.items() if k == "GET /servers/{id}")


def test_the_shortest_hint_to_end_span_so_far_delays_the_dense_looks(cloud):
    nova, adapter, clock = cloud
    server = nova.add_server("vm0")
    for _ in range(2):
        nova.plan(server, Plan(preparing=2.0, running=20.0, post=4.0))
    the_driver = driver(adapter, clock)
    first_start = clock()
    first = the_driver.migrate(server, "vm0", "hv1", "hv2", "out",
                               end_hint=hint_at(clock, first_start + 22.0))
    assert the_driver.hint_lags == [pytest.approx(first.duration - 22.0)]
    clock.sleep(1.0)
    second_start = clock()
    second = the_driver.migrate(server, "vm0", "hv2", "hv1", "back",
                                end_hint=hint_at(clock, second_start + 22.0))
    assert second.outcome == "completed" and second.end_resolution == 0.25

    def dense(r):
        return sum(1 for a, b in zip(r.progress, r.progress[1:], strict=False)
                   if round(b["t"] - a["t"], 3) == 0.25)

    # The first waited densely through Nova's 4 s after the copy; the second
    # started its dense looks 1 s before the shortest such span.
    assert dense(first) >= 15 and dense(second) <= 6
    assert 26.0 <= second.duration <= 26.25


def test_api_refusal_is_classified_refused(cloud):
    nova, adapter, clock = cloud
    server = nova.add_server("vm0")
    record = driver(adapter, clock).migrate(server, "vm0", "hv1", "nowhere", "out")
    assert record.outcome == "refused"
    assert "could not be found" in record.error


def test_failed_precheck_is_refused_with_its_reason(cloud):
    nova, adapter, clock = cloud
    server = nova.add_server("vm0")
    nova.plan(server, Plan(result="precheck_fail"))
    record = driver(adapter, clock).migrate(server, "vm0", "hv1", "hv2", "out")
    assert record.outcome == "refused"
    assert "compute_check_can_live_migrate_source" in record.error
    assert "Unsafe migration" in record.error
    assert record.final_host == "hv1"


def test_failed_migration_is_an_error_and_the_vm_stays_on_its_source(cloud):
    nova, adapter, clock = cloud
    server = nova.add_server("vm0")
    nova.plan(server, Plan(result="fail"))
    record = driver(adapter, clock).migrate(server, "vm0", "hv1", "hv2", "out")
    assert record.outcome == "error"
    assert record.final_host == "hv1" and record.nova_status == "failed"
    assert "Unsafe migration" in record.error


@pytest.mark.parametrize("action, outcome, host, status", [
    ("abort", "timeout_aborted", "hv1", "cancelled"),
    ("force_complete", "timeout_forced", "hv2", "completed"),
])
def test_timeout_policies(cloud, action, outcome, host, status):
    nova, adapter, clock = cloud
    server = nova.add_server("vm0")
    nova.plan(server, Plan(result="hang"))
    record = driver(adapter, clock, timeout=10.0, on_timeout=action).migrate(
        server, "vm0", "hv1", "hv2", "out")
    assert record.timed_out and record.timeout_action == action
    assert record.outcome == outcome, record.error
    assert record.final_host == host and record.nova_status == status


def test_timeout_action_refused_while_preparing_is_retried_until_accepted(cloud):
    # Nova will not force (or, before 2.65, abort) a migration still "preparing".
    nova, adapter, clock = cloud
    server = nova.add_server("vm0")
    nova.plan(server, Plan(result="hang", preparing=15.0))
    record = driver(adapter, clock, timeout=10.0, on_timeout="force_complete").migrate(
        server, "vm0", "hv1", "hv2", "out")
    assert record.outcome == "timeout_forced", record.error
    # Looks every 3 s from 0.5 s while it prepares (timeout seen at 12.5 s), tries
    # every 2 s.
    assert record.action_attempts == 3
    assert record.action_accepted_after == 16.5
    assert record.error is None


def test_forced_migration_still_copying_is_waited_for(cloud):
    # After the force the paused guest's memory is still being copied, for
    # longer than a timeout: Nova's progress moves, so the driver keeps waiting.
    nova, adapter, clock = cloud
    server = nova.add_server("vm0")
    nova.plan(server, Plan(result="hang", running=100.0, forced_copy=30.0))
    record = driver(adapter, clock, timeout=10.0, on_timeout="force_complete").migrate(
        server, "vm0", "hv1", "hv2", "out")
    assert record.outcome == "timeout_forced" and record.error is None
    assert 40.0 <= record.duration <= 42.0


def test_a_failed_migration_is_not_called_aborted_when_no_abort_was_accepted(cloud):
    # The migration failed on its own before the timeout's abort could be made.
    record = failed_record(timed_out=True, timeout_action="abort", nova_status="error",
                           final_status="ACTIVE")
    record.events = [{"event": "compute_live_migration", "result": "Error", "reason": None}]
    outcome, reason = classify(record, {"status": "error"},
                               {"status": "ACTIVE", "host": "hv1", "task_state": None})
    assert outcome == "error" and "still on hv1" in reason


def test_wait_policy_gives_up_after_its_limit(cloud):
    nova, adapter, clock = cloud
    server = nova.add_server("vm0")
    nova.plan(server, Plan(result="hang"))
    record = driver(adapter, clock, timeout=5.0, on_timeout="wait", wait_limit=3.0).migrate(
        server, "vm0", "hv1", "hv2", "out")
    assert record.timeout_action == "abort"
    assert record.outcome == "timeout_aborted"
    assert 15.0 <= record.duration <= 17.0


def test_a_record_completed_with_the_server_still_migrating_is_stale_status(cloud):
    # The destination compute died: Nova's record says completed, the server
    # stays "migrating" forever. Its state is read again until the grace ends.
    nova, adapter, clock = cloud
    server = nova.add_server("vm0")
    nova.plan(server, Plan(result="stuck"))
    record = driver(adapter, clock, timeout=10.0, status_grace=5.0).migrate(
        server, "vm0", "hv1", "hv2", "out")
    assert record.outcome == "stale_status"
    assert record.duration == 2.5 and record.nova_status == "completed"
    assert record.error == ("after the grace period Nova says 'completed', the server is "
                            "ACTIVE/migrating on hv1")
    assert record.api_requests["GET /servers/{id}"] == 6


def test_migration_nova_never_finishes_ends_one_timeout_after_the_abort(cloud):
    # Nova keeps the migration running for good and refuses to abort it: the
    # run must go on, one timeout after the abort was first asked.
    nova, adapter, clock = cloud
    server = nova.add_server("vm0")
    nova.plan(server, Plan(result="deaf"))
    record = driver(adapter, clock, timeout=10.0, status_grace=5.0).migrate(
        server, "vm0", "hv1", "hv2", "out")
    assert record.outcome == "stale_status"
    assert 20.0 <= record.duration <= 20.25
    assert "abort failed" in record.error and "still reports" in record.error


@pytest.mark.parametrize("lag", [3.0, 30.0])
def test_the_duration_ends_with_novas_record_not_the_servers_task_state(cloud, lag):
    # Nova clears the task state, then updates resources, then marks the record
    # completed: the migration is over by Nova's own account when its record says so.
    nova, adapter, clock = cloud
    server = nova.add_server("vm0")
    nova.plan(server, Plan(record_lag=lag))
    record = driver(adapter, clock, status_grace=5.0).migrate(server, "vm0", "hv1", "hv2",
                                                              "out")
    assert record.outcome == "completed"
    assert 3.0 + lag <= record.duration <= 3.0 + lag + 0.25
    assert record.nova_completed_after == record.duration


def test_completed_record_with_the_server_on_its_source_is_stale_status(cloud):
    nova, adapter, clock = cloud
    server = nova.add_server("vm0")
    nova.plan(server, Plan(result="stale"))
    record = driver(adapter, clock).migrate(server, "vm0", "hv1", "hv2", "out")
    assert record.outcome == "stale_status"
    assert "completed" in record.error and "hv1" in record.error


def test_server_in_error_is_lost(cloud):
    nova, adapter, clock = cloud
    server = nova.add_server("vm0")
    nova.plan(server, Plan(result="lost"))
    record = driver(adapter, clock).migrate(server, "vm0", "hv1", "hv2", "out")
    assert record.outcome == "lost"


def test_adapter_reports_microversion_and_hosts(cloud):
    _nova, adapter, _clock = cloud
    assert adapter.max_microversion() == "2.93"
    assert {s["host"] for s in adapter.compute_services()} == {"hv1", "hv2"}


def failed_record(**fields):
    values = dict(server_id="s1", vm="vm0", direction="out", source="hv1", target="hv2",
                  outcome="error", final_host="hv1", nova_status="error")
    values.update(fields)
    return MigrationRecord(**values)


def test_libvirt_running_the_guest_elsewhere_makes_nova_stale():
    record = failed_record()
    reconcile_with_hypervisor(record, {"hv1": "absent", "hv2": "running (migrated)"})
    assert record.outcome == "stale_status" and record.running_on == "hv2"
    assert "Nova says the server is on hv1" in record.error and "runs it on hv2" in record.error


def test_libvirt_agreeing_with_nova_keeps_the_class():
    record = failed_record()
    reconcile_with_hypervisor(record, {"hv1": "running", "hv2": "unknown: connection refused"})
    assert record.outcome == "error" and record.running_on == "hv1"
    assert record.libvirt_states["hv2"].startswith("unknown")


def test_guest_running_nowhere_is_lost_but_only_when_every_host_answered():
    record = failed_record(outcome="completed", final_host="hv2", nova_status="completed")
    reconcile_with_hypervisor(record, {"hv1": "absent", "hv2": "shut off"})
    assert record.outcome == "lost" and record.running_on is None
    unsure = failed_record(outcome="completed", final_host="hv2", nova_status="completed")
    reconcile_with_hypervisor(unsure, {"hv1": "absent", "hv2": "unknown: timeout"})
    assert unsure.outcome == "completed"


def test_an_incoming_shell_left_on_the_target_is_not_the_guest():
    # The states virsh printed for an aborted migration on the testbed.
    record = failed_record(outcome="timeout_aborted")
    reconcile_with_hypervisor(record, {"hv1": "running (migration canceled)",
                                       "hv2": "paused (migrating)"})
    assert record.outcome == "timeout_aborted" and record.running_on == "hv1"
    starting = failed_record(outcome="timeout_aborted")
    reconcile_with_hypervisor(starting, {"hv1": "running (unpaused)",
                                         "hv2": "paused (starting up)"})
    assert starting.outcome == "timeout_aborted" and starting.running_on == "hv1"
    in_transit = failed_record(outcome="error")
    reconcile_with_hypervisor(in_transit, {"hv1": "absent", "hv2": "paused (migrating)"})
    assert in_transit.outcome == "error" and in_transit.running_on is None


def test_post_copy_source_is_not_the_guest():
    record = failed_record(outcome="completed", final_host="hv2", nova_status="completed")
    reconcile_with_hypervisor(record, {"hv1": "paused (post-copy)", "hv2": "running (post-copy)"})
    assert record.outcome == "completed" and record.running_on == "hv2"


def test_guest_running_on_both_hosts_is_flagged():
    record = failed_record(outcome="completed", final_host="hv2", nova_status="completed")
    reconcile_with_hypervisor(record, {"hv1": "paused (user)", "hv2": "running (migrated)"})
    assert record.outcome == "stale_status" and "hv1 and hv2" in record.error


def test_refusal_names_a_disabled_target_compute(cloud):
    nova, adapter, clock = cloud
    server = nova.add_server("vm0")
    nova.hosts["hv2"].update(status="disabled",
                             disabled_reason="Connection to libvirt lost: 1")
    nova.plan(server, Plan(result="precheck_fail"))
    record = driver(adapter, clock).migrate(server, "vm0", "hv1", "hv2", "out")
    assert record.outcome == "refused"
    assert record.error.endswith(
        "nova-compute on hv2 is up/disabled (Connection to libvirt lost: 1)")


@pytest.mark.parametrize("traceback, reason", [
    ('Traceback (most recent call last):\n  File "x.py", line 1, in f\n    raise result\n'
     "nova.exception_Remote.NoValidHost_Remote: No valid host was found.\n",
     "nova.exception_Remote.NoValidHost_Remote: No valid host was found."),
    # Before 2.84 a remote failure's traceback may stop at the code line.
    ('Traceback (most recent call last):\n  File "x.py", line 1, in f\n    raise result\n',
     None),
    (None, None),
])
def test_event_reason_is_the_exception_line(traceback, reason):
    assert exception_line(traceback) == reason


def test_novas_own_completion_timeout_is_timeout_aborted_by_nova(cloud):
    nova, adapter, clock = cloud
    server = nova.add_server("vm0")
    nova.plan(server, Plan(result="nova_timeout", running=8.0))
    record = driver(adapter, clock, timeout=60.0).migrate(server, "vm0", "hv1", "hv2", "out")
    assert not record.timed_out
    assert (record.outcome, record.timeout_by) == ("timeout_aborted", "nova"), record.error
    assert "live_migration_completion_timeout" in record.error
    assert record.final_host == "hv1" and record.nova_status == "cancelled"


def test_our_own_abort_is_timeout_aborted_by_the_tool(cloud):
    nova, adapter, clock = cloud
    server = nova.add_server("vm0")
    nova.plan(server, Plan(result="hang"))
    record = driver(adapter, clock, timeout=10.0).migrate(server, "vm0", "hv1", "hv2", "out")
    assert (record.outcome, record.timeout_by) == ("timeout_aborted", "tool")
    assert any(e["event"] == "compute_live_migration_abort" for e in record.events)


def test_someone_elses_abort_is_an_error_not_a_timeout(cloud):
    nova, adapter, clock = cloud
    server = nova.add_server("vm0")
    nova.plan(server, Plan(running=6.0))
    record = classify_after_foreign_abort(nova, adapter, clock, server)
    assert record.outcome == "error" and record.timeout_by is None
    assert "cancelled" in record.error


def classify_after_foreign_abort(nova, adapter, clock, server):
    """An operator aborts the migration through the API while we only watch."""
    def sleep(seconds):
        clock.sleep(seconds)
        mig = nova.migrations[-1] if nova.migrations else None
        if mig is not None and mig.aborted_at is None and clock() - mig.created > 2.0:
            mig.aborted_at = clock()
    return MigrationDriver(adapter, MigrationPolicy(status_grace=5.0, timeout=60.0),
                           clock=clock, sleep=sleep).migrate(server, "vm0", "hv1", "hv2", "out")


def test_completed_migrations_have_no_timeout_owner(cloud):
    nova, adapter, clock = cloud
    server = nova.add_server("vm0")
    record = driver(adapter, clock).migrate(server, "vm0", "hv1", "hv2", "out")
    assert record.outcome == "completed" and record.timeout_by is None
    assert MigrationRecord.from_dict(record.to_dict()).timeout_by is None


def test_the_last_look_before_the_job_ran_bounds_its_start(cloud):
    nova, adapter, clock = cloud
    server = nova.add_server("vm0")
    nova.plan(server, Plan(preparing=1.0, running=3.0, post=1.0))
    record = driver(adapter, clock, watch_interval=0.5).migrate(server, "vm0", "hv1", "hv2",
                                                                 "out")
    first_running = next(p["t"] for p in record.progress if p["status"] == "running")
    # The job ran from 1 s after the call; looks 0.5 s apart while it prepared:
    # the last look before that start, the first after it.
    assert record.not_running_at == 0.5 and first_running == 1.0
    assert MigrationRecord.from_dict(record.to_dict()).not_running_at == record.not_running_at


def test_reconciliation_messages_in_full():
    stale = failed_record(nova_status=None)
    reconcile_with_hypervisor(stale, {"hv1": "absent", "hv2": "running (migrated)"})
    assert stale.error == ("Nova says the server is on hv1 (no record), libvirt runs it on "
                           "hv2")
    lost = failed_record(outcome="completed", final_host="hv2", nova_status="completed")
    reconcile_with_hypervisor(lost, {"hv1": "absent", "hv2": "shut off (destroyed)"})
    assert lost.error == ("libvirt runs the guest on none of hv1 (absent), "
                          "hv2 (shut off (destroyed))")
    both = failed_record(outcome="completed", final_host="hv2")
    reconcile_with_hypervisor(both, {"hv1": "running (unpaused)", "hv2": "running (migrated)"})
    assert both.error == "libvirt runs the guest on hv1 and hv2 at once"


def test_a_refused_or_lost_migration_with_no_guest_running_keeps_its_class():
    for outcome in ("refused", "lost"):
        record = failed_record(outcome=outcome, error="as Nova said")
        reconcile_with_hypervisor(record, {"hv1": "absent", "hv2": "absent"})
        assert (record.outcome, record.error) == (outcome, "as Nova said")
        assert record.libvirt_states == {"hv1": "absent", "hv2": "absent"}


def test_no_host_states_decide_nothing():
    record = failed_record(outcome="completed", final_host="hv2", error="")
    reconcile_with_hypervisor(record, {})
    assert (record.outcome, record.error, record.running_on) == ("completed", "", None)


class _Services:
    """An adapter that answers only the compute service list (or fails to)."""

    def __init__(self, services):
        self.services = services

    def compute_services(self):
        if isinstance(self.services, Exception):
            raise self.services
        return self.services


def _service(host, state="up", status="enabled", reason=None):
    return {"host": host, "state": state, "status": status, "disabled_reason": reason}


@pytest.mark.parametrize("services, why", [
    ([_service("hv1", state="down"), _service("hv2")], None),
    ([_service("hv2", state="down")], "nova-compute on hv2 is down/enabled"),
    ([_service("hv1"), _service("hv2", status="disabled")], "nova-compute on hv2 is up/disabled"),
    ([_service("hv2", state="down", status="disabled", reason="maintenance")],
     "nova-compute on hv2 is down/disabled (maintenance)"),
    ([_service("hv2")], None),
])
def test_the_targets_health_names_only_the_target(services, why):
    clock = FakeClock()
    assert driver(_Services(services), clock)._target_health("hv2") == why


def test_the_targets_health_is_unknown_when_nova_cannot_say():
    assert driver(_Services(NovaError("503")), FakeClock())._target_health("hv2") is None


# -- the timeout action (abort / force-complete) reaching Nova, exactly ----------------


class RecordingAdapter:
    """Answers the in-progress list from a script and records every call."""

    def __init__(self, running=None):
        self.running = running
        self.calls = []
        self.requests = collections.Counter()

    def migration_progress(self, server_id):
        self.calls.append(("migration_progress", server_id))
        if isinstance(self.running, Exception):
            raise self.running
        return self.running or []

    def abort_migration(self, server_id, migration_id):
        self.calls.append(("abort_migration", server_id, migration_id))

    def force_complete_migration(self, server_id, migration_id):
        self.calls.append(("force_complete_migration", server_id, migration_id))


def make_driver(adapter, now=101.23456):
    timed = []

    def timer(name):
        timed.append(name)
        return contextlib.nullcontext()

    driver = MigrationDriver(adapter, MigrationPolicy(), timer=timer, clock=lambda: now)
    return driver, timed


def record():
    return MigrationRecord(server_id="s1", vm="vm0", direction="out", source="hv1",
                           target="hv2")


RUNNING = [{"id": 7, "uuid": "u7", "status": "running", "memory_total_bytes": 100}]


@pytest.mark.parametrize("action, call, timed_as", [
    ("abort", "abort_migration", "nova.abort_live_migration"),
    ("force_complete", "force_complete_migration", "nova.force_complete_live_migration"),
])
def test_the_action_names_this_servers_migration(action, call, timed_as):
    adapter = RecordingAdapter(RUNNING)
    driver, timed = make_driver(adapter)
    migration = record()
    migration.migration_id = 7
    assert driver._act(migration, "s1", 100.0, action) is True
    assert adapter.calls == [(call, "s1", 7)]
    assert timed == [timed_as]
    assert (migration.timeout_action, migration.action_attempts, migration.error,
            migration.action_accepted_after) == (action, 1, None, 1.235)


def test_without_a_migration_record_there_is_nothing_to_act_on():
    adapter = RecordingAdapter(NovaError("must not be asked"))
    driver, timed = make_driver(adapter)
    migration = record()
    assert driver._act(migration, "s1", 100.0, "abort") is False
    assert driver._act(migration, "s1", 100.0, "abort") is False
    assert migration.error == "timeout: no migration record to abort yet"
    assert migration.action_attempts == 2 and timed == [] and adapter.calls == []
    assert migration.action_accepted_after is None


def test_a_known_migration_is_acted_on_without_asking_again():
    adapter = RecordingAdapter(NovaError("must not be asked"))
    driver, _timed = make_driver(adapter)
    migration = record()
    migration.migration_id = 9
    assert driver._act(migration, "s1", 100.0, "abort") is True
    assert adapter.calls == [("abort_migration", "s1", 9)]


# -- settling: Nova's record read whole, API failures, consistency -------------------------

class SettlingAdapter(RecordingAdapter):
    """Nova's migration list, server and action events from a script; errors as given."""

    def __init__(self, migrations, servers, events=None):
        super().__init__()
        self.migration_list, self.servers, self.events = migrations, list(servers), events

    def migrations(self, server_id):
        return self.migration_list

    def server(self, server_id):
        answer = self.servers.pop(0) if len(self.servers) > 1 else self.servers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def action_events(self, server_id, request_id=None):
        if isinstance(self.events, Exception):
            raise self.events
        return self.events

    def compute_services(self):
        return []


NEW = {"id": 2, "uuid": "u2", "status": "completed", "created_at": "2027-01-15T08:00:00.000000",
       "updated_at": "2027-01-15T08:00:13.000000"}
ON_TARGET = {"host": "hv2", "status": "ACTIVE", "task_state": None}


def settling_driver(adapter):
    ticks = iter(range(1000))
    sleeps = []
    driver = MigrationDriver(adapter, MigrationPolicy(status_grace=3.0),
                             clock=lambda: 100.0 + next(ticks) * 1.00049,
                             sleep=sleeps.append)
    return driver, sleeps


def followed(migration=NEW, api_error=None):
    """A migration followed to its end, as _follow leaves it for _settle."""
    return _Following(start=99.5, known={1}, migration=migration, looked_at=101.0,
                      api_error=api_error)


def test_a_settled_migration_keeps_novas_record_whole():
    adapter = SettlingAdapter([], [ON_TARGET], NovaError("must not be asked"))
    driver, sleeps = settling_driver(adapter)
    migration = record()
    migration.duration = 1.5004
    driver._settle(migration, followed())
    assert (migration.migration_id, migration.migration_uuid, migration.nova_status,
            migration.nova_created_at, migration.nova_updated_at) == (
        2, "u2", "completed", "2027-01-15T08:00:00.000000", "2027-01-15T08:00:13.000000")
    assert migration.nova_completed_after == 1.5
    # A completed migration's events only draw its timeline: read later (read_events).
    assert migration.events == []
    assert (migration.final_host, migration.final_status, migration.outcome,
            migration.error) == ("hv2", "ACTIVE", "completed", None)
    assert sleeps == []


def test_a_failed_migration_is_classified_from_its_events():
    events = [{"event": "compute_live_migration", "result": "Error",
               "reason": "libvirt.libvirtError: unsafe"}]
    adapter = SettlingAdapter([], [{**ON_TARGET, "host": "hv1"}], events)
    driver, _sleeps = settling_driver(adapter)
    migration = record()
    driver._settle(migration, followed({**NEW, "status": "failed"}))
    assert migration.events == events
    assert (migration.outcome, migration.error) == (
        "error", "the migration ended failed; the server is still on hv1: "
                 "libvirt.libvirtError: unsafe")


def test_an_api_failing_until_the_grace_ends_leaves_the_outcome_unknown():
    adapter = SettlingAdapter([NEW], [NovaError("503 Service Unavailable")],
                              NovaError("503 Service Unavailable"))
    driver, sleeps = settling_driver(adapter)
    migration = record()
    driver._settle(migration, followed())
    assert migration.outcome == "unknown"
    assert migration.error == ("Nova's API failed while the migration settled, so how it "
                               "ended is unknown: 503 Service Unavailable")
    assert migration.events == [] and sleeps == [1.0, 1.0]


def test_one_failed_read_is_retried_and_does_not_decide():
    adapter = SettlingAdapter([NEW], [NovaError("503"), ON_TARGET], [])
    driver, sleeps = settling_driver(adapter)
    migration = record()
    driver._settle(migration, followed())
    assert (migration.outcome, sleeps) == ("completed", [1.0])


def test_a_follow_that_ended_on_an_api_error_is_unknown():
    adapter = SettlingAdapter([], [ON_TARGET], [])
    driver, _sleeps = settling_driver(adapter)
    migration = record()
    driver._settle(migration, followed({**NEW, "status": "running"},
                                       api_error=NovaError("502 Bad Gateway")))
    assert migration.outcome == "unknown" and migration.error.endswith("502 Bad Gateway")


SOURCE_AT_REST = {"host": "hv1", "status": "ACTIVE", "task_state": None}


@pytest.mark.parametrize("migration, server, consistent", [
    (None, None, True),
    (None, SOURCE_AT_REST, True),
    (None, {**SOURCE_AT_REST, "host": "hv2"}, False),
    (None, {**SOURCE_AT_REST, "task_state": "migrating"}, False),
    ({"status": "running"}, ON_TARGET, False),
    ({"status": "completed"}, {**ON_TARGET, "task_state": "migrating"}, False),
    ({"status": "completed"}, ON_TARGET, True),
    ({"status": "done"}, ON_TARGET, True),
    ({"status": "completed"}, SOURCE_AT_REST, False),
    ({"status": "failed"}, SOURCE_AT_REST, True),
    ({"status": "failed"}, ON_TARGET, False),
])
def test_nova_is_consistent_when_record_and_server_agree(migration, server, consistent):
    assert MigrationDriver._consistent(record(), migration, server) is consistent


@pytest.mark.parametrize("server, finished", [
    (None, True),
    ({"status": "ERROR", "task_state": "migrating"}, True),
    ({"status": "ACTIVE", "task_state": None}, True),
    ({"status": "ACTIVE", "task_state": "migrating"}, False),
])
def test_a_migration_has_finished_when_the_server_left_migrating(server, finished):
    condition = MigrationFinished(SettlingAdapter([], [server]), "s1")
    assert (condition.last, condition.api_errors) == (None, 0)
    assert condition() is finished
    assert condition.last == server


def test_a_flapping_api_is_counted_and_not_the_end():
    condition = MigrationFinished(SettlingAdapter([], [NovaError("503"), NovaError("503"),
                                                       ON_TARGET]), "s1")
    assert (condition(), condition(), condition()) == (False, False, True)
    assert condition.api_errors == 2


@pytest.mark.parametrize("fields, message", [
    ({"on_timeout": "retry"}, "on_timeout must be one of abort, force_complete, wait"),
    ({"nova_completion_timeout": -0.5}, "nova_completion_timeout must be >= 0 (0: none)"),
    ({"timeout": 0}, "timeout and poll_interval must be positive, status_grace >= 0"),
    ({"poll_interval": 0}, "timeout and poll_interval must be positive, status_grace >= 0"),
    ({"status_grace": -1}, "timeout and poll_interval must be positive, status_grace >= 0"),
    ({"poll_interval": 0.19},
     f"poll_interval 0.19s exceeds {MAX_REQUESTS_PER_SECOND} requests/s"),
    ({"poll_interval": 1.0, "watch_interval": 0.5}, "watch_interval must be at least "
                                                    "poll_interval"),
])
def test_a_policy_out_of_bounds_says_which_bound(fields, message):
    with pytest.raises(ValueError) as caught:
        MigrationPolicy(**fields)
    assert str(caught.value) == message


@pytest.mark.parametrize("fields", [
    {"nova_completion_timeout": 0}, {"status_grace": 0},
    # Exactly at the request ceiling is allowed.
    {"poll_interval": 1.0 / MAX_REQUESTS_PER_SECOND, "watch_interval": 0.2},
])
def test_a_policy_at_its_bounds_is_accepted(fields):
    MigrationPolicy(**fields)


# -- defects found by issue #30, each failing on c38f188 ---------------------------------

def test_one_failed_record_read_after_the_migration_does_not_make_it_refused(cloud):
    # A migration that ran and failed; the first read of os-migrations after its
    # end answers 503. It must not pass for one that never started.
    nova, adapter, clock = cloud
    server = nova.add_server("vm0")
    nova.plan(server, Plan(result="fail", preparing=1.0, running=3.0))
    nova.fail("GET", r"os-migrations", 503, times=1, after=clock() + 4.0)
    record = driver(adapter, clock).migrate(server, "vm0", "hv1", "hv2", "out")
    assert record.outcome == "error", record.error
    assert record.nova_status == "failed" and record.migration_id == 1


def test_a_force_nova_refused_is_not_a_forced_completion(cloud):
    # Our timeout asked Nova to force the copy while it was still preparing (refused,
    # retried every 2 s); the migration then completed on its own between two tries.
    nova, adapter, clock = cloud
    server = nova.add_server("vm0")
    nova.plan(server, Plan(preparing=3.1, running=0.3, post=0.2))
    record = driver(adapter, clock, timeout=1.0, on_timeout="force_complete").migrate(
        server, "vm0", "hv1", "hv2", "out")
    assert record.timed_out and record.action_accepted_after is None
    assert record.outcome == "completed" and record.timeout_by is None


def test_a_hint_from_before_the_job_ran_is_some_other_silence(cloud):
    # The probe heard a stall 2.5 s after the call; Nova's record still said
    # "preparing" at 3.5 s: no copy had begun, so that silence was no switchover.
    nova, adapter, clock = cloud
    server = nova.add_server("vm0")
    nova.plan(server, Plan(preparing=4.0, running=10.0, post=1.0))
    start = clock()
    record = driver(adapter, clock).migrate(server, "vm0", "hv1", "hv2", "out",
                                            end_hint=hint_at(clock, start + 2.5))
    assert record.outcome == "completed"
    assert record.end_hinted_at is None and record.not_running_at == 3.5


def test_two_hosts_are_picked_where_nothing_names_them(cloud):
    nova, adapter, _clock = cloud
    nova.hosts["hv3"] = {"state": "up", "status": "enabled", "disabled_reason": None,
                         "free_ram_mb": 16384}
    nova.hosts["hv2"]["free_ram_mb"] = 1024
    source, target, why = adapter.pick_hosts(512, 3)
    # The most free memory first: the VMs boot there; hv2 has no room for 3 x 512.
    assert (source, target) == ("hv3", "hv1")
    assert why == ("picked hv3 -> hv1: enabled and up, zone nova, the most free memory "
                   "(16384 and 8192 MiB)")
    nova.hosts["hv1"]["state"] = "down"
    with pytest.raises(NovaError, match="^no two enabled, up compute hosts of one "
                                        "availability zone have room for 3 VM"):
        adapter.pick_hosts(512, 3)
