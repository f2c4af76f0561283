"""The outage anatomy at its boundaries: a request, a reply or a resume exactly on an edge.

Times are binary fractions (an interval of 0.25 s, a round trip of 0.125 s)
so that "exactly on the edge" is exact in floating point.
"""

import math

import numpy as np
import pytest

from rally_lm.probes.anatomy import (
    Silence,
    _recovered,
    _resolution,
    dissect,
    longest_silence,
    reply_silences,
    switchover_silence,
)
from tests.unit.probes.test_timeline import make_timeline

QUARTER, EIGHTH = 0.25, 0.125


def steady(count: int, replies=None):
    return make_timeline(replies or [True] * count, interval=QUARTER, start=0.0, rtt=EIGHTH)


def test_a_silence_touching_a_window_at_one_instant_does_not_overlap_it():
    silence = Silence(start=1.0, end=2.0, first_index=4)
    assert not silence.overlaps(2.0, 3.0)
    assert not silence.overlaps(0.0, 1.0)
    assert silence.overlaps(1.5, 1.75) and silence.overlaps(0.0, 1.25)
    assert silence.overlaps(1.75, 3.0)


def test_a_silence_exactly_as_long_as_the_minimum_is_dropped():
    timeline = steady(8)
    # Each ordinary round trip: the next request waits 0.125 s for its reply.
    assert [s.duration_ms for s in reply_silences(timeline)] == [125.0] * 7
    assert reply_silences(timeline, minimum=EIGHTH) == []
    assert len(reply_silences(timeline, minimum=EIGHTH - 1e-9)) == 7


def test_every_silence_starts_at_the_request_after_the_newest_answered():
    silences = reply_silences(steady(4))
    assert [(s.start, s.end, s.first_index) for s in silences] == [
        (0.25, 0.375, 1), (0.5, 0.625, 2), (0.75, 0.875, 3)]


def test_losses_before_the_first_reply_open_a_silence_at_the_first_send():
    timeline = steady(6, [None, None, True, True, True, True])
    assert [(s.start, s.end, s.first_index)
            for s in reply_silences(timeline, minimum=0.5)] == [(0.0, 0.625, 0)]
    # Exactly as long as the minimum: dropped like any other.
    assert reply_silences(timeline, minimum=0.625) == []


def test_no_leading_silence_when_the_first_request_was_answered():
    silences = reply_silences(steady(4), minimum=0.1)
    assert silences[0].first_index == 1 and len(silences) == 3


def test_the_last_request_unanswered_leaves_an_ongoing_silence():
    timeline = steady(4, [True, True, None, None])
    (silence,) = reply_silences(timeline, minimum=0.2)
    assert (silence.start, silence.first_index, silence.ongoing) == (0.5, 2, True)
    anatomy = dissect(timeline, silence)
    assert anatomy.ongoing and math.isinf(anatomy.client_downtime_ms)
    assert (anatomy.lost, anatomy.held, anatomy.first_through) == (2, 0, None)
    assert anatomy.resolution_ms == 250.0


# Requests 4-7 lost (sent 1.0-1.75), request 8 (sent 2.0) answered at 2.125:
# the silence is 1.0 -> 2.125 and the path is back from 2.0.
LOST_FOUR = [True] * 4 + [None] * 4 + [True] * 8


def outage():
    timeline = steady(len(LOST_FOUR), LOST_FOUR)
    silence = longest_silence(reply_silences(timeline), 0.0, 4.0)
    assert (silence.start, silence.end) == (1.0, 2.125)
    return dissect(timeline, silence)


