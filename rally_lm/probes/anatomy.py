"""Why an outage lasted as long as it did: one migration's outage in phases.

A client waiting on a migrating guest sees one thing - no replies - but the
silence has parts with different cures. From the probe's own records alone
(send and reply time of every request; no hypervisor time is a boundary),
the longest silence of a migration is split into:

====================  =======================================================
``client_downtime``   the longest span without replies while a request was
                      outstanding: from the send of the first request not
                      answered by the last reply before the gap, to the next
                      reply. What an application waiting on the guest feels;
                      the figure the SLA gates on.
``source_stall``      the guest did not answer but lost nothing: requests
                      sent before the first one lost, held and answered late
                      (auto-converge's throttle, or the guest's own load) -
                      when the first loss came more than one probe interval
                      and one round trip after the silence began (the last
                      request or two before a pause are in the guest's
                      receive ring and answered after it: no stall).
``pause``             from the first request lost (sent to a guest that no
                      longer ran, to no destination that would hold it) to
                      the first that got through (answered, if late: it
                      reached the destination). ``path_down`` is the same
                      span; libvirt's downtime is compared with it
                      (``pause_vs_hypervisor_ms``), never a boundary of it.
``convergence``       requests lost *after* one had already got through: the
                      network itself still moving.
``resume_lag``        the path was up for good, yet no answer yet: the wait of
                      the request that got through for good (minus one median
                      round trip).
``recovery_tail``     after the first reply, replies flowing but late, until
                      the first on-time one (see ``timeline.late_threshold``).
====================  =======================================================

``source_stall + pause + convergence + resume_lag + rtt = client_downtime``
exactly; the recovery tail comes after it. Every boundary is a send time or a
reply time of the probe, so each is known to the send gap before it
(``resolution_ms``).

What a second prober, at another interval and phase, would see differs by
the sampling alone up to ``sampling_ms``: the send gaps before the silence's
first request and before the request whose reply ended it. A resuming guest
may also answer *sporadically*: one reply, then losses again before replies
flow. The silence ends at that first reply (the definition), the anatomy
counts such replies (``sporadic_replies``) and gives the silence up to the
first reply of a steady run of replies (``sustained_downtime_ms``): a prober
whose requests missed the sporadic answer sees that instead, so it widens
``sampling_ms``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from rally_lm.probes.records import TargetTimeline
from rally_lm.probes.timeline import late_threshold, median_rtt


@dataclasses.dataclass
class Silence:
    """A span without replies while requests were outstanding (probe clock)."""

    #: Send time of the first request not answered when the last reply came.
    start: float
    #: Arrival of the next reply (``math.inf`` when none ever came).
    end: float
    #: Index of that first unanswered request in the timeline.
    first_index: int

    @property
    def duration_ms(self) -> float:
        return (self.end - self.start) * 1000.0

    @property
    def ongoing(self) -> bool:
        return math.isinf(self.end)

    def overlaps(self, start: float, end: float) -> bool:
        return self.start < end and self.end > start


def reply_silences(timeline: TargetTimeline, minimum: float = 0.0) -> list[Silence]:
    """Every span in which no reply arrived although a request was outstanding.

    Between two consecutive reply arrivals, the client had a request
    outstanding from the send of the first request after the newest one
    answered so far. Spans not longer than ``minimum`` seconds are dropped
    (with 0, each ordinary round trip is a tiny silence of its own).
    """
    sent = np.frombuffer(timeline.sent, dtype=float)
    received = np.frombuffer(timeline.received, dtype=float)
    answered = np.flatnonzero(~np.isnan(received))
    if sent.size == 0 or answered.size == 0:
        return []
    order = answered[np.argsort(received[answered], kind="stable")]
    arrivals = received[order]
    # The newest request answered by each arrival (replies may overtake).
    following = np.maximum.accumulate(order) + 1
    valid = following < sent.size
    following = following[valid]
    after = arrivals[valid]
    ends = np.append(arrivals[1:], math.inf)[valid]
    starts = sent[following]
    keep = ends - np.maximum(starts, after) > minimum
    silences = [Silence(start=float(s), end=float(e), first_index=int(i))
                for s, e, i in zip(starts[keep], ends[keep], following[keep], strict=True)]
    # Requests lost before the very first reply: a silence from the first send.
    if answered[0] > 0 and float(arrivals[0]) - float(sent[0]) > minimum:
        silences.insert(0, Silence(start=float(sent[0]), end=float(arrivals[0]),
                                   first_index=0))
    return silences


#: Replies this many in a row after the first, each within SPORADIC_GAP_INTERVALS
#: probe intervals of the one before: the guest answers steadily again.
STEADY_RUN = 3
SPORADIC_GAP_INTERVALS = 3


@dataclasses.dataclass
class OutageAnatomy:
    """One migration's longest silence, split into phases (ms unless named)."""

    protocol: str
    client_downtime_ms: float
    source_stall_ms: float
    pause_ms: float
    #: First request lost to the first that got through: the pause, as the probe
    #: saw it (kept under its own name for records and dashboards).
    path_down_ms: float
    convergence_ms: float
    resume_lag_ms: float
    rtt_ms: float
    recovery_tail_ms: float
    #: Requests sent during the silence that were never answered / answered.
    lost: int
    held: int
    #: Lost requests sent after one had already got through.
    lost_after_path_back: int
    #: Late replies after the first reply, before the first on-time one.
    late_in_tail: int
    #: Longest gap between two sends around the phase boundaries.
    resolution_ms: float
    ongoing: bool
    #: Replies from the silence's end on that another gap of more than
    #: SPORADIC_GAP_INTERVALS probe intervals followed before the replies steadied.
    sporadic_replies: int
    #: From the silence's start to the first reply of a steady run of replies
    #: (= client downtime without sporadic replies).
    sustained_downtime_ms: float
    #: How much another prober (other interval, other phase) could see
    #: differently: the send gaps at both ends, and what sporadic replies add.
    sampling_ms: float
    #: Phase boundaries on the probe's monotonic clock.
    silence_start: float
    first_lost: float | None
    first_through: float | None
    path_back: float | None
    first_reply: float | None
    recovered: float | None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key, value in data.items():
            if isinstance(value, float) and key.endswith("_ms"):
                data[key] = round(value, 3)
        return data


