"""Migration policies as testbed modes: Nova's [libvirt] knobs, native TLS, a shaped link.

A policy is what an operator tunes in nova.conf on every compute: post-copy
and auto-converge permission, what Nova does when its completion timeout
hits, the downtime QEMU may take and how it grows, the bandwidth cap, and
whether QEMU's migration stream is TLS (with certificates this module makes
for the testbed's computes). Defaults are Nova Zed's own.

The link between the hosts can be shaped for migration traffic only (tc:
an htb class with a tbf under it, selected by destination port - QEMU's
migration ports 49152-49215, which also carry block-migration NBD, and
libvirtd's 16509, which carries tunnelled migrations), so that Ceph, RPC
and API traffic on the same wire keep their speed. The kernel here has tbf
and htb but not netem or prio.
"""

from __future__ import annotations

import dataclasses
import subprocess
from typing import Any

from rally_lm_testbed import config, hosts, layout, network
from rally_lm_testbed.layout import Host

TIMEOUT_ACTIONS = ("abort", "force_complete")
#: libvirt's default migration port range (qemu.conf migration_port_min/max).
MIGRATION_PORTS = (49152, 49215)
LIBVIRTD_TCP_PORT = 16509
#: Inside each compute's private /etc/libvirt: qemu.conf's migrate_tls_x509_cert_dir.
TLS_DIR = "/etc/libvirt/pki/qemu-migrate"


@dataclasses.dataclass(frozen=True)
class Policy:
    """Nova's live-migration policy on both computes, and the link between them."""

    post_copy: bool = False
    auto_converge: bool = False
    timeout_action: str = "abort"
    #: Seconds per GiB of RAM + disk copied (at least 2 GiB), as Nova counts; 0: none.
    completion_timeout: int = 800
    max_downtime_ms: int = 500
    downtime_steps: int = 10
    #: Seconds per GiB between downtime steps, as Nova counts.
    downtime_delay: int = 75
    #: MiB/s; 0 lets QEMU decide.
    bandwidth_mib: int = 0
    native_tls: bool = False
    #: Migration traffic between the hosts shaped to this rate; None: unshaped.
    link_mbit: float | None = None

    def problems(self, tunnelled: bool) -> list[str]:
        """What Nova or libvirt would refuse, as messages (empty: fine)."""
        found = []
        if self.timeout_action not in TIMEOUT_ACTIONS:
            found.append(f"timeout action must be one of {', '.join(TIMEOUT_ACTIONS)}")
        if self.completion_timeout < 0:
            found.append("completion timeout must be >= 0 (0: none)")
        if self.max_downtime_ms < 100:
            found.append("max downtime must be >= 100 ms (Nova's minimum)")
        if self.downtime_steps < 3 or self.downtime_delay < 3:
            found.append("downtime steps and delay must be >= 3 (Nova's minimums)")
        if self.bandwidth_mib < 0:
            found.append("bandwidth must be >= 0 MiB/s (0: unlimited)")
        if self.link_mbit is not None and self.link_mbit <= 0:
            found.append("link rate must be > 0 Mbit/s (or off)")
        if self.native_tls and tunnelled:
            found.append("native TLS and tunnelling together are refused by Nova "
                         "(\"Setting both 'live_migration_tunnelled' and "
                         "'live_migration_with_native_tls' at the same time is invalid\")")
        return found

    def nova_options(self) -> dict[str, Any]:
        """The ``[libvirt]`` options of nova.conf."""
        return {
            "live_migration_permit_post_copy": self.post_copy,
            "live_migration_permit_auto_converge": self.auto_converge,
            "live_migration_timeout_action": self.timeout_action,
            "live_migration_completion_timeout": self.completion_timeout,
            "live_migration_downtime": self.max_downtime_ms,
            "live_migration_downtime_steps": self.downtime_steps,
            "live_migration_downtime_delay": self.downtime_delay,
            "live_migration_bandwidth": self.bandwidth_mib,
            "live_migration_with_native_tls": self.native_tls,
        }

    def name(self) -> str:
        """A short label: what differs from Nova's defaults (``nova-default`` if nothing)."""
        default = Policy()
        parts = []
        if self.post_copy:
            parts.append("post-copy")
        if self.auto_converge:
            parts.append("auto-converge")
        if self.native_tls:
            parts.append("tls")
        if self.timeout_action != default.timeout_action:
            parts.append(self.timeout_action.replace("_", "-"))
        if self.completion_timeout != default.completion_timeout:
            parts.append(f"timeout{self.completion_timeout}")
        if self.max_downtime_ms != default.max_downtime_ms:
            parts.append(f"downtime{self.max_downtime_ms}")
        if self.bandwidth_mib:
            parts.append(f"bw{self.bandwidth_mib}")
        return "+".join(parts) or "nova-default"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Policy:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in known})


