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

Its record has two flaws, handled here and said in the comparison:

* iterations with fewer VMs than the others (a VM that did not migrate):
  *incomplete*; an evacuation (the sum of one iteration's migration times,
  the seed's own definition) is taken over complete iterations only;
* durations at Rally's ``nova_server_live_migrate_timeout`` (400 s; its
  plugin waited with Rally's helper): *probable timeouts*, the wait's limit
  rather than a migration's time; left out of durations and evacuations.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from rally_lm.report.cells import drain_sums, switched
from rally_lm.stats.intervals import Interval, bootstrap_ratio

STORAGE_OF = {"block": "local", "shared": "ceph"}
#: Rally's nova_server_live_migrate_timeout, which the seed's plugin waited with.
RALLY_WAIT_TIMEOUT_S = 400.0
#: A duration this close to that timeout is taken for it.
TIMEOUT_MARGIN_S = 10.0
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

    @staticmethod
    def timed_out(duration: float) -> bool:
        """A duration at Rally's wait timeout: the wait's limit, not a migration's time."""
        return abs(duration - RALLY_WAIT_TIMEOUT_S) <= TIMEOUT_MARGIN_S

    @property
    def durations(self) -> list[float]:
        """Every recorded migration time but the probable timeouts."""
        return [d for iteration in self.per_iteration for d in iteration
                if not self.timed_out(d)]

    @property
    def probable_timeouts(self) -> int:
        return sum(self.timed_out(d) for it in self.per_iteration for d in it)

    @property
    def complete_iterations(self) -> list[list[float]]:
        """Iterations with every VM recorded and no probable timeout."""
        return [it for it in self.per_iteration
                if len(it) == self.vms and not any(self.timed_out(d) for d in it)]

    def evacuations(self) -> list[float]:
        """Per complete iteration, the sum of its VMs' migration times (they ran one at a
        time): the seed's "evacuation"."""
        return [sum(iteration) for iteration in self.complete_iterations]

    def figures(self) -> dict[str, Any]:
        downtime = [s / self.iterations for s in self.downtime_sums_s.values()] \
            if self.iterations else []
        lost = sum(1 for text in self.tcp.values() if not text.startswith("No Loss"))
        evacuations = self.evacuations()
        return {"migrations": sum(len(it) for it in self.per_iteration),
                "planned": self.iterations * self.vms,
                "probable_timeouts": self.probable_timeouts,
                "incomplete_iterations": sum(len(it) < self.vms for it in self.per_iteration),
                "duration_p50_s": statistics.median(self.durations) if self.durations else None,
                "duration_mean_s": statistics.fmean(self.durations) if self.durations else None,
                "evacuation_mean_s": statistics.fmean(evacuations) if evacuations else None,
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
#: Ratios within this of 1 count as "no difference" (the equivalence band).
SAME = 0.10
METRICS = ("duration p50", "evacuation mean")


def _size(flavor: str) -> str:
    return next((s for s in ("small", "medium", "large") if s in flavor), flavor)


def verdict(ours: Interval, seed: Interval) -> tuple[str, str]:
    """(agree | disagree | inconclusive, why) from two ratios' intervals.

    They disagree when the intervals do not overlap; agree when they overlap
    and say the same thing clearly: both above 1 + SAME, both below
    1 / (1 + SAME), or both inside that band; else it is inconclusive, with
    the n per cell that would narrow ours enough (intervals narrow as
    1 / sqrt(n)).
    """
    if not ours.bounded or not seed.bounded:
        return "inconclusive", "a side has too few values for an interval"
    up, down = 1.0 + SAME, 1.0 / (1.0 + SAME)

    def side(interval: Interval) -> str | None:
        if interval.low > up:
            return "higher"
        if interval.high < down:
            return "lower"
        if down <= interval.low and interval.high <= up:
            return "same"
        return None
    if ours.high < seed.low or seed.high < ours.low:
        return "disagree", "the intervals do not overlap"
    if side(ours) is not None and side(ours) == side(seed):
        return "agree", f"both {side(ours)}"
    return "inconclusive", _more(ours, up) or "our interval straddles the band"


def _more(ours: Interval, up: float) -> str:
    if not ours.estimate or ours.estimate <= 0 or ours.low <= 0:
        return ""
    est, half = math.log(ours.estimate), (math.log(ours.high) - math.log(ours.low)) / 2
    needed = abs(abs(est) - math.log(up))
    if needed <= 1e-9 or half <= 0:
        return ""
    return f"about {math.ceil(ours.n * (half / needed) ** 2)} migrations per cell would decide"


def ratios(ours: dict[tuple[str, str, str], dict[str, Any]],
           seed: dict[tuple[str, str, str], dict[str, Any]],
           across_sessions: bool = False) -> list[dict[str, Any]]:
    """Ratios between cells with their intervals, ours beside the seed's, and a verdict.

    ``ours``/``seed``: (storage, tunnelling, flavor size) -> {"durations": [...],
    "evacuations": [...], "refused": why or None, "session": ...}. Our cells
    of different sessions (boot of the benchmark host, rally_lm commit) are
    not paired: the same cell varies more between sessions than many of
    these ratios do; nor are cells whose session is unknown (recorded before
    rally_lm kept its provenance) - unless ``across_sessions``, and then the
    note says so.
    """
    rows = []
    keys = {"storage": 0, "tunnelling": 1, "flavor": 2}
    for title, key, high, low in COMPARISONS:
        position = keys[key]
        for cell in sorted({k for k in (*ours, *seed) if k[position] == low}):
            other = list(cell)
            other[position] = high
            pair = (tuple(other), cell)
            for metric, values, statistic in (
                    ("duration p50", "durations", None),
                    ("evacuation mean", "evacuations", lambda x: np.mean(x, axis=-1))):
                row = {"comparison": title, "cell": " / ".join(c for i, c in enumerate(cell)
                                                               if i != position),
                       "metric": metric}
                for who, table in (("ours", ours), ("seed", seed)):
                    a, b = table.get(pair[0], {}), table.get(pair[1], {})
                    note = a.get("refused") or b.get("refused") or ""
                    unpaired = _unpaired(a, b) if who == "ours" and a and b else ""
                    if not note and unpaired and not across_sessions:
                        note = f"not paired: {unpaired}"
                    elif not note and unpaired:
                        row["paired_anyway"] = unpaired
                    interval = None
                    if not note and a.get(values) and b.get(values):
                        interval = bootstrap_ratio(a[values], b[values], statistic=statistic)
                    row[who] = interval
                    row[f"{who}_note"] = note
                if row["ours"] is None and row["seed"] is None:
                    continue
                row["shape"], row["why"] = verdict(row["ours"], row["seed"]) \
                    if row["ours"] is not None and row["seed"] is not None \
                    else ("not comparable", "")
                rows.append(row)
    return rows


def _unpaired(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Why two of our cells should not be paired ("" when they may)."""
    if not (a.get("session") or ("",))[0] or not (b.get("session") or ("",))[0]:
        return "session unknown (recorded before rally_lm kept its provenance)"
    if a.get("session") != b.get("session"):
        return f"different sessions ({_session(a)} against {_session(b)})"
    return ""


def _session(entry: dict[str, Any]) -> str:
    boot, commit = entry.get("session") or ("", "")
    return f"boot {boot[:8] or '?'}, commit {commit or '?'}"


def seed_table(cells: list[BaselineCell]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(c.storage, c.tunnelling, _size(c.flavor)):
            {"durations": c.durations, "evacuations": c.evacuations(), "refused": None}
            for c in cells}


def ours_table(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Our cells (report rows: {"cell", "f"}) keyed like the seed's, with the seed's
    definitions: durations of migrations that succeeded, evacuation = the sum of one
    drain's migration times."""
    table = {}
    for row in rows:
        cell, figures = row["cell"], row["f"]
        refused = None
        if figures["succeeded"] == 0 and figures["total"]:
            reasons = {m["reason"] for m in figures["failed"] if m["reason"]}
            refused = "every migration failed: " + "; ".join(sorted(reasons))[:160]
        table[(cell.storage, cell.tunnelling, _size(cell.flavor))] = {
            "durations": switched(cell.migrations, "duration_s"),
            "evacuations": drain_sums(cell), "refused": refused, "session": cell.session}
    return table
