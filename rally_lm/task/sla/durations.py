"""SLAs: how long one live migration, and one host drain, may take."""

from __future__ import annotations

from rally.task import sla

from rally_lm.migration.driver import SUCCEEDED
from rally_lm.task.output import drains_from_output, migrations_from_output

DURATION_SCHEMA = {
    "type": "object",
    "$schema": "http://json-schema.org/draft-07/schema#",
    "additionalProperties": False,
    "required": ["max_seconds"],
    "properties": {"max_seconds": {"type": "number", "exclusiveMinimum": 0,
                                   "maximum": 604800,
                                   "description": "Limit in seconds."}},
}


class _MaxSeconds(sla.SLA):
    CONFIG_SCHEMA = DURATION_SCHEMA
    what = ""
    nothing = ""

    def __init__(self, criterion_value: dict) -> None:
        super().__init__(criterion_value)
        self.limit = criterion_value["max_seconds"]
        self.longest: float | None = None
        self.count = 0
        # Rally may never feed an iteration (a context failed): that is no pass.
        self._judge()

    def _seen(self, value: float) -> None:
        self.count += 1
        self.longest = value if self.longest is None else max(self.longest, value)

    def _judge(self) -> bool:
        # Nothing measured never passes.
        self.success = self.longest is not None and self.longest <= self.limit
        return self.success

    def merge(self, other: _MaxSeconds) -> bool:
        if other.longest is not None:
            self.longest = other.longest if self.longest is None \
                else max(self.longest, other.longest)
        self.count += other.count
        return self._judge()

    def details(self) -> str:
        if self.longest is None:
            return f"longest {self.what}: {self.nothing} - {self.status()}"
        return (f"longest {self.what} {self.longest:.2f}s <= {self.limit:g}s over "
                f"{self.count} - {self.status()}")


@sla.configure(name="lm_max_migration_duration")
class MaxMigrationDuration(_MaxSeconds):
    """No successful live migration takes longer than this (API call to done)."""

    what = "live migration"
    nothing = "no successful live migration to judge"

    def add_iteration(self, iteration: dict) -> bool:
        for row in migrations_from_output(iteration.get("output", {})):
            if row["outcome"] in SUCCEEDED and row["duration_s"] is not None:
                self._seen(row["duration_s"])
        return self._judge()


@sla.configure(name="lm_max_evacuation_duration")
class MaxEvacuationDuration(_MaxSeconds):
    """Draining the host, or bringing its VMs back, takes no longer than this.

    Each direction of each round trip counts once; a direction in which no
    VM could be moved has no duration and is not judged.
    """

    what = "host drain"
    nothing = "no host drain moved any VM"

    def add_iteration(self, iteration: dict) -> bool:
        for drain in drains_from_output(iteration.get("output", {})):
            if drain["seconds"] is not None and drain["attempted"]:
                self._seen(drain["seconds"])
        return self._judge()
