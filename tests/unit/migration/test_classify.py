"""Every branch of the outcome classification, with its exact class and reason.

Operators read the class in the report and the reason in the Migrations
table; a changed word is a changed result, so both are compared whole.
"""

import pytest

from rally_lm.migration.driver import MigrationPolicy, MigrationRecord, classify, nova_deadline


def record(**changes) -> MigrationRecord:
    base = MigrationRecord(server_id="s1", vm="vm0", direction="out", source="hv1",
                           target="hv2")
    for key, value in changes.items():
        setattr(base, key, value)
    return base


def server(host: str = "hv2", status: str = "ACTIVE", task_state=None, **extra) -> dict:
    return {"host": host, "status": status, "task_state": task_state, **extra}


RAN = {"event": "compute_live_migration", "result": "Success"}
PRECHECK_FAILED = {"event": "compute_check_can_live_migrate_destination", "result": "Error",
                   "reason": "no room"}
COPY_FAILED = {"event": "compute_live_migration", "result": "Error", "reason": "link down"}

CASES = [
    ("gone", record(), {"status": "completed"}, None,
     ("lost", "the server no longer exists")),
    ("error state", record(), {"status": "error"}, server(status="ERROR", fault="disk"),
     ("lost", "the server is in ERROR: disk")),
    ("error state without a fault", record(), {"status": "error"}, server(status="ERROR"),
     ("lost", "the server is in ERROR: no fault message")),
    ("no record, still home", record(events=[PRECHECK_FAILED]), None, server(host="hv1"),
     ("refused", "refused by compute_check_can_live_migrate_destination before a "
                 "migration record was made")),
    ("no record, no failed event", record(), None, server(host="hv1"),
     ("refused", "refused by Nova before a migration record was made")),
    ("no record, moved", record(), None, server(host="hv2"),
     ("stale_status", "Nova has no record of this live migration")),
    ("no record, still busy", record(), None, server(host="hv1", task_state="migrating"),
     ("stale_status", "Nova has no record of this live migration")),
    ("record not final", record(), {"status": "running"}, server(host="hv1"),
     ("stale_status", "after the grace period Nova says 'running', the server is "
                      "ACTIVE/None on hv1")),
    ("task state left", record(), {"status": "completed"}, server(task_state="migrating"),
     ("stale_status", "after the grace period Nova says 'completed', the server is "
                      "ACTIVE/migrating on hv2")),
    ("completed elsewhere", record(), {"status": "completed"}, server(host="hv1"),
     ("stale_status", "Nova says completed but the server is ACTIVE on hv1")),
    ("completed", record(), {"status": "completed"}, server(), ("completed", None)),
    ("done", record(), {"status": "done"}, server(), ("completed", None)),
    ("forced", record(timeout_action="force_complete", action_accepted_after=12.0),
     {"status": "completed"}, server(), ("timeout_forced", None)),
    ("force refused, completed alone", record(timeout_action="force_complete"),
     {"status": "completed"}, server(), ("completed", None)),
    ("failed but moved", record(), {"status": "failed"}, server(host="hv2"),
     ("stale_status", "Nova says failed but the server is ACTIVE on hv2")),
    ("aborted by the tool", record(timed_out=True, timeout_action="abort",
                                   action_accepted_after=25.0, events=[RAN]),
     {"status": "cancelled"}, server(host="hv1"), ("timeout_aborted", None)),
    ("abort not accepted", record(timed_out=True, timeout_action="abort", events=[RAN]),
     {"status": "cancelled"}, server(host="hv1"),
     ("error", "the migration ended cancelled; the server is still on hv1")),
    ("aborted by nova", record(events=[RAN]), {"status": "cancelled"}, server(host="hv1"),
     ("timeout_aborted", "Nova aborted the job after its live_migration_completion_timeout")),
    ("cancelled by an abort call", record(events=[RAN, {"event": "compute_live_migration_abort",
                                                        "result": "Success"}]),
     {"status": "cancelled"}, server(host="hv1"),
     ("error", "the migration ended cancelled; the server is still on hv1")),
    ("refused at a pre-check", record(events=[PRECHECK_FAILED]), {"status": "error"},
     server(host="hv1"),
     ("refused", "refused by compute_check_can_live_migrate_destination before any data "
                 "moved (error): no room")),
    ("refused, no event says where", record(), {"status": "failed"}, server(host="hv1"),
     ("refused", "refused by a pre-check before any data moved (failed)")),
    ("copy failed", record(events=[COPY_FAILED]), {"status": "error"}, server(host="hv1"),
     ("error", "the migration ended error; the server is still on hv1: link down")),
]


