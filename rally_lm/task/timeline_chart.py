"""Each migration's timeline as inline SVG, for Rally's per-iteration output.

Two panels per migration: the whole migration (seconds since the API call:
Nova's instance-action events as bars, libvirt's events as ticks, the
probe's silence), and a zoom on the outage (milliseconds: every echo request
coloured by what became of it, the phases as bars, libvirt's pause and
resume as lines). Drawn from the record alone, so it renders the same from a
saved report.

Shown through the ``lm_timeline`` chart plugin: Rally 5.1's own
``EmbeddedChart`` cannot be used from a scenario (its renderer wants a
string, ``add_output`` accepts only lists and dicts).
"""

from __future__ import annotations

import html
from typing import Any

from rally.common.plugin import plugin
from rally.task.processing import charts

from rally_lm.migration.driver import MigrationRecord

WIDTH = 900
LEFT = 150
PHASE_COLOURS = {"source stall": "#8c564b", "pause": "#d62728", "convergence": "#9467bd",
                 "resume lag": "#ff7f0e",
                 "round trip": "#7f7f7f", "recovery tail": "#e6c200"}
REQUEST_COLOURS = {"on time": "#2ca02c", "held": "#1f77b4", "late": "#ff7f0e", "lost": "#d62728"}


def _text(x: float, y: float, text: str, size: int = 11, anchor: str = "start",
          colour: str = "#222") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'fill="{colour}">{html.escape(text)}</text>')


def _scale(lo: float, hi: float, x0: float = LEFT, x1: float = WIDTH - 20):
    span = (hi - lo) or 1.0
    return lambda v: x0 + (v - lo) / span * (x1 - x0)


