import array
import math

import pytest

from rally_lm.probes.records import ProbeClock, TargetTimeline
from rally_lm.probes.timeline import (
    MigrationWindow,
    NothingMeasured,
    collateral,
    disruption_in_window,
    find_disruptions,
)

NAN = float("nan")
INTERVAL = 0.01


def make_timeline(replies, interval=INTERVAL, start=100.0, rtt=0.001, sent=None):
    """replies[i]: None = lost, a number = that RTT, True = the default RTT."""
    sent = sent or [start + i * interval for i in range(len(replies))]
    received = []
    for when, reply in zip(sent, replies, strict=True):
        if reply is None:
            received.append(NAN)
        else:
            received.append(when + (rtt if reply is True else reply))
    return TargetTimeline(
        target="10.0.0.5", protocol="udp", interval=interval,
        clock=ProbeClock(monotonic=start, wall=1_700_000_000.0),
        sent=array.array("d", sent), received=array.array("d", received),
    )


def test_no_loss_no_outage():
    outages, spikes = find_disruptions(make_timeline([True] * 100))
    assert outages == [] and spikes == []


def test_single_outage_measured_on_send_clock():
    replies = [True] * 50 + [None] * 12 + [True] * 50
    outages, _ = find_disruptions(make_timeline(replies))
    assert len(outages) == 1
    outage = outages[0]
    assert outage.lost == 12
    assert outage.duration_ms == pytest.approx(120.0)
    assert outage.start == pytest.approx(100.0 + 50 * INTERVAL)


def test_late_replies_held_during_pause_extend_the_outage():
    # Requests sent while a guest is paused come back late, not lost; all of
    # them are released together when it resumes (here at 100.28 + 1 ms).
    replies = [True] * 20 + [None] * 5 + [0.031, 0.021, 0.011] + [True] * 20
    outages, spikes = find_disruptions(make_timeline(replies))
    assert spikes == []
    (outage,) = outages
    assert outage.lost == 5 and outage.late == 2
    assert outage.duration_ms == pytest.approx(80.0)
    assert outage.max_late_ms == pytest.approx(31.0)


def test_requests_held_within_the_threshold_do_not_end_the_outage_early():
    # Pause from 100.20 to 100.30. The destination announced the MAC at
    # 100.25, so requests from then on are queued there and released at
    # 100.30; the last one comes back inside the 20 ms threshold ("on time").
    # Ending the outage at that on-time send (100.29) would report 90 ms for a
    # 100 ms pause.
    held = [0.05, 0.04, 0.03, 0.02, 0.01]
    replies = [True] * 20 + [None] * 5 + [r + 0.001 for r in held] + [True] * 20
    (outage,) = find_disruptions(make_timeline(replies))[0]
    assert outage.late == 4
    assert outage.start == pytest.approx(100.20)
    assert outage.end == pytest.approx(100.30)
    assert outage.duration_ms == pytest.approx(100.0)


def test_one_straggling_reply_does_not_stretch_the_outage():
    # A reply overtaken by later on-time ones was delayed on its own path;
    # the guest was already answering.
    replies = [True] * 20 + [None] * 3 + [0.2] + [True] * 30
    (outage,) = find_disruptions(make_timeline(replies))[0]
    assert outage.end == pytest.approx(100.24)


def test_late_only_run_is_a_delay_spike_not_an_outage():
    replies = [True] * 20 + [0.2, 0.19, 0.18] + [True] * 20
    outages, spikes = find_disruptions(make_timeline(replies))
    assert outages == []
    assert len(spikes) == 1 and spikes[0].lost == 0 and spikes[0].late == 3


def test_outage_still_open_at_the_end_is_marked_ongoing():
    outages, _ = find_disruptions(make_timeline([True] * 10 + [None] * 5))
    (outage,) = outages
    assert outage.ongoing
    assert outage.duration_ms == pytest.approx(50.0)


def test_loss_at_the_very_start():
    outages, _ = find_disruptions(make_timeline([None] * 3 + [True] * 10))
    assert outages[0].start == pytest.approx(100.0) and outages[0].lost == 3


def test_actual_send_times_are_used_when_the_prober_was_starved():
    # The probe fell behind: sends at 0, 10, 20 ms then a 300 ms gap.
    sent = [100.0, 100.01, 100.02, 100.32, 100.33, 100.34]
    timeline = make_timeline([True, True, None, True, True, True], sent=sent)
    (outage,) = find_disruptions(timeline)[0]
    assert outage.duration_ms == pytest.approx(300.0)
    assert timeline.max_send_gap_ms() == pytest.approx(300.0)


def test_wall_clock_step_does_not_change_durations():
    # Durations come from the monotonic clock; the wall clock is only a label.
    timeline = make_timeline([True] * 10 + [None] * 7 + [True] * 10)
    before = find_disruptions(timeline)[0][0].duration_ms
    timeline.clock = ProbeClock(monotonic=100.0, wall=1_800_000_000.0)  # +100 Ms step
    after = find_disruptions(timeline)[0][0]
    assert after.duration_ms == before
    assert timeline.clock.to_wall(after.start) == pytest.approx(1_800_000_000.0 + 0.1)


