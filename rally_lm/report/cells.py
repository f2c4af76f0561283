"""Matrix cells from Rally results: one per evacuate_host workload.

Reads Rally's JSON report format (``rally task report --json``). The cell's
storage / tunnelling / flavor come from the labels the task recorded; every
figure is computed from the per-iteration Migrations and Evacuation tables,
never copied from a summary, with the same rules as the Rally report
(rally_lm.task.output): downtime over migrations that reached the
hypervisor, durations over successful ones, p95 only from MIN_FOR_P95
values, numpy's "linear" percentile.
"""

from __future__ import annotations

import ast
import collections
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from rally_lm.migration.driver import NOT_MIGRATION_FAILURES, SUCCEEDED
from rally_lm.stats.intervals import quantile_interval
from rally_lm.task.output import (
    MIN_FOR_P95,
    PERCENTILE_METHOD,
    configuration_from_output,
    downtime_values,
    drains_from_output,
    migrations_from_output,
    per_vm_from_output,
)

#: The anatomy columns, in the order they add up (docs/measurement.md).
ANATOMY = ("client_downtime_ms", "source_stall_ms", "pause_ms", "convergence_ms", "resume_lag_ms",
           "recovery_tail_ms")


def cell_key(labels: dict[str, str]) -> tuple[str, ...]:
    """A cell's identity from a task's labels: storage, tunnelling, flavor, policy,
    dirty rate, and network backend (a task on another network is another cell)."""
    return (labels.get("storage", "?"), labels.get("tunnelling", "?"),
            labels.get("flavor", "?"), labels.get("policy") or "",
            labels.get("dirty_rate_mib", ""), labels.get("network", ""))


@dataclasses.dataclass
class Cell:
    task: str
    storage: str
    tunnelling: str
    flavor: str
    config: dict[str, Any]
    migrations: list[dict[str, Any]]
    drains: list[dict[str, Any]]
    per_vm_tcp: list[dict[str, Any]]
    iterations: int
    failed_iterations: int
    sla: list[dict[str, Any]]
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    #: The first iteration's Configuration table (labels, provenance, cloud facts).
    configuration: dict[str, str] = dataclasses.field(default_factory=dict)
    #: Per iteration, its round trip's contention record (rally_lm.probes.host_load).
    host_loads: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    #: Wall times the workload ran (Rally's start_time, + its full duration).
    window: tuple[float, float] | None = None
    #: A cell cut out of a task by dirty rate: that task (its SLAs judged all of it).
    split_from: str = ""
    #: Migrations the task planned (its VMs, both ways, each iteration), where its
    #: lm_workload context says how many VMs; None: as many as it has rows (tasks
    #: recorded before every planned migration had a row may have fewer).
    planned: int | None = None

    @property
    def key(self) -> tuple[str, ...]:
        """What makes two tasks the same cell (their passes are pooled)."""
        return self.key_across(None)

    def key_across(self, label: str | None) -> tuple[str, ...]:
        """The cell's key with one label left out (``None``: the whole key)."""
        labels = {**self.labels, "storage": self.storage, "tunnelling": self.tunnelling,
                  "flavor": self.flavor}
        if label is not None:
            labels[label] = ""
        return cell_key(labels)

    @property
    def total(self) -> int:
        """Every planned migration: the success rate's denominator."""
        return max(len(self.migrations), self.planned or 0)

    @property
    def provenance(self) -> dict[str, str]:
        """The code, benchmark host and boot, and the cloud's facts this cell ran with."""
        return {k: v for k, v in self.configuration.items()
                if k.startswith(("provenance ", "cloud "))}

    @property
    def session(self) -> tuple[str, str]:
        """(boot id of the benchmark host, rally_lm commit): cells alike in both pair."""
        return (self.configuration.get("provenance boot id", ""),
                self.configuration.get("provenance rally_lm commit", ""))

    @property
    def contended(self) -> list[str]:
        """Why any of its round trips ran on a contended host ([] if none did)."""
        return [why for load in self.host_loads if load.get("contended")
                for why in load.get("why", [])]

    @property
    def policy(self) -> str | None:
        """The migration policy label (policy sweeps; None in the storage study)."""
        return self.labels.get("policy")

    @property
    def link_mib_s(self) -> float | None:
        """The migration link's shaped rate in MiB/s, from the ``link_mbit`` label."""
        mbit = self.labels.get("link_mbit")
        try:
            return float(mbit) * 1e6 / 8 / 2**20 if mbit not in (None, "") else None
        except ValueError:
            return None

    @property
    def name(self) -> str:
        name = f"{self.storage} / tunnelling {self.tunnelling} / {self.flavor}"
        if self.policy:
            name += f" / {self.policy}"
        if self.labels.get("dirty_rate_mib"):
            name += f" / dirtying {self.labels['dirty_rate_mib']} MiB/s"
        if self.labels.get("network"):
            name += f" / {self.labels['network']}"
        return name

    @property
    def has_anatomy(self) -> bool:
        """Recorded by a rally_lm that dissects outages (older tasks lack the columns)."""
        return any("client_downtime_ms" in m for m in self.migrations)


