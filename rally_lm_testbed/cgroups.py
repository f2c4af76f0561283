"""CPU shares for the testbed's three kinds of work, so guests cannot starve the rest.

Everything runs on one small machine: emulated guests (each QEMU under TCG
can burn a core), the control plane that migrates them, and Rally with the
probes that measure it. Left to the scheduler's defaults, busy guests slow
Nova's own work and the probes' timing, and a migration's duration varies
with how busy the guests happen to be. The testbed gives each kind a cgroup
(v1 ``cpu`` and ``cpuacct`` hierarchies) with its weight:

===========  ======  =======================================================
group        shares  processes
===========  ======  =======================================================
control        4096  the control plane: databases, queues, APIs, agents,
                     nova-compute, Ceph (every daemon the testbed starts but
                     the hypervisors)
bench          4096  Rally and the probes (``run-task``, the study, the tests)
guests         1024  each compute's libvirtd and virtlogd: the QEMU processes
                     they start inherit the group
===========  ======  =======================================================

Weights only matter when the CPUs are all busy: an idle control plane
leaves the guests every cycle. ``cpuacct.usage`` of each group is what the
contention record reads. ``remove()`` (``testbed down``) moves whatever is
left to the root group and deletes the groups: nothing stays on the host.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

ROOT = Path(os.environ.get("RALLY_LM_CGROUP_ROOT", "/sys/fs/cgroup"))
PREFIX = "rally-lm-"
SHARES = {"control": 4096, "bench": 4096, "guests": 1024}
#: With these, every group weighs the same as any other process: no preference.
EQUAL_SHARES = dict.fromkeys(SHARES, 1024)
HIERARCHIES = ("cpu", "cpuacct")


def group_path(hierarchy: str, group: str) -> Path:
    return ROOT / hierarchy / f"{PREFIX}{group}"


def available() -> bool:
    """Whether cgroup v1 ``cpu`` and ``cpuacct`` are mounted and writable here."""
    return all(os.access(ROOT / h, os.W_OK) and (ROOT / h / "cgroup.procs").exists()
               for h in HIERARCHIES)


def configure(shares: dict[str, int] | None = None) -> bool:
    """Create the groups and set their weights; False (and nothing done) without cgroup v1."""
    if not available():
        return False
    for group, weight in (shares or SHARES).items():
        for hierarchy in HIERARCHIES:
            group_path(hierarchy, group).mkdir(exist_ok=True)
        (group_path("cpu", group) / "cpu.shares").write_text(str(weight))
    return True


def shares() -> dict[str, int]:
    """The weights as set now ({} without the groups)."""
    found = {}
    for group in SHARES:
        path = group_path("cpu", group) / "cpu.shares"
        with contextlib.suppress(OSError, ValueError):
            found[group] = int(path.read_text())
    return found


def group_of(daemon: str) -> str:
    """The group a testbed daemon runs in, by its name (``hv1-libvirtd``)."""
    return "guests" if daemon.endswith(("-libvirtd", "-virtlogd")) else "control"


def join(group: str, pid: int | None = None) -> None:
    """Put a process (this one by default) into a group; its children follow it.

    Does nothing where the groups were not made (no cgroup v1, or not root).
    """
    for hierarchy in HIERARCHIES:
        procs = group_path(hierarchy, group) / "cgroup.procs"
        with contextlib.suppress(OSError):
            procs.write_text(str(pid or os.getpid()))


def usage() -> dict[str, float]:
    """CPU seconds each group has used since it was made ({} without the groups)."""
    found = {}
    for group in SHARES:
        with contextlib.suppress(OSError, ValueError):
            found[group] = int((group_path("cpuacct", group) / "cpuacct.usage")
                               .read_text()) / 1e9
    return found


def remove() -> list[str]:
    """Move what is left in the groups to the root group and delete them; what stayed."""
    stayed = []
    for group in SHARES:
        for hierarchy in HIERARCHIES:
            path = group_path(hierarchy, group)
            if not path.exists():
                continue
            with contextlib.suppress(OSError):
                for pid in (path / "cgroup.procs").read_text().split():
                    with contextlib.suppress(OSError):
                        (ROOT / hierarchy / "cgroup.procs").write_text(pid)
            try:
                path.rmdir()
            except OSError as exc:
                stayed.append(f"{path}: {exc}")
    return stayed