def window(start, end, label="m1"):
    return MigrationWindow(target="10.0.0.5", start=start, end=end, label=label)


def test_window_takes_the_longest_overlapping_outage():
    replies = [True] * 20 + [None] * 3 + [True] * 20 + [None] * 9 + [True] * 20
    timeline = make_timeline(replies)
    outages, spikes = find_disruptions(timeline)
    result = disruption_in_window(timeline, window(100.0, 101.0), outages, spikes)
    assert result.kind == "loss"
    assert result.downtime_ms == pytest.approx(90.0)
    assert result.lost == 12
    assert result.first_loss == pytest.approx(100.2)
    assert result.recovery == pytest.approx(100.43 + 0.09)


def test_outage_crossing_the_window_border_is_charged():
    replies = [True] * 20 + [None] * 10 + [True] * 20
    timeline = make_timeline(replies)
    outages, spikes = find_disruptions(timeline)
    # The window ends in the middle of the outage (at 100.25).
    result = disruption_in_window(timeline, window(100.05, 100.25), outages, spikes)
    assert result.downtime_ms == pytest.approx(100.0)
    # A window that ends exactly where the outage starts is not charged.
    clean = disruption_in_window(timeline, window(100.0, 100.2), outages, spikes)
    assert clean.downtime_ms == 0.0 and clean.kind == "none"


def test_outside_outage_is_collateral():
    replies = [True] * 20 + [None] * 4 + [True] * 50 + [None] * 6 + [True] * 10
    timeline = make_timeline(replies)
    outages, _ = find_disruptions(timeline)
    windows = [window(100.15, 100.4)]
    extra = collateral(outages, windows)
    assert len(extra) == 1 and extra[0].lost == 6


def test_delay_is_charged_only_when_no_loss_overlaps():
    replies = [True] * 20 + [0.2, 0.2] + [True] * 20
    timeline = make_timeline(replies)
    outages, spikes = find_disruptions(timeline)
    result = disruption_in_window(timeline, window(100.0, 100.4), outages, spikes)
    assert result.kind == "delay" and result.lost == 0
    assert result.downtime_ms == pytest.approx(20.0)


def test_window_without_requests_is_not_reported_as_zero():
    timeline = make_timeline([True] * 10)
    with pytest.raises(NothingMeasured):
        disruption_in_window(timeline, window(200.0, 201.0), [], [])


def test_target_that_never_answered_is_not_reported_as_zero():
    timeline = make_timeline([None] * 50)
    outages, spikes = find_disruptions(timeline)
    with pytest.raises(NothingMeasured, match="never answered"):
        disruption_in_window(timeline, window(100.0, 100.3), outages, spikes)


def test_resolution_reports_the_real_send_gap():
    sent = [100.0 + i * 0.01 for i in range(10)] + [100.5 + i * 0.01 for i in range(10)]
    replies = [True] * 9 + [None] + [True] * 10
    timeline = make_timeline(replies, sent=sent)
    outages, spikes = find_disruptions(timeline)
    result = disruption_in_window(timeline, window(100.0, 101.0), outages, spikes)
    assert result.resolution_ms == pytest.approx(410.0)
    assert not math.isnan(result.downtime_ms)


def test_resolution_includes_the_send_gap_that_opens_the_outage():
    # The probe was starved for 400 ms, then two requests were lost: the
    # outage began somewhere in that gap, so 10 ms would be a false claim.
    sent = [100.0 + i * 0.01 for i in range(10)] + [100.49, 100.50] + \
        [100.51 + i * 0.01 for i in range(10)]
    replies = [True] * 10 + [None, None] + [True] * 10
    timeline = make_timeline(replies, sent=sent)
    outages, spikes = find_disruptions(timeline)
    result = disruption_in_window(timeline, window(100.0, 101.0), outages, spikes)
    assert result.downtime_ms == pytest.approx(20.0)
    assert result.resolution_ms == pytest.approx(400.0)


def test_the_disruption_record_carries_every_field_under_its_name():
    # The JSON keys are the contract: the report, the InfluxDB export and a
    # user's pipeline read them. Compared whole, so a renamed key fails.
    replies = [True] * 20 + [None] * 3 + [True] * 20
    timeline = make_timeline(replies)
    outages, spikes = find_disruptions(timeline)
    result = disruption_in_window(timeline, window(100.0, 101.0, label="vm0 out"),
                                  outages, spikes)
    found = result.to_dict()
    assert found == {
        "target": "10.0.0.5", "label": "vm0 out", "window_start": 100.0, "window_end": 101.0,
        "requests": result.requests, "downtime_ms": round(result.downtime_ms, 3),
        "kind": result.kind, "lost": 3, "late": result.late,
        "max_late_ms": round(result.max_late_ms, 3), "first_loss": result.first_loss,
        "recovery": result.recovery, "outages": [o.to_dict() for o in result.outages],
        "resolution_ms": round(result.resolution_ms, 3)}
    assert (found["requests"], found["kind"]) == (43, "loss")
    assert found["downtime_ms"] == pytest.approx(30.0)
    assert len(found["outages"]) == 1
