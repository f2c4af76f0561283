"""SLA: network (or hypervisor) downtime of each live migration."""

from __future__ import annotations

import numpy as np
from rally.task import sla

from rally_lm.task.output import migrations_from_output


@sla.configure(name="lm_max_downtime")
class MaxDowntime(sla.SLA):
    """Downtime per live migration stays under a limit (max, or a percentile)."""

    CONFIG_SCHEMA = {
        "type": "object",
        "$schema": "http://json-schema.org/draft-07/schema#",
        "additionalProperties": False,
        "required": ["max_ms"],
        "properties": {
            "max_ms": {"type": "number", "exclusiveMinimum": 0, "maximum": 3_600_000,
                       "description": "Limit in milliseconds."},
            "percentile": {"type": "number", "minimum": 1, "maximum": 100,
                           "description": "Judge this percentile instead of the maximum."},
            "measure": {"enum": ["network", "hypervisor"],
                        "description": "Probe-measured (default) or libvirt-reported."},
        },
    }

    def __init__(self, criterion_value: dict) -> None:
        super().__init__(criterion_value)
        self.limit = criterion_value["max_ms"]
        self.percentile = criterion_value.get("percentile", 100)
        self.column = f"{criterion_value.get('measure', 'network')}_downtime_ms"
        # Percentiles need every value; there is one per migration.
        self.values: list[float] = []
        self.unmeasured = 0

    def add_iteration(self, iteration: dict) -> bool:
        for row in migrations_from_output(iteration.get("output", {})):
            if row["outcome"] not in ("completed", "timeout_forced"):
                continue
            if row.get(self.column) is None:
                self.unmeasured += 1
            else:
                self.values.append(row[self.column])
        return self._judge()

    def merge(self, other: MaxDowntime) -> bool:
        self.values += other.values
        self.unmeasured += other.unmeasured
        return self._judge()

    def _value(self) -> float | None:
        if not self.values:
            return None
        return float(np.percentile(np.asarray(self.values), self.percentile))

    def _judge(self) -> bool:
        value = self._value()
        # A migration the probes could not measure must not pass as zero.
        self.success = self.unmeasured == 0 and (value is None or value <= self.limit)
        return self.success

    def details(self) -> str:
        which = "max" if self.percentile == 100 else f"p{self.percentile:g}"
        value = self._value()
        shown = "no completed migration" if value is None else f"{value:.1f} ms"
        extra = f", {self.unmeasured} migration(s) not measured" if self.unmeasured else ""
        return (f"{self.column.replace('_', ' ')} {which} {shown} <= {self.limit:g} ms"
                f"{extra} - {self.status()}")
