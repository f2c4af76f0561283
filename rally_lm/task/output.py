"""Rally charts for one round trip: what the HTML report shows per iteration.

The "Migrations" table is the contract with the SLA plugins and the
comparison report: one row per planned migration, columns named in
MIGRATION_COLUMNS. Definitions (docs/measurement.md):

* ``client_downtime_ms`` - the longest span without replies from the VM's
  UDP echo while a request was outstanding, around the migration: what the
  SLA gates on. Normally the switchover's silence, which ``source_stall_ms +
  pause_ms + convergence_ms + resume_lag_ms`` + one round trip make up;
  ``recovery_tail_ms`` follows it. When a longer silence happened elsewhere
  in the window (the guest or path stalled during the copy), it is the gated
  figure and also ``stall_ms``, and the phases still describe the switchover.
* ``sampling_ms`` - how much a second prober, at another interval and phase,
  could see differently (rally_lm.probes.anatomy); ``sustained_downtime_ms`` -
  the silence up to a steady run of replies, past ``sporadic_replies`` of a
  resuming guest.
* ``network_downtime_ms`` - the whole outage: first request not answered on
  time to the first one answered on time again (client downtime + tail).
* ``hypervisor_*`` - libvirt's completed-job statistics (``hypervisor_uris``).
* ``network_share_ms`` - with ``ovn_sb_connection``: from the guest's resume
  on the destination (libvirt's event) to the first request through (the
  probe), requests the network lost after the guest ran; ``network_ended_by``
  - the OVN step that let them through (``activated``: the guest's RARP
  unblocked the destination's port; ``moved``: Neutron activated the
  destination's binding), from OVN's southbound database (rally_lm.migration.sdn).
* ``copy_mode`` - how the copy ended, from libvirt's events: ``pre-copy``,
  ``post-copy`` (``postcopy_ms``: from the switch until the source's job
  completed) or ``paused`` (forced to complete without post-copy);
  ``throttle_max_pct`` - auto-converge's peak CPU throttle, read from the
  running job on the source every ``job_interval`` seconds. Empty without
  ``hypervisor_uris``.
* ``disk_copy_seen`` - Nova's progress reported disk bytes, or libvirt ran a
  block copy: proof of block migration. Not seeing one proves nothing
  without ``hypervisor_uris``.

Downtime statistics (Per VM, the comparison) cover every migration that
reached the hypervisor - all outcomes but ``refused`` and ``skipped`` -
because an aborted or failed migration can pause the guest too. Durations
cover successful migrations only. A p95 needs at least ``MIN_FOR_P95``
values; below that only the maximum is shown, with n.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from rally_lm.migration.driver import NEVER_STARTED, SUCCEEDED
from rally_lm.migration.evacuation import RoundTrip
from rally_lm.migration.table import (  # noqa: F401 - the table's contract, here too
    MIGRATION_COLUMNS,
    _num,
    disk_copy_seen,
    migration_row,
)
from rally_lm.task import timeline_chart

MIGRATIONS_TITLE = "Migrations"
PER_VM_TITLE = "Per VM"
EVACUATION_TITLE = "Evacuation"
GUEST_TITLE = "Workload (inside the guests)"
CONTENDED_TITLE = "Warning: contended host"
CONFIGURATION_TITLE = "Configuration"
#: numpy's default percentile: linear interpolation between closest ranks
#: (Hyndman & Fan type 7).
PERCENTILE_METHOD = "linear"
MIN_FOR_P95 = 20
EVACUATION_COLUMNS = ["direction", "source", "target", "planned", "attempted", "succeeded",
                      "seconds", "migrations_s", "rally_lm_s"]
PER_VM_COLUMNS = [
    "vm", "planned", "succeeded", "duration p50 s", "duration max s", "downtime n",
    "downtime p50 ms", "downtime p95 ms", "downtime max ms", "TCP longest stall ms",
    "TCP bytes lost", "TCP bytes corrupted", "TCP resets", "TCP connection kept",
    "collateral outages", "dirty rate asked MiB/s",
]


def stats(values: list[float]) -> dict[str, float | int | None]:
    """n, p50, p95 (None below MIN_FOR_P95 values) and max."""
    if not values:
        return {"n": 0, "p50": None, "p95": None, "max": None}
    arr = np.asarray(values, dtype=float)
    return {"n": int(arr.size),
            "p50": round(float(np.percentile(arr, 50, method=PERCENTILE_METHOD)), 3),
            "p95": round(float(np.percentile(arr, 95, method=PERCENTILE_METHOD)), 3)
            if arr.size >= MIN_FOR_P95 else None,
            "max": round(float(arr.max()), 3)}


def downtime_values(rows: list[dict[str, Any]], column: str = "client_downtime_ms") -> list:
    """The downtimes that count: migrations that reached the hypervisor and were measured."""
    return [r[column] for r in rows
            if r["outcome"] not in NEVER_STARTED and r.get(column) is not None]


def per_vm_rows(trip: RoundTrip) -> list[list[Any]]:
    rows = []
    table = [dict(zip(MIGRATION_COLUMNS, migration_row(r), strict=True)) for r in trip.records]
    for name, vm in trip.vms.items():
        own = [r for r in table if r["vm"] == name]
        durations = stats([r["duration_s"] for r in own
                           if r["outcome"] in SUCCEEDED and r["duration_s"] is not None])
        downtimes = stats(downtime_values(own))
        tcp = vm.get("tcp", {})
        rows.append([
            name, vm["migrations"], vm["succeeded"], durations["p50"], durations["max"],
            downtimes["n"], downtimes["p50"], downtimes["p95"], downtimes["max"],
            tcp.get("max_stall_ms"), tcp.get("bytes_lost"), tcp.get("bytes_corrupted"),
            tcp.get("resets"), tcp.get("original_connection_survived"),
            vm["collateral_outages"], vm.get("dirty_rate_mib"),
        ])
    return rows


def round_trip_output(trip: RoundTrip, labels: dict[str, str]) -> list[tuple[str, dict]]:
    """(kind, chart) pairs for Scenario.add_output(kind=chart)."""
    charts: list[tuple[str, dict]] = []
    records = trip.records
    charts.append(("complete", {
        "title": MIGRATIONS_TITLE, "chart_plugin": "Table",
        "description": "One row per planned live migration. client_downtime_ms (gated by "
                       "lm_max_downtime) = pause + convergence + resume lag + one round "
                       "trip; see docs/measurement.md.",
        "data": {"cols": MIGRATION_COLUMNS, "rows": [migration_row(r) for r in records]},
    }))
    charts.append(("complete", {
        "title": PER_VM_TITLE, "chart_plugin": "Table",
        "description": f"Downtime over migrations that reached the hypervisor; p95 only "
                       f"from {MIN_FOR_P95} values on.",
        "data": {"cols": PER_VM_COLUMNS, "rows": per_vm_rows(trip)},
    }))
    charts.append(("complete", {
        "title": EVACUATION_TITLE, "chart_plugin": "Table",
        "description": "Each direction of the round trip, its duration defined twice: "
                       "seconds = the drain's wall time, from the first migration's call to "
                       "the last one's end (none when no VM could be moved); migrations_s = "
                       "the sum of its migrations' durations (the seed's evacuation); "
                       "rally_lm_s = the difference, rally_lm's own time between migrations.",
        "data": {"cols": EVACUATION_COLUMNS,
                 "rows": [[d.direction, d.source, d.target, d.planned, d.attempted,
                           d.succeeded, _num(d.seconds), _num(d.migrations_s), _num(d.tool_s)]
                          for d in trip.drains]},
    }))
    svgs = timeline_chart.round_trip_svgs(records)
    if svgs:
        charts.append(("complete", {"title": "Timelines and outage anatomy",
                                    "chart_plugin": "lm_timeline", "data": svgs}))
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
    charts.append(("additive", {
        "title": "Migrations per round trip", "chart_plugin": "StackedArea",
        "data": [["succeeded", len(succeeded)], ["not succeeded", len(records) - len(succeeded)]],
    }))
    config_rows = [[k, str(v)] for k, v in sorted(labels.items())]
    config_rows += [[f"probe {k}", str(v)] for k, v in sorted(trip.probe.items())]
    config_rows += observer_rows(trip)
    config_rows += [[f"host {k}", repr(v)] for k, v in sorted(trip.host_load.items())]
    charts.append(("complete", {"title": CONFIGURATION_TITLE, "chart_plugin": "Table",
                                "data": {"cols": ["setting", "value"], "rows": config_rows}}))
    if trip.host_load.get("contended"):
        charts.append(("complete", {
            "title": CONTENDED_TITLE, "chart_plugin": "TextArea",
            "data": ["This round trip ran on a contended host: "
                     + "; ".join(trip.host_load["why"]) + ". Its figures include that host's "
                     "own delays; compare it only with cells run under the same load."]}))
    if trip.errors:
        charts.append(("complete", {"title": "Tool errors", "chart_plugin": "TextArea",
                                    "data": list(trip.errors)}))
    # Whole, the looks at Nova included (a few per migration): how it was observed.
    charts.append(("complete", {"title": "Migration records (JSON)", "chart_plugin": "TextArea",
                                "data": [json.dumps([r.to_dict() for r in records],
                                                    default=str)]}))
    return charts


def observer_rows(trip: RoundTrip) -> list[list[str]]:
    """What the round trip asked of Nova: requests in all, per migration, by route."""
    if not trip.api_requests:
        return []
    total = sum(trip.api_requests.values())
    moved = [r for r in trip.records if r.outcome != "skipped"]
    per = sorted(sum(r.api_requests.values()) for r in moved if r.api_requests)
    rows = [["Nova requests (round trip)", str(total)]]
    if per:
        rows.append(["Nova requests per migration (min / median / max)",
                     f"{per[0]} / {float(np.median(per)):g} / {per[-1]}"])
    rows += [[f"Nova requests: {route}", str(count)]
             for route, count in sorted(trip.api_requests.items())]
    return rows


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


def drains_from_output(output: dict) -> list[dict[str, Any]]:
    return table_rows(output, EVACUATION_TITLE)


def configuration_from_output(output: dict) -> dict[str, str]:
    """The Configuration table of one iteration, setting -> value."""
    return {row["setting"]: row["value"] for row in table_rows(output, CONFIGURATION_TITLE)}


def export_stats_chart(title: str, stats: Any) -> dict:
    """How an InfluxDB export went: points written, replayed, spooled, rejected, dropped."""
    return {"title": title, "chart_plugin": "Table",
            "data": {"cols": ["written", "replayed", "spooled", "rejected", "dropped",
                              "last error"],
                     "rows": [[stats.written, stats.replayed, stats.spooled, stats.rejected,
                               stats.dropped, stats.last_error or ""]]}}
