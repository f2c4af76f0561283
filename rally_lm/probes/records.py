"""Plain records produced by the probes and the timeline analysis.

Everything here serializes to JSON through ``dataclasses.asdict`` so Rally
plugins, the CLI and the report only ever consume data, never probe objects.
Times are seconds on the probe's monotonic clock unless a field says
otherwise; ``ProbeClock`` maps them to wall-clock time once, at start, so a
wall-clock step during a run cannot stretch or shrink a measured interval.
"""

from __future__ import annotations

import array
import dataclasses
import math
import time
from typing import Any


@dataclasses.dataclass(frozen=True)
class ProbeClock:
    """One reading of both clocks, taken when a probe starts."""

    monotonic: float
    wall: float

    @classmethod
    def now(cls) -> ProbeClock:
        return cls(monotonic=time.monotonic(), wall=time.time())

    def to_wall(self, monotonic: float) -> float:
        return self.wall + (monotonic - self.monotonic)

    def to_monotonic(self, wall: float) -> float:
        return self.monotonic + (wall - self.wall)

    def drift_ms(self) -> float:
        """How far the wall clock has moved against the monotonic one since this reading.

        Wall-clock events (libvirt's, Nova's) are mapped with the one reading;
        a drift of more than a few ms (NTP slewing, a step) makes that mapping
        and so the phase boundaries from other clocks that much less exact.
        """
        return ((time.time() - self.wall) - (time.monotonic() - self.monotonic)) * 1000.0


@dataclasses.dataclass
class Outage:
    """A run of echo requests that went unanswered (lost) or came back late.

    ``start`` is the send time of the first request of the run and ``end`` the
    send time of the first request answered on time after it (or, when that
    request was itself held, its reply time minus the median RTT), so the
    resolution is one probe interval. ``late`` requests were answered after
    ``late_after_ms`` (typically held in a queue while the guest was paused);
    ``max_late_ms`` is the longest such delay.
    """

    start: float
    end: float
    lost: int
    late: int = 0
    max_late_ms: float = 0.0
    ongoing: bool = False

    @property
    def duration_ms(self) -> float:
        return (self.end - self.start) * 1000.0

    def overlaps(self, start: float, end: float) -> bool:
        return self.start < end and self.end > start

    def to_dict(self) -> dict[str, Any]:
        """Monotonic times; summary.outage_dict gives the wall-clock view."""
        data = dataclasses.asdict(self)
        data["duration_ms"] = round(self.duration_ms, 3)
        return data


@dataclasses.dataclass
class TargetTimeline:
    """Everything one downtime probe saw of one target.

    ``sent[i]`` is when request ``i`` left and ``received[i]`` when its first
    reply arrived (NaN if none did). Arrays, not objects: an hour at 100 Hz is
    360,000 requests per target.
    """

    target: str
    protocol: str
    interval: float
    clock: ProbeClock
    sent: array.array = dataclasses.field(default_factory=lambda: array.array("d"))
    received: array.array = dataclasses.field(default_factory=lambda: array.array("d"))
    duplicates: int = 0
    errors: int = 0

    @property
    def requests_sent(self) -> int:
        return len(self.sent)

    @property
    def replies(self) -> int:
        return sum(1 for r in self.received if not math.isnan(r))

    def max_send_gap_ms(self) -> float:
        """Longest pause between two sends: the probe's real resolution."""
        gaps = (b - a for a, b in zip(self.sent, self.sent[1:], strict=False))
        return max(gaps, default=0.0) * 1000.0


@dataclasses.dataclass
class TcpStall:
    """A span with bytes outstanding and no verified progress.

    ``disconnected``: the connection broke during the stall, and the stall
    lasts until a new connection verified its first record (or the probe
    stopped: then ``ongoing``).
    """

    start: float
    end: float
    disconnected: bool = False
    ongoing: bool = False

    @property
    def duration_ms(self) -> float:
        return (self.end - self.start) * 1000.0


@dataclasses.dataclass
class TcpContinuity:
    """Result of a TCP continuity probe against one target."""

    target: str
    port: int
    bytes_sent: int = 0
    bytes_verified: int = 0
    bytes_lost: int = 0
    bytes_corrupted: int = 0
    resets: int = 0
    reconnects: int = 0
    connected: bool = False
    original_connection_survived: bool = False
    stalls: list[TcpStall] = dataclasses.field(default_factory=list)
    #: When each connection broke (probe clock), in order.
    reset_times: list[float] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)

    @property
    def max_stall_ms(self) -> float:
        return max((s.duration_ms for s in self.stalls), default=0.0)

    @property
    def intact(self) -> bool:
        return self.connected and self.bytes_lost == 0 and self.bytes_corrupted == 0

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["max_stall_ms"] = round(self.max_stall_ms, 3)
        data["stalls"] = [
            {"start": s.start, "end": s.end, "duration_ms": round(s.duration_ms, 3),
             "disconnected": s.disconnected, "ongoing": s.ongoing}
            for s in self.stalls
        ]
        return data

    def stalls_in(self, start: float, end: float) -> list[TcpStall]:
        return [s for s in self.stalls if s.start < end and s.end > start]

    def resets_in(self, start: float, end: float) -> int:
        return sum(1 for t in self.reset_times if start <= t <= end)
