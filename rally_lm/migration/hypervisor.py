"""The hypervisor's own account of a migration: libvirt's completed-job statistics.

Nova's API says nothing about downtime. Where the benchmark host can reach
the computes' libvirtd (``qemu+tcp://`` or ``qemu+ssh://``), ``virsh
domjobinfo --completed`` on the destination gives QEMU's measured downtime
and total time, which the probes' network downtime is checked against.
"""

from __future__ import annotations

import os
import shutil
import subprocess

#: virsh domjobinfo labels -> our field names (values in ms or bytes).
_FIELDS = {
    "Time elapsed": "total_ms",
    "Total downtime": "downtime_ms",
    "Setup time": "setup_ms",
    "Data processed": "data_processed",
    "Memory processed": "memory_processed",
    "File processed": "disk_processed",
    "Iteration": "iterations",
    "Dirty rate": "dirty_rate",
}
_UNITS = {"ms": 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "pages/s": 1}

#: ``virsh domstate --reason`` of a domain that is not where the guest runs:
#: the destination's incoming domain ("starting up" while QEMU starts, then
#: "migrating"), a source paused for the final copy, or a source left paused
#: once post-copy has moved execution to the destination. Spelled as virsh
#: prints them (virshDomainPausedReason), in the C locale.
IN_TRANSIT_STATES = frozenset({"paused (starting up)", "paused (migrating)",
                               "paused (post-copy)"})


def in_transit(state: str) -> bool:
    """Whether a domain in this state is a migration's shell rather than the guest."""
    return state in IN_TRANSIT_STATES


def runs_guest(state: str) -> bool:
    """Whether a domain in this state is the guest itself (running, or paused as such)."""
    return state.split(" ")[0] in ("running", "paused") and not in_transit(state)


class HypervisorStatsError(Exception):
    """libvirt could not be asked, or had no completed job to tell about."""


def parse_domjobinfo(text: str) -> dict[str, float]:
    stats: dict[str, float] = {}
    for line in text.splitlines():
        label, sep, value = line.partition(":")
        name = _FIELDS.get(label.strip())
        if not sep or name is None:
            continue
        parts = value.split()
        try:
            number = float(parts[0])
        except (IndexError, ValueError):
            continue
        unit = parts[1] if len(parts) > 1 else ""
        stats[name] = number * _UNITS.get(unit, 1)
    return stats


def _virsh(uri: str, *args: str, timeout: float) -> subprocess.CompletedProcess:
    virsh = shutil.which("virsh")
    if virsh is None:
        raise HypervisorStatsError("virsh is not installed (libvirt-clients)")
    # Reasons and labels are parsed, so they must not be translated.
    return subprocess.run([virsh, "-c", uri, *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "LC_ALL": "C"})


def completed_job(uri: str, instance_name: str, timeout: float = 20.0) -> dict[str, float]:
    """Statistics of the last completed job of a domain, as libvirt reports them."""
    proc = _virsh(uri, "domjobinfo", instance_name, "--completed", timeout=timeout)
    if proc.returncode != 0:
        raise HypervisorStatsError(f"virsh -c {uri} domjobinfo {instance_name}: "
                                   f"{proc.stderr.strip()}")
    stats = parse_domjobinfo(proc.stdout)
    if "downtime_ms" not in stats:
        raise HypervisorStatsError(f"libvirt at {uri} has no completed migration of "
                                   f"{instance_name}")
    return stats


def domain_state(uri: str, instance_name: str, timeout: float = 20.0) -> str | None:
    """libvirt's state and reason, e.g. "running (migrated)", "paused (migrating)".

    None if the host has no such domain. A destination's incoming domain is
    in transit (see ``IN_TRANSIT_STATES``) until the guest resumes there.
    """
    proc = _virsh(uri, "domstate", instance_name, "--reason", timeout=timeout)
    if proc.returncode == 0:
        return proc.stdout.strip() or None
    if "failed to get domain" in proc.stderr or "Domain not found" in proc.stderr:
        return None
    raise HypervisorStatsError(f"virsh -c {uri} domstate {instance_name}: "
                               f"{proc.stderr.strip()}")
