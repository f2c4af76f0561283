"""The seed's published results as cells of its own, to compare shapes with ours.

The seed (github.com/osic/benchmarking_live-migration) published one JSON
file per storage x tunnelling setting, ``benchmarker_results/
lvm_tun_<on|off>_<block|shared>_storage_*.json``. Per flavor:

* ``ITERATION``: per iteration (one direction of one round trip), each VM's
  migration time in seconds, as strings;
* ``DOWNTIME``: per VM, the sum over the whole run of its failed 0.5 s pings
  (its own method: 0 for most migrations, undercounting long outages - see
  docs/findings.md), as "x seconds";
* ``PACKETLOSS``: per VM, a sentence on its TCP stream.

"block storage" is its local-disk cloud (block migration), "shared storage"
its Ceph cloud. Absolute times are its 22-node hardware's; what carries over
is the shape: how one cell compares with another (``ratios``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import statistics
from pathlib import Path
from typing import Any

STORAGE_OF = {"block": "local", "shared": "ceph"}
FILE_NAME = re.compile(r"tun_(?P<tunnelling>on|off)_(?P<storage>block|shared)_storage")


@dataclasses.dataclass
class BaselineCell:
    storage: str
    tunnelling: str
    flavor: str
    #: Each iteration's migration durations in seconds (VMs that did not
    #: migrate in an iteration are absent from it).
    per_iteration: list[list[float]]
    iterations: int
    vms: int
    #: Per VM, the seed's summed ping failures over the run (seconds).
    downtime_sums_s: dict[str, float]
    tcp: dict[str, str]
    provenance: dict[str, str]

    @property
    def name(self) -> str:
        return f"{self.storage} / tunnelling {self.tunnelling} / {self.flavor}"

    @property
    def durations(self) -> list[float]:
        return [d for iteration in self.per_iteration for d in iteration]

    def evacuations(self) -> list[float]:
        """Per iteration, the sum of its VMs' migration times (they ran one at a time)."""
        return [sum(iteration) for iteration in self.per_iteration]

    def figures(self) -> dict[str, Any]:
        downtime = [s / self.iterations for s in self.downtime_sums_s.values()] \
            if self.iterations else []
        lost = sum(1 for text in self.tcp.values() if not text.startswith("No Loss"))
        return {"migrations": len(self.durations),
                "planned": self.iterations * self.vms,
                "duration_p50_s": statistics.median(self.durations) if self.durations else None,
                "duration_mean_s": statistics.fmean(self.durations) if self.durations else None,
                "evacuation_mean_s": statistics.fmean(self.evacuations())
                if self.iterations else None,
                "downtime_per_migration_s": statistics.fmean(downtime) if downtime else None,
                "tcp_streams_with_loss": lost}


def provenance(path: Path, source: str | None = None) -> dict[str, str]:
    """Where a baseline file came from: ``source`` ("owner/repo@commit:path") and a digest."""
    data = Path(path).read_bytes()
    found = {"file": str(path), "sha256": hashlib.sha256(data).hexdigest()}
    if source:
        repository, _, rest = source.partition("@")
        commit, _, inner = rest.partition(":")
        found.update(repository=repository, commit=commit, path=inner or Path(path).name)
    return found


def load(path: Path, source: str | None = None) -> list[BaselineCell]:
    """Every flavor of one seed result file, as cells."""
    match = FILE_NAME.search(Path(path).name)
    if not match:
        raise ValueError(f"{path}: not a seed result file name "
                         "(lvm_tun_<on|off>_<block|shared>_storage_*.json)")
    data = json.loads(Path(path).read_text())
    origin = provenance(Path(path), source)
    cells = []
    for flavor, run in sorted(data.items()):
        iterations = run.get("ITERATION", {})
        ordered = [iterations[k] for k in sorted(iterations, key=int)]
        per_iteration = [[float(v) for _vm, v in sorted(it.items())] for it in ordered]
        sums = {ip: float(str(v).split()[0]) for ip, v in run.get("DOWNTIME", {}).items()}
        cells.append(BaselineCell(
            storage=STORAGE_OF[match["storage"]], tunnelling=str(run.get("tunneling",
                                                                          match["tunnelling"])),
            flavor=flavor, per_iteration=per_iteration, iterations=len(ordered),
            vms=max((len(it) for it in ordered), default=0), downtime_sums_s=sums,
            tcp={ip: text.strip() for ip, text in run.get("PACKETLOSS", {}).items()},
            provenance=origin))
    return cells