def load(paths: list[Path], split: bool = True) -> list[Cell]:
    """The cells of Rally JSON reports; ``split``: one per dirty rate (split_by_dirty_rate)."""
    cells = []
    for path in paths:
        report = json.loads(Path(path).read_text())
        for task in report["tasks"]:
            for subtask in task["subtasks"]:
                for workload in subtask["workloads"]:
                    if "LiveMigration.evacuate_host" in workload["scenario"]:
                        cell = _cell(task["uuid"], workload)
                        cells += split_by_dirty_rate(cell, _per_vm_rates(workload)) \
                            if split else [cell]
    return cells


def _per_vm_rates(workload: dict) -> dict[str, float] | list[float] | None:
    """The dirty rate lm_workload gave each VM, when it gave them a list: by VM name from
    the Per VM table; for tasks recorded before it said so, the context's list (in boot
    order, matched by the index in the VM's old name)."""
    asked = {row["vm"]: row["dirty rate asked MiB/s"] for it in workload["data"]
             for row in per_vm_from_output(it["output"])
             if row.get("dirty rate asked MiB/s") is not None}
    if asked:
        return asked
    contexts = workload.get("contexts") or {}
    workload_context = contexts.get("lm_workload") or contexts.get("lm_workload@openstack") or {}
    rates = (workload_context.get("agent") or {}).get("dirty_rate_mib")
    return list(rates) if isinstance(rates, (list, tuple)) else None


def _vm_index(name: str) -> int | None:
    """The boot index in lm_workload's VM names (``rally-lm-<task>-vm<index>``)."""
    suffix = name.rsplit("-vm", 1)[-1] if "-vm" in name else ""
    return int(suffix) if suffix.isdigit() else None


def split_by_dirty_rate(cell: Cell,
                        rates: dict[str, float] | list[float] | None) -> list[Cell]:
    """One cell per dirty rate when the task's VMs dirtied memory at different rates.

    Each gets its VMs' migrations and TCP rows and the rate as its
    ``dirty_rate_mib`` label. The drains moved every VM of the task, so their
    time (the evacuation columns, the time budget) belongs to no single rate
    and the split cells carry none; nor do they carry the task's SLA verdicts,
    which judged every rate at once (``split_from`` names the task). A VM whose
    name gives no boot index keeps the task whole: better unsplit than mislabelled.
    """
    if isinstance(rates, dict):
        rate_of = {m["vm"]: rates.get(m["vm"]) for m in cell.migrations}
    else:
        if not rates:
            return [cell]
        indices = {m["vm"]: _vm_index(m["vm"]) for m in cell.migrations}
        if any(i is None or i >= len(rates) for i in indices.values()):
            return [cell]
        rate_of = {vm: rates[i] for vm, i in indices.items()}
    if None in rate_of.values() or len(set(rate_of.values())) < 2:
        return [cell]
    split = []
    for rate in sorted(set(rate_of.values())):
        vms = {vm for vm, r in rate_of.items() if r == rate}
        split.append(dataclasses.replace(
            cell, migrations=[m for m in cell.migrations if m["vm"] in vms], drains=[],
            per_vm_tcp=[r for r in cell.per_vm_tcp if r.get("vm") in vms],
            labels={**cell.labels, "dirty_rate_mib": f"{rate:g}"}, sla=[],
            split_from=cell.task,
            planned=2 * len(vms) * cell.iterations if cell.planned is not None else None))
    return split


