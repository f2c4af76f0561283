"""Rally charts for one round trip: what the HTML report shows per iteration.

``disk_copy_seen`` is true when Nova's progress reported disk bytes. Not
seeing any proves nothing: with libvirt's NBD storage copy the disk phase is
over before Nova samples, and it reports disk totals of 0.

The "Migrations" table is also the contract with the SLA plugins and the
comparison report: one row per migration, columns named in MIGRATION_COLUMNS.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from rally_lm.migration.driver import MigrationRecord
from rally_lm.migration.evacuation import RoundTrip

MIGRATIONS_TITLE = "Migrations"
PER_VM_TITLE = "Per VM"
MIGRATION_COLUMNS = [
    "vm", "direction", "source", "target", "outcome", "duration_s", "nova_completed_s",
    "network_downtime_ms", "hypervisor_downtime_ms", "convergence_ms", "lost", "late",
    "tcp_max_stall_ms", "hypervisor_total_ms", "disk_copy_seen", "error", "resolution_ms",
    "running_on",
]


def _num(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)


def migration_row(record: MigrationRecord) -> list[Any]:
    network = record.measurements.get("network", {})
    hyper = record.measurements.get("hypervisor", {})
    tcp = record.measurements.get("tcp", {})
    disk = max((p.get("disk_total_bytes") or 0 for p in record.progress), default=0)
    return [
        record.vm, record.direction, record.source, record.target, record.outcome,
        _num(record.duration), _num(record.nova_completed_after),
        _num(network.get("downtime_ms")), _num(hyper.get("downtime_ms")),
        _num(network.get("convergence_ms")), network.get("lost"), network.get("late"),
        _num(tcp.get("max_stall_ms")), _num(hyper.get("total_ms")),
        bool(disk), record.error or network.get("error") or hyper.get("error") or "",
        _num(network.get("resolution_ms")), record.running_on,
    ]


def stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    arr = np.asarray(values, dtype=float)
    return {"p50": round(float(np.percentile(arr, 50)), 3),
            "p95": round(float(np.percentile(arr, 95)), 3),
            "max": round(float(arr.max()), 3)}


def round_trip_output(trip: RoundTrip, labels: dict[str, str]) -> list[tuple[str, dict]]:
    """(kind, chart) pairs for Scenario.add_output(kind=chart)."""
    charts: list[tuple[str, dict]] = []
    records = trip.records
    rows = [migration_row(r) for r in records]
    charts.append(("complete", {
        "title": MIGRATIONS_TITLE, "chart_plugin": "Table",
        "description": "One row per live migration: client-side duration, Nova's record, "
                       "probe-measured network downtime vs the hypervisor's own downtime.",
        "data": {"cols": MIGRATION_COLUMNS, "rows": rows},
    }))

    vm_rows = []
    for name, vm in trip.vms.items():
        own = [r for r in records if r.vm == name]
        durations = stats([r.duration for r in own if r.succeeded])
        downtimes = stats([r.measurements["network"]["downtime_ms"] for r in own
                           if "downtime_ms" in r.measurements.get("network", {})])
        tcp = vm.get("tcp", {})
        vm_rows.append([
            name, vm["migrations"], vm["succeeded"], durations["p50"], durations["p95"],
            durations["max"], downtimes["p50"], downtimes["p95"], downtimes["max"],
            tcp.get("max_stall_ms"), tcp.get("bytes_lost"), tcp.get("bytes_corrupted"),
            tcp.get("original_connection_survived"), vm["collateral_outages"],
        ])
    charts.append(("complete", {
        "title": PER_VM_TITLE, "chart_plugin": "Table",
        "data": {"cols": ["vm", "migrations", "succeeded", "duration p50 s", "duration p95 s",
                          "duration max s", "downtime p50 ms", "downtime p95 ms",
                          "downtime max ms", "TCP longest stall ms", "TCP bytes lost",
                          "TCP bytes corrupted", "TCP connection kept",
                          "collateral outages"],
                 "rows": vm_rows},
    }))

    for direction in ("out", "back"):
        series = []
        for record in records:
            if record.direction != direction:
                continue
            points = [[p["t"], round((p.get("memory_remaining_bytes") or 0) / 2**20, 3)]
                      for p in record.progress if p.get("memory_total_bytes")]
            if points:
                series.append([record.vm, points])
        if series:
            charts.append(("complete", {
                "title": f"Memory remaining to copy, {direction} (MiB)",
                "chart_plugin": "Lines", "axis_label": "seconds since the API call",
                "label": "MiB", "data": series,
            }))

    succeeded = [r for r in records if r.succeeded]
    network = [r.measurements["network"]["downtime_ms"] for r in succeeded
               if "downtime_ms" in r.measurements.get("network", {})]
    hyper = [r.measurements["hypervisor"]["downtime_ms"] for r in succeeded
             if "downtime_ms" in r.measurements.get("hypervisor", {})]
    trend = [["network downtime max ms", max(network, default=0.0)],
             ["network downtime p50 ms", stats(network)["p50"] or 0.0]]
    if hyper:
        trend.append(["hypervisor downtime max ms", max(hyper)])
    charts.append(("additive", {"title": "Downtime per round trip", "chart_plugin": "Lines",
                                "data": trend, "label": "ms"}))
    charts.append(("additive", {
        "title": "Durations per round trip", "chart_plugin": "Lines", "label": "s",
        "data": [["drain out s", round(trip.drain_seconds.get("out", 0.0), 3)],
                 ["drain back s", round(trip.drain_seconds.get("back", 0.0), 3)],
                 ["migration max s", max((r.duration for r in succeeded), default=0.0)]],
    }))
    charts.append(("additive", {
        "title": "Migrations per round trip", "chart_plugin": "StackedArea",
        "data": [["succeeded", len(succeeded)], ["failed", len(records) - len(succeeded)]],
    }))
    config_rows = [[k, str(v)] for k, v in sorted(labels.items())]
    config_rows += [[f"probe {k}", str(v)] for k, v in sorted(trip.probe.items())]
    charts.append(("complete", {"title": "Configuration", "chart_plugin": "Table",
                                "data": {"cols": ["setting", "value"], "rows": config_rows}}))
    slim = [{k: v for k, v in r.to_dict().items() if k not in ("progress", "window")}
            for r in records]
    charts.append(("complete", {"title": "Migration records (JSON)", "chart_plugin": "TextArea",
                                "data": [json.dumps(slim, default=str)]}))
    return charts


def table_rows(output: dict, title: str) -> list[dict[str, Any]]:
    """A table of one iteration's complete output, as dicts (for SLAs, reports)."""
    for chart in output.get("complete", []):
        if chart.get("title") == title and chart.get("chart_plugin") == "Table":
            cols = chart["data"]["cols"]
            return [dict(zip(cols, row, strict=False)) for row in chart["data"]["rows"]]
    return []


def migrations_from_output(output: dict) -> list[dict[str, Any]]:
    return table_rows(output, MIGRATIONS_TITLE)


def per_vm_from_output(output: dict) -> list[dict[str, Any]]:
    return table_rows(output, PER_VM_TITLE)


def export_stats_chart(title: str, stats: Any) -> dict:
    """How an InfluxDB export went: points written, replayed, still spooled, dropped."""
    return {"title": title, "chart_plugin": "Table",
            "data": {"cols": ["written", "replayed", "spooled", "dropped", "last error"],
                     "rows": [[stats.written, stats.replayed, stats.spooled, stats.dropped,
                               stats.last_error or ""]]}}
