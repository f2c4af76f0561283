"""What following the migrations costs the cloud: the same cell under different observers.

Runs one testbed cell (a task args file) several times, interleaving the
arms (A B C A B C: drift in the machine hits every arm alike). An arm is a
checkout of rally_lm (its directory goes first on PYTHONPATH, so Rally loads
that code's plugins; its own task template is used) and the ``observer``
task argument, if that code has one:

    .venv/bin/python bench/observer_effect.py task_templates/args/testbed-shared-off.yaml \
        --arm before=/work/old --arm adaptive=.:adaptive --arm minimal=.:minimal \
        --repeats 3 --out /work/observer

Per run it prints, from evidence the observer does not own where it can:

* requests to Nova and to Neutron between the first migration's call and the
  last one's end (nova-api's and neutron-server's own request logs, by the
  client address: the probe namespace is rally_lm, the controller is nova-api
  asking Neutron for a server's ports);
* each migration's time by Nova's own record (created -> last updated, whole
  seconds, written by Nova whatever we poll) and by libvirt (the job's total),
  beside the tool's duration (which the observer's look interval bounds);
* the drains' wall time, the sum of their migrations' durations, and the
  tool's time between migrations (its share of the drain);
* client downtime.

Then, per arm, the median over runs of each run's median and the spread
between runs (min..max): a difference between arms smaller than the spread
between the runs of one arm is no difference. Root and a testbed that is up.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rally_lm.clients.nova import nova_time, route  # noqa: E402
from rally_lm.report import cells  # noqa: E402

LOG_DIR = Path("/var/lib/rally-lm/testbed/log")
#: nova-api's request log line: time, client address, method and path.
NOVA_LINE = re.compile(r"^(?P<stamp>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) .*"
                       r"nova\.api\.openstack\.requestlog .*\] (?P<client>[\d.]+) "
                       r'"(?P<method>[A-Z]+) (?P<path>\S+)"')
NEUTRON_LINE = re.compile(r"^(?P<stamp>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) .*"
                          r"neutron\.wsgi .*\] (?P<client>[\d.]+) "
                          r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP')


def log_requests(path: Path, pattern: re.Pattern, start: float, end: float) -> list[dict]:
    """The requests a service logged between two wall times (its local-time stamps)."""
    found = []
    if not path.exists():
        return found
    for line in path.read_text(errors="replace").splitlines():
        match = pattern.match(line)
        if not match:
            continue
        when = datetime.datetime.strptime(match["stamp"], "%Y-%m-%d %H:%M:%S.%f").timestamp()
        if start <= when <= end:
            found.append({"t": when, "client": match["client"],
                          "route": route(match["method"], match["path"])})
    return found


def records(report: Path) -> list[dict]:
    """Every migration record of the task (the "Migration records (JSON)" output)."""
    data = json.loads(report.read_text())
    found = []
    for task in data["tasks"]:
        for subtask in task["subtasks"]:
            for workload in subtask["workloads"]:
                for iteration in workload["data"]:
                    for chart in iteration["output"]["complete"]:
                        if chart["title"] == "Migration records (JSON)":
                            found += json.loads(chart["data"][0])
    return found


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def run_figures(report: Path, probe_ip: str, controller: str) -> dict:
    rows = records(report)
    moved = [r for r in rows if r["outcome"] != "skipped"]
    done = [r for r in moved if r["outcome"] in ("completed", "timeout_forced")]
    start = min(r["started_at"] for r in moved)
    end = max(r["finished_at"] for r in moved)
    nova = log_requests(LOG_DIR / "nova-api.log", NOVA_LINE, start, end)
    neutron = log_requests(LOG_DIR / "neutron-server.log", NEUTRON_LINE, start, end)
    ours = [r for r in nova if r["client"] == probe_ip]
    (cell,) = cells.load([report], split=False)
    budget = cells.time_budget(cell)
    spans = [nova_time(r["nova_updated_at"]) - nova_time(r["nova_created_at"]) for r in done
             if r.get("nova_updated_at") and r.get("nova_created_at")]
    libvirt = [r["measurements"]["hypervisor"]["total_ms"] / 1000.0 for r in done
               if "total_ms" in r["measurements"].get("hypervisor", {})]
    client = [m["client_downtime_ms"] for m in cell.migrations
              if m.get("client_downtime_ms") is not None]
    return {
        "migrations": len(moved), "succeeded": len(done),
        "nova_requests": len(ours), "nova_requests_per_migration": len(ours) / len(moved),
        "nova_routes": dict(sorted(_count(r["route"] for r in ours).items())),
        "neutron_requests": len(neutron),
        # Asked by nova-api (the controller's address): on behalf of a server read.
        "neutron_port_listings_per_migration":
            sum(r["route"] == "GET /ports" and r["client"] == controller
                for r in neutron) / len(moved),
        "duration_s": median([r["duration"] for r in done]),
        "nova_record_s": median(spans),
        "libvirt_s": median(libvirt),
        "nova_share": (1 - sum(libvirt) / sum(r["duration"] for r in done))
        if libvirt and len(libvirt) == len(done) else None,
        "client_downtime_ms": median(client),
        "drains_s": budget["drains_s"], "migrations_s": budget["migrations_s"],
        "tool_share": budget["tool_share"],
    }


def _count(items) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return counts


def arms(specs: list[str]) -> list[tuple[str, Path, str | None]]:
    parsed = []
    for spec in specs:
        name, _, where = spec.partition("=")
        code, _, observer = where.partition(":")
        parsed.append((name, Path(code or ".").resolve(), observer or None))
    return parsed


FIGURES = ("nova_requests_per_migration", "neutron_port_listings_per_migration", "duration_s",
           "nova_record_s", "libvirt_s", "nova_share", "client_downtime_ms", "tool_share")


def summary(results: dict[str, list[dict]]) -> None:
    print("\nper arm: median of the runs' medians [min..max between runs], n runs")
    print(f"{'figure':<38}" + "".join(f" {name:>27}" for name in results))
    for figure in FIGURES:
        cells_ = []
        for runs in results.values():
            values = [r[figure] for r in runs if r.get(figure) is not None]
            cells_.append(f"{statistics.median(values):.3g} [{min(values):.3g}.."
                          f"{max(values):.3g}] n={len(values)}" if values else "-")
        print(f"{figure:<38}" + "".join(f" {c:>27}" for c in cells_))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("args_file", type=Path)
    parser.add_argument("--arm", action="append", required=True,
                        help="NAME=CODE_DIR[:observer], e.g. before=/work/old")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--summarise", action="store_true",
                        help="print the summary of the runs already in --out, run nothing")
    args = parser.parse_args()
    state = args.out / "runs.json"
    if args.summarise:
        summary(json.loads(state.read_text()))
        return 0

    from rally_lm_testbed import layout, policy, rally_runner, testbed

    cell = yaml.safe_load(args.args_file.read_text())
    mode = testbed.read_mode()
    wanted = {"storage": cell["storage"], "tunnelled": str(cell["tunnelling"])}
    if {k: mode[k] for k in wanted} != wanted:
        testbed.set_mode(wanted["storage"], wanted["tunnelled"], policy.Policy().to_dict(),
                         reset_policy=True)
    probe_ip = layout.PROBE_MGMT_IP
    results: dict[str, list[dict]] = {name: [] for name, _code, _obs in arms(args.arm)}
    args.out.mkdir(parents=True, exist_ok=True)
    for repeat in range(args.repeats):
        for name, code, observer in arms(args.arm):
            os.environ["PYTHONPATH"] = str(code)
            extra = json.dumps({"observer": observer}) if observer else None
            began = time.time()
            run = rally_runner.run_task(code / "task_templates" / "evacuate_host.yaml.j2",
                                        args.args_file, args.out / f"{name}-{repeat}",
                                        extra_args=extra)
            if run.json is None:
                print(f"{name} #{repeat}: no report (exit {run.exit_code}); see {run.log}")
                continue
            figures = {"arm": name, "repeat": repeat, "task": run.uuid,
                       "seconds": round(time.time() - began, 1),
                       **run_figures(run.json, probe_ip, layout.CONTROLLER.ip)}
            results[name].append(figures)
            print(json.dumps(figures), flush=True)
            state.write_text(json.dumps(results, indent=1))
    summary(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
