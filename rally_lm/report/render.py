"""The comparison document: HTML (self-contained, offline) and Markdown."""

from __future__ import annotations

import datetime
import json
from html import escape
from pathlib import Path
from typing import Any

import jinja2

from rally_lm.migration.driver import SUCCEEDED
from rally_lm.report import baseline
from rally_lm.report.cells import Cell, figures
from rally_lm.task.output import MIN_FOR_P95, PERCENTILE_METHOD

TEMPLATES = Path(__file__).parent / "templates"
COLORS = {"p50": "#4c78a8", "p95": "#f58518", "max": "#e45756"}


def _utc(wall: float | None) -> str:
    if wall is None:
        return "–"
    return datetime.datetime.fromtimestamp(wall, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _bounds(pair: list | None, digits: int) -> str:
    low, high = pair or (None, None)
    if low is None and high is None:
        return ""

    def side(value: float | None) -> str:
        return "?" if value is None else f"{value:.{digits}f}"
    return f" [{side(low)}, {side(high)}]"


def _spread(stats: dict, digits: int = 1) -> str:
    """"p50 [interval] / p95 [interval] / max (n)"; the p95 only from MIN_FOR_P95 values
    on; intervals are 95 % (order statistics), ? where n cannot bound a side."""
    if not stats.get("count"):
        return "–"
    p95 = _fmt(stats["p95"], digits) + (_bounds(stats.get("p95_ci"), digits)
                                        if stats["p95"] is not None else "")
    return (f"{_fmt(stats['p50'], digits)}{_bounds(stats.get('p50_ci'), digits)} / {p95} / "
            f"{_fmt(stats['max'], digits)} (n={stats['count']})")


def bar_chart(title: str, unit: str, rows: list[tuple[str, dict]]) -> str:
    """Grouped horizontal bars (p50, p95, max) per cell, as inline SVG; cells without a
    value are left out (a cell whose migrations never switched hosts has no downtime)."""
    rows = [(label, s) for label, s in rows if s.get("count")]
    values = [s[k] for _label, s in rows for k in ("p50", "p95", "max") if s[k] is not None]
    top = max(values, default=1.0) or 1.0
    width, left, bar, gap = 760, 260, 12, 14
    height = 40 + len(rows) * (3 * bar + gap) + 20
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" aria-label="{escape(title)}">',
             f'<text x="0" y="16" font-size="14" font-weight="bold">{escape(title)} '
             f'({escape(unit)})</text>']
    y = 32
    for label, stats in rows:
        parts.append(f'<text x="0" y="{y + 2 * bar}" font-size="12">{escape(label)}</text>')
        for i, key in enumerate(("p50", "p95", "max")):
            value = stats[key]
            length = 0 if value is None else (width - left - 80) * value / top
            shown = _fmt(value) if value is not None or key != "p95" else \
                f"n={stats.get('count', 0)} < {MIN_FOR_P95}"
            parts.append(f'<rect x="{left}" y="{y + i * bar}" width="{length:.1f}" '
                         f'height="{bar - 2}" fill="{COLORS[key]}"/>')
            parts.append(f'<text x="{left + length + 4:.1f}" y="{y + i * bar + bar - 3}" '
                         f'font-size="10">{key} {escape(shown)}</text>')
        y += 3 * bar + gap
    parts.append("</svg>")
    return "".join(parts)


#: The phases that make up the client downtime (the recovery tail follows it).
ANATOMY_COLORS = {"source_stall_ms": "#8c564b", "pause_ms": "#d62728", "convergence_ms": "#9467bd",
                  "resume_lag_ms": "#ff7f0e"}