def _recovered(sent: np.ndarray, received: np.ndarray, after: float, rtt: float,
               late_after: float) -> tuple[float | None, int]:
    """When requests were answered on time again after ``after``, and how many were not.

    Looks at requests sent from one round trip before the first reply on;
    the first one answered on time ends the tail (at its reply minus one
    round trip, if it was itself held past its send time).
    """
    first = int(np.searchsorted(sent, after - rtt, side="left"))
    rtts = received[first:] - sent[first:]
    on_time = np.flatnonzero(~np.isnan(rtts) & (rtts <= late_after))
    if on_time.size == 0:
        return None, int(rtts.size)
    index = first + int(on_time[0])
    return max(float(sent[index]), float(received[index]) - rtt), int(on_time[0])


def _steady(received: np.ndarray, first: float, gap: float) -> tuple[float | None, int]:
    """(when the guest answered steadily again, how many sporadic replies came before).

    Over the reply arrivals from ``first`` (the silence's first reply) on: the
    first arrival followed by STEADY_RUN more, each within ``gap`` of the one
    before; each arrival before it that a longer gap followed is sporadic.
    None when the replies never steadied before the probe stopped.
    """
    arrivals = np.sort(received[~np.isnan(received) & (received >= first)])
    sporadic = 0
    start = 0
    for index in range(1, arrivals.size):
        if arrivals[index] - arrivals[index - 1] > gap:
            if index - start <= STEADY_RUN:
                sporadic += index - start
            start = index
        elif index - start >= STEADY_RUN:
            return float(arrivals[start]), sporadic
    return None, sporadic


