"""Outage anatomies and probe summaries compared whole, every field at once.

Same binary-fraction times as test_anatomy_boundaries (interval 0.25 s,
round trip 0.125 s): the expected values below are exact.
"""

import math

import numpy as np
import pytest

from rally_lm.probes.anatomy import OutageAnatomy, Silence, _resolution, dissect, switchover_silence
from rally_lm.probes.records import Outage
from rally_lm.probes.summary import raw_timeline, timeline_summary
from rally_lm.probes.timeline import (
    NothingMeasured,
    disruption_in_window,
    find_disruptions,
)
from tests.unit.probes.test_timeline import make_timeline, window

QUARTER, EIGHTH = 0.25, 0.125
T = True


def timeline_of(replies):
    return make_timeline(replies, interval=QUARTER, start=0.0, rtt=EIGHTH)


def test_a_switchover_split_into_every_phase():
    # Two requests lost, one held 0.875 s at the destination, the next answered at once.
    timeline = timeline_of([T, T, None, None, 0.875, T, T, T, T, T])
    anatomy = dissect(timeline, Silence(start=0.5, end=1.375, first_index=2))
    assert anatomy == OutageAnatomy(
        protocol="udp", client_downtime_ms=875.0, source_stall_ms=0.0, pause_ms=500.0,
        path_down_ms=500.0,
        convergence_ms=0.0, resume_lag_ms=250.0, rtt_ms=125.0, recovery_tail_ms=0.0, lost=2,
        held=2, lost_after_path_back=0, late_in_tail=0, resolution_ms=250.0, ongoing=False,
        sporadic_replies=0, sustained_downtime_ms=875.0, sampling_ms=500.0,
        silence_start=0.5, first_lost=0.5, first_through=1.0, path_back=1.0,
        first_reply=1.375, recovered=1.375)


def test_a_silence_that_never_ended_has_no_phases_but_its_counts():
    timeline = timeline_of([T, T, None, None, None])
    anatomy = dissect(timeline, Silence(start=0.5, end=math.inf, first_index=2))
    assert anatomy == OutageAnatomy(
        protocol="udp", client_downtime_ms=math.inf, source_stall_ms=0.0, pause_ms=math.inf,
        path_down_ms=math.inf, convergence_ms=0.0, resume_lag_ms=0.0, rtt_ms=125.0,
        recovery_tail_ms=0.0, lost=3, held=0, lost_after_path_back=0, late_in_tail=0,
        resolution_ms=250.0, ongoing=True, sporadic_replies=0,
        sustained_downtime_ms=math.inf, sampling_ms=math.inf, silence_start=0.5,
        first_lost=0.5, first_through=None, path_back=None, first_reply=None, recovered=None)


def test_a_path_that_went_down_again_and_never_came_back_is_not_back():
    # Request 3 got through (answered at 1.25 s), requests 4 and 5 were lost after
    # it: the silence ends with that answer but the path never came back for good.
    timeline = timeline_of([T, T, None, 0.5, None, None])
    anatomy = dissect(timeline, Silence(start=0.5, end=1.25, first_index=2))
    assert (anatomy.ongoing, anatomy.first_through, anatomy.path_back) == (True, 0.75, None)
    assert (anatomy.lost, anatomy.held, anatomy.lost_after_path_back) == (2, 1, 1)


def test_losses_that_outlast_the_first_reply_end_the_silences_phases_at_that_reply():
    # As above, but request 5 (sent as the first reply came back) is answered: the
    # path came back for good after the silence ended. The losses after the first
    # request got through are convergence up to the first reply; nothing is left
    # for a resume lag or a round trip, and the phases still add up.
    timeline = timeline_of([T, T, None, 0.5, None, T])
    anatomy = dissect(timeline, Silence(start=0.5, end=1.25, first_index=2))
    assert (anatomy.ongoing, anatomy.first_through, anatomy.path_back) == (False, 0.75, 1.25)
    assert (anatomy.pause_ms, anatomy.convergence_ms) == (250.0, 500.0)
    assert (anatomy.resume_lag_ms, anatomy.rtt_ms) == (0.0, 0.0)
    assert anatomy.client_downtime_ms == 750.0
    assert (anatomy.lost, anatomy.held, anatomy.lost_after_path_back) == (2, 1, 1)


def test_a_silence_without_a_lost_request_is_all_held():
    # Every request of the silence reached the guest and waited: nothing was lost.
    timeline = timeline_of([T] * 8 + [0.375, 0.125, T, T])
    silence = Silence(start=2.0, end=2.375, first_index=8)
    anatomy = dissect(timeline, silence)
    assert (anatomy.lost, anatomy.held, anatomy.first_through, anatomy.path_back) == \
        (0, 2, 2.0, 2.0)
    # One lost request, then the path is back.
    one_lost = dissect(timeline_of([T] * 8 + [None, 0.125, T]),
                       Silence(start=2.0, end=2.375, first_index=8))
    assert (one_lost.lost, one_lost.first_through, one_lost.ongoing) == (1, 2.25, False)


def test_answers_late_to_the_end_recover_one_interval_after_the_last_send():
    timeline = timeline_of([T] * 8 + [None, None] + [0.75] * 4)
    anatomy = dissect(timeline, Silence(start=2.0, end=3.25, first_index=8))
    # The last request left at 3.25 s; the tail runs one interval past it.
    assert anatomy.recovered == 3.5
    # Late answers counted from one round trip before the first reply: request 13.
    assert anatomy.recovery_tail_ms == 250.0 and anatomy.late_in_tail == 1


def test_the_send_gap_into_the_second_request_counts():
    assert _resolution(np.array([0.0, 0.5, 0.75, 1.0]), [1]) == 0.5


