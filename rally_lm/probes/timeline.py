"""Turn raw echo timelines into outages and per-migration disruption.

Definitions (see docs/measurement.md for why):

* A request is *on time* when answered within ``late_after`` seconds, *late*
  when answered after that, *lost* when never answered.
* An **outage** is a maximal run of requests that are not on time and that
  contains at least one lost request. It starts at the send time of its first
  request and ends at the send time of the first on-time request after it, so
  it is measured on the probe's send clock with a resolution of one interval.
  Replies held while a guest is paused come back late, not lost: counting only
  losses (``lost x interval``) underestimates a pause roughly threefold.
* Held requests also say when the guest answered again: all of them are
  released when it resumes. QEMU announces the guest's MAC on the destination
  *before* libvirt resumes its vCPUs, so requests sent just before the resume
  are queued there and may still come back within the on-time threshold. An
  outage therefore lasts at least until the reply to the on-time request
  closing it, minus the median RTT.
* A **delay spike** is such a run with no loss at all (a CPU stall, a queue):
  reported, never charged as downtime unless a migration has nothing else.
* A migration's **network downtime** is the longest outage overlapping its
  window. Outages overlapping no window of their target are **collateral**.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence

import numpy as np

from rally_lm.probes.records import Outage, TargetTimeline

#: Replies slower than this many intervals (and than 3x the median RTT plus
#: 10 ms) are late. Two intervals keep ordinary jitter out of outages.
LATE_INTERVALS = 2.0


class NothingMeasured(Exception):
    """The probe has no data to judge this window: never report zero."""


def median_rtt(timeline: TargetTimeline) -> float:
    """Median round-trip time in seconds of the answered requests (0 if none)."""
    sent = np.frombuffer(timeline.sent, dtype=float)
    received = np.frombuffer(timeline.received, dtype=float)
    rtts = (received - sent)[~np.isnan(received)]
    return float(np.median(rtts)) if rtts.size else 0.0


def late_threshold(timeline: TargetTimeline) -> float:
    """Seconds after which a reply counts as late for this timeline."""
    return max(LATE_INTERVALS * timeline.interval, 3.0 * median_rtt(timeline) + 0.010)


def find_disruptions(
    timeline: TargetTimeline, late_after: float | None = None
) -> tuple[list[Outage], list[Outage]]:
    """Split a timeline into outages (with loss) and delay spikes (without)."""
    if late_after is None:
        late_after = late_threshold(timeline)
    sent = np.frombuffer(timeline.sent, dtype=float)
    received = np.frombuffer(timeline.received, dtype=float)
    if sent.size == 0:
        return [], []
    lost = np.isnan(received)
    typical_rtt = median_rtt(timeline)
    rtt = np.where(lost, 0.0, received - sent)
    late = ~lost & (rtt > late_after)
    bad = lost | late

    outages: list[Outage] = []
    spikes: list[Outage] = []
    # Edges of runs of "bad" requests, as [first, after_last) index pairs.
    padded = np.concatenate(([False], bad, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    for first, after in zip(edges[::2], edges[1::2], strict=True):
        ongoing = after >= sent.size
        end = sent[-1] + timeline.interval if ongoing else sent[after]
        if not ongoing:
            # The closing request may itself have been held until the resume.
            end = max(end, float(received[after]) - typical_rtt)
        run_late = rtt[first:after][late[first:after]]
        record = Outage(
            start=float(sent[first]),
            end=float(end),
            lost=int(lost[first:after].sum()),
            late=int(run_late.size),
            max_late_ms=float(run_late.max() * 1000.0) if run_late.size else 0.0,
            ongoing=bool(ongoing),
        )
        (outages if record.lost else spikes).append(record)
    return outages, spikes


@dataclasses.dataclass(frozen=True)
class MigrationWindow:
    """When one migration of one target ran, on the probe's monotonic clock."""

    target: str
    start: float
    end: float
    label: str = ""


@dataclasses.dataclass
class MigrationDisruption:
    """What the probe saw of one target during one migration window."""

    window: MigrationWindow
    requests: int
    downtime_ms: float
    kind: str
    lost: int
    late: int
    max_late_ms: float
    first_loss: float | None
    recovery: float | None
    outages: list[Outage]
    resolution_ms: float

    def to_dict(self) -> dict:
        return {
            "target": self.window.target,
            "label": self.window.label,
            "window_start": self.window.start,
            "window_end": self.window.end,
            "requests": self.requests,
            "downtime_ms": round(self.downtime_ms, 3),
            "kind": self.kind,
            "lost": self.lost,
            "late": self.late,
            "max_late_ms": round(self.max_late_ms, 3),
            "first_loss": self.first_loss,
            "recovery": self.recovery,
            "outages": [o.to_dict() for o in self.outages],
            "resolution_ms": round(self.resolution_ms, 3),
        }


def disruption_in_window(
    timeline: TargetTimeline,
    window: MigrationWindow,
    outages: Sequence[Outage],
    spikes: Sequence[Outage] = (),
) -> MigrationDisruption:
    """Charge a migration with the outages that overlap its window.

    Raises NothingMeasured when no request was sent inside the window or the
    target never answered at all: a probe that saw nothing must not report 0.
    """
    sent = np.frombuffer(timeline.sent, dtype=float)
    in_window = int(((sent >= window.start) & (sent <= window.end)).sum())
    if in_window == 0:
        raise NothingMeasured(
            f"no echo request to {timeline.target} was sent during {window.label or 'the window'}"
        )
    if not any(not math.isnan(r) for r in timeline.received):
        raise NothingMeasured(f"{timeline.target} never answered the {timeline.protocol} probe")

    charged = [o for o in outages if o.overlaps(window.start, window.end)]
    kind = "loss"
    if not charged:
        charged = [s for s in spikes if s.overlaps(window.start, window.end)]
        kind = "delay" if charged else "none"
    longest = max(charged, key=lambda o: o.duration_ms, default=None)
    lo = max(window.start, min((o.start for o in charged), default=window.start))
    hi = min(window.end, max((o.end for o in charged), default=window.end))
    # From the send before the first charged request (the gap that opens an
    # outage is where its true start hides) to the send after the last.
    first = max(int(np.searchsorted(sent, lo, side="left")) - 1, 0)
    last = int(np.searchsorted(sent, hi, side="right"))
    span = sent[first:last + 1]
    resolution = float(np.diff(span).max()) if span.size > 1 else timeline.interval
    return MigrationDisruption(
        window=window,
        requests=in_window,
        downtime_ms=longest.duration_ms if longest else 0.0,
        kind=kind,
        lost=sum(o.lost for o in charged),
        late=sum(o.late for o in charged),
        max_late_ms=max((o.max_late_ms for o in charged), default=0.0),
        first_loss=min((o.start for o in charged if o.lost), default=None),
        recovery=max((o.end for o in charged if o.lost), default=None),
        outages=charged,
        resolution_ms=max(resolution, timeline.interval) * 1000.0,
    )


def collateral(outages: Iterable[Outage], windows: Iterable[MigrationWindow]) -> list[Outage]:
    """Outages of one target that overlap none of that target's migrations."""
    spans = [(w.start, w.end) for w in windows]
    return [o for o in outages if not any(o.overlaps(s, e) for s, e in spans)]
