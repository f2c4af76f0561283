"""SLAs: how long one live migration, and one host drain, may take."""

from __future__ import annotations

from rally.task import sla

from rally_lm.task.output import migrations_from_output

DURATION_SCHEMA = {
    "type": "object",
    "$schema": "http://json-schema.org/draft-07/schema#",
    "additionalProperties": False,
    "required": ["max_seconds"],
    "properties": {"max_seconds": {"type": "number", "exclusiveMinimum": 0,
                                   "maximum": 604800}},
}


class _MaxSeconds(sla.SLA):
    CONFIG_SCHEMA = DURATION_SCHEMA
    what = ""

    def __init__(self, criterion_value: dict) -> None:
        super().__init__(criterion_value)
        self.limit = criterion_value["max_seconds"]
        self.longest: float | None = None

    def _seen(self, value: float) -> None:
        self.longest = value if self.longest is None else max(self.longest, value)

    def _judge(self) -> bool:
        self.success = self.longest is None or self.longest <= self.limit
        return self.success

    def merge(self, other: _MaxSeconds) -> bool:
        if other.longest is not None:
            self._seen(other.longest)
        return self._judge()

    def details(self) -> str:
        shown = "none measured" if self.longest is None else f"{self.longest:.2f}s"
        return f"longest {self.what} {shown} <= {self.limit:g}s - {self.status()}"


@sla.configure(name="lm_max_migration_duration")
class MaxMigrationDuration(_MaxSeconds):
    """No successful live migration takes longer than this (API call to done)."""

    what = "live migration"

    def add_iteration(self, iteration: dict) -> bool:
        for row in migrations_from_output(iteration.get("output", {})):
            if row["outcome"] in ("completed", "timeout_forced") and row["duration_s"]:
                self._seen(row["duration_s"])
        return self._judge()


@sla.configure(name="lm_max_evacuation_duration")
class MaxEvacuationDuration(_MaxSeconds):
    """Draining the host (or bringing its VMs back) takes no longer than this."""

    what = "host drain"

    def add_iteration(self, iteration: dict) -> bool:
        for action in iteration.get("atomic_actions", []):
            if action["name"].startswith("nova.drain_host_") and action.get("finished_at"):
                self._seen(action["finished_at"] - action["started_at"])
        return self._judge()