def test_a_pause_alone_does_not_pick_the_switchover():
    timeline = timeline_of([T, None, T, T, T, T, None, None, T, T])
    silences = [Silence(start=0.25, end=0.625, first_index=1),
                Silence(start=1.5, end=2.125, first_index=6)]
    # Without the resume the hypervisor's times say nothing: the longest with a loss.
    assert switchover_silence(timeline, silences, 0.0, 3.0, paused_at=0.3) == silences[1]


def test_around_the_pause_the_longer_silence_wins_not_the_later_one():
    timeline = timeline_of([T] * 12)
    longer = Silence(start=0.5, end=1.5, first_index=2)
    later = Silence(start=1.75, end=2.0, first_index=7)
    assert switchover_silence(timeline, [longer, later], 0.0, 3.0, paused_at=1.0,
                              resumed_at=1.8) == longer


def test_an_outage_ending_as_a_window_opens_is_outside_it():
    outage = Outage(start=1.0, end=2.0, lost=3)
    assert not outage.overlaps(2.0, 3.0) and not outage.overlaps(0.0, 1.0)
    assert outage.overlaps(1.999, 3.0)


def test_the_send_gap_of_one_request_or_none_is_zero():
    assert timeline_of([T]).max_send_gap_ms() == 0.0
    assert timeline_of([]).max_send_gap_ms() == 0.0


def test_a_timeline_summary_names_and_rounds_every_field():
    timeline = make_timeline([T, T, None, None, T, 0.3, T], interval=0.0101234,
                             start=100.0, rtt=0.0012345)
    timeline.duplicates, timeline.errors = 1, 2
    clock = timeline.clock
    outages, spikes = find_disruptions(timeline)
    assert timeline_summary(timeline, "raw") == {
        "target": "10.0.0.5", "protocol": "udp", "transport": "raw", "interval_ms": 10.123,
        "requests": 7, "replies": 5, "duplicates": 1, "send_errors": 2,
        "max_send_gap_ms": 10.123,
        "outages": [{"start": round(clock.to_wall(o.start), 6),
                     "end": round(clock.to_wall(o.end), 6),
                     "duration_ms": round(o.duration_ms, 3), "lost": o.lost, "late": o.late,
                     "max_late_ms": round(o.max_late_ms, 3), "ongoing": o.ongoing}
                    for o in outages],
        "longest_outage_ms": round(max(o.duration_ms for o in outages), 3),
        "delay_spikes": [{"start": round(clock.to_wall(s.start), 6),
                          "end": round(clock.to_wall(s.end), 6),
                          "duration_ms": round(s.duration_ms, 3), "lost": s.lost,
                          "late": s.late, "max_late_ms": round(s.max_late_ms, 3),
                          "ongoing": s.ongoing} for s in spikes],
        "measured": True}
    assert len(outages) == 1 and outages[0].duration_ms == pytest.approx(20.2468)
    assert timeline_summary(timeline)["transport"] == "udp"


def test_one_reply_is_enough_to_have_measured():
    assert timeline_summary(timeline_of([None, T, None]))["measured"] is True
    assert timeline_summary(timeline_of([None, None]))["measured"] is False


def test_the_raw_timeline_keeps_microseconds():
    timeline = make_timeline([T, None], interval=0.0101234567, start=100.0, rtt=0.0012345678)
    assert raw_timeline(timeline) == [[0.0, 0.001235], [0.010123, None]]


@pytest.mark.parametrize("label, where", [("vm0 out", "vm0 out"), ("", "the window")])
def test_a_window_without_requests_says_which(label, where):
    timeline = timeline_of([T, T])
    with pytest.raises(NothingMeasured) as caught:
        disruption_in_window(timeline, window(5.0, 6.0, label), [])
    assert str(caught.value) == f"no echo request to 10.0.0.5 was sent during {where}"


def test_a_request_sent_as_the_window_closes_is_inside_it():
    timeline = timeline_of([T, T, T])
    assert disruption_in_window(timeline, window(0.5, 0.5), []).requests == 1


def test_resolution_spans_from_the_send_before_the_outage_to_the_send_after_it():
    # Send gaps: 0.5 s before the first lost request, 0.75 s after the request
    # that ended the outage, and larger ones further out that must not count.
    sent = [0.0, 0.5, 2.25, 2.75, 3.0, 3.25, 4.0, 5.0, 5.25]
    timeline = make_timeline([T, T, T, None, None, T, T, T, T], interval=QUARTER,
                             start=0.0, rtt=EIGHTH, sent=sent)
    outages, spikes = find_disruptions(timeline)
    assert [(o.start, o.end) for o in outages] == [(2.75, 3.25)]
    assert disruption_in_window(timeline, window(0.0, 5.25), outages,
                                spikes).resolution_ms == 750.0


def test_an_outage_from_the_first_request_starts_its_span_there():
    timeline = make_timeline([None, None, T, T], interval=QUARTER, start=0.0, rtt=EIGHTH,
                             sent=[0.0, 1.0, 1.25, 1.5])
    outages, spikes = find_disruptions(timeline)
    assert [(o.start, o.end) for o in outages] == [(0.0, 1.25)]
    assert disruption_in_window(timeline, window(0.0, 1.5), outages,
                                spikes).resolution_ms == 1000.0


def test_a_window_with_one_send_has_the_interval_as_resolution():
    timeline = timeline_of([T])
    assert disruption_in_window(timeline, window(0.0, 0.1), []).resolution_ms == 250.0
    two = make_timeline([T, T], interval=QUARTER, start=0.0, rtt=EIGHTH, sent=[0.0, 0.5])
    assert disruption_in_window(two, window(0.0, 0.1), []).resolution_ms == 500.0
