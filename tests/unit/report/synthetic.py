"""Rally JSON reports written by a test: Migrations rows and labels, as the scenario does."""

import json

import numpy as np

from rally_lm.task.output import CONFIGURATION_TITLE, MIGRATION_COLUMNS, MIGRATIONS_TITLE


def rows(downtimes, durations, outcomes=None, vm="rally-lm-abcd1234-vm0"):
    made = []
    for index, (downtime, duration) in enumerate(zip(downtimes, durations, strict=True)):
        row = dict.fromkeys(MIGRATION_COLUMNS)
        row.update(vm=f"{vm[:-1]}{index % 3}", direction="out" if index % 2 == 0 else "back",
                   source="hv1", target="hv2",
                   outcome=(outcomes[index] if outcomes else "completed"),
                   client_downtime_ms=downtime, duration_s=duration,
                   hypervisor_downtime_ms=downtime / 3, tcp_max_stall_ms=downtime * 1.1)
        made.append([row[c] for c in MIGRATION_COLUMNS])
    return made


def report(path, task, table_rows, labels=None, configuration=None, per_iteration=12):
    """A `rally task report --json` file with one evacuate_host workload."""
    labels = labels or {"storage": "ceph", "tunnelling": "off", "flavor": "lm.small"}
    iterations = []
    for start in range(0, len(table_rows), per_iteration):
        config = {**labels, **(configuration or {})}
        iterations.append({"duration": 60.0, "timestamp": 1.8e9, "idle_duration": 0.0,
                           "error": [], "atomic_actions": [], "output": {"additive": [],
                           "complete": [
                               {"title": MIGRATIONS_TITLE, "chart_plugin": "Table",
                                "data": {"cols": MIGRATION_COLUMNS,
                                         "rows": table_rows[start:start + per_iteration]}},
                               {"title": CONFIGURATION_TITLE, "chart_plugin": "Table",
                                "data": {"cols": ["setting", "value"],
                                         "rows": [[k, str(v)] for k, v in config.items()]}}]}})
    workload = {"scenario": {"LiveMigration.evacuate_host": {"labels": labels}},
                "data": iterations, "total_iteration_count": len(iterations),
                "failed_iteration_count": 0, "sla_results": {"sla": []},
                "start_time": 1.8e9, "full_duration": 600.0}
    path.write_text(json.dumps({"tasks": [{"uuid": task, "subtasks": [
        {"workloads": [workload]}]}]}))
    return path


def draw(centre, spread, n, seed):
    return [round(float(v), 3) for v in np.random.default_rng(seed).normal(centre, spread, n)]
