"""SLA: the workload's TCP streams survive live migration intact."""

from __future__ import annotations

from rally.task import sla

from rally_lm.task.output import migrations_from_output, per_vm_from_output


@sla.configure(name="lm_tcp_continuity")
class TcpContinuity(sla.SLA):
    """No TCP byte lost or corrupted (and optionally no stall longer than a limit).

    A stall includes any time the VM's connection was broken until a new one
    carried data again. A VM whose stream could not be measured, or a run
    with no stream at all, fails.
    """

    CONFIG_SCHEMA = {
        "type": "object",
        "$schema": "http://json-schema.org/draft-07/schema#",
        "additionalProperties": False,
        "properties": {
            "max_stall_ms": {"type": "number", "exclusiveMinimum": 0, "maximum": 3_600_000,
                             "description": "Longest stall allowed during a migration, ms."},
            "require_connection_kept": {"type": "boolean",
                                        "description": "Fail when a VM's original "
                                                       "connection broke (default true)."},
        },
    }

    def __init__(self, criterion_value: dict) -> None:
        super().__init__(criterion_value)
        self.max_stall_limit = criterion_value.get("max_stall_ms")
        self.require_kept = criterion_value.get("require_connection_kept", True)
        self.streams = 0
        self.bytes_lost = 0
        self.bytes_corrupted = 0
        self.broken_connections = 0
        self.unmeasured = 0
        self.max_stall = 0.0
        # Rally may never feed an iteration (a context failed): that is no pass.
        self._judge()

    def add_iteration(self, iteration: dict) -> bool:
        output = iteration.get("output", {})
        for row in per_vm_from_output(output):
            if row.get("TCP bytes lost") is None:
                self.unmeasured += 1
                continue
            self.streams += 1
            self.bytes_lost += row["TCP bytes lost"]
            self.bytes_corrupted += row["TCP bytes corrupted"]
            self.broken_connections += 0 if row["TCP connection kept"] else 1
        for row in migrations_from_output(output):
            self.max_stall = max(self.max_stall, row.get("tcp_max_stall_ms") or 0.0)
        return self._judge()

    def merge(self, other: TcpContinuity) -> bool:
        self.streams += other.streams
        self.bytes_lost += other.bytes_lost
        self.bytes_corrupted += other.bytes_corrupted
        self.broken_connections += other.broken_connections
        self.unmeasured += other.unmeasured
        self.max_stall = max(self.max_stall, other.max_stall)
        return self._judge()

    def _judge(self) -> bool:
        self.success = (self.streams > 0 and self.bytes_lost == 0 and self.bytes_corrupted == 0
                        and self.unmeasured == 0
                        and (not self.require_kept or self.broken_connections == 0)
                        and (self.max_stall_limit is None
                             or self.max_stall <= self.max_stall_limit))
        return self.success

    def details(self) -> str:
        if not self.streams and not self.unmeasured:
            return f"no TCP stream was measured - {self.status()}"
        stall = f", longest stall {self.max_stall:.0f} ms"
        if self.max_stall_limit is not None:
            stall += f" <= {self.max_stall_limit:g} ms"
        unmeasured = f", {self.unmeasured} VM(s) not measured" if self.unmeasured else ""
        return (f"TCP bytes lost {self.bytes_lost}, corrupted {self.bytes_corrupted}, "
                f"connections broken {self.broken_connections}{stall}{unmeasured} over "
                f"{self.streams} stream(s) - {self.status()}")
