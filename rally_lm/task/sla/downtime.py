"""SLA: downtime of each live migration (client-perceived by default)."""

from __future__ import annotations

import numpy as np
from rally.task import sla

from rally_lm.migration.driver import NEVER_STARTED, SUCCEEDED
from rally_lm.task.output import PERCENTILE_METHOD, migrations_from_output

#: measure -> (Migrations column, outcomes it exists for, words for the message)
MEASURES = {
    "client": ("client_downtime_ms", None, "client downtime"),
    "pause": ("pause_ms", None, "pause"),
    "source_stall": ("source_stall_ms", None, "source stall"),
    "network": ("network_downtime_ms", None, "network outage"),
    "hypervisor": ("hypervisor_downtime_ms", SUCCEEDED, "hypervisor downtime"),
}


@sla.configure(name="lm_max_downtime")
class MaxDowntime(sla.SLA):
    """Downtime per live migration stays under a limit (the maximum, or a percentile).

    Judges every migration that reached the hypervisor (all outcomes but
    refused and skipped: an aborted migration can pause the guest too); the
    hypervisor's figure exists for successful migrations only. A migration
    that should have a figure and has none fails the SLA, and so does a run
    with nothing measured at all.
    """

    CONFIG_SCHEMA = {
        "type": "object",
        "$schema": "http://json-schema.org/draft-07/schema#",
        "additionalProperties": False,
        "required": ["max_ms"],
        "properties": {
            "max_ms": {"type": "number", "exclusiveMinimum": 0, "maximum": 3_600_000,
                       "description": "Limit in milliseconds."},
            "percentile": {"type": "number", "minimum": 1, "maximum": 100,
                           "description": "Judge this percentile (numpy 'linear' method) "
                                          "instead of the maximum (100)."},
            "measure": {"enum": list(MEASURES),
                        "description": "client (default: the longest span without replies "
                                       "while a request was outstanding), pause, source_stall "
                                       "(the guest still on the source not answering: "
                                       "auto-converge's throttle), network "
                                       "(the whole outage, recovery tail included) or "
                                       "hypervisor (libvirt's downtime)."},
        },
    }

    def __init__(self, criterion_value: dict) -> None:
        super().__init__(criterion_value)
        self.limit = criterion_value["max_ms"]
        self.percentile = criterion_value.get("percentile", 100)
        self.column, self.outcomes, self.words = MEASURES[criterion_value.get("measure",
                                                                              "client")]
        # Percentiles need every value; there is one per migration.
        self.values: list[float] = []
        self.unmeasured = 0
        # Rally may never feed an iteration (a context failed): that is no pass.
        self._judge()

    def _counts(self, outcome: str) -> bool:
        if self.outcomes is not None:
            return outcome in self.outcomes
        return outcome not in NEVER_STARTED

    def add_iteration(self, iteration: dict) -> bool:
        for row in migrations_from_output(iteration.get("output", {})):
            if not self._counts(row["outcome"]):
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
        return float(np.percentile(np.asarray(self.values), self.percentile,
                                   method=PERCENTILE_METHOD))

    def _judge(self) -> bool:
        value = self._value()
        # Nothing measured, or a migration the probes could not measure, never passes.
        self.success = self.unmeasured == 0 and value is not None and value <= self.limit
        return self.success

    def details(self) -> str:
        which = "max" if self.percentile == 100 else f"p{self.percentile:g}"
        value = self._value()
        if value is None:
            shown = "nothing measured"
        else:
            shown = f"{value:.1f} ms"
        extra = f", {self.unmeasured} migration(s) not measured" if self.unmeasured else ""
        return (f"{self.words} {which} {shown} <= {self.limit:g} ms over "
                f"{len(self.values)} migration(s){extra} - {self.status()}")
