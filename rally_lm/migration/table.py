"""The Migrations table: one row per planned migration, the contract between the
Rally report, the SLA plugins, the comparison and the InfluxDB export.

Column definitions: rally_lm.task.output and docs/measurement.md. Plain data
from a MigrationRecord: no Rally import, so the exporter and the report read
it without going up through the Rally plugins.
"""

from __future__ import annotations

from typing import Any

from rally_lm.migration.driver import NEVER_STARTED, MigrationRecord

MIGRATION_COLUMNS = [
    "vm", "direction", "source", "target", "outcome", "timeout_by", "duration_s",
    "nova_completed_s", "end_resolution_s", "nova_requests",
    "client_downtime_ms", "sampling_ms", "sustained_downtime_ms", "sporadic_replies",
    "source_stall_ms", "pause_ms", "convergence_ms", "resume_lag_ms", "recovery_tail_ms",
    "stall_ms", "path_down_ms",
    "network_downtime_ms", "icmp_client_downtime_ms", "icmp_resume_lag_ms",
    "fixed_ip_client_downtime_ms",
    "hypervisor_downtime_ms", "hypervisor_total_ms", "pause_vs_hypervisor_ms",
    "network_share_ms", "network_ended_by", "iterations", "memory_mib", "dirty_rate_mib_s",
    "copy_mode", "postcopy_ms", "throttle_max_pct", "lost",
    "late", "held", "tcp_max_stall_ms", "tcp_resets", "disk_copy_seen", "resolution_ms",
    "running_on", "error",
]

def _num(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)


def disk_copy_seen(record: MigrationRecord) -> bool:
    progress = any((p.get("disk_total_bytes") or 0) > 0 for p in record.progress)
    block_jobs = any(e.get("kind", "").startswith("block-job")
                     for e in record.measurements.get("libvirt_events", []))
    return progress or block_jobs


def _errors(record: MigrationRecord) -> str:
    parts = [record.error] if record.error else []
    for view in ("network", "hypervisor", "tcp", "icmp", "dirty_rate"):
        error = record.measurements.get(view, {}).get("error")
        if error and view != "icmp":
            parts.append(f"{view}: {error}")
    return "; ".join(parts)


def migration_row(record: MigrationRecord) -> list[Any]:
    network = record.measurements.get("network", {})
    anatomy = network.get("anatomy", {})
    icmp = record.measurements.get("icmp", {}).get("anatomy", {})
    hyper = record.measurements.get("hypervisor", {})
    tcp = record.measurements.get("tcp", {})
    dirty = record.measurements.get("dirty_rate", {})
    copy = record.measurements.get("copy", {})
    memory = hyper.get("memory_bytes")
    never = record.outcome in NEVER_STARTED
    return [
        record.vm, record.direction, record.source, record.target, record.outcome,
        record.timeout_by, None if never else _num(record.duration),
        _num(record.nova_completed_after), _num(record.end_resolution),
        sum(record.api_requests.values()) if record.api_requests else None,
        _num(network.get("client_downtime_ms")), _num(anatomy.get("sampling_ms")),
        _num(anatomy.get("sustained_downtime_ms")), anatomy.get("sporadic_replies"),
        _num(anatomy.get("source_stall_ms")),
        _num(anatomy.get("pause_ms")),
        _num(anatomy.get("convergence_ms")), _num(anatomy.get("resume_lag_ms")),
        _num(anatomy.get("recovery_tail_ms")), _num(network.get("stall_ms")),
        _num(anatomy.get("path_down_ms")),
        _num(network.get("downtime_ms")),
        _num(record.measurements.get("icmp", {}).get("client_downtime_ms")),
        _num(icmp.get("resume_lag_ms")),
        _num(record.measurements.get("network_fixed", {}).get("client_downtime_ms")),
        _num(hyper.get("downtime_ms")), _num(hyper.get("total_ms")),
        _num(network.get("pause_vs_hypervisor_ms")),
        _num(network.get("sdn", {}).get("network_share_ms")),
        network.get("sdn", {}).get("ended_by"), hyper.get("iterations"),
        None if memory is None else round(memory / 2**20, 3), _num(dirty.get("mib_per_s")),
        copy.get("mode"), _num(copy.get("postcopy_ms")), copy.get("max_throttle_percent"),
        network.get("lost"), network.get("late"), anatomy.get("held"),
        _num(tcp.get("max_stall_ms")), tcp.get("resets"), disk_copy_seen(record),
        _num(anatomy.get("resolution_ms", network.get("resolution_ms"))), record.running_on,
        _errors(record),
    ]
