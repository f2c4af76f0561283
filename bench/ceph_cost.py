"""What the testbed's Ceph costs while idle: RSS and CPU of its mon, mgr and OSD.

On an up testbed with no guests running (root):

    .venv/bin/python bench/ceph_cost.py --seconds 60

Reads /proc of each daemon at the start and the end of the window: CPU is
(user + system time) / wall time, in percent of one core; RSS is the end's
VmRSS. Ceph's own health is printed with them.
"""

from __future__ import annotations

import argparse
import os
import time

from rally_lm_testbed import ceph, hosts

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def rss_mib(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    pids = {name: hosts.running_pid(name) for name in ceph.daemons()}
    missing = [name for name, pid in pids.items() if pid is None]
    if missing:
        print(f"not running: {', '.join(missing)} (rally-lm testbed up first)")
        return 1
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    began = time.monotonic()
    time.sleep(args.seconds)
    wall = time.monotonic() - began
    total_cpu, total_rss = 0.0, 0.0
    print(f"{'daemon':<10} {'CPU % of a core':>16} {'RSS MiB':>9}")
    for name, pid in pids.items():
        cpu = (cpu_seconds(pid) - before[name]) / wall * 100
        rss = rss_mib(pid)
        total_cpu, total_rss = total_cpu + cpu, total_rss + rss
        print(f"{name:<10} {cpu:>16.2f} {rss:>9.0f}")
    print(f"{'total':<10} {total_cpu:>16.2f} {total_rss:>9.0f}   over {wall:.0f} s; "
          f"health: {ceph.status().get('health')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
