"""libvirt's command-line client, run against a compute's libvirtd.

What both the hypervisor's view of a migration (rally_lm.migration.hypervisor)
and the checks of the computes before a task (rally_lm.clients.hosts) need:
one virsh call with a timeout, over a shared ssh connection for
``qemu+ssh://`` URIs, and the error every failure becomes.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from rally_lm.clients import ssh_mux


class HypervisorStatsError(Exception):
    """libvirt could not be asked, or had nothing to tell about."""


def run(uri: str, *args: str, timeout: float) -> subprocess.CompletedProcess:
    """``virsh -c URI ARGS``; raises HypervisorStatsError when virsh cannot be run."""
    virsh = shutil.which("virsh")
    if virsh is None:
        raise HypervisorStatsError("virsh is not installed (libvirt-clients)")
    try:
        # Reasons and labels are parsed, so they must not be translated.
        return subprocess.run([virsh, "-c", ssh_mux.shared(uri), *args], capture_output=True,
                              text=True, timeout=timeout, env={**os.environ, "LC_ALL": "C"})
    except subprocess.TimeoutExpired as exc:
        raise HypervisorStatsError(f"virsh -c {uri} {args[0]} did not answer within "
                                   f"{timeout:.0f}s") from exc
    except OSError as exc:
        raise HypervisorStatsError(f"virsh -c {uri} {args[0]}: {exc}") from exc


def hostname(uri: str, timeout: float = 20.0) -> str:
    """The host name libvirtd at ``uri`` reports: proof it answers and lets us in."""
    proc = run(uri, "hostname", timeout=timeout)
    if proc.returncode != 0:
        raise HypervisorStatsError(f"virsh -c {uri} hostname: {proc.stderr.strip()}")
    return proc.stdout.strip()