def _drains(iteration: dict) -> list[dict[str, Any]]:
    table = drains_from_output(iteration["output"])
    if table:
        return table
    # Tasks recorded before the Evacuation table: the drain atomic actions.
    return [{"direction": a["name"].removeprefix("nova.drain_host_"), "attempted": None,
             "seconds": a["finished_at"] - a["started_at"]}
            for a in iteration["atomic_actions"]
            if a["name"].startswith("nova.drain_host_") and a.get("finished_at")]


def _host_load(configuration: dict[str, str]) -> dict[str, Any]:
    """The contention record from a Configuration table's ``host ...`` rows (Python
    literals, as the scenario wrote them)."""
    load: dict[str, Any] = {}
    for key, value in configuration.items():
        if key.startswith("host "):
            try:
                load[key.removeprefix("host ")] = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                load[key.removeprefix("host ")] = value
    return load


def _cell(task_uuid: str, workload: dict) -> Cell:
    args = workload["scenario"]["LiveMigration.evacuate_host"]
    labels = args.get("labels", {})
    migrations, drains, tcp, loads = [], [], [], []
    configuration: dict[str, str] = {}
    for number, iteration in enumerate(workload["data"]):
        migrations += [{**row, "iteration": number}
                       for row in migrations_from_output(iteration["output"])]
        drains += [{**d, "iteration": number} for d in _drains(iteration)]
        tcp += per_vm_from_output(iteration["output"])
        table = configuration_from_output(iteration["output"])
        configuration = configuration or table
        load = _host_load(table)
        if load:
            loads.append(load)
    config = {k: v for k, v in args.items() if k not in ("labels", "hypervisor_uris", "influx")}
    contexts = workload.get("contexts") or {}
    vms = (contexts.get("lm_workload") or contexts.get("lm_workload@openstack") or {}).get("count")
    return Cell(task=task_uuid, storage=labels.get("storage", "?"),
                tunnelling=labels.get("tunnelling", "?"), flavor=labels.get("flavor", "?"),
                config=config, migrations=migrations, drains=drains, per_vm_tcp=tcp,
                iterations=workload["total_iteration_count"],
                failed_iterations=workload["failed_iteration_count"],
                sla=workload["sla_results"].get("sla", []), labels=dict(labels),
                configuration=configuration, host_loads=loads,
                planned=2 * vms * workload["total_iteration_count"] if isinstance(vms, int)
                else None,
                window=(workload["start_time"], workload["start_time"]
                        + workload.get("full_duration", 0.0))
                if workload.get("start_time") else None)


def pool(found: list[Cell]) -> list[Cell]:
    """One cell per key: the tasks of a cell's several passes pooled, in their order.

    Iterations are renumbered after each other; the tasks are joined with
    "+". Their SLA verdicts stay each task's own (prefixed with its task).
    """
    grouped: dict[tuple, list[Cell]] = {}
    for cell in found:
        grouped.setdefault(cell.key, []).append(cell)
    pooled = []
    for group in grouped.values():
        if len(group) == 1:
            pooled.append(group[0])
            continue
        migrations, drains, offset = [], [], 0
        for cell in group:
            migrations += [{**m, "iteration": m["iteration"] + offset} for m in cell.migrations]
            drains += [{**d, "iteration": d.get("iteration", 0) + offset} for d in cell.drains]
            offset += cell.iterations
        windows = [c.window for c in group if c.window]
        pooled.append(dataclasses.replace(
            group[0], task="+".join(c.task for c in group), migrations=migrations,
            drains=drains, per_vm_tcp=[r for c in group for r in c.per_vm_tcp],
            iterations=sum(c.iterations for c in group),
            failed_iterations=sum(c.failed_iterations for c in group),
            sla=[{**s, "criterion": f"{c.task[:8]}: {s['criterion']}"} for c in group
                 for s in c.sla],
            host_loads=[h for c in group for h in c.host_loads],
            planned=sum(c.planned for c in group)
            if all(c.planned is not None for c in group) else None,
            window=(min(w[0] for w in windows), max(w[1] for w in windows)) if windows
            else None))
    return pooled


