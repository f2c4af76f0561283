"""Matrix cells from Rally results: one per evacuate_host workload.

Reads Rally's JSON report format (``rally task report --json``). The cell's
storage / tunnelling / flavor come from the labels the task recorded; every
figure is computed from the per-iteration Migrations tables, never copied
from a summary.
"""

from __future__ import annotations

import collections
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from rally_lm.task.output import migrations_from_output, per_vm_from_output

SUCCEEDED = ("completed", "timeout_forced")


@dataclasses.dataclass
class Cell:
    task: str
    storage: str
    tunnelling: str
    flavor: str
    config: dict[str, Any]
    migrations: list[dict[str, Any]]
    drains: list[float]
    per_vm_tcp: list[dict[str, Any]]
    iterations: int
    failed_iterations: int
    sla: list[dict[str, Any]]

    @property
    def name(self) -> str:
        return f"{self.storage} / tunnelling {self.tunnelling} / {self.flavor}"


def load(paths: list[Path]) -> list[Cell]:
    cells = []
    for path in paths:
        report = json.loads(Path(path).read_text())
        for task in report["tasks"]:
            for subtask in task["subtasks"]:
                for workload in subtask["workloads"]:
                    if "LiveMigration.evacuate_host" in workload["scenario"]:
                        cells.append(_cell(task["uuid"], workload))
    return cells


def _cell(task_uuid: str, workload: dict) -> Cell:
    args = workload["scenario"]["LiveMigration.evacuate_host"]
    labels = args.get("labels", {})
    migrations, drains, tcp = [], [], []
    for number, iteration in enumerate(workload["data"]):
        migrations += [{**row, "iteration": number}
                       for row in migrations_from_output(iteration["output"])]
        for action in iteration["atomic_actions"]:
            if action["name"].startswith("nova.drain_host_") and action.get("finished_at"):
                drains.append(action["finished_at"] - action["started_at"])
        tcp += per_vm_from_output(iteration["output"])
    config = {k: v for k, v in args.items() if k not in ("labels", "hypervisor_uris", "influx")}
    return Cell(task=task_uuid, storage=labels.get("storage", "?"),
                tunnelling=labels.get("tunnelling", "?"), flavor=labels.get("flavor", "?"),
                config=config, migrations=migrations, drains=drains, per_vm_tcp=tcp,
                iterations=workload["total_iteration_count"],
                failed_iterations=workload["failed_iteration_count"],
                sla=workload["sla_results"].get("sla", []))


def summary(values: list[float]) -> dict[str, float | None]:
    """p50 / p95 / max / mean / count of some numbers (None when there are none)."""
    if not values:
        return {"count": 0, "mean": None, "p50": None, "p95": None, "max": None}
    arr = np.asarray(values, dtype=float)
    return {"count": int(arr.size), "mean": float(arr.mean()),
            "p50": float(np.percentile(arr, 50)), "p95": float(np.percentile(arr, 95)),
            "max": float(arr.max())}


def failed_row(migration: dict[str, Any]) -> dict[str, Any]:
    """What an operator needs to follow up one failed migration."""
    return {"iteration": migration["iteration"], "vm": migration["vm"],
            "direction": migration["direction"],
            "hosts": f"{migration['source']} → {migration['target']}",
            "outcome": migration["outcome"], "duration_s": migration.get("duration_s"),
            # Tasks recorded before libvirt was asked have no such column.
            "running_on": migration.get("running_on"),
            "reason": migration.get("error") or ""}


def figures(cell: Cell) -> dict[str, Any]:
    ok = [m for m in cell.migrations if m["outcome"] in SUCCEEDED]
    failed = [failed_row(m) for m in cell.migrations if m["outcome"] not in SUCCEEDED]
    failures = dict(collections.Counter(m["outcome"] for m in failed))

    def column(rows, name):
        return [r[name] for r in rows if r.get(name) is not None]

    per_vm = {}
    for vm in sorted({m["vm"] for m in cell.migrations}):
        own = [m for m in ok if m["vm"] == vm]
        per_vm[vm] = {"migrations": sum(m["vm"] == vm for m in cell.migrations),
                      "succeeded": len(own),
                      "network_downtime_ms": summary(column(own, "network_downtime_ms")),
                      "hypervisor_downtime_ms": summary(column(own, "hypervisor_downtime_ms"))}
    return {
        "succeeded": len(ok),
        "total": len(cell.migrations),
        "evacuation_s": summary(cell.drains),
        "duration_s": summary(column(ok, "duration_s")),
        "nova_completed_s": summary(column(ok, "nova_completed_s")),
        "network_downtime_ms": summary(column(ok, "network_downtime_ms")),
        "hypervisor_downtime_ms": summary(column(ok, "hypervisor_downtime_ms")),
        "convergence_ms": summary(column(ok, "convergence_ms")),
        "tcp_max_stall_ms": summary(column(ok, "tcp_max_stall_ms")),
        "tcp_bytes_lost": int(sum(r.get("TCP bytes lost") or 0 for r in cell.per_vm_tcp)),
        "tcp_bytes_corrupted": int(sum(r.get("TCP bytes corrupted") or 0
                                       for r in cell.per_vm_tcp)),
        "tcp_connections_broken": sum(1 for r in cell.per_vm_tcp
                                      if r.get("TCP connection kept") is False),
        "failures": failures,
        "failed": failed,
        "per_vm": per_vm,
    }