@pytest.mark.parametrize("final, migration, found, expected",
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_final_view_gets_its_class_and_reason(final, migration, found, expected):
    assert classify(final, migration, found) == expected


# Nova's monitor aborts a job at its completion timeout; when the job has ended
# before the monitor's next look, Nova records "failed" instead of "cancelled".
ABORT_CALLED = {"event": "compute_live_migration_abort", "result": "Success"}
RUNNING_FROM_2S = [{"t": 1.0, "status": "preparing"}, {"t": 2.0, "status": "running"},
                   {"t": 3.0, "status": "running"}]
NOVA_ABORT = ("timeout_aborted", "Nova says failed, but the job ran for up to 11 s, "
              "reaching Nova's completion timeout (5 s/GiB: 10 s) and nobody called the abort API: "
              "Nova aborted it")
FAILED_ERROR = ("error", "the migration ended failed; the server is still on hv1")

FAILED_CASES = [
    ("past the deadline", record(events=[RAN], duration=12.0, progress=RUNNING_FROM_2S),
     512, 5.0, NOVA_ABORT),
    ("just at the deadline", record(events=[RAN], duration=11.0, progress=RUNNING_FROM_2S),
     512, 5.0, ("timeout_aborted", NOVA_ABORT[1].replace("up to 11 s", "up to 10 s"))),
    ("short of the deadline from the last look that found it preparing",
     record(events=[RAN], duration=10.9, progress=RUNNING_FROM_2S), 512, 5.0, FAILED_ERROR),
    ("a later empty look bounds the start",
     record(events=[RAN], duration=12.5, progress=RUNNING_FROM_2S[1:], not_running_at=1.5),
     512, 5.0, NOVA_ABORT),
    ("short of the deadline from a later empty look",
     record(events=[RAN], duration=11.4, progress=RUNNING_FROM_2S, not_running_at=1.5),
     512, 5.0, FAILED_ERROR),
    ("looks after the first running sight do not count",
     record(events=[RAN], duration=12.0,
            progress=[*RUNNING_FROM_2S, {"t": 9.0, "status": "post-migrating"}]),
     512, 5.0, NOVA_ABORT),
    ("no running sample: the whole duration",
     record(events=[RAN], duration=10.5), 512, 5.0,
     ("timeout_aborted", NOVA_ABORT[1].replace("up to 11 s", "up to 10 s"))),
    ("a big guest's deadline is longer", record(events=[RAN], duration=13.0,
                                                progress=RUNNING_FROM_2S),
     4096, 5.0, FAILED_ERROR),
    ("the cloud has no completion timeout", record(events=[RAN], duration=1e6), 512, 0.0,
     FAILED_ERROR),
    ("the flavor is unknown", record(events=[RAN], duration=1e6), None, 5.0, FAILED_ERROR),
    ("somebody called abort", record(events=[RAN, ABORT_CALLED], duration=13.0), 512, 5.0,
     FAILED_ERROR),
    ("our own timeout hit", record(events=[RAN], duration=13.0, timed_out=True,
                                   timeout_action="abort"), 512, 5.0, FAILED_ERROR),
    ("the job never ran", record(duration=13.0), 512, 5.0,
     ("refused", "refused by a pre-check before any data moved (failed)")),
]


@pytest.mark.parametrize("final, ram_mb, timeout, expected", [c[1:] for c in FAILED_CASES],
                         ids=[c[0] for c in FAILED_CASES])
def test_a_failed_job_that_outlived_novas_deadline_was_novas_abort(final, ram_mb, timeout,
                                                                   expected):
    found = server(host="hv1", ram_mb=ram_mb)
    assert classify(final, {"status": "failed"}, found, timeout) == expected


def test_only_failed_is_read_so_an_error_record_stays_an_error():
    final = record(events=[RAN], duration=100.0)
    assert classify(final, {"status": "error"}, server(host="hv1", ram_mb=512), 5.0) == \
        ("error", "the migration ended error; the server is still on hv1")


@pytest.mark.parametrize("timeout, ram_mb, expected", [
    (800, 512, 1600.0), (800, 2048, 1600.0), (800, 3072, 2400.0), (15, 16384, 240.0),
    (0, 4096, None), (800, None, None)])
def test_novas_deadline_is_its_timeout_times_the_ram_in_gib_at_least_two(timeout, ram_mb,
                                                                         expected):
    assert nova_deadline(timeout, ram_mb) == expected


def test_the_policy_defaults_to_novas_own_default_and_refuses_a_negative_timeout():
    assert MigrationPolicy().nova_completion_timeout == 800.0
    with pytest.raises(ValueError, match="nova_completion_timeout must be >= 0"):
        MigrationPolicy(nova_completion_timeout=-1)
