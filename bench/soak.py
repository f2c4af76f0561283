"""A soak: hundreds of consecutive migrations in one Rally task, and what they leave behind.

Runs one testbed task with many round trips (Rally iterations, one after
another; e.g. 3 VMs x 50 round trips = 300 migrations) and, while it runs, samples
the memory (RSS) and CPU of the Rally process - the probes, the observer and
the listeners are its threads - and of any process it started. Afterwards,
from Rally's own JSON report:

* every planned migration has its row (VMs x 2 x round trips), none of them
  ``tool_error`` or ``unknown``, and the records the scenario kept (the
  Migration records JSON) match the rows one for one;
* Rally's RSS over the task, as a least-squares slope in MiB per hour and per
  100 migrations, over the part of the task after the first round trip
  (boot and imports are growth that stops);
* how the per-migration figures drift over the task (first and last fifth).

    .venv/bin/python bench/soak.py task_templates/args/testbed-shared-off.yaml \
        --vms 3 --round-trips 50 --out /work/soak

Root and a testbed that is up. It is a benchmark: the figures are printed and
kept in <out>/soak.json, nothing is asserted but that the run is whole.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rally_lm.report import cells  # noqa: E402
from rally_lm.task.output import migrations_from_output  # noqa: E402

PAGE = 4096


def _children(pid: int) -> list[int]:
    """pid and every descendant, from /proc (a task's rally runs under ip netns exec)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, []))
    return found


def _sample(pid: int) -> dict | None:
    """RSS (MiB), CPU seconds and threads of one process; None once it is gone."""
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        rss_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    ticks = 100.0
    return {"comm": comm, "rally": "rally" in cmdline and "task start" in cmdline,
            "rss_mib": rss_pages * PAGE / 2**20,
            "cpu_s": (int(fields[11]) + int(fields[12])) / ticks, "threads": int(fields[17])}


class Sampler:
    """Every ``interval`` seconds, the Rally process's RSS, CPU and threads."""

    def __init__(self, root_pid: int, interval: float = 10.0) -> None:
        self.root_pid, self.interval = root_pid, interval
        self.samples: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        began = time.monotonic()
        while not self._stop.wait(self.interval):
            rally = [s for s in (_sample(p) for p in _children(self.root_pid)) if s and s["rally"]]
            if rally:
                main = max(rally, key=lambda s: s["rss_mib"])
                self.samples.append({"t": round(time.monotonic() - began, 1), "wall": time.time(),
                                     **{k: main[k] for k in ("rss_mib", "cpu_s", "threads")}})

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def slope_per_hour(samples: list[dict], key: str, after_wall: float) -> tuple[float, int]:
    """Least-squares slope of ``key`` per hour over the samples after ``after_wall``."""
    kept = [s for s in samples if s["wall"] >= after_wall]
    if len(kept) < 3:
        return float("nan"), len(kept)
    t = np.array([s["wall"] for s in kept]) / 3600.0
    y = np.array([s[key] for s in kept])
    return float(np.polyfit(t - t[0], y, 1)[0]), len(kept)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("args_file", type=Path)
    parser.add_argument("--vms", type=int, default=3)
    parser.add_argument("--round-trips", type=int, default=50)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--result-chunk", type=int, metavar="N",
                        help="Rally's raw_result_chunk_size: how many iterations' results "
                             "Rally holds in memory before it writes them to its database "
                             "(Rally's default, 1000, holds a whole soak until the end)")
    args = parser.parse_args()

    from rally_lm_testbed import policy, rally_runner, testbed

    cell = yaml.safe_load(args.args_file.read_text())
    # One task: each Rally iteration is one round trip, run one after another.
    cell.update({"vm_count": args.vms, "round_trips": args.round_trips})
    mode = testbed.read_mode()
    wanted = {"storage": cell["storage"], "tunnelled": str(cell["tunnelling"])}
    if {k: mode[k] for k in wanted} != wanted:
        testbed.set_mode(wanted["storage"], wanted["tunnelled"], policy.Policy().to_dict(),
                         reset_policy=True)
    args.out.mkdir(parents=True, exist_ok=True)
    soak_args = args.out / "soak-args.yaml"
    soak_args.write_text(yaml.safe_dump(cell))
    planned = args.vms * 2 * args.round_trips
    began = time.time()
    config = None
    if args.result_chunk:
        config = args.out / "rally-chunk.conf"
        config.write_text(f"[DEFAULT]\nraw_result_chunk_size = {args.result_chunk}\n")
    proc = rally_runner.start_task(ROOT / "task_templates" / "evacuate_host.yaml.j2", soak_args,
                                   config=config)
    with Sampler(proc.pid) as sampler:
        output, _ = proc.communicate()
    run = rally_runner.collect(output, proc.returncode, soak_args, args.out)
    seconds = time.time() - began
    if run.json is None:
        print(f"no report (exit {run.exit_code}); see {run.log}")
        return 1

    data = json.loads(run.json.read_text())
    workload = data["tasks"][0]["subtasks"][0]["workloads"][0]
    rows = [m for it in workload["data"] for m in migrations_from_output(it["output"])]
    kept_records = 0
    for it in workload["data"]:
        for chart in it["output"]["complete"]:
            if chart["title"].startswith("Migration records"):
                kept_records += len(json.loads(chart["data"][0]))
    outcomes: dict[str, int] = {}
    for row in rows:
        outcomes[row["outcome"]] = outcomes.get(row["outcome"], 0) + 1
    (measured,) = cells.load([run.json], split=False)
    # Growth after the first round trip (Rally's first iteration), when imports,
    # boots and first-use caches are done.
    first = workload["data"][0]
    after = first["timestamp"] + first["duration"]
    rss_slope, rss_n = slope_per_hour(sampler.samples, "rss_mib", after)
    fifth = max(1, len(rows) // 5)
    moved = [r for r in rows if r["outcome"] in ("completed", "timeout_forced")]

    def drift(key: str) -> dict:
        first = [r[key] for r in moved[:fifth] if r.get(key) is not None]
        last = [r[key] for r in moved[-fifth:] if r.get(key) is not None]
        return {"first_fifth_p50": statistics.median(first) if first else None,
                "last_fifth_p50": statistics.median(last) if last else None, "n": fifth}

    rss = [s["rss_mib"] for s in sampler.samples]
    figures = {
        "task": run.uuid, "exit_code": run.exit_code, "seconds": round(seconds, 1),
        "rally_raw_result_chunk_size": args.result_chunk or "Rally's default",
        "planned": planned, "rows": len(rows), "records_kept": kept_records,
        "outcomes": outcomes,
        "tool_errors": outcomes.get("tool_error", 0) + outcomes.get("unknown", 0),
        "rss_mib_first": round(rss[0], 1) if rss else None,
        "rss_mib_max": round(max(rss), 1) if rss else None,
        "rss_mib_last": round(rss[-1], 1) if rss else None,
        "rss_slope_mib_per_hour": round(rss_slope, 2), "rss_samples": rss_n,
        "rss_slope_mib_per_100_migrations": round(rss_slope * seconds / 3600 / planned * 100, 3)
        if rss else None,
        "threads_first": sampler.samples[0]["threads"] if sampler.samples else None,
        "threads_last": sampler.samples[-1]["threads"] if sampler.samples else None,
        "rally_cpu_s": sampler.samples[-1]["cpu_s"] if sampler.samples else None,
        "drift": {k: drift(k) for k in ("duration_s", "client_downtime_ms",
                                        "hypervisor_downtime_ms", "nova_requests")},
        "sla": [(s["criterion"], s["success"]) for s in measured.sla],
    }
    (args.out / "soak.json").write_text(json.dumps({"figures": figures,
                                                    "samples": sampler.samples}, indent=1))
    print(json.dumps(figures, indent=1))
    whole = len(rows) == planned == kept_records and figures["tool_errors"] == 0
    print("whole: every planned migration has its row and record, no tool errors"
          if whole else "NOT whole: see the counts above")
    return 0 if whole else 1


if __name__ == "__main__":
    raise SystemExit(main())