def dissect(timeline: TargetTimeline, silence: Silence,
            switched_over: bool = True) -> OutageAnatomy:
    """Split one silence into source stall, pause, convergence, resume lag and tail.

    From the probe's records alone. ``switched_over=False`` says the guest never
    left the source (the migration was aborted or failed): then the whole
    silence, less one round trip, is a source stall.
    """
    sent = np.frombuffer(timeline.sent, dtype=float)
    received = np.frombuffer(timeline.received, dtype=float)
    rtt = median_rtt(timeline)
    interval = timeline.interval
    first = silence.first_index
    end_index = int(np.searchsorted(sent, silence.end, side="left")) \
        if not silence.ongoing else sent.size
    inside = np.arange(first, end_index)
    answered = inside[~np.isnan(received[inside])]
    lost_idx = inside[np.isnan(received[inside])]
    first_lost = float(sent[lost_idx[0]]) if lost_idx.size else None

    # Requests answered although sent before the first loss were already
    # inside the guest (its receive ring migrates with its memory), or held by
    # a guest still running on its source: they say nothing of the path. A
    # request answered after a loss got through.
    through = answered[answered > lost_idx[0]] if lost_idx.size else answered
    first_through = float(sent[through[0]]) if through.size else None
    # The path is back for good after the last loss of the silence - at the
    # first request answered after it, which may have been sent after the
    # silence ended (losses went on while the first replies came back).
    if lost_idx.size:
        later = np.flatnonzero(~np.isnan(received[lost_idx.max() + 1:]))
        path_back = float(sent[lost_idx.max() + 1 + later[0]]) if later.size else None
    else:
        path_back = float(sent[answered[0]]) if answered.size else None
    lost_after = int((lost_idx > through[0]).sum()) if through.size else 0
    if first_through is None and not silence.ongoing:
        # Every request answered in the silence was sent before its first loss
        # (a stalled guest held them, then answered from the destination): the
        # first to get through after a loss came after the silence ended.
        first_through = path_back
    gap_before = _resolution(sent, [first])

    if silence.ongoing or path_back is None or first_through is None:
        return OutageAnatomy(
            protocol=timeline.protocol, client_downtime_ms=math.inf, source_stall_ms=0.0,
            pause_ms=math.inf,
            path_down_ms=math.inf, convergence_ms=0.0, resume_lag_ms=0.0, rtt_ms=rtt * 1000.0,
            recovery_tail_ms=0.0, lost=int(lost_idx.size), held=int(answered.size),
            lost_after_path_back=lost_after, late_in_tail=0,
            resolution_ms=gap_before * 1000.0, ongoing=True, sporadic_replies=0,
            sustained_downtime_ms=math.inf, sampling_ms=math.inf,
            silence_start=silence.start, first_lost=first_lost, first_through=first_through,
            path_back=path_back, first_reply=None, recovered=None)

    stall_end, pause_end, lag_start = _phase_ends(
        silence, first_lost, first_through, path_back, interval, rtt, switched_over)
    pause = pause_end - stall_end
    convergence = lag_start - pause_end
    # The held request's wait includes one ordinary round trip.
    waited = silence.end - lag_start
    round_trip = min(rtt, waited)
    resume_lag = waited - round_trip
    client = silence.end - silence.start

    recovered, late_in_tail = _recovered(sent, received, silence.end, rtt,
                                         late_threshold(timeline))
    if recovered is None:
        # Answers kept coming late until the probe stopped.
        recovered = float(sent[-1]) + interval
    recovered = max(recovered, silence.end)
    # The request whose reply ended the silence, and the replies from it on.
    ender = int(np.flatnonzero(received == silence.end)[0])
    steady, sporadic = _steady(received, silence.end, SPORADIC_GAP_INTERVALS * interval)
    sustained = max(steady, silence.end) if steady is not None else math.inf

    boundaries = [first, int(np.searchsorted(sent, first_through)),
                  int(np.searchsorted(sent, path_back))]
    sampling = gap_before + _resolution(sent, [ender]) + (sustained - silence.end)
    return OutageAnatomy(
        protocol=timeline.protocol, client_downtime_ms=client * 1000.0,
        source_stall_ms=(stall_end - silence.start) * 1000.0, pause_ms=pause * 1000.0,
        path_down_ms=pause * 1000.0, convergence_ms=convergence * 1000.0,
        resume_lag_ms=resume_lag * 1000.0, rtt_ms=round_trip * 1000.0,
        recovery_tail_ms=(recovered - silence.end) * 1000.0,
        lost=int(lost_idx.size), held=int(answered.size), lost_after_path_back=lost_after,
        late_in_tail=late_in_tail, resolution_ms=_resolution(sent, boundaries) * 1000.0,
        ongoing=False, sporadic_replies=sporadic,
        sustained_downtime_ms=(sustained - silence.start) * 1000.0,
        sampling_ms=sampling * 1000.0, silence_start=silence.start, first_lost=first_lost,
        first_through=first_through, path_back=path_back, first_reply=silence.end,
        recovered=recovered)


