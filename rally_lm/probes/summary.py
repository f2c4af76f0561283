"""JSON-ready summaries of probe results, shared by the CLI, hooks and scenarios."""

from __future__ import annotations

import math
from typing import Any

from rally_lm.probes.records import Outage, ProbeClock, TargetTimeline, TcpContinuity
from rally_lm.probes.timeline import find_disruptions


def outage_dict(outage: Outage, clock: ProbeClock) -> dict[str, Any]:
    """An outage with wall-clock ``start``/``end`` (epoch seconds)."""
    return {
        "start": round(clock.to_wall(outage.start), 6),
        "end": round(clock.to_wall(outage.end), 6),
        "duration_ms": round(outage.duration_ms, 3),
        "lost": outage.lost,
        "late": outage.late,
        "max_late_ms": round(outage.max_late_ms, 3),
        "ongoing": outage.ongoing,
    }


def timeline_summary(timeline: TargetTimeline, transport: str = "") -> dict[str, Any]:
    outages, spikes = find_disruptions(timeline)
    return {
        "target": timeline.target,
        "protocol": timeline.protocol,
        "transport": transport or timeline.protocol,
        "interval_ms": round(timeline.interval * 1000.0, 3),
        "requests": timeline.requests_sent,
        "replies": timeline.replies,
        "duplicates": timeline.duplicates,
        "send_errors": timeline.errors,
        "max_send_gap_ms": round(timeline.max_send_gap_ms(), 3),
        "outages": [outage_dict(o, timeline.clock) for o in outages],
        "longest_outage_ms": round(max((o.duration_ms for o in outages), default=0.0), 3),
        "delay_spikes": [outage_dict(s, timeline.clock) for s in spikes],
        "measured": timeline.replies > 0,
    }


def tcp_summary(result: TcpContinuity, clock: ProbeClock) -> dict[str, Any]:
    data = result.to_dict()
    data["stalls"] = [
        {
            "start": round(clock.to_wall(s.start), 6),
            "end": round(clock.to_wall(s.end), 6),
            "duration_ms": round(s.duration_ms, 3),
            "disconnected": s.disconnected,
            "ongoing": s.ongoing,
        }
        for s in result.stalls
    ]
    return data


def raw_timeline(timeline: TargetTimeline) -> list[list[float | None]]:
    """[sent, received] per request, seconds since the probe started (None: no reply)."""
    origin = timeline.clock.monotonic
    return [[round(sent - origin, 6),
             None if math.isnan(received) else round(received - origin, 6)]
            for sent, received in zip(timeline.sent, timeline.received, strict=True)]
