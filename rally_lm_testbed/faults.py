"""Faults the reliability tests inject into a running testbed.

Each one acts on what a real cloud loses: the migration link (slowed with a
token bucket or cut at the fabric bridge), or a daemon on a compute host
(killed with SIGKILL, as a crash or the OOM killer would). Every fault has its
repair, and ``repair_all`` undoes whatever is left, so a failed test cannot
leave a broken testbed behind for the next one.
"""

from __future__ import annotations

import contextlib
import os
import signal

from rally_lm_testbed import compute, hosts, layout, netns
from rally_lm_testbed.layout import Host

# Values of `bridge link set ... state`: 0 disabled, 3 forwarding.
_PORT_DISABLED, _PORT_FORWARDING = "0", "3"


def _mgmt_port(host: Host) -> str:
    """The fabric's end of the host's management uplink, which also carries migrations."""
    return f"m-{host.name}"


def slow_link(host: Host, mbit: float) -> None:
    """Shape traffic towards ``host`` on the management network to ``mbit`` Mbit/s."""
    netns.run(["tc", "qdisc", "replace", "dev", _mgmt_port(host), "root", "tbf",
               "rate", f"{mbit}mbit", "burst", "32kb", "latency", "400ms"], netns=layout.FABRIC)


def unslow_link(host: Host) -> None:
    netns.run(["tc", "qdisc", "del", "dev", _mgmt_port(host), "root"], netns=layout.FABRIC,
              check=False)


def cut_link(host: Host) -> None:
    """Stop forwarding on the host's management port; the link itself stays up.

    Taking the veth down would also flush neighbour tables and add the time to
    re-learn them to the repair (see the probe tests).
    """
    netns.run(["bridge", "link", "set", "dev", _mgmt_port(host), "state", _PORT_DISABLED],
              netns=layout.FABRIC)


def restore_link(host: Host) -> None:
    netns.run(["bridge", "link", "set", "dev", _mgmt_port(host), "state", _PORT_FORWARDING],
              netns=layout.FABRIC, check=False)


def crash(daemon: str, with_children: bool = False) -> int:
    """SIGKILL a daemon, as a crash or the OOM killer would.

    libvirtd alone (its QEMU guests keep running, as they do on a real host);
    ``with_children`` for nova-compute, whose privsep helpers die with it.
    """
    pid = hosts.running_pid(daemon)
    if pid is None:
        raise RuntimeError(f"{daemon} is not running")
    (os.killpg if with_children else os.kill)(pid, signal.SIGKILL)
    return pid


def restart_libvirtd(host: Host) -> None:
    hosts.stop(f"{host.name}-libvirtd")
    compute.libvirt_start(host)


def restart_nova_compute(host: Host) -> None:
    compute.nova_compute_stop(host)
    compute.services_start(host, layout.network_backend())


def domains(host: Host) -> list[str]:
    """Every domain libvirt on ``host`` knows (running, paused or incoming)."""
    proc = compute.virsh(host, "list", "--all", "--name", check=False)
    return [line.strip() for line in proc.stdout.splitlines() if line.strip()]


def domain_state(host: Host, domain: str) -> str:
    """libvirt's "state (reason)" of a domain on ``host``, "" if it has none."""
    proc = compute.virsh(host, "domstate", domain, "--reason", check=False)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def job_active(host: Host, domain: str) -> bool:
    """Whether libvirt on ``host`` still runs a job (e.g. an outgoing migration) for it."""
    proc = compute.virsh(host, "domjobinfo", domain, check=False)
    for line in proc.stdout.splitlines():
        label, _, value = line.partition(":")
        if label.strip() == "Job type":
            return value.strip() not in ("None", "Completed", "Failed", "Cancelled")
    return False


def repair_all() -> None:
    """Undo every fault this module can inject."""
    for host in layout.COMPUTES:
        unslow_link(host)
        restore_link(host)
        # Best effort: a repair must not hide the failure that needed it.
        if hosts.running_pid(f"{host.name}-libvirtd") is None:
            with contextlib.suppress(Exception):
                compute.libvirt_start(host)
        if hosts.running_pid(f"{host.name}-nova-compute") is None:
            with contextlib.suppress(Exception):
                compute.services_start(host, layout.network_backend())