# -- native TLS: a CA and a certificate per compute ----------------------------------------

def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def tls_certificates() -> None:
    """A testbed CA, and per compute a server and a client certificate, in its TLS_DIR.

    QEMU's migration TLS (libvirt's migrate_tls_x509_cert_dir) wants
    ca-cert.pem, server-cert.pem/server-key.pem (the destination) and
    client-cert.pem/client-key.pem (the source); libvirt verifies both ends
    (migrate_tls_x509_verify defaults to 1). The server certificate names the
    host's management address, which the source connects to
    (live_migration_inbound_addr).
    """
    pki = layout.STATE / "pki"
    pki.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = pki / "ca-key.pem", pki / "ca-cert.pem"
    if not ca_cert.exists():
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-nodes", "-days", "30", "-subj", "/CN=rally-lm testbed CA",
                 "-keyout", str(ca_key), "-out", str(ca_cert))
    for host in layout.COMPUTES:
        target = config.private_path(host, TLS_DIR)
        target.mkdir(parents=True, exist_ok=True)
        (target / "ca-cert.pem").write_bytes(ca_cert.read_bytes())
        for role, usage in (("server", "serverAuth"), ("client", "clientAuth")):
            key, csr, cert = (target / f"{role}-key.pem", pki / f"{host.name}-{role}.csr",
                              target / f"{role}-cert.pem")
            extensions = pki / f"{host.name}-{role}.ext"
            extensions.write_text(f"subjectAltName=IP:{host.ip},DNS:{host.name}\n"
                                  f"extendedKeyUsage={usage}\n")
            _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                     "-subj", f"/CN={host.name}", "-keyout", str(key), "-out", str(csr))
            _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey",
                     str(ca_key), "-CAcreateserial", "-days", "30", "-extfile",
                     str(extensions), "-out", str(cert))
            key.chmod(0o600)


# -- the shaped link ----------------------------------------------------------------------

def _tc(host: Host, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return hosts.host_run(host, ["tc", *args], check=check)


def shape_link(host: Host, mbit: float | None) -> None:
    """Shape ``host``'s outgoing migration traffic to ``mbit`` (None: remove the shaping)."""
    dev = network.MGMT_DEV
    _tc(host, "qdisc", "del", "dev", dev, "root", check=False)
    if mbit is None:
        return
    rate = f"{mbit:g}mbit"
    # htb: everything else in class 1:20 at line rate; migration ports in 1:10.
    _tc(host, "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "20",
        "r2q", "1000")
    _tc(host, "class", "add", "dev", dev, "parent", "1:", "classid", "1:20", "htb",
        "rate", "10gbit")
    _tc(host, "class", "add", "dev", dev, "parent", "1:", "classid", "1:10", "htb",
        "rate", rate, "ceil", rate)
    # tbf under the class keeps the queue short (latency bound), as a real
    # shaped uplink would, instead of htb's default deep FIFO.
    _tc(host, "qdisc", "add", "dev", dev, "parent", "1:10", "handle", "10:", "tbf",
        "rate", rate, "burst", "64kb", "latency", "50ms")
    low, high = MIGRATION_PORTS
    mask = 0xFFFF & ~(high - low)  # the range is one aligned power of two
    for prio, (port, port_mask) in enumerate(((low, mask), (LIBVIRTD_TCP_PORT, 0xFFFF)), 1):
        _tc(host, "filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio",
            str(prio), "u32", "match", "ip", "dport", str(port), hex(port_mask),
            "flowid", "1:10")


def link_shaped_as(host: Host, mbit: float | None) -> bool:
    """Whether ``host``'s link is shaped as ``shape_link(host, mbit)`` leaves it."""
    state = link_state(host)
    if mbit is None:
        return not state["shaped"]
    # tc's spelling of what shape_link asked; another one (e.g. 2500Kbit) only
    # reads as a mismatch.
    return state["shaped"] and state.get("rate") == f"{mbit:g}Mbit"


def link_state(host: Host) -> dict[str, Any]:
    """What tc has on ``host``'s management interface: the shaped rate and its counters."""
    out = _tc(host, "-s", "qdisc", "show", "dev", network.MGMT_DEV, check=False).stdout
    shaped = next((line for line in out.splitlines() if line.startswith("qdisc tbf")), None)
    if shaped is None:
        return {"shaped": False}
    words = shaped.split()
    rate = words[words.index("rate") + 1] if "rate" in words else None
    sent = next((line.split()[1] for line in out.splitlines()[out.splitlines().index(shaped):]
                 if line.strip().startswith("Sent")), None)
    return {"shaped": True, "rate": rate, "bytes_sent_shaped": int(sent) if sent else None}
