"""phases.build and copy_outcome compared whole, on a migration made up to the millisecond."""

import time
import types

import pytest

from rally_lm.migration import phases
from rally_lm.migration.hypervisor import DomainEvent
from rally_lm.probes.records import ProbeClock

#: 2027-01-15T08:00:00Z: Nova's stamps below are whole seconds after it.
T0 = 1_800_000_000.0
#: The API call, on the probe's monotonic clock.
CALL = 50.0


def event(t, host, kind, detail=""):
    return DomainEvent(wall=T0 + t, host=host, domain="instance-1", kind=kind, detail=detail)


RECORD = types.SimpleNamespace(
    window=(CALL, CALL + 12.5), source="hv1", nova_completed_after=13.25,
    nova_created_at="2027-01-15T08:00:00.000000", nova_updated_at="2027-01-15T08:00:13.000000",
    events=[{"event": "compute_pre_live_migration", "start_time": "2027-01-15T08:00:01Z",
             "finish_time": None, "host": "hv2", "result": None},
            {"event": "compute_live_migration", "start_time": "2027-01-15T08:00:02.000000",
             "finish_time": "2027-01-15T08:00:12.000000", "host": "hv1", "result": "Success"}])
LIBVIRT = [event(2.5, "hv1", "migration-iteration", "iteration: '1'"),
           # Both ends report the job's end; the destination's comes first here.
           event(9.0, "hv2", "job-completed"),
           event(10.0, "hv1", "lifecycle", "Suspended Migrated"),
           event(10.1, "hv2", "lifecycle", "Resumed Migrated"),
           event(10.3, "hv1", "job-completed"),
           event(10.4, "hv1", "lifecycle", "Stopped Migrated")]
ANATOMY = {"ongoing": False, "resolution_ms": 10.5, "silence_start": CALL + 10.02,
           "path_back": CALL + 10.11, "first_reply": CALL + 10.16, "recovered": None}
CLOCK = ProbeClock(monotonic=CALL, wall=T0)


def phase(t, source, name, host=None, resolution_ms=0.0, detail=None):
    return {"t": t, "source": source, "name": name, "host": host,
            "resolution_ms": resolution_ms, "detail": detail}


def test_every_source_on_one_clock_with_its_resolution():
    built = [e.to_dict() for e in phases.build(RECORD, CLOCK, LIBVIRT, ANATOMY)]
    assert built == [
        phase(0.0, "tool", "api_call"),
        phase(0.0, "nova", "migration record created", resolution_ms=1000.0),
        phase(1.0, "nova", "compute_pre_live_migration.start", "hv2", 1000.0),
        phase(2.0, "nova", "compute_live_migration.start", "hv1", 1000.0, "Success"),
        phase(2.5, "libvirt", "iteration 1", "hv1", 1.0),
        phase(10.0, "libvirt", "paused", "hv1", 1.0),
        phase(10.02, "probe", "silence began", resolution_ms=10.5),
        phase(10.1, "libvirt", "resumed", "hv2", 1.0),
        phase(10.11, "probe", "path back", resolution_ms=10.5),
        phase(10.16, "probe", "first reply", resolution_ms=10.5),
        phase(10.3, "libvirt", "job completed", "hv1", 1.0),
        phase(10.4, "libvirt", "stopped migrated", "hv1", 1.0),
        phase(12.0, "nova", "compute_live_migration.finish", "hv1", 1000.0, "Success"),
        phase(12.5, "tool", "nova_done", resolution_ms=250.0),
        phase(13.0, "nova", "migration record updated", resolution_ms=1000.0),
    ]


def test_the_ends_resolution_is_the_span_since_the_look_before():
    built = phases.build(RECORD, CLOCK, [], None, poll_interval=0.5)
    assert [e.resolution_ms for e in built if e.name == "nova_done"] == [500.0]
    looked = types.SimpleNamespace(**{**vars(RECORD), "end_resolution": 3.0})
    assert [e.resolution_ms for e in phases.build(looked, CLOCK, [], None)
            if e.name == "nova_done"] == [3000.0]


@pytest.mark.parametrize("anatomy", [None, {}, {**ANATOMY, "ongoing": True}])
def test_no_probe_phases_without_a_finished_anatomy(anatomy):
    built = phases.build(RECORD, CLOCK, [], anatomy)
    assert [e.source for e in built if e.source == "probe"] == []


def test_an_anatomy_without_its_resolution_is_taken_as_exact():
    anatomy = {key: value for key, value in ANATOMY.items() if key != "resolution_ms"}
    built = phases.build(RECORD, CLOCK, [], anatomy)
    assert [e.resolution_ms for e in built if e.source == "probe"] == [0.0, 0.0, 0.0]


def test_nova_times_are_utc_whatever_the_hosts_time_zone(monkeypatch):
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert phases.nova_time("2027-01-15T08:00:01.000000") == T0 + 1
        assert phases.nova_time("2027-01-15T08:00:01Z") == T0 + 1
    finally:
        monkeypatch.undo()
        time.tzset()


def test_domain_events_at_the_windows_edges_are_inside_it():
    events = [event(1.0, "hv1", "lifecycle", "Started Migrated"),
              event(3.0, "hv1", "lifecycle", "Stopped Migrated")]
    assert phases.domain_events(events, "instance-1", T0 + 1.0, T0 + 3.0) == events


def test_a_resume_at_the_pauses_own_time_counts_and_a_resume_without_a_pause_too():
    same_time = [event(5.0, "hv1", "lifecycle", "Suspended Migrated"),
                 event(5.0, "hv2", "lifecycle", "Resumed Migrated")]
    assert phases.hypervisor_pause(same_time, "hv1", "hv2") == (T0 + 5.0, T0 + 5.0)
    assert phases.hypervisor_pause(same_time[1:], "hv1", "hv2") == (None, T0 + 5.0)


SWITCH = event(30.00004, "hv1", "lifecycle", "Suspended Post-copy")


@pytest.mark.parametrize("end", [
    event(32.1234567, "hv1", "job-completed"),
    event(32.1234567, "hv1", "lifecycle", "Stopped Migrated"),
])
def test_post_copy_ends_with_the_sources_job_or_its_stop(end):
    # Events that do not end it come first: a lifecycle event of another kind.
    libvirt = [SWITCH, event(31.0, "hv1", "lifecycle", "Resumed Post-copy"), end]
    result = phases.copy_outcome(libvirt, "hv1", "hv2", None, None, lambda wall: wall - T0)
    assert result == {"mode": "post-copy", "events_seen": True, "max_throttle_percent": None,
                      "postcopy_requests": None, "postcopy_started_s": 30.0,
                      "postcopy_ms": 2123.417}


def test_post_copy_ending_at_the_switch_itself_lasts_nothing():
    libvirt = [SWITCH, event(30.00004, "hv1", "job-completed")]
    result = phases.copy_outcome(libvirt, "hv1", "hv2", None, None, lambda wall: wall - T0)
    assert result["postcopy_ms"] == 0.0


def test_a_forced_pause_is_stamped_to_a_tenth_of_a_millisecond():
    libvirt = [event(29.98768, "hv1", "lifecycle", "Suspended Paused")]
    result = phases.copy_outcome(libvirt, "hv1", "hv2", None, None, lambda wall: wall - T0)
    assert result["forced_pause_started_s"] == 29.9877
