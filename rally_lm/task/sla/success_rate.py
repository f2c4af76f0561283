"""SLA: share of live migrations that succeeded."""

from __future__ import annotations

from rally.task import sla

from rally_lm.migration.driver import SUCCEEDED
from rally_lm.task.output import migrations_from_output


@sla.configure(name="lm_success_rate")
class SuccessRate(sla.SLA):
    """At least this percentage of the planned live migrations succeed (the seed: 233/240).

    Every planned migration counts: skipped ones, and those whose outcome the
    tool could not learn (unknown, tool_error), count as not succeeded. A
    round trip that broke before reporting counts as one failure; a run in
    which nothing ran fails.
    """

    CONFIG_SCHEMA = {
        "type": "object",
        "$schema": "http://json-schema.org/draft-07/schema#",
        "additionalProperties": False,
        "required": ["min_percent"],
        "properties": {"min_percent": {"type": "number", "minimum": 0, "maximum": 100,
                                       "description": "Lowest acceptable success rate, %."}},
    }

    def __init__(self, criterion_value: dict) -> None:
        super().__init__(criterion_value)
        self.minimum = criterion_value["min_percent"]
        self.total = 0
        self.succeeded = 0
        self.failures: dict[str, int] = {}
        # Rally may never feed an iteration (a context failed): that is no pass.
        self._judge()

    def add_iteration(self, iteration: dict) -> bool:
        rows = migrations_from_output(iteration.get("output", {}))
        if iteration.get("error"):
            # The round trip broke: whatever it could not do counts as one failure.
            rows = [*rows, {"outcome": "iteration_error"}]
        for row in rows:
            self.total += 1
            if row["outcome"] in SUCCEEDED:
                self.succeeded += 1
            else:
                self.failures[row["outcome"]] = self.failures.get(row["outcome"], 0) + 1
        return self._judge()

    def merge(self, other: SuccessRate) -> bool:
        self.total += other.total
        self.succeeded += other.succeeded
        for outcome, count in other.failures.items():
            self.failures[outcome] = self.failures.get(outcome, 0) + count
        return self._judge()

    def _judge(self) -> bool:
        self.success = self.total > 0 and 100.0 * self.succeeded / self.total >= self.minimum
        return self.success

    def details(self) -> str:
        if not self.total:
            return f"no live migration ran - {self.status()}"
        rate = 100.0 * self.succeeded / self.total
        failed = ", ".join(f"{k}: {v}" for k, v in sorted(self.failures.items()))
        return (f"{self.succeeded}/{self.total} planned live migrations succeeded ({rate:.1f}% >= "
                f"{self.minimum:g}%){' - failed: ' + failed if failed else ''} - {self.status()}")
