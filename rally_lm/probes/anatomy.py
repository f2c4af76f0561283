"""Why an outage lasted as long as it did: one migration's outage in phases.

A client waiting on a migrating guest sees one thing - no replies - but the
silence has parts with different cures. From the probe's own records (send
and reply time of every request), optionally with the hypervisor's resume
time, the longest silence of a migration is split into:

====================  =======================================================
``client_downtime``   the longest span without replies while a request was
                      outstanding: from the send of the first request not
                      answered by the last reply before the gap, to the next
                      reply. What an application waiting on the guest feels;
                      the figure the SLA gates on.
``source_stall``      the guest still ran on the source but did not answer:
                      requests held from the silence's start until the
                      hypervisor paused it (auto-converge's throttle, or the
                      guest's own load). Only with the hypervisor's pause time,
                      and only when the silence began more than one probe
                      interval and one round trip before it.
``pause``             nothing reached a running guest: requests lost (sent to a
                      guest that no longer ran, to no destination that would
                      hold them), and - when the hypervisor's resume time is
                      known - requests waiting at a destination that announced
                      the guest before running it. It starts with the silence:
                      requests answered late although sent before the first
                      loss were already inside the guest (its receive ring
                      migrates with its memory). ``path_down`` is the probe's
                      own part of it: until the first request got through.
``convergence``       requests lost *after* the path had come back: after
                      one request already got through, or sent more than one
                      probe interval after the hypervisor reported the guest
                      running again. The network itself still moving.
``resume_lag``        the guest ran and the path was up, yet no answer yet:
                      the wait of the request that got through for good, from
                      when both held (minus one median round trip).
``recovery_tail``     after the first reply, replies flowing but late, until
                      the first on-time one (see ``timeline.late_threshold``).
====================  =======================================================

``source_stall + pause + convergence + resume_lag + rtt = client_downtime``
exactly; the recovery tail comes after it. Every boundary is a send time or a reply time
of the probe, so each is known to one probe interval (``resolution_ms``).
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


@dataclasses.dataclass
class OutageAnatomy:
    """One migration's longest silence, split into phases (ms unless named)."""

    protocol: str
    client_downtime_ms: float
    source_stall_ms: float
    pause_ms: float
    #: The probe's own evidence: first unanswered request to the first that got
    #: through. Shorter than the pause when the destination announced the guest
    #: before it ran (requests waited there).
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
    #: "probe" or "probe+hypervisor" (the resume time split pause from convergence).
    split_by: str
    #: Phase boundaries on the probe's monotonic clock.
    silence_start: float
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


def dissect(timeline: TargetTimeline, silence: Silence, resumed_at: float | None = None,
            paused_at: float | None = None, switched_over: bool = True) -> OutageAnatomy:
    """Split one silence into source stall, pause, convergence, resume lag and tail.

    ``paused_at`` / ``resumed_at`` are when the hypervisor stopped the guest on
    the source / reported it running on the destination, on the probe's
    clock, if known. ``switched_over=False`` says the guest never left the
    source (the migration was aborted or failed): then the whole silence,
    less one round trip, is a source stall.
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

    # Requests answered although sent before the first loss were already
    # inside the guest (its receive ring migrates with its memory): they say
    # nothing of the path. A request answered after a loss got through.
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

    if silence.ongoing or path_back is None or first_through is None:
        return OutageAnatomy(
            protocol=timeline.protocol, client_downtime_ms=math.inf, source_stall_ms=0.0,
            pause_ms=math.inf,
            path_down_ms=math.inf, convergence_ms=0.0, resume_lag_ms=0.0, rtt_ms=rtt * 1000.0,
            recovery_tail_ms=0.0, lost=int(lost_idx.size), held=int(answered.size),
            lost_after_path_back=lost_after, late_in_tail=0,
            resolution_ms=_resolution(sent, [first]) * 1000.0, ongoing=True,
            split_by="probe", silence_start=silence.start, first_through=first_through,
            path_back=path_back, first_reply=None, recovered=None)

    stall_end, pause_end, lag_start, split_by = _phase_ends(
        silence, first_through, path_back, interval, rtt, resumed_at, paused_at, switched_over)
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

    # Each boundary is a send: known to the gap before it (a starved probe
    # thread widens one), the silence's start, the first through, the path back.
    boundaries = [first, int(np.searchsorted(sent, first_through)),
                  int(np.searchsorted(sent, path_back))]
    return OutageAnatomy(
        protocol=timeline.protocol, client_downtime_ms=client * 1000.0,
        source_stall_ms=(stall_end - silence.start) * 1000.0, pause_ms=pause * 1000.0,
        path_down_ms=(first_through - silence.start) * 1000.0,
        convergence_ms=convergence * 1000.0,
        resume_lag_ms=resume_lag * 1000.0, rtt_ms=round_trip * 1000.0,
        recovery_tail_ms=(recovered - silence.end) * 1000.0,
        lost=int(lost_idx.size), held=int(answered.size), lost_after_path_back=lost_after,
        late_in_tail=late_in_tail, resolution_ms=_resolution(sent, boundaries) * 1000.0,
        ongoing=False, split_by=split_by, silence_start=silence.start,
        first_through=first_through, path_back=path_back, first_reply=silence.end,
        recovered=recovered)


def _phase_ends(silence: Silence, first_through: float, path_back: float, interval: float,
                rtt: float, resumed_at: float | None, paused_at: float | None,
                switched_over: bool) -> tuple[float, float, float, str]:
    """Where the source stall, the pause and the convergence end, and what told."""
    if not switched_over:
        # No switchover happened: whatever held or lost the requests, the guest
        # ran on the source throughout (e.g. a stall during the copy).
        end = silence.end - min(rtt, silence.end - silence.start)
        return end, end, end, "probe"
    # From the probe alone: paused until a request got through, the network
    # still moving until it got through for good, then waiting for answers.
    split_by = "probe"
    pause_end, lag_start = first_through, path_back
    if resumed_at is not None and silence.start <= resumed_at <= silence.end:
        # The hypervisor says when the guest ran again. Requests may reach the
        # destination before that (it announces the guest first) and wait
        # there: still the pause. Losses after it are the network's.
        split_by = "probe+hypervisor"
        if path_back > resumed_at + interval:
            pause_end, lag_start = resumed_at, path_back
        else:
            pause_end = lag_start = max(resumed_at, path_back)
    # Losses after the first reply are not this silence's: it ended there.
    lag_start = min(lag_start, silence.end)
    pause_end = min(pause_end, lag_start)
    # A guest that stopped answering well before the hypervisor paused it was
    # still running on the source, slowed (throttled) or busy: not the pause.
    stall_end = silence.start
    if paused_at is not None and silence.start + interval + rtt < paused_at < pause_end:
        stall_end = paused_at
        split_by = "probe+hypervisor"
    return stall_end, pause_end, lag_start, split_by


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
