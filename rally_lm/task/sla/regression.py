"""SLA: no regression against a baseline run, at a stated confidence."""

from __future__ import annotations

from pathlib import Path

from rally.task import sla

from rally_lm.migration.driver import SUCCEEDED
from rally_lm.report import cells
from rally_lm.stats.change import compare, compare_success
from rally_lm.task.output import configuration_from_output, migrations_from_output

#: figure -> (Migrations column, quantile); success_rate is Fisher's test.
FIGURES = {"client_downtime_p50": ("client_downtime_ms", 0.5),
           "client_downtime_p95": ("client_downtime_ms", 0.95),
           "duration_p50": ("duration_s", 0.5), "duration_p95": ("duration_s", 0.95),
           "hypervisor_downtime_p50": ("hypervisor_downtime_ms", 0.5)}
DEFAULT_FIGURES = ["client_downtime_p50", "client_downtime_p95", "duration_p50",
                   "success_rate"]


@sla.configure(name="lm_regression")
class NoRegression(sla.SLA):
    """Live migration got no worse than in a baseline run (e.g. before an upgrade).

    Compares this task's migrations with the baseline's same cell (storage,
    tunnelling, flavor, policy: read from both tasks' labels, or the cell
    named by ``baseline_cell``): each figure's change with its interval and a
    permutation test (Fisher's exact test for the success rate, over planned
    migrations), as ``rally-lm compare`` does. Fails when any figure is
    worse beyond ``tolerance`` at ``confidence``; a change that cannot be
    told from noise at this n passes as inconclusive and says so. Fails, too,
    with nothing measured, with a baseline that cannot be read or has no
    matching cell. Figures are over the migrations that switched hosts.
    """

    CONFIG_SCHEMA = {
        "type": "object",
        "$schema": "http://json-schema.org/draft-07/schema#",
        "additionalProperties": False,
        "required": ["baseline"],
        "properties": {
            "baseline": {"type": "string", "pattern": r"^\S",
                         "description": "A Rally JSON report of the baseline run "
                                        "(rally task report UUID --json --out FILE)."},
            "baseline_cell": {"type": "string", "pattern": r"^\S",
                              "description": "Compare with this baseline cell (its name "
                                             "in rally-lm report, e.g. 'ceph / tunnelling "
                                             "off / lm.small') instead of the one whose "
                                             "labels match this task's."},
            "tolerance": {"type": "number", "minimum": 0, "maximum": 10,
                          "description": "The relative change that matters (0.1: 10 %; for "
                                         "the success rate, points)."},
            "confidence": {"type": "number", "minimum": 0.5, "maximum": 0.999,
                           "description": "Confidence of the intervals and tests (0.95)."},
            "figures": {"type": "array", "minItems": 1, "uniqueItems": True,
                        "items": {"enum": [*FIGURES, "success_rate"]},
                        "description": "What is judged (default: client downtime p50 and "
                                       "p95, duration p50, success rate)."},
        },
    }

    def __init__(self, criterion_value: dict) -> None:
        super().__init__(criterion_value)
        self.tolerance = criterion_value.get("tolerance", 0.10)
        self.confidence = criterion_value.get("confidence", 0.95)
        self.figures = list(criterion_value.get("figures", DEFAULT_FIGURES))
        self.wanted_cell = criterion_value.get("baseline_cell")
        self.rows: list[dict] = []
        self.labels: dict[str, str] = {}
        self.problem = ""
        self.baseline: cells.Cell | None = None
        self.baselines: list[cells.Cell] = []
        path = Path(criterion_value["baseline"]).expanduser()
        try:
            self.baselines = cells.pool(cells.load([path], split=False))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.problem = f"baseline {path} cannot be read: {type(exc).__name__}: {exc}"
        self.verdicts: list[str] = []
        self._judge()

    def add_iteration(self, iteration: dict) -> bool:
        output = iteration.get("output", {})
        self.rows += migrations_from_output(output)
        if not self.labels:
            self.labels = configuration_from_output(output)
        return self._judge()

    def merge(self, other: NoRegression) -> bool:
        self.rows += other.rows
        self.labels = self.labels or other.labels
        return self._judge()

    def _match(self) -> cells.Cell | None:
        if self.wanted_cell:
            return next((c for c in self.baselines if c.name == self.wanted_cell), None)
        key = cells.cell_key(self.labels)
        return next((c for c in self.baselines if c.key == key), None)

    def _judge(self) -> bool:
        self.verdicts = []
        if self.problem or not self.rows:
            self.success = False
            return self.success
        self.baseline = self._match()
        if self.baseline is None:
            self.success = False
            return self.success
        done = [r for r in self.rows if r["outcome"] in SUCCEEDED]
        base_done = [m for m in self.baseline.migrations if m["outcome"] in SUCCEEDED]
        worse = False
        for figure in self.figures:
            if figure == "success_rate":
                change = compare_success((len(base_done), self.baseline.total),
                                         (len(done), len(self.rows)), self.tolerance,
                                         self.confidence)
            else:
                name, q = FIGURES[figure]
                change = compare(name, cells.column(base_done, name), cells.column(done, name),
                                 q, self.tolerance, self.confidence)
            worse = worse or change.worse
            self.verdicts.append(f"{figure} {change.verdict} ({change.reason})")
        self.success = not worse
        return self.success

    def details(self) -> str:
        if self.problem:
            return f"{self.problem} - {self.status()}"
        if not self.rows:
            return f"nothing measured to compare with the baseline - {self.status()}"
        if self.baseline is None:
            names = ", ".join(c.name for c in self.baselines) or "none"
            wanted = self.wanted_cell or (f"{self.labels.get('storage', '?')} / tunnelling "
                                          f"{self.labels.get('tunnelling', '?')} / "
                                          f"{self.labels.get('flavor', '?')}")
            return f"the baseline has no cell {wanted} (it has: {names}) - {self.status()}"
        return (f"against baseline {self.baseline.task[:8]} ({self.baseline.name}), "
                f"±{self.tolerance:.0%} at {self.confidence:.0%}: "
                + "; ".join(self.verdicts) + f" - {self.status()}")
