"""Network namespaces, veth pairs and bridges, through iproute2.

Every name the testbed creates starts with a prefix so leftovers of a killed
run can be found and removed, and nothing outside them is ever touched.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
from collections.abc import Sequence


class CommandFailed(RuntimeError):
    """A system command the testbed ran returned non-zero."""


def run(
    argv: Sequence[str],
    netns: str | None = None,
    check: bool = True,
    timeout: float = 60.0,
    env: dict | None = None,
) -> subprocess.CompletedProcess:
    """Run a command, inside ``netns`` if given; raise with its stderr on failure."""
    full = ["ip", "netns", "exec", netns, *argv] if netns else list(argv)
    proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise CommandFailed(f"{' '.join(full)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise PermissionError(f"{what} needs root (network namespaces, bridges, daemons)")


def list_netns() -> list[str]:
    out = run(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def add_netns(name: str) -> None:
    if name not in list_netns():
        run(["ip", "netns", "add", name])
    run(["ip", "link", "set", "lo", "up"], netns=name)


def delete_netns(name: str) -> None:
    """Delete a namespace after killing every process still inside it."""
    if name not in list_netns():
        return
    pids = run(["ip", "netns", "pids", name], check=False).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), 9)
        except (ProcessLookupError, ValueError):
            continue
    run(["ip", "netns", "delete", name], check=False)


def delete_netns_with_prefix(prefix: str) -> list[str]:
    removed = [ns for ns in list_netns() if ns.startswith(prefix)]
    for ns in removed:
        delete_netns(ns)
    return removed


def add_veth(name: str, netns: str, peer: str, peer_netns: str | None) -> None:
    """A veth pair with ``name`` in ``netns`` and ``peer`` in ``peer_netns``."""
    run(["ip", "link", "add", name, "netns", netns, "type", "veth", "peer", "name", peer,
         *(["netns", peer_netns] if peer_netns else [])])
    run(["ip", "link", "set", name, "up"], netns=netns)
    run(["ip", "link", "set", peer, "up"], netns=peer_netns)


def add_bridge(name: str, netns: str) -> None:
    if run(["ip", "link", "show", name], netns=netns, check=False).returncode != 0:
        run(["ip", "link", "add", name, "type", "bridge", "forward_delay", "0"], netns=netns)
    run(["ip", "link", "set", name, "up"], netns=netns)


def enslave(port: str, bridge: str, netns: str) -> None:
    run(["ip", "link", "set", port, "master", bridge], netns=netns)


def add_address(device: str, cidr: str, netns: str) -> None:
    proc = run(["ip", "addr", "add", cidr, "dev", device], netns=netns, check=False)
    if proc.returncode != 0 and not any(
        known in proc.stderr for known in ("File exists", "already assigned")
    ):
        raise CommandFailed(f"ip addr add {cidr} dev {device} in {netns}: {proc.stderr.strip()}")


def set_link(device: str, up: bool, netns: str) -> None:
    run(["ip", "link", "set", device, "up" if up else "down"], netns=netns)


def routed_in_root(subnet: str) -> list[str]:
    """Routes of the root namespace that overlap ``subnet`` (should be none)."""
    network = ipaddress.ip_network(subnet)
    overlapping = []
    for line in run(["ip", "-4", "route", "show"]).stdout.splitlines():
        dest = line.split()[0]
        if dest == "default":
            continue
        try:
            if ipaddress.ip_network(dest, strict=False).overlaps(network):
                overlapping.append(line)
        except ValueError:
            continue
    return overlapping


def check_subnet_free(subnet: str) -> None:
    """Refuse a testbed subnet the root namespace already routes."""
    clash = routed_in_root(subnet)
    if clash:
        raise RuntimeError(
            f"testbed subnet {subnet} overlaps routes of this machine ({'; '.join(clash)}); "
            "pick another with RALLY_LM_TESTBED_NET"
        )