def test_the_probe_alone_splits_at_the_first_request_through():
    anatomy = outage()
    assert (anatomy.pause_ms, anatomy.convergence_ms, anatomy.resume_lag_ms,
            anatomy.rtt_ms) == (1000.0, 0.0, 0.0, 125.0)
    assert (anatomy.lost, anatomy.held, anatomy.lost_after_path_back) == (4, 1, 0)
    assert (anatomy.first_lost, anatomy.first_through, anatomy.path_back,
            anatomy.first_reply) == (1.0, 2.0, 2.0, 2.125)
    assert anatomy.pause_ms + anatomy.convergence_ms + anatomy.resume_lag_ms + \
        anatomy.rtt_ms == anatomy.client_downtime_ms == 1125.0
    # 0.25 s sends: a quarter second at each end is what another prober could see.
    assert (anatomy.sporadic_replies, anatomy.sampling_ms) == (0, 500.0)


@pytest.mark.parametrize("offset, stalled", [
    # First loss one interval and one round trip after the silence began: no stall.
    (0.25 + EIGHTH, False),
    # Later than that: the guest held requests while it still ran.
    (0.5, True),
])
def test_a_source_stall_needs_a_first_loss_later_than_an_interval_and_a_round_trip(offset,
                                                                                  stalled):
    timeline = steady(16, [True] * 4 + [0.9, 0.65] + [None] * 2 + [True] * 8)
    silence = longest_silence(reply_silences(timeline), 0.0, 4.0)
    from rally_lm.probes.anatomy import _phase_ends
    stall_end, pause_end, _lag = _phase_ends(silence, silence.start + offset, 2.0, 2.0, 0.25,
                                             EIGHTH, True)
    assert (stall_end > silence.start) is stalled
    assert pause_end == silence.end == 1.9


def test_a_reply_exactly_at_the_late_limit_is_on_time():
    sent = np.array([0.0, 0.25, 0.5, 0.75])
    received = np.array([math.nan, math.nan, 1.0, 0.875])
    # From one round trip before `after` (0.375 - 0.125 = request 1 exactly) on:
    # request 1 unanswered, request 2 answered 0.5 s after its send = the limit.
    assert _recovered(sent, received, after=0.375, rtt=EIGHTH, late_after=0.5) == (0.875, 1)
    # Just under the limit, request 2 is late and request 3 ends the tail.
    assert _recovered(sent, received, after=0.375, rtt=EIGHTH,
                      late_after=0.5 - 1e-9) == (0.75, 2)
    assert _recovered(sent, received, after=0.375, rtt=EIGHTH, late_after=0.0625) == (None, 3)


def test_resolution_is_the_longest_send_gap_ending_at_a_boundary():
    sent = np.array([0.0, 0.25, 0.75, 1.0])
    assert _resolution(sent, [2]) == 0.5
    assert _resolution(sent, [1, 3]) == 0.25
    assert _resolution(sent, [1, 2]) == 0.5
    # The first request has no gap before it; an index past the end none either.
    assert _resolution(sent, [0]) == 0.0 and _resolution(sent, [4]) == 0.0


def test_the_longest_overlapping_silence_wins_and_the_first_of_equals():
    a, b, c = Silence(1.0, 2.0, 4), Silence(3.0, 4.0, 12), Silence(5.0, 7.0, 20)
    assert longest_silence([a, b, c], 0.0, 4.5) is a
    assert longest_silence([a, b, c], 0.0, 6.0) is c
    assert longest_silence([a, b, c], 2.0, 3.0) is None


def test_the_switchover_is_the_silence_around_the_pause_even_if_shorter():
    timeline = steady(len(LOST_FOUR), LOST_FOUR)
    silences = reply_silences(timeline, minimum=0.2)
    (lossy,) = silences
    short_around_pause = Silence(start=3.0, end=3.25, first_index=12)
    found = switchover_silence(timeline, [lossy, short_around_pause], 0.0, 4.0,
                               paused_at=3.125, resumed_at=3.125)
    assert found is short_around_pause
    # Without the hypervisor's times: the one with lost requests.
    assert switchover_silence(timeline, [short_around_pause, lossy], 0.0, 4.0) is lossy
    assert switchover_silence(timeline, [lossy], 5.0, 6.0) is None