def anatomy_chart(rows: list[tuple[str, dict]]) -> str:
    """Median source stall, pause, convergence and resume lag per cell, stacked, with the
    median client downtime marked beside them.

    Medians do not add up: the stack is the sum of each phase's median, not the
    median of the sums, so it can miss the client downtime's median either way
    (by one round trip at least, which no phase holds). The recovery tail comes
    after the client downtime and is not in the stack.
    """
    drawn = [(label, a) for label, a in rows if a and a["client_downtime_ms"]["count"]]
    if not drawn:
        return ""
    totals = [max(sum((a[k]["p50"] or 0.0) for k in ANATOMY_COLORS),
                  a["client_downtime_ms"]["p50"] or 0.0) for _label, a in drawn]
    top = max(totals, default=1.0) or 1.0
    width, left, bar = 760, 260, 14
    height = 70 + len(drawn) * (bar + 10)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             'role="img" aria-label="Outage anatomy">',
             '<text x="0" y="16" font-size="14" font-weight="bold">Outage anatomy: each '
             'phase\'s median, stacked; | the client downtime\'s median (ms)</text>']
    x = left
    for key, colour in ANATOMY_COLORS.items():
        parts.append(f'<rect x="{x}" y="24" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{x + 13}" y="33" font-size="10">{key[:-3].replace("_", " ")}'
                     '</text>')
        x += 120
    parts.append('<text x="0" y="52" font-size="10">Medians do not add up: the stack is the '
                 'sum of the phases\' medians, not the median of the sums (one round trip is '
                 'in no phase); the recovery tail follows and is left out.</text>')
    y = 60
    for label, anatomy in drawn:
        parts.append(f'<text x="0" y="{y + bar - 3}" font-size="12">{escape(label)}</text>')
        x = float(left)
        for key, colour in ANATOMY_COLORS.items():
            value = anatomy[key]["p50"] or 0.0
            length = (width - left - 80) * value / top
            parts.append(f'<rect x="{x:.1f}" y="{y}" width="{length:.1f}" height="{bar}" '
                         f'fill="{colour}"><title>{key} p50 {value:.1f} ms</title></rect>')
            x += length
        client = anatomy["client_downtime_ms"]["p50"] or 0.0
        mark = left + (width - left - 80) * client / top
        parts.append(f'<line x1="{mark:.1f}" y1="{y - 2}" x2="{mark:.1f}" y2="{y + bar + 2}" '
                     f'stroke="#000" stroke-width="2"><title>client downtime p50 '
                     f'{client:.1f} ms</title></line>')
        parts.append(f'<text x="{max(x, mark) + 4:.1f}" y="{y + bar - 3}" font-size="10">'
                     f'phases {sum((anatomy[k]["p50"] or 0.0) for k in ANATOMY_COLORS):.0f} '
                     f'| client {client:.0f}</text>')
        y += bar + 10
    parts.append("</svg>")
    return "".join(parts)


POLICY_COLORS = ("#4c78a8", "#e45756", "#54a24b", "#f58518", "#b279a2", "#9d755d", "#72b7b2")


def policy_points(cells: list[Cell], column: str) -> dict[str, list[tuple[float, float, bool]]]:
    """Per policy: (dirty rate / link rate, the column's value, succeeded) per migration.

    The dirty rate is the one measured just before each migration; the link
    rate is the cell's shaped rate. Migrations lacking either are left out.
    """
    points: dict[str, list[tuple[float, float, bool]]] = {}
    for cell in cells:
        link = cell.link_mib_s
        if not cell.policy or not link:
            continue
        for m in cell.migrations:
            dirty, value = m.get("dirty_rate_mib_s"), m.get(column)
            if dirty is None or value is None:
                continue
            points.setdefault(cell.policy, []).append(
                (dirty / link, float(value), m["outcome"] in SUCCEEDED))
    return points


def scatter_chart(title: str, unit: str, points: dict[str, list[tuple[float, float, bool]]]
                  ) -> str:
    """One dot per migration (hollow: did not succeed), coloured by policy, as inline SVG."""
    if not points:
        return ""
    xs = [x for series in points.values() for x, _y, _ok in series]
    ys = [y for series in points.values() for _x, y, _ok in series]
    x_top, y_top = max(max(xs), 1.0) * 1.05, (max(ys) or 1.0) * 1.05
    width, height, left, bottom, top = 760, 320, 60, 40, 40
    plot_w, plot_h = width - left - 180, height - top - bottom

    def px(x: float) -> float:
        return left + plot_w * x / x_top

    def py(y: float) -> float:
        return top + plot_h * (1 - y / y_top)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" aria-label="{escape(title)}">',
             f'<text x="0" y="16" font-size="14" font-weight="bold">{escape(title)} '
             f'({escape(unit)})</text>',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" '
             f'y2="{top + plot_h}" stroke="#333"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#333"/>',
             f'<line x1="{px(1.0):.1f}" y1="{top}" x2="{px(1.0):.1f}" y2="{top + plot_h}" '
             'stroke="#999" stroke-dasharray="4 3"/>',
             f'<text x="{px(1.0) + 3:.1f}" y="{top + 10}" font-size="10">dirty = link</text>',
             f'<text x="{left + plot_w / 2 - 80:.1f}" y="{height - 8}" font-size="11">'
             'dirty rate ÷ link bandwidth</text>',
             f'<text x="4" y="{top + plot_h + 4}" font-size="10">0</text>',
             f'<text x="4" y="{top + 10}" font-size="10">{_fmt(y_top / 1.05)}</text>',
             f'<text x="{left + plot_w - 20:.1f}" y="{top + plot_h + 14}" font-size="10">'
             f'{x_top / 1.05:.2f}</text>']
    for index, (policy, series) in enumerate(sorted(points.items())):
        colour = POLICY_COLORS[index % len(POLICY_COLORS)]
        parts.append(f'<circle cx="{left + plot_w + 20}" cy="{top + 6 + 16 * index}" r="5" '
                     f'fill="{colour}"/><text x="{left + plot_w + 30}" '
                     f'y="{top + 10 + 16 * index}" font-size="11">{escape(policy)}</text>')
        for x, y, ok in series:
            fill = colour if ok else "none"
            parts.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="4" fill="{fill}" '
                         f'stroke="{colour}"><title>{escape(policy)}: {x:.2f}, {y:.1f} {unit}'
                         f'{"" if ok else " (did not succeed)"}</title></circle>')
    parts.append(f'<text x="{left + plot_w + 20}" y="{top + 16 * len(points) + 16}" '
                 'font-size="10">hollow: did not succeed</text></svg>')
    return "".join(parts)