def summary(values: list[float]) -> dict[str, Any]:
    """n, mean, p50, p95 (None below MIN_FOR_P95 values) and max; the p50's and the
    p95's 95 % intervals (order statistics; a side None where n cannot bound it)."""
    if not values:
        return {"count": 0, "mean": None, "p50": None, "p95": None, "max": None,
                "p50_ci": [None, None], "p95_ci": [None, None]}
    arr = np.asarray(values, dtype=float)
    median, p95 = quantile_interval(arr, 0.5), quantile_interval(arr, 0.95)
    return {"count": int(arr.size), "mean": float(arr.mean()),
            "p50": float(np.percentile(arr, 50, method=PERCENTILE_METHOD)),
            "p95": float(np.percentile(arr, 95, method=PERCENTILE_METHOD))
            if arr.size >= MIN_FOR_P95 else None,
            "max": float(arr.max()),
            "p50_ci": [median.low, median.high], "p95_ci": [p95.low, p95.high]}


def switched(migrations: list[dict], name: str) -> list[float]:
    """A column over the migrations that switched hosts (succeeded): a migration that
    never left its host has no switchover to time."""
    return column([m for m in migrations if m["outcome"] in SUCCEEDED], name)


def failed_row(migration: dict[str, Any]) -> dict[str, Any]:
    """What an operator needs to follow up one failed migration."""
    return {"iteration": migration["iteration"], "vm": migration["vm"],
            "direction": migration["direction"],
            "hosts": f"{migration['source']} → {migration['target']}",
            "outcome": migration["outcome"], "duration_s": migration.get("duration_s"),
            # Tasks recorded before libvirt was asked have no such column.
            "running_on": migration.get("running_on"),
            "reason": migration.get("error") or ""}


def column(rows: list[dict], name: str) -> list[float]:
    """A column's values, where the rows have one."""
    return [r[name] for r in rows if r.get(name) is not None]


def drain_sums(cell: Cell) -> list[float]:
    """Per drain, the sum of its migrations' durations (the seed's "evacuation"): from the
    Evacuation table where it says so, else from the Migrations rows."""
    recorded = [d["migrations_s"] for d in cell.drains if d.get("migrations_s") is not None
                and d.get("attempted") != 0]
    if recorded:
        return recorded
    sums: dict[tuple, float] = {}
    for m in cell.migrations:
        if m.get("duration_s") is not None:
            key = (m["iteration"], m["direction"])
            sums[key] = sums.get(key, 0.0) + m["duration_s"]
    return list(sums.values())


def evacuation(drains: list[dict], direction: str) -> dict[str, float | None]:
    """Seconds of one direction's drains that moved at least one VM."""
    return summary([d["seconds"] for d in drains if d["direction"] == direction
                    and d.get("seconds") is not None and d.get("attempted") != 0])


def time_budget(cell: Cell) -> dict[str, float | None]:
    """Where a cell's evacuation time went: libvirt, the rest of Nova, and the tool.

    Over the drains that moved VMs: ``drains_s`` is their wall time,
    ``migrations_s`` the sum of the migrations' durations (API call to the
    server settled), ``libvirt_s`` libvirt's own total time of each job.
    ``nova_s`` = migrations - libvirt (Nova's API, conductor, pre- and
    post-migration work); ``tool_s`` = drains - migrations (what rally_lm does
    between migrations: waiting for Nova's record, asking libvirt, measuring
    the next guest's dirty rate). None where a part was not measured.
    """
    drains = [d["seconds"] for d in cell.drains if d.get("seconds") is not None
              and d.get("attempted") != 0]
    durations = column(cell.migrations, "duration_s")
    libvirt = [m["hypervisor_total_ms"] / 1000.0 for m in cell.migrations
               if m.get("hypervisor_total_ms") is not None and m.get("duration_s") is not None]
    drains_s = float(sum(drains)) if drains else None
    migrations_s = float(sum(durations)) if durations else None
    # libvirt's share only when every timed migration has its libvirt total.
    libvirt_s = float(sum(libvirt)) if durations and len(libvirt) == len(durations) else None
    return {
        "drains_s": drains_s, "migrations_s": migrations_s, "libvirt_s": libvirt_s,
        "nova_s": migrations_s - libvirt_s if None not in (migrations_s, libvirt_s) else None,
        "tool_s": drains_s - migrations_s if None not in (drains_s, migrations_s) else None,
        "tool_share": (drains_s - migrations_s) / drains_s
        if None not in (drains_s, migrations_s) and drains_s else None,
    }


