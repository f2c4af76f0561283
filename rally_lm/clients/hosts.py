"""What the benchmark host can check about the computes through ``hypervisor_uris``.

The seed lost runs to compute hosts that could not resolve each other's
names (its lesson 2): Nova's source compute hands libvirt the destination's
host name unless the destination sets ``live_migration_inbound_addr``, and a
name that does not resolve on the source fails every migration only once
VMs are booted. Where a URI is ``qemu+ssh://``, the same ssh login libvirt
uses gives a shell on the compute, so the name can be checked before
anything is created. ``qemu+tls://`` and ``qemu+tcp://`` give no shell:
those hosts are only checked for a libvirtd that answers.
"""

from __future__ import annotations

import dataclasses
import shlex
import subprocess
import urllib.parse

from rally_lm.clients.virsh import HypervisorStatsError, hostname

#: Seconds to wait for a compute's sshd or libvirtd before calling it unreachable.
CONNECT_TIMEOUT = 10

# Prints "resolves" when the peer's name resolves on this compute, then any
# live_migration_inbound_addr line of its Nova configuration (Debian's and
# most distributions' paths; a deployment with another layout sees no line).
_PROBE_SCRIPT = (
    "getent hosts {peer} >/dev/null && echo resolves; "
    "grep -hs '^[[:space:]]*live_migration_inbound_addr[[:space:]]*=' "
    "/etc/nova/nova.conf /etc/nova/nova.conf.d/*.conf /etc/nova/nova-compute.conf; true"
)


def ssh_command(uri: str) -> list[str] | None:
    """The ssh command line libvirt would use for a ``qemu+ssh://`` URI (None for others).

    Honours the URI's user, port, ``keyfile``, ``no_verify`` and
    ``known_hosts`` parameters, as libvirt's ssh transport does.
    """
    parsed = urllib.parse.urlsplit(uri)
    if parsed.scheme != "qemu+ssh" or not parsed.hostname:
        return None
    params = dict(urllib.parse.parse_qsl(parsed.query))
    command = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT}"]
    if parsed.port:
        command += ["-p", str(parsed.port)]
    if "keyfile" in params:
        command += ["-i", params["keyfile"]]
    if params.get("no_verify") == "1":
        command += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                    "-o", "LogLevel=ERROR"]
    elif "known_hosts" in params:
        command += ["-o", f"UserKnownHostsFile={params['known_hosts']}"]
    login = f"{parsed.username}@{parsed.hostname}" if parsed.username else parsed.hostname
    return [*command, login, "--"]


@dataclasses.dataclass
class PeerView:
    """What one compute says about reaching the other by name."""

    host: str
    peer: str
    resolves_peer: bool
    inbound_addr: str | None


def peer_view(host: str, uri: str, peer: str, run=subprocess.run) -> PeerView | None:
    """Ask ``host`` (through its ssh URI) whether ``peer`` resolves; None without ssh.

    :raises HypervisorStatsError: ssh did not give a shell on the host
    """
    command = ssh_command(uri)
    if command is None:
        return None
    script = _PROBE_SCRIPT.format(peer=shlex.quote(peer))
    try:
        done = run([*command, script], capture_output=True, text=True,
                   timeout=CONNECT_TIMEOUT + 10)
    except subprocess.TimeoutExpired as exc:
        raise HypervisorStatsError(f"ssh to {host} ({uri}) did not answer in "
                                   f"{exc.timeout:.0f} s") from exc
    if done.returncode != 0:
        raise HypervisorStatsError(f"ssh to {host} ({uri}) failed: "
                                   f"{done.stderr.strip() or f'exit {done.returncode}'}")
    lines = done.stdout.splitlines()
    inbound = next((line.split("=", 1)[1].strip() for line in lines if "=" in line), None)
    return PeerView(host=host, peer=peer, resolves_peer="resolves" in lines,
                    inbound_addr=inbound or None)


def name_resolution_problems(views: dict[str, PeerView]) -> list[str]:
    """Directions in which the source's libvirt could not find the destination.

    A migration from A to B connects to B's ``live_migration_inbound_addr``
    when B sets one, else to B's host name, which must resolve on A.
    """
    problems = []
    for host, view in sorted(views.items()):
        target = views.get(view.peer)
        if view.resolves_peer or (target is not None and target.inbound_addr):
            continue
        problems.append(
            f"{host} cannot resolve {view.peer!r}: Nova on {host} would hand libvirt that "
            f"name to migrate to {view.peer}. Add {view.peer} to DNS or {host}'s /etc/hosts, "
            f"or set [libvirt] live_migration_inbound_addr on {view.peer}")
    return problems


def check_computes(uris: dict[str, str], source: str, target: str,
                   run=subprocess.run) -> list[str]:
    """Everything wrong with reaching the two computes, as messages (empty: all good).

    Checks that both hosts have a URI, that each libvirtd answers, and, over
    ``qemu+ssh://``, that each host resolves the other's Nova host name.
    """
    missing = [h for h in (source, target) if h not in uris]
    if missing:
        return [f"hypervisor_uris has no URI for {', '.join(missing)} (it names "
                f"{', '.join(sorted(uris)) or 'no host'}): give one per compute host, "
                "named as Nova names them"]
    problems = []
    for host in (source, target):
        try:
            hostname(uris[host], timeout=CONNECT_TIMEOUT + 10)
        except HypervisorStatsError as exc:
            problems.append(f"libvirtd on {host} does not answer: {exc}")
    if problems:
        return problems
    views = {}
    for host, peer in ((source, target), (target, source)):
        try:
            view = peer_view(host, uris[host], peer, run=run)
        except HypervisorStatsError as exc:
            problems.append(str(exc))
            continue
        if view is not None:
            views[host] = view
    return problems + name_resolution_problems(views)