def build(cells: list[Cell], title: str = "Live migration: storage x tunnelling x flavor",
          note: str = "", seed: list | None = None,
          not_run: dict[str, str] | None = None,
          across_sessions: bool = False) -> dict[str, Any]:
    ordered = sorted(cells, key=lambda c: (c.storage, c.tunnelling, c.flavor, c.policy or "",
                                           float(c.labels.get("dirty_rate_mib") or 0), c.task))
    policies = any(c.policy for c in ordered)
    rows = [{"cell": c, "f": figures(c)} for c in ordered]
    seed = seed or []
    shapes = baseline.ratios(baseline.ours_table(rows), baseline.seed_table(seed),
                             across_sessions) if seed else []
    charts = [chart for chart in [
        scatter_chart("Client-perceived downtime against dirty rate ÷ link, per policy", "ms",
                      policy_points(ordered, "client_downtime_ms")),
        scatter_chart("Migration duration against dirty rate ÷ link, per policy", "s",
                      policy_points(ordered, "duration_s")),
        anatomy_chart([(r["cell"].name, r["f"]["anatomy"]) for r in rows]),
        bar_chart("Client-perceived downtime per migration", "ms",
                  [(r["cell"].name, r["f"]["client_downtime_ms"]) for r in rows]),
        bar_chart("Hypervisor downtime per migration", "ms",
                  [(r["cell"].name, r["f"]["hypervisor_downtime_ms"]) for r in rows]),
        bar_chart("Migration duration (API call to done)", "s",
                  [(r["cell"].name, r["f"]["duration_s"]) for r in rows]),
        bar_chart("Evacuation: drain the host", "s",
                  [(r["cell"].name, r["f"]["evacuation_out_s"]) for r in rows]),
        bar_chart("Evacuation: bring the VMs back", "s",
                  [(r["cell"].name, r["f"]["evacuation_back_s"]) for r in rows]),
    ] if chart]
    sessions = sorted({c.session for c in ordered if any(c.session)})
    return {"title": title, "note": note, "rows": rows, "charts": charts,
            "sessions": sessions, "utc": _utc,
            "seed": [{"cell": c, "f": c.figures()} for c in seed], "shapes": shapes,
            "not_run": not_run or {}, "policies": policies,
            "provenance": sorted({json.dumps(c.provenance, sort_keys=True) for c in seed}),
            "percentile_method": PERCENTILE_METHOD, "min_for_p95": MIN_FOR_P95,
            "generated": datetime.datetime.now(datetime.timezone.utc).strftime(
                "%Y-%m-%d %H:%M UTC")}


def render(cells: list[Cell], out_dir: Path, note: str = "", baseline: list | None = None,
           not_run: dict[str, str] | None = None,
           title: str = "Live migration: storage x tunnelling x flavor",
           across_sessions: bool = False) -> tuple[Path, Path]:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             autoescape=jinja2.select_autoescape(["html", "html.j2"]),
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = _fmt
    env.filters["spread"] = _spread
    env.filters["fromjson"] = json.loads
    data = build(cells, title=title, note=note, seed=baseline, not_run=not_run,
                 across_sessions=across_sessions)
    out_dir.mkdir(parents=True, exist_ok=True)
    html = out_dir / "comparison.html"
    markdown = out_dir / "comparison.md"
    html.write_text(env.get_template("comparison.html.j2").render(**data))
    markdown.write_text(env.get_template("comparison.md.j2").render(**data))
    return html, markdown
