"""How busy the benchmark host was while it measured: the contention record.

A migration's duration and a guest's answers depend on CPU time: Nova's
services, the emulated guests of a one-machine testbed and the probes
themselves all take it. So every round trip records what the host it ran on
went through, read from ``/proc`` by a thread every ``interval`` seconds:

=================  ======================================================
``busy_share``     CPU time spent (all but idle and iowait) / all CPU time
``steal_share``    time the hypervisor under this machine gave to others
``iowait_share``   time idle waiting for I/O
``runnable_max``   the most threads ready to run at one sample
``load1_max``      the highest 1-minute load average
``tool_cpu_s``     CPU seconds of this process: Rally and the probes
``guests_cpu_s``   CPU seconds of the QEMU processes visible from here (the
                   testbed's guests; None where none is, as on a Rally host
                   apart from the cloud)
``groups_cpu_s``   CPU seconds of the testbed's cgroups (control, bench,
                   guests), where they exist
=================  ======================================================

A round trip is *contended* when the host had no headroom: busy
``CONTENDED_BUSY`` of the time or more on average, steal
``CONTENDED_STEAL`` or more, or more runnable threads than twice the CPUs
in ``CONTENDED_RUNNABLE_SHARE`` of the samples or more. ``why`` says which.
Nothing here is a measurement of a migration: it says how much to trust them.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from pathlib import Path
from typing import Any

CONTENDED_BUSY = 0.95
CONTENDED_STEAL = 0.05
CONTENDED_RUNNABLE_SHARE = 0.25
CGROUP_ACCT = Path("/sys/fs/cgroup/cpuacct")
CGROUP_PREFIX = "rally-lm-"
_TICK = os.sysconf("SC_CLK_TCK")
_QEMU = ("qemu-system", "qemu-kvm")


@dataclasses.dataclass
class HostLoad:
    """The contention record of one round trip (see the module docstring)."""

    seconds: float
    cpus: int
    samples: int
    busy_share: float
    steal_share: float
    iowait_share: float
    runnable_max: int
    load1_max: float
    tool_cpu_s: float
    guests_cpu_s: float | None
    groups_cpu_s: dict[str, float]
    contended: bool
    why: list[str]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HostLoad:
        return cls(**data)


def cpu_times(stat: str) -> tuple[float, float, float, float]:
    """(total, idle, iowait, steal) jiffies from ``/proc/stat``'s first line."""
    fields = [float(x) for x in stat.split("\n", 1)[0].split()[1:]]
    # user nice system idle iowait irq softirq steal [guest guest_nice: inside user]
    total = sum(fields[:8])
    return total, fields[3], fields[4], fields[7] if len(fields) > 7 else 0.0


def runnable(stat: str) -> int:
    for line in stat.splitlines():
        if line.startswith("procs_running "):
            return int(line.split()[1])
    return 0


def process_cpu_s(stat: str) -> float:
    """utime + stime of a ``/proc/<pid>/stat`` line, in seconds (all its threads)."""
    # The command may hold spaces and parentheses: fields start after the last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def judge(busy: float, steal: float, runnable_share: float) -> list[str]:
    """Why a round trip counts as contended ([]: it does not)."""
    why = []
    if busy >= CONTENDED_BUSY:
        why.append(f"CPUs busy {busy:.0%} of the time (>= {CONTENDED_BUSY:.0%})")
    if steal >= CONTENDED_STEAL:
        why.append(f"steal {steal:.1%} (>= {CONTENDED_STEAL:.0%}): the machine under this one "
                   "took CPU time")
    if runnable_share >= CONTENDED_RUNNABLE_SHARE:
        why.append(f"more runnable threads than twice the CPUs in {runnable_share:.0%} of the "
                   f"samples (>= {CONTENDED_RUNNABLE_SHARE:.0%})")
    return why


class HostLoadSampler:
    """Samples the host's load in a thread from ``start()`` to ``stop()``."""

    def __init__(self, interval: float = 2.0, proc: Path = Path("/proc"),
                 cgroups: Path = CGROUP_ACCT) -> None:
        self.interval = interval
        self.proc = proc
        self.cgroups = cgroups
        self.cpus = os.cpu_count() or 1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="host-load", daemon=True)
        self._comm: dict[str, str] = {}
        self._guest_cpu: dict[str, float] = {}
        self._runnable: list[int] = []
        self._load1: list[float] = []
        self._first: dict[str, Any] = {}

    def _read(self, *parts: str) -> str:
        return (self.proc.joinpath(*parts)).read_text()

    def _groups(self) -> dict[str, float]:
        found = {}
        for path in sorted(self.cgroups.glob(f"{CGROUP_PREFIX}*")):
            try:
                found[path.name.removeprefix(CGROUP_PREFIX)] = \
                    int((path / "cpuacct.usage").read_text()) / 1e9
            except (OSError, ValueError):
                continue
        return found

    def _guests(self) -> None:
        """Each visible QEMU process's CPU seconds so far (kept after it exits)."""
        try:
            pids = [p for p in os.listdir(self.proc) if p.isdigit()]
        except OSError:
            return
        alive = set(pids)
        self._comm = {p: c for p, c in self._comm.items() if p in alive}
        for pid in pids:
            if pid not in self._comm:
                try:
                    self._comm[pid] = self._read(pid, "comm").strip()
                except OSError:
                    continue
            if self._comm[pid].startswith(_QEMU):
                try:
                    self._guest_cpu[pid] = process_cpu_s(self._read(pid, "stat"))
                except (OSError, IndexError, ValueError):
                    continue

    def _snapshot(self) -> dict[str, Any]:
        stat = self._read("stat")
        self._runnable.append(runnable(stat))
        self._load1.append(float(self._read("loadavg").split()[0]))
        self._guests()
        return {"t": time.monotonic(), "cpu": cpu_times(stat),
                "tool": process_cpu_s(self._read("self", "stat")),
                "guests": dict(self._guest_cpu), "groups": self._groups()}

    def start(self) -> HostLoadSampler:
        self._first = self._snapshot()
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._snapshot()
            except OSError:
                continue

    def stop(self) -> HostLoad:
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)
        last = self._snapshot()
        first = self._first
        total, idle, iowait, steal = (b - a for a, b in zip(first["cpu"], last["cpu"],
                                                              strict=True))
        total = total or 1.0
        busy = (total - idle - iowait) / total
        guests = sum(last["guests"].get(p, 0.0) - first["guests"].get(p, 0.0)
                     for p in last["guests"]) if last["guests"] else None
        crowded = sum(r > 2 * self.cpus for r in self._runnable) / max(len(self._runnable), 1)
        why = judge(busy, steal / total, crowded)
        return HostLoad(
            seconds=round(last["t"] - first["t"], 1), cpus=self.cpus,
            samples=len(self._runnable), busy_share=round(busy, 3),
            steal_share=round(steal / total, 4), iowait_share=round(iowait / total, 4),
            runnable_max=max(self._runnable), load1_max=max(self._load1),
            tool_cpu_s=round(last["tool"] - first["tool"], 2),
            guests_cpu_s=round(guests, 2) if guests is not None else None,
            groups_cpu_s={g: round(v - first["groups"].get(g, 0.0), 2)
                          for g, v in last["groups"].items()},
            contended=bool(why), why=why)