def _overview(record: MigrationRecord, events: list[dict], y: float) -> tuple[list[str], float]:
    end = max([e["t"] for e in events] + [record.duration, 0.1])
    x = _scale(0.0, end)
    parts = [_text(10, y + 12, "whole migration (s)", 11, colour="#555")]
    lanes = {"nova": y + 22, "libvirt": y + 44, "probe": y + 66}
    for lane, ly in lanes.items():
        parts.append(_text(10, ly + 9, lane))
        parts.append(f'<line x1="{LEFT}" y1="{ly + 5}" x2="{WIDTH - 20}" y2="{ly + 5}" '
                     'stroke="#eee"/>')
    starts = {e["name"][:-6]: e for e in events if e["source"] == "nova"
              and e["name"].endswith(".start")}
    row = 0
    for e in events:
        if e["source"] == "nova" and e["name"].endswith(".finish"):
            begin = starts.get(e["name"][:-7])
            if begin is None:
                continue
            x0, x1 = x(begin["t"]), max(x(e["t"]), x(begin["t"]) + 2)
            ly = lanes["nova"] + (row % 2) * 5
            row += 1
            parts.append(f'<rect x="{x0:.1f}" y="{ly}" width="{x1 - x0:.1f}" height="5" '
                         f'fill="#8c564b" opacity="0.7"><title>{html.escape(e["name"][:-7])} '
                         f'{begin["t"]:.1f}–{e["t"]:.1f} s (whole seconds)</title></rect>')
        elif e["source"] == "libvirt":
            colour = "#d62728" if e["name"] in ("paused", "resumed") else "#555"
            parts.append(f'<line x1="{x(e["t"]):.1f}" y1="{lanes["libvirt"]}" '
                         f'x2="{x(e["t"]):.1f}" y2="{lanes["libvirt"] + 12}" stroke="{colour}">'
                         f'<title>{html.escape(e["name"])} on {e.get("host")} at '
                         f'{e["t"]:.3f} s</title></line>')
        elif e["source"] == "tool":
            parts.append(f'<line x1="{x(e["t"]):.1f}" y1="{y + 18}" x2="{x(e["t"]):.1f}" '
                         f'y2="{y + 80}" stroke="#999" stroke-dasharray="2,2">'
                         f'<title>{html.escape(e["name"])} {e["t"]:.2f} s</title></line>')
    probe = [e for e in events if e["source"] == "probe"]
    if probe:
        x0, x1 = x(probe[0]["t"]), x(probe[-1]["t"])
        parts.append(f'<rect x="{x0:.1f}" y="{lanes["probe"]}" width="{max(x1 - x0, 2):.1f}" '
                     f'height="10" fill="#d62728"/>')
    for tick in range(0, int(end) + 1, max(1, int(end) // 10 or 1)):
        parts.append(_text(x(tick), y + 92, f"{tick}", 9, "middle", "#777"))
    return parts, y + 100


def _request_state(sent: float, reply: float | None, anatomy: dict, late_ms: float) -> str:
    if reply is None:
        return "lost"
    first_reply = anatomy.get("first_reply")
    if first_reply is not None and anatomy["silence_start"] <= sent < first_reply:
        return "held"
    return "late" if (reply - sent) * 1000.0 > late_ms else "on time"


def _zoom(record: MigrationRecord, events: list[dict], network: dict,
          y: float) -> tuple[list[str], float]:
    anatomy = network.get("anatomy") or {}
    requests = network.get("requests") or []
    if not anatomy or anatomy.get("ongoing") or not requests:
        return [], y
    origin = record.window[0]
    start = anatomy["silence_start"]
    stop = max(anatomy.get("recovered") or start, anatomy.get("first_reply") or start)
    lo, hi = (start - 0.04 - start) * 1000.0, (stop + 0.04 - start) * 1000.0
    x = _scale(lo, hi)

    def ms(probe_time: float) -> float:
        return (probe_time - start) * 1000.0

    parts = [_text(10, y + 12, "the outage (ms from the first unanswered request)", 11,
                   colour="#555")]
    for label, ly in (("requests", y + 28), ("replies", y + 48), ("phases", y + 68)):
        parts.append(_text(10, ly + 9, label))
    late_ms = max(20.0, 3 * anatomy.get("rtt_ms", 0.0) + 10.0)
    for sent, reply in requests:
        state = _request_state(sent, reply, anatomy, late_ms)
        colour = REQUEST_COLOURS[state]
        parts.append(f'<rect x="{x(ms(sent)) - 1:.1f}" y="{y + 26}" width="3" height="12" '
                     f'fill="{colour}"><title>sent {ms(sent):.1f} ms: {state}'
                     f'{"" if reply is None else f", reply {ms(reply):.1f} ms"}</title></rect>')
        if reply is not None and lo <= ms(reply) <= hi:
            parts.append(f'<circle cx="{x(ms(reply)):.1f}" cy="{y + 52}" r="2.5" '
                         f'fill="{colour}"/>')
    bars = []
    edge = 0.0
    for name, key in (("source stall", "source_stall_ms"), ("pause", "pause_ms"),
                      ("convergence", "convergence_ms"), ("resume lag", "resume_lag_ms"),
                      ("round trip", "rtt_ms"), ("recovery tail", "recovery_tail_ms")):
        bars.append((name, edge, edge + anatomy.get(key, 0.0)))
        edge += anatomy.get(key, 0.0)
    for name, begin, end in bars:
        if end > begin:
            parts.append(f'<rect x="{x(begin):.1f}" y="{y + 66}" width="{x(end) - x(begin):.1f}"'
                         f' height="12" fill="{PHASE_COLOURS[name]}"><title>{name} '
                         f'{end - begin:.1f} ms</title></rect>')
    for e in events:
        if e["source"] == "libvirt" and e["name"] in ("paused", "resumed"):
            at = ms(origin + e["t"])
            if lo <= at <= hi:
                parts.append(f'<line x1="{x(at):.1f}" y1="{y + 20}" x2="{x(at):.1f}" '
                             f'y2="{y + 82}" stroke="#000" stroke-dasharray="4,2"/>')
                parts.append(_text(x(at) + 2, y + 92, f"libvirt {e['name']}", 9))
    step = 25 if hi - lo < 300 else 100
    for tick in range(int(lo // step) * step, int(hi) + 1, step):
        if tick >= lo:
            parts.append(_text(x(tick), y + 104, f"{tick}", 9, "middle", "#777"))
    legend_x = LEFT
    for name, colour in list(REQUEST_COLOURS.items()) + list(PHASE_COLOURS.items()):
        parts.append(f'<rect x="{legend_x}" y="{y + 110}" width="9" height="9" '
                     f'fill="{colour}"/>')
        parts.append(_text(legend_x + 12, y + 119, name, 9))
        legend_x += 14 + 6 * len(name) + 10
    return parts, y + 126


def migration_svg(record: MigrationRecord) -> str:
    """One migration's two panels; empty when nothing was measured."""
    events: list[dict[str, Any]] = record.measurements.get("timeline") or []
    network = record.measurements.get("network") or {}
    if not events:
        return ""
    anatomy = network.get("anatomy") or {}
    title = (f"{record.vm} {record.direction} {record.source} → {record.target}: "
             f"{record.outcome}, {record.duration:.1f} s")
    if anatomy and not anatomy.get("ongoing"):
        stall = anatomy.get("source_stall_ms", 0.0)
        title += (f"; client downtime {anatomy['client_downtime_ms']:.0f} ms = "
                  + (f"source stall {stall:.0f} + " if stall else "") + "pause "
                  f"{anatomy['pause_ms']:.0f} + convergence {anatomy['convergence_ms']:.0f} + "
                  f"resume lag {anatomy['resume_lag_ms']:.0f} + rtt {anatomy['rtt_ms']:.1f}; "
                  f"tail {anatomy['recovery_tail_ms']:.0f} ms")
    parts = [_text(10, 14, title, 12)]
    overview, y = _overview(record, events, 20)
    parts += overview
    zoom, y = _zoom(record, events, network, y)
    parts += zoom
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{y + 10:.0f}" '
            f'font-family="sans-serif">{"".join(parts)}</svg>')


def round_trip_svgs(records: list[MigrationRecord]) -> list[str]:
    """Every migration of a round trip that has a timeline, in order."""
    return [svg for svg in (migration_svg(r) for r in records) if svg]


@plugin.configure(name="lm_timeline")
class TimelineChart(charts.OutputEmbeddedChart):
    """Migration timelines drawn as SVG, one under another (complete output only).

    ``data`` is a list of SVG documents, one per migration, as
    ``rally_lm.task.timeline_chart.migration_svg`` draws them.
    """

    widget = "EmbedChart"

    @classmethod
    def render_complete_data(cls, pdata: dict) -> dict:
        page = "<div>" + "<br/>".join(pdata["data"]) + "</div>"
        # As EmbeddedChart: a literal "</script>" would end the report's script.
        return {"title": pdata["title"], "widget": cls.widget,
                "data": {"source": None, "embedded": page.replace("/script>", "\\/script>")}}
