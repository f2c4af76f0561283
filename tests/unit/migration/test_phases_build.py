"""phases.build against a recorded round trip: the same timeline from the same evidence."""

import json
from pathlib import Path

import pytest

from rally_lm.migration import phases
from rally_lm.migration.driver import MigrationRecord
from rally_lm.migration.hypervisor import DomainEvent
from rally_lm.probes.records import ProbeClock

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "migration" / \
    "round-trip-local-off.json"
RECORDS = json.loads(FIXTURE.read_text())["records"]


def key(event):
    return (event["source"], event["name"], event["host"])


@pytest.mark.parametrize("raw", RECORDS, ids=lambda r: f"{r['vm']}-{r['direction']}")
def test_build_recreates_the_recorded_timeline(raw):
    record = MigrationRecord.from_dict(raw)
    # The record's own clock pair: the API call's wall and monotonic times.
    clock = ProbeClock(monotonic=record.window[0], wall=record.started_at)
    libvirt = [DomainEvent(**e) for e in raw["measurements"]["libvirt_events"]]
    built = [e.to_dict() for e in phases.build(record, clock, libvirt,
                                               raw["measurements"]["network"]["anatomy"])]
    # Recorded before the tool's own events were renamed (server_settled, then
    # record_completed, became nova_done): compared without them.
    stored = [e for e in raw["measurements"]["timeline"] if e["source"] != "tool"]
    tool = [(e["name"], e["t"]) for e in built if e["source"] == "tool"]
    assert tool == [("api_call", 0.0),
                    ("nova_done", round(record.window[1] - record.window[0], 4))]
    # Nor had the probe's first loss and first request through their own events.
    built = [e for e in built if e["source"] != "tool"
             and e["name"] not in ("first lost", "first through")]
    assert sorted(map(key, built)) == sorted(map(key, stored))
    by_key = {}
    for event in stored:
        by_key.setdefault(key(event), []).append(event["t"])
    for event in built:
        # Within 5 ms: this clock pair is the driver's, the recording used the probe's.
        assert min(abs(event["t"] - t) for t in by_key[key(event)]) < 0.005, event
    assert [e["t"] for e in built] == sorted(e["t"] for e in built)
    resolutions = {e["source"]: e["resolution_ms"] for e in built if e["source"] != "tool"}
    assert resolutions["nova"] == 1000.0 and resolutions["libvirt"] == 1.0


def test_domain_events_are_this_domains_inside_the_window_in_order():
    raw = RECORDS[0]
    events = [DomainEvent(**e) for e in raw["measurements"]["libvirt_events"]]
    other = DomainEvent(events[0].wall, "hv1", "instance-other", "lifecycle", "Started Booted")
    late = DomainEvent(raw["finished_at"] + 5, "hv1", events[0].domain, "lifecycle", "Stopped")
    shuffled = [late, *reversed(events), other]
    chosen = phases.domain_events(shuffled, events[0].domain, raw["started_at"],
                                  raw["finished_at"] + 1)
    assert [e.wall for e in chosen] == sorted(e.wall for e in events)

    def order(e):
        return (e.wall, e.kind, e.detail)
    assert sorted(chosen, key=order) == sorted(events, key=order)


def test_the_pause_is_bounded_by_the_sources_suspend_and_the_targets_resume():
    raw = RECORDS[0]
    events = [DomainEvent(**e) for e in raw["measurements"]["libvirt_events"]]
    paused, resumed = phases.hypervisor_pause(events, raw["source"], raw["target"])
    assert paused is not None and resumed is not None and resumed > paused
    assert round((resumed - paused) * 1000) == round(
        raw["measurements"]["hypervisor"]["pause_events_ms"])
    assert phases.hypervisor_pause(events, raw["target"], raw["source"]) == (None, None)


def test_nova_times_are_naive_utc():
    assert phases.nova_time("2026-12-01T00:00:01.000000") == 1796083201.0
    assert phases.nova_time("2026-12-01T00:00:01Z") == 1796083201.0
    assert phases.nova_time(None) is None and phases.nova_time("") is None