def figures(cell: Cell) -> dict[str, Any]:
    ok = [m for m in cell.migrations if m["outcome"] in SUCCEEDED]
    failed = [failed_row(m) for m in cell.migrations if m["outcome"] not in SUCCEEDED]
    failures = dict(collections.Counter(m["outcome"] for m in failed))
    # Downtime: over the migrations that switched hosts. lm_max_downtime judges every
    # one that reached the hypervisor (an aborted one can pause the guest too): the
    # failed ones' silences are told apart here (failed_silence_ms), never mixed in.
    client_column = "client_downtime_ms" if cell.has_anatomy else "network_downtime_ms"
    failed_moved = [m for m in cell.migrations
                    if m["outcome"] not in SUCCEEDED and m["outcome"] not in ("refused",
                                                                             "skipped")]
    per_vm = {}
    for vm in sorted({m["vm"] for m in cell.migrations}):
        own = [m for m in cell.migrations if m["vm"] == vm]
        per_vm[vm] = {"migrations": len(own),
                      "succeeded": sum(m["outcome"] in SUCCEEDED for m in own),
                      "client_downtime_ms": summary(switched(own, client_column)),
                      "hypervisor_downtime_ms": summary(column(
                          [m for m in own if m["outcome"] in SUCCEEDED],
                          "hypervisor_downtime_ms"))}
    anatomy = {name: summary(switched(cell.migrations, name)) for name in ANATOMY} \
        if cell.has_anatomy else {}
    return {
        "succeeded": len(ok),
        # Every planned migration counts, even one a task recorded no row for.
        "total": cell.total,
        "evacuation_out_s": evacuation(cell.drains, "out"),
        "evacuation_back_s": evacuation(cell.drains, "back"),
        "duration_s": summary(column(ok, "duration_s")),
        "nova_completed_s": summary(column(ok, "nova_completed_s")),
        "client_downtime_ms": summary(switched(cell.migrations, client_column)),
        "failed_silence_ms": summary(downtime_values(failed_moved, client_column)),
        "network_downtime_ms": summary(switched(cell.migrations, "network_downtime_ms")),
        "anatomy": anatomy,
        "icmp_client_downtime_ms": summary(switched(cell.migrations,
                                                    "icmp_client_downtime_ms")),
        "icmp_resume_lag_ms": summary(switched(cell.migrations, "icmp_resume_lag_ms")),
        "hypervisor_downtime_ms": summary(column(ok, "hypervisor_downtime_ms")),
        "dirty_rate_mib_s": summary(column(cell.migrations, "dirty_rate_mib_s")),
        "outcomes": dict(collections.Counter(m["outcome"] for m in cell.migrations)),
        "copy_modes": dict(collections.Counter(m["copy_mode"] for m in cell.migrations
                                               if m.get("copy_mode"))),
        "postcopy_ms": summary(column(cell.migrations, "postcopy_ms")),
        "throttle_max_pct": summary(column(cell.migrations, "throttle_max_pct")),
        "pause_ms": summary(switched(cell.migrations, "pause_ms")),
        "tcp_max_stall_ms": summary(downtime_values(cell.migrations, "tcp_max_stall_ms")),
        # Per VM (the TCP stream runs the whole round trip): its longest stall anywhere.
        "tcp_longest_stall_ms": max([r["TCP longest stall ms"] for r in cell.per_vm_tcp
                                     if r.get("TCP longest stall ms") is not None]
                                    + downtime_values(cell.migrations, "tcp_max_stall_ms"),
                                    default=None),
        "tcp_bytes_lost": int(sum(r.get("TCP bytes lost") or 0 for r in cell.per_vm_tcp)),
        "tcp_bytes_corrupted": int(sum(r.get("TCP bytes corrupted") or 0
                                       for r in cell.per_vm_tcp)),
        "tcp_resets": int(sum(r.get("TCP resets") or 0 for r in cell.per_vm_tcp)),
        "tcp_connections_broken": sum(1 for r in cell.per_vm_tcp
                                      if r.get("TCP connection kept") is False),
        "time_budget": time_budget(cell),
        "failures": failures,
        "tool_failures": {k: v for k, v in failures.items() if k in NOT_MIGRATION_FAILURES},
        "failed": failed,
        "per_vm": per_vm,
    }
