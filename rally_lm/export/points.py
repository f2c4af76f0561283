"""The benchmark's records as InfluxDB points (see docs/influxdb.md for the schema)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from rally_lm.migration.driver import MigrationRecord
from rally_lm.migration.table import MIGRATION_COLUMNS, migration_row

Point = tuple[str, dict[str, Any], dict[str, Any], float]


def migration_points(record: MigrationRecord, tags: dict[str, Any]) -> Iterator[Point]:
    """One lm_migration point (at the API call) and start/end lm_migration_event points.

    Fields are the Migrations table's columns (rally_lm.task.output), so a
    dashboard and the Rally report show the same definitions.
    """
    base = {**tags, "vm": record.vm, "direction": record.direction,
            "source_host": record.source, "target_host": record.target}
    row = dict(zip(MIGRATION_COLUMNS, migration_row(record), strict=True))
    fields = {k: v for k, v in row.items()
              if k.endswith(("_ms", "_s", "_mib")) or k in ("lost", "late", "held",
                                                             "sporadic_replies", "iterations",
                                                             "tcp_resets", "throttle_max_pct")}
    fields = {k: (float(v) if isinstance(v, int) and not isinstance(v, bool)
                  and k.endswith(("_ms", "_s", "_mib")) else v) for k, v in fields.items()}
    # An outage that never ended (the guest did not answer again) has no number in
    # line protocol: named instead, so a dashboard can tell it from "not measured".
    unbounded = sorted(k for k, v in fields.items() if isinstance(v, float)
                       and not math.isfinite(v))
    fields = {k: v for k, v in fields.items() if k not in unbounded}
    if unbounded:
        fields["unbounded"] = ",".join(unbounded)
    fields["succeeded"] = record.succeeded
    # How the copy ended and whose timeout acted: few values, so tags to group by.
    extra = {k: row[k] for k in ("copy_mode", "timeout_by") if row[k] is not None}
    yield ("lm_migration", {**base, "outcome": record.outcome, **extra}, fields,
           record.started_at)
    yield ("lm_migration_event", {**base, "event": "start"}, {"value": 1}, record.started_at)
    yield ("lm_migration_event", {**base, "event": "end", "outcome": record.outcome},
           {"value": 1}, record.finished_at)


def diagnostics_fields(diag: dict[str, Any]) -> dict[str, Any]:
    """Nova's standardized diagnostics (2.48) flattened to numbers."""
    cpus = diag.get("cpu_details") or []
    nics = diag.get("nic_details") or []
    disks = diag.get("disk_details") or []
    memory = diag.get("memory_details") or {}

    def total(items: list[dict], key: str) -> int | None:
        values = [i.get(key) for i in items if i.get(key) is not None]
        return int(sum(values)) if values else None

    return {
        "cpu_time_ns": total(cpus, "time"),
        "memory_used_mb": memory.get("used"),
        "memory_max_mb": memory.get("maximum"),
        "rx_bytes": total(nics, "rx_octets"), "tx_bytes": total(nics, "tx_octets"),
        "rx_packets": total(nics, "rx_packets"), "tx_packets": total(nics, "tx_packets"),
        "disk_read_bytes": total(disks, "read_bytes"),
        "disk_write_bytes": total(disks, "write_bytes"),
        "disk_read_ops": total(disks, "read_requests"),
        "disk_write_ops": total(disks, "write_requests"),
        "uptime_s": diag.get("uptime"),
    }
