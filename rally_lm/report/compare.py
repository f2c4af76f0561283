"""A candidate's cells against a baseline's: the change in every gated figure, with its
interval, its significance and a verdict (rally_lm.stats.change).

Cells are matched by what they are (storage, tunnelling, flavor, policy, dirty
rate). When the two sides share no cell and hold one each, those two are
compared - the way to ask "tunnelled against native" - and the pair says so.

Every figure is over the migrations that switched hosts (succeeded): a
migration that never left its host has no switchover to time. The success
rate covers every planned migration.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jinja2

from rally_lm.migration.driver import SUCCEEDED
from rally_lm.report.cells import Cell, column
from rally_lm.stats.change import Change, compare, compare_success
from rally_lm.stats.intervals import CONFIDENCE

TEMPLATES = Path(__file__).resolve().parent / "templates"
#: (Migrations column, quantile): the figures compared, more is worse in each.
FIGURES = (("client_downtime_ms", 0.5), ("client_downtime_ms", 0.95), ("duration_s", 0.5),
           ("duration_s", 0.95), ("hypervisor_downtime_ms", 0.5), ("tcp_max_stall_ms", 0.5))


@dataclasses.dataclass
class Pair:
    baseline: Cell
    candidate: Cell
    changes: list[Change]
    #: Why these two were paired although they are not the same cell ("" if they are).
    unlike: str = ""

    @property
    def worse(self) -> list[Change]:
        return [c for c in self.changes if c.worse]

    def to_dict(self) -> dict[str, Any]:
        return {"baseline": _side(self.baseline), "candidate": _side(self.candidate),
                "unlike": self.unlike, "changes": [c.to_dict() for c in self.changes]}


def _side(cell: Cell) -> dict[str, Any]:
    return {"cell": cell.name, "task": cell.task, "migrations": len(cell.migrations),
            "provenance": cell.provenance, "contended": cell.contended,
            "window": list(cell.window) if cell.window else None}


def switched(cell: Cell, name: str) -> list[float]:
    """A column over the migrations that switched hosts."""
    return column([m for m in cell.migrations if m["outcome"] in SUCCEEDED], name)


def changes(baseline: Cell, candidate: Cell, tolerance: float,
            confidence: float = CONFIDENCE) -> list[Change]:
    found = [compare(name, switched(baseline, name), switched(candidate, name), q,
                     tolerance, confidence) for name, q in FIGURES]

    def counts(cell: Cell) -> tuple[int, int]:
        return (sum(m["outcome"] in SUCCEEDED for m in cell.migrations), cell.total)
    return [*found, compare_success(counts(baseline), counts(candidate), 0.0, confidence)]


def pair(baseline: list[Cell], candidate: list[Cell], tolerance: float,
         confidence: float = CONFIDENCE,
         across: str | None = None) -> tuple[list[Pair], list[str]]:
    """The pairs to compare, and the cells left without a partner (named).

    ``across``: a label the two sides differ in on purpose (``network``:
    linuxbridge before, OVN after); cells alike in everything else are paired.
    """
    by_key = {c.key_across(across): c for c in baseline}
    pairs, alone = [], []
    for cell in candidate:
        if cell.key_across(across) in by_key:
            base = by_key.pop(cell.key_across(across))
            unlike = "" if base.key == cell.key else \
                f"across {across}: {base.labels.get(across, '-')} against " \
                f"{cell.labels.get(across, '-')}"
            pairs.append(Pair(base, cell, changes(base, cell, tolerance, confidence), unlike))
        else:
            alone.append(f"candidate {cell.name} ({cell.task[:8]})")
    alone += [f"baseline {c.name} ({c.task[:8]})" for c in by_key.values()]
    if not pairs and len(baseline) == 1 and len(candidate) == 1:
        base, cand = baseline[0], candidate[0]
        return [Pair(base, cand, changes(base, cand, tolerance, confidence),
                     unlike=f"different cells: {base.name} against {cand.name}")], []
    return pairs, alone


def render(pairs: list[Pair], alone: list[str], out: Path, tolerance: float,
           confidence: float) -> dict[str, Path]:
    """compare.json, compare.md and compare.html in ``out``."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             autoescape=jinja2.select_autoescape(["html", "html.j2"]),
                             trim_blocks=True, lstrip_blocks=True)
    data = {"pairs": pairs, "alone": alone, "tolerance": tolerance, "confidence": confidence,
            "worse": any(p.worse for p in pairs)}
    out.mkdir(parents=True, exist_ok=True)
    written = {"json": out / "compare.json", "md": out / "compare.md",
               "html": out / "compare.html"}
    written["json"].write_text(json.dumps({
        "tolerance": tolerance, "confidence": confidence, "worse": data["worse"],
        "alone": alone, "pairs": [p.to_dict() for p in pairs]}, indent=1))
    written["md"].write_text(env.get_template("compare.md.j2").render(**data))
    written["html"].write_text(env.get_template("compare.html.j2").render(**data))
    return written
