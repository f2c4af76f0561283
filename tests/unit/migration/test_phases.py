"""How a copy ended, read from libvirt's events and the sampled job."""

from rally_lm.migration import phases
from rally_lm.migration.hypervisor import DomainEvent

T0 = 1_800_000_000.0


def event(t, host, kind, detail="", **params):
    return DomainEvent(wall=T0 + t, host=host, domain="instance-1", kind=kind, detail=detail,
                       params=params)


def since_call(wall):
    return wall - T0


PRE_COPY = [event(1.0, "hv2", "lifecycle", "Started Migrated"),
            event(1.1, "hv1", "migration-iteration", "iteration: '1'"),
            event(2.0, "hv1", "lifecycle", "Suspended Migrated"),
            event(2.1, "hv2", "lifecycle", "Resumed Migrated"),
            event(2.2, "hv1", "lifecycle", "Stopped Migrated"),
            event(2.2, "hv1", "job-completed", downtime=100)]

POST_COPY = [event(1.0, "hv2", "lifecycle", "Started Migrated"),
             event(1.1, "hv1", "migration-iteration", "iteration: '1'"),
             event(31.0, "hv1", "lifecycle", "Suspended Post-copy"),
             event(31.1, "hv2", "lifecycle", "Resumed Post-copy"),
             event(33.6, "hv1", "job-completed", downtime=120),
             event(33.6, "hv1", "lifecycle", "Stopped Migrated"),
             event(33.7, "hv2", "lifecycle", "Resumed Post-copy")]


def test_pre_copy():
    result = phases.copy_outcome(PRE_COPY, "hv1", "hv2", {"max_throttle_percent": 0},
                                 {"postcopy_requests": 0}, since_call)
    assert result == {"mode": "pre-copy", "events_seen": True, "max_throttle_percent": 0,
                      "postcopy_requests": 0}


def test_post_copy_runs_from_the_switch_to_the_sources_job_end():
    result = phases.copy_outcome(POST_COPY, "hv1", "hv2", None, {"postcopy_requests": 412},
                                 since_call)
    assert result["mode"] == "post-copy"
    assert result["postcopy_started_s"] == 31.0
    assert round(result["postcopy_ms"]) == 2600
    assert result["postcopy_requests"] == 412
    assert result["max_throttle_percent"] is None


def test_post_copy_without_its_end_has_no_length():
    result = phases.copy_outcome(POST_COPY[:4], "hv1", "hv2", None, None, since_call)
    assert result["mode"] == "post-copy" and result["postcopy_ms"] is None


def test_a_guest_paused_to_force_completion():
    forced = [*PRE_COPY[:2], event(30.0, "hv1", "lifecycle", "Suspended Paused"),
              event(31.0, "hv1", "lifecycle", "Suspended Migrated"),
              event(31.1, "hv2", "lifecycle", "Resumed Migrated"),
              event(31.2, "hv1", "job-completed", downtime=100)]
    result = phases.copy_outcome(forced, "hv1", "hv2", None, None, since_call)
    assert result["mode"] == "paused" and result["forced_pause_started_s"] == 30.0
    # The guest's pause, which the probes are matched with, began when Nova paused it.
    assert phases.hypervisor_pause(forced, "hv1", "hv2") == (T0 + 30.0, T0 + 31.1)


def test_destination_events_do_not_decide_the_mode():
    only_target = [event(5.0, "hv2", "lifecycle", "Suspended Post-copy")]
    assert phases.copy_outcome(only_target, "hv1", "hv2", None, None,
                               since_call)["mode"] == "pre-copy"


def test_peak_throttle_takes_the_larger_of_sampled_and_completed():
    assert phases.copy_outcome([], "hv1", "hv2", {"max_throttle_percent": 30},
                               {"auto_converge_throttle_percent": 45},
                               since_call)["max_throttle_percent"] == 45
    assert phases.copy_outcome([], "hv1", "hv2", {"max_throttle_percent": 30}, {},
                               since_call)["max_throttle_percent"] == 30
    assert phases.copy_outcome([], "hv1", "hv2", None, {},
                               since_call)["max_throttle_percent"] is None
    assert phases.copy_outcome([], "hv1", "hv2", None, None, since_call)["events_seen"] is False
