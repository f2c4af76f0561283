"""Linuxbridge against OVN, the same cell, in alternating blocks.

The testbed runs one network backend at a time, so the two cannot be
interleaved migration by migration. This runs the same cell (a task args
file's storage and tunnelling, its network label replaced) in blocks,
A B A B ...: the testbed is brought down and up again on the other backend
between blocks, so drift in the machine over the session hits both alike,
and the spread between one backend's blocks shows the run-to-run noise any
difference between backends must beat.

    .venv/bin/python bench/network_side_by_side.py \
        task_templates/args/testbed-linuxbridge-ceph-off.yaml \
        --vms 3 --round-trips 3 --blocks 2 --out /work/side-by-side

Per block it prints the medians (client downtime, migration time, libvirt's
downtime, the network's share), what ended the network's share, and the
cores each kind of work used (the testbed's cgroups: a backend whose own
machinery runs beside the guests shows there); at the
end `rally-lm compare --across network` over each backend's pooled blocks
(linuxbridge the baseline), and each backend's first migration of each VM
against its later ones. Root; it leaves the testbed up on the last backend.
"""

from __future__ import annotations

import argparse
import ast
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rally_lm.stats import change  # noqa: E402
from rally_lm.task.output import (  # noqa: E402
    configuration_from_output,
    migrations_from_output,
)

BACKENDS = ("linuxbridge", "ovn")
FIGURES = ("client_downtime_ms", "duration_s", "hypervisor_downtime_ms", "network_share_ms")


def cell_args(source: dict, network: str, vms: int, round_trips: int) -> dict:
    """The args file's cell on ``network``: OVN adds its southbound view."""
    cell = {**source, "network_backend": network, "vm_count": vms, "round_trips": round_trips}
    if network == "ovn":
        cell.setdefault("ovn_sb_connection", "tcp:10.231.0.10:6642")
    else:
        cell.pop("ovn_sb_connection", None)
    return cell


def on_backend(network: str, storage: str, tunnelled: str) -> float:
    """The testbed up on ``network`` in the cell's mode; seconds spent switching."""
    from rally_lm_testbed import policy, testbed

    began = time.monotonic()
    if testbed.is_up() and testbed.read_mode()["network"] != network:
        testbed.down()
    testbed.up(network)
    mode = testbed.read_mode()
    if (mode["storage"], mode["tunnelled"]) != (storage, tunnelled):
        testbed.set_mode(storage, tunnelled, policy.Policy().to_dict(), reset_policy=True)
    return time.monotonic() - began


def rows_of(report: Path) -> list[dict]:
    data = json.loads(report.read_text())
    workload = data["tasks"][0]["subtasks"][0]["workloads"][0]
    return [m for it in workload["data"] for m in migrations_from_output(it["output"])]


def machine_of(report: Path) -> dict:
    """Cores each kind of work used over the task's round trips, from each round
    trip's contention record (the testbed's cgroups' own CPU accounting): the
    guests' group (QEMU, libvirtd, what libvirt runs) beside QEMU's own share."""
    data = json.loads(report.read_text())
    workload = data["tasks"][0]["subtasks"][0]["workloads"][0]
    seconds, qemu, groups, busy = 0.0, 0.0, {}, []
    for it in workload["data"]:
        config = configuration_from_output(it["output"])
        if "host seconds" not in config:
            continue
        seconds += float(config["host seconds"])
        qemu += float(config["host guests_cpu_s"])
        busy.append(float(config["host busy_share"]))
        for group, cpu in ast.literal_eval(config["host groups_cpu_s"]).items():
            groups[group] = groups.get(group, 0.0) + cpu
    if not seconds:
        return {}
    return {"busy_share": round(statistics.mean(busy), 3),
            "qemu_cores": round(qemu / seconds, 2),
            **{f"{group}_cores": round(cpu / seconds, 2) for group, cpu in groups.items()}}


def moved(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r.get("outcome") in ("completed", "timeout_forced")]


def summary(rows: list[dict]) -> dict:
    done = moved(rows)
    out: dict = {"migrations": len(rows), "completed": len(done)}
    for key in FIGURES:
        values = [r[key] for r in done if isinstance(r.get(key), (int, float))]
        out[f"{key}_p50"] = round(statistics.median(values), 1) if values else None
    ended: dict[str, int] = {}
    for r in done:
        # "activated hv2" -> "activated": which step, whichever chassis.
        label = r["network_ended_by"].split(" ")[0] if r.get("network_ended_by") else "none named"
        ended[label] = ended.get(label, 0) + 1
    out["network_ended_by"] = ended
    return out


def first_against_later(rows: list[dict]) -> dict:
    """Each VM's first completed migration against its later ones (client downtime)."""
    seen: set[str] = set()
    first, later = [], []
    for r in moved(rows):
        value = r.get("client_downtime_ms")
        if not isinstance(value, (int, float)):
            continue
        (later if r["vm"] in seen else first).append(value)
        seen.add(r["vm"])
    if len(first) < 2 or len(later) < 2:
        return {"n_first": len(first), "n_later": len(later)}
    verdict = change.compare("client_downtime_ms", first, later)
    return {"n_first": len(first), "n_later": len(later),
            "first_p50": statistics.median(first), "later_p50": statistics.median(later),
            "verdict": verdict.to_dict()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("args_file", type=Path)
    parser.add_argument("--vms", type=int, default=3)
    parser.add_argument("--round-trips", type=int, default=3)
    parser.add_argument("--blocks", type=int, default=2, help="blocks per backend")
    parser.add_argument("--first", choices=BACKENDS, default="ovn",
                        help="the backend of the first block")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    from rally_lm_testbed import rally_runner

    source = yaml.safe_load(args.args_file.read_text())
    storage, tunnelled = source["storage"], str(source["tunnelling"])
    order = [args.first, *[b for b in BACKENDS if b != args.first]] * args.blocks
    args.out.mkdir(parents=True, exist_ok=True)
    blocks = []
    for index, network in enumerate(order, 1):
        switch_s = on_backend(network, storage, tunnelled)
        block_args = args.out / f"block{index}-{network}.yaml"
        block_args.write_text(yaml.safe_dump(cell_args(source, network, args.vms,
                                                       args.round_trips)))
        began = time.time()
        run = rally_runner.run_task(ROOT / "task_templates" / "evacuate_host.yaml.j2",
                                    block_args, args.out)
        block = {"block": index, "network": network, "task": run.uuid,
                 "exit_code": run.exit_code, "switch_s": round(switch_s, 1),
                 "task_s": round(time.time() - began, 1),
                 "report": str(run.json) if run.json else None}
        if run.json:
            block.update(summary(rows_of(run.json)))
            block["machine"] = machine_of(run.json)
        blocks.append(block)
        print(json.dumps(block), flush=True)

    by_network = {n: [Path(b["report"]) for b in blocks if b["network"] == n and b["report"]]
                  for n in BACKENDS}
    result: dict = {"blocks": blocks, "first_against_later": {}}
    for network, reports in by_network.items():
        rows = [r for report in reports for r in rows_of(report)]
        result["first_against_later"][network] = first_against_later(rows)
        result[f"{network}_pooled"] = summary(rows)
    (args.out / "side-by-side.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "blocks"}, indent=1))
    if all(by_network.values()):
        compare = subprocess.run(
            [str(Path(sys.executable).with_name("rally-lm")), "compare", "--across", "network",
             "--baseline", *map(str, by_network["linuxbridge"]),
             "--candidate", *map(str, by_network["ovn"]), "--out", str(args.out / "compare")],
            capture_output=True, text=True)
        print(compare.stdout + compare.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