def _phase_ends(silence: Silence, first_lost: float | None, first_through: float,
                path_back: float, interval: float, rtt: float,
                switched_over: bool) -> tuple[float, float, float]:
    """Where the source stall, the pause and the convergence end, from the probe alone."""
    if not switched_over:
        # No switchover happened: whatever held or lost the requests, the guest
        # ran on the source throughout (e.g. a stall during the copy).
        end = silence.end - min(rtt, silence.end - silence.start)
        return end, end, end
    # Losses after the first reply are not this silence's: it ended there.
    lag_start = min(path_back, silence.end)
    pause_end = min(first_through, lag_start)
    # Requests held, not lost, for longer than one interval and a round trip
    # before the first loss: the guest did not answer while it still ran.
    stall_end = silence.start
    if first_lost is not None and silence.start + interval + rtt < first_lost < pause_end:
        stall_end = first_lost
    return stall_end, pause_end, lag_start


def _resolution(sent: np.ndarray, indices: list[int]) -> float:
    """The longest send gap ending at any of these requests (one interval normally)."""
    gaps = [float(sent[i] - sent[i - 1]) for i in indices if 0 < i < sent.size]
    return max(gaps, default=0.0)


def longest_silence(silences: list[Silence], start: float, end: float) -> Silence | None:
    """The longest silence overlapping a migration window."""
    overlapping = [s for s in silences if s.overlaps(start, end)]
    return max(overlapping, key=lambda s: s.end - s.start, default=None)


def switchover_silence(timeline: TargetTimeline, silences: list[Silence], start: float,
                       end: float, paused_at: float | None = None,
                       resumed_at: float | None = None) -> Silence | None:
    """The silence of a migration's switchover, among those overlapping its window.

    The one around the hypervisor's pause when its times are known; else the
    longest with a lost request (the switchover loses requests; a stall during
    the copy only delays them); else the longest.
    """
    overlapping = [s for s in silences if s.overlaps(start, end)]
    if not overlapping:
        return None
    if paused_at is not None and resumed_at is not None:
        around = [s for s in overlapping if s.overlaps(paused_at, max(resumed_at, paused_at))]
        if around:
            return max(around, key=lambda s: s.end - s.start)
    received = np.frombuffer(timeline.received, dtype=float)
    sent = np.frombuffer(timeline.sent, dtype=float)

    def lost_in(silence: Silence) -> bool:
        last = int(np.searchsorted(sent, silence.end, side="left"))
        return bool(np.isnan(received[silence.first_index:last]).any())

    with_loss = [s for s in overlapping if lost_in(s)]
    return max(with_loss or overlapping, key=lambda s: s.end - s.start)
