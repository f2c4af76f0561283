"""SLAs on what a migration policy did to the guest: post-copy time, CPU throttle.

A migration that completes can still hurt: in post-copy the guest runs on
the destination while its memory is fetched from the source (page faults
slow it, and losing either host or the link loses the guest); auto-converge
slows the guest's vCPUs until the copy catches up (a guest throttled to a few
percent of its CPU is an outage the network never sees). Both are read from
the hypervisor (``hypervisor_uris``); a migration whose copy could not be
observed fails these SLAs, as does a run with nothing to judge.
"""

from __future__ import annotations

from rally.task import sla

from rally_lm.migration.driver import NEVER_STARTED
from rally_lm.task.output import migrations_from_output


class _PerMigrationLimit(sla.SLA):
    """The largest per-migration value stays within a limit; unobserved fails."""

    #: Migrations Table column judged, the limit's config key, its unit.
    column = ""
    limit_key = ""
    unit = ""
    what = ""

    def __init__(self, criterion_value: dict) -> None:
        super().__init__(criterion_value)
        self.limit = criterion_value[self.limit_key]
        self.largest: float | None = None
        self.observed = 0
        self.unobserved = 0
        # Rally may never feed an iteration (a context failed): that is no pass.
        self._judge()

    def _value(self, row: dict) -> float | None:
        """The row's value; None when the hypervisor's view is missing."""
        return row.get(self.column)

    def add_iteration(self, iteration: dict) -> bool:
        for row in migrations_from_output(iteration.get("output", {})):
            if row["outcome"] in NEVER_STARTED:
                continue
            value = self._value(row)
            if value is None:
                self.unobserved += 1
                continue
            self.observed += 1
            self.largest = value if self.largest is None else max(self.largest, value)
        return self._judge()

    def merge(self, other: _PerMigrationLimit) -> bool:
        self.observed += other.observed
        self.unobserved += other.unobserved
        if other.largest is not None:
            self.largest = other.largest if self.largest is None \
                else max(self.largest, other.largest)
        return self._judge()

    def _judge(self) -> bool:
        self.success = (self.observed > 0 and self.unobserved == 0
                        and self.largest is not None and self.largest <= self.limit)
        return self.success

    def details(self) -> str:
        missing = (f"; {self.unobserved} migration(s) not observed by the hypervisor "
                   "(set hypervisor_uris)" if self.unobserved else "")
        if self.observed == 0:
            return f"{self.what}: no migration observed{missing} - {self.status()}"
        return (f"largest {self.what} {self.largest:g} {self.unit} <= {self.limit:g} "
                f"{self.unit} over {self.observed} migration(s){missing} - {self.status()}")


@sla.configure(name="lm_max_postcopy")
class MaxPostcopy(_PerMigrationLimit):
    """No migration spends longer than this in post-copy (0 forbids post-copy).

    Post-copy time runs from libvirt's switch to post-copy until the source's
    job completed; a migration that stayed in pre-copy counts as 0 s.
    """

    CONFIG_SCHEMA = {
        "type": "object",
        "$schema": "http://json-schema.org/draft-07/schema#",
        "additionalProperties": False,
        "required": ["max_seconds"],
        "properties": {"max_seconds": {"type": "number", "minimum": 0, "maximum": 86400,
                                       "description": "Longest post-copy phase, seconds."}},
    }
    column = "postcopy_ms"
    limit_key = "max_seconds"
    unit = "s"
    what = "post-copy phase"

    def _value(self, row: dict) -> float | None:
        mode = row.get("copy_mode")
        if mode is None:
            return None
        if mode != "post-copy":
            return 0.0
        # Switched, but the end was not seen: the phase's length is unknown.
        return None if row.get("postcopy_ms") is None else row["postcopy_ms"] / 1000.0


@sla.configure(name="lm_max_throttle")
class MaxThrottle(_PerMigrationLimit):
    """Auto-converge never throttles a guest's CPU beyond this percentage.

    The throttle is read from the running job on the source every
    ``job_interval`` seconds (and from the completed job where libvirt keeps
    it); a migration never sampled counts as not observed.
    """

    CONFIG_SCHEMA = {
        "type": "object",
        "$schema": "http://json-schema.org/draft-07/schema#",
        "additionalProperties": False,
        "required": ["max_percent"],
        "properties": {"max_percent": {"type": "number", "minimum": 0, "maximum": 99,
                                       "description": "Highest CPU throttle, percent."}},
    }
    column = "throttle_max_pct"
    limit_key = "max_percent"
    unit = "%"
    what = "auto-converge throttle"
