"""The comparison document: HTML (self-contained, offline) and Markdown."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import jinja2

from rally_lm.report.cells import Cell, figures

TEMPLATES = Path(__file__).parent / "templates"
COLORS = {"p50": "#4c78a8", "p95": "#f58518", "max": "#e45756"}


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def bar_chart(title: str, unit: str, rows: list[tuple[str, dict]]) -> str:
    """Grouped horizontal bars (p50, p95, max) per cell, as inline SVG."""
    values = [s[k] for _label, s in rows for k in ("p50", "p95", "max") if s[k] is not None]
    top = max(values, default=1.0) or 1.0
    width, left, bar, gap = 760, 260, 12, 14
    height = 40 + len(rows) * (3 * bar + gap) + 20
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" aria-label="{title}">',
             f'<text x="0" y="16" font-size="14" font-weight="bold">{title} ({unit})</text>']
    y = 32
    for label, stats in rows:
        parts.append(f'<text x="0" y="{y + 2 * bar}" font-size="12">{label}</text>')
        for i, key in enumerate(("p50", "p95", "max")):
            value = stats[key]
            length = 0 if value is None else (width - left - 80) * value / top
            parts.append(f'<rect x="{left}" y="{y + i * bar}" width="{length:.1f}" '
                         f'height="{bar - 2}" fill="{COLORS[key]}"/>')
            parts.append(f'<text x="{left + length + 4:.1f}" y="{y + i * bar + bar - 3}" '
                         f'font-size="10">{key} {_fmt(value)}</text>')
        y += 3 * bar + gap
    parts.append("</svg>")
    return "".join(parts)


def build(cells: list[Cell], title: str = "Live migration: storage x tunnelling x flavor",
          note: str = "") -> dict[str, Any]:
    ordered = sorted(cells, key=lambda c: (c.storage, c.tunnelling, c.flavor, c.task))
    rows = [{"cell": c, "f": figures(c)} for c in ordered]
    charts = [
        bar_chart("Network downtime per migration", "ms",
                  [(r["cell"].name, r["f"]["network_downtime_ms"]) for r in rows]),
        bar_chart("Hypervisor downtime per migration", "ms",
                  [(r["cell"].name, r["f"]["hypervisor_downtime_ms"]) for r in rows]),
        bar_chart("Migration duration (API call to done)", "s",
                  [(r["cell"].name, r["f"]["duration_s"]) for r in rows]),
        bar_chart("Evacuation (drain one host)", "s",
                  [(r["cell"].name, r["f"]["evacuation_s"]) for r in rows]),
    ]
    return {"title": title, "note": note, "rows": rows, "charts": charts,
            "generated": datetime.datetime.now(datetime.UTC).strftime(
                "%Y-%m-%d %H:%M UTC")}


def render(cells: list[Cell], out_dir: Path, note: str = "") -> tuple[Path, Path]:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             autoescape=jinja2.select_autoescape(["html"]),
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = _fmt
    data = build(cells, note=note)
    out_dir.mkdir(parents=True, exist_ok=True)
    html = out_dir / "comparison.html"
    markdown = out_dir / "comparison.md"
    html.write_text(env.get_template("comparison.html.j2").render(**data))
    markdown.write_text(env.get_template("comparison.md.j2").render(**data))
    return html, markdown