# -- shapes ---------------------------------------------------------------------------------

#: (what is compared, the cell key that changes, its two values)
COMPARISONS = [
    ("tunnelled vs native", "tunnelling", "on", "off"),
    ("local (block) vs ceph (shared)", "storage", "local", "ceph"),
    ("large vs small", "flavor", "large", "small"),
    ("medium vs small", "flavor", "medium", "small"),
]
#: Ratios this close to 1 count as "no difference".
SAME = 0.05


def _size(flavor: str) -> str:
    return next((s for s in ("small", "medium", "large") if s in flavor), flavor)


def _direction(ratio: float | None) -> str | None:
    if ratio is None:
        return None
    return "higher" if ratio > 1 + SAME else "lower" if ratio < 1 - SAME else "same"


def ratios(ours: dict[tuple[str, str, str], dict[str, Any]],
           seed: dict[tuple[str, str, str], dict[str, Any]]) -> list[dict[str, Any]]:
    """Ratios between cells, ours beside the seed's, for duration and evacuation.

    ``ours``/``seed``: (storage, tunnelling, flavor size) -> {"duration_p50_s",
    "evacuation_mean_s", "refused": why or None}.
    """
    rows = []
    keys = {"storage": 0, "tunnelling": 1, "flavor": 2}
    for title, key, high, low in COMPARISONS:
        position = keys[key]
        for cell in sorted({k for k in (*ours, *seed) if k[position] == low}):
            other = list(cell)
            other[position] = high
            pair = (tuple(other), cell)
            for metric in ("duration_p50_s", "evacuation_mean_s"):
                row = {"comparison": title, "cell": " / ".join(c for i, c in enumerate(cell)
                                                               if i != position),
                       "metric": metric}
                for who, table in (("ours", ours), ("seed", seed)):
                    a, b = table.get(pair[0], {}), table.get(pair[1], {})
                    refused = a.get("refused") or b.get("refused")
                    value = None
                    if not refused and a.get(metric) and b.get(metric):
                        value = a[metric] / b[metric]
                    row[who] = value
                    row[f"{who}_note"] = refused or ""
                if row["ours"] is None and row["seed"] is None:
                    continue
                directions = (_direction(row["ours"]), _direction(row["seed"]))
                row["shape"] = ("agree" if directions[0] == directions[1] else "differ") \
                    if None not in directions else "not comparable"
                rows.append(row)
    return rows


def seed_table(cells: list[BaselineCell]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(c.storage, c.tunnelling, _size(c.flavor)): c.figures() for c in cells}


def ours_table(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Our cells (report rows: {"cell", "f"}) keyed like the seed's."""
    table = {}
    for row in rows:
        cell, figures = row["cell"], row["f"]
        refused = None
        if figures["succeeded"] == 0 and figures["total"]:
            reasons = {m["reason"] for m in figures["failed"] if m["reason"]}
            refused = "every migration failed: " + "; ".join(sorted(reasons))[:160]
        drains = [figures[f"evacuation_{d}_s"]["mean"] for d in ("out", "back")
                  if figures[f"evacuation_{d}_s"]["mean"] is not None]
        table[(cell.storage, cell.tunnelling, _size(cell.flavor))] = {
            "duration_p50_s": figures["duration_s"]["p50"],
            "evacuation_mean_s": statistics.fmean(drains) if drains else None,
            "refused": refused}
    return table
