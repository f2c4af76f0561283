"""ML2/OVN for the testbed: OVN's databases and northd on the controller, a chassis
(Open vSwitch + ovn-controller) on each compute and on the network node.

The machine's kernel has no openvswitch module, so every bridge uses Open
vSwitch's userspace datapath (``datapath_type=netdev``, no DPDK). Each host
runs its own ovsdb-server, ovs-vswitchd and ovn-controller, with its own
``/run/openvswitch`` and ``/run/ovn`` (private directories of the host's
mount namespace): libvirt's and os-vif's ``ovs-vsctl`` find the host's own
database at the default path. Tenant networks are Geneve, tunnelled between
the chassis' encapsulation addresses on the tenant wire (``tenant0``, in an
OVS bridge ``br-phy`` that holds the address: the userspace datapath routes
tunnel packets only through an OVS bridge's address). The network node is
the gateway chassis: its ``br-ex`` holds the external wire (``ext0``) as
the external network's physnet, where floating IPs live.

Two things Debian's Zed packages need here (the facts are in
``../shared/notes``), applied by the testbed in its own namespaces only,
never to the machine's files:

* Neutron 21 reads a chassis' ``external_ids`` (datapath type, interface
  types, bridge mappings, CMS options) where OVN 23.03's ovn-controller
  writes ``other_config``: :func:`mirror_chassis_config` copies them.
* Neutron binds an OVS port without saying its datapath type, so os-vif
  asks for br-int on the kernel datapath, ovn-controller switches it back,
  and vswitchd may rebuild br-int in between, cutting every port of that
  chassis for about a second. :func:`patch_neutron` gives the binding the
  chassis' datapath type (Neutron's later releases do the same); the patched
  file is bind-mounted over the package's in the controller's mount
  namespace.

Lifecycle as the other services: ``central_*`` on the controller,
``chassis_*`` per chassis host; ``daemons()`` names what runs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from rally_lm_testbed import config, hosts, layout, network
from rally_lm_testbed.layout import CONTROLLER as CTL
from rally_lm_testbed.layout import Host

NB_PORT, SB_PORT = 6641, 6642
NB_REMOTE = f"tcp:{CTL.ip}:{NB_PORT}"
SB_REMOTE = f"tcp:{CTL.ip}:{SB_PORT}"
#: Every chassis: the computes and the network node (the gateway).
CHASSIS = (*layout.COMPUTES, layout.NETWORK_NODE)
GATEWAY = layout.NETWORK_NODE
#: Geneve adds up to 58 bytes (IPv4, OVN's 38-byte option budget): a 1600-byte
#: tenant wire keeps the guests' 1500 whole.
UNDERLAY_MTU = network.TENANT_WIRE_MTU
#: Open vSwitch logs to its console (the daemon's log file), warnings and up.
_LOG = ["-vconsole:info", "-vsyslog:off", "-vfile:off"]
_OVS_RUN = "/run/openvswitch"
_OVN_RUN = "/run/ovn"
_ENV = {"OVS_RUNDIR": _OVS_RUN, "OVN_RUNDIR": _OVN_RUN}


def encap_ip(host: Host) -> str:
    """A chassis' Geneve endpoint, on the tenant wire."""
    return layout.tenant_ip(host.mgmt_last_octet)


def daemons_central() -> list[str]:
    return ["ovn-nb-db", "ovn-sb-db", "ovn-northd"]


def daemons_chassis(host: Host) -> list[str]:
    return [f"{host.name}-ovsdb-server", f"{host.name}-ovs-vswitchd",
            f"{host.name}-ovn-controller"]


def daemons() -> list[str]:
    return daemons_central() + [d for h in CHASSIS for d in daemons_chassis(h)]


# -- central: NB and SB databases, northd (controller) ---------------------------------

def central_configure() -> None:
    hosts.host_run(CTL, ["mkdir", "-p", "/var/lib/ovn", _OVN_RUN])
    for db, schema in (("ovnnb_db", "ovn-nb"), ("ovnsb_db", "ovn-sb")):
        hosts.host_run(CTL, ["sh", "-c", f"[ -f /var/lib/ovn/{db}.db ] || ovsdb-tool create "
                                         f"/var/lib/ovn/{db}.db /usr/share/ovn/{schema}.ovsschema"])


def central_start() -> None:
    for name, db, port in (("ovn-nb-db", "ovnnb_db", NB_PORT), ("ovn-sb-db", "ovnsb_db", SB_PORT)):
        hosts.spawn(CTL, name, [
            "ovsdb-server", f"/var/lib/ovn/{db}.db", f"--remote=punix:{_OVN_RUN}/{db}.sock",
            f"--remote=ptcp:{port}:{CTL.ip}", f"--pidfile={_OVN_RUN}/{db}.pid",
            f"--unixctl={_OVN_RUN}/{db}.ctl", *_LOG], env=_ENV)
        hosts.wait_for_port(CTL, port, 30, name)
    hosts.spawn(CTL, "ovn-northd", [
        "ovn-northd", f"--ovnnb-db=unix:{_OVN_RUN}/ovnnb_db.sock",
        f"--ovnsb-db=unix:{_OVN_RUN}/ovnsb_db.sock", f"--pidfile={_OVN_RUN}/ovn-northd.pid",
        f"--unixctl={_OVN_RUN}/ovn-northd.ctl", *_LOG], env=_ENV)


def sbctl(*args: str, check: bool = True):
    return hosts.host_run(CTL, ["ovn-sbctl", f"--db=unix:{_OVN_RUN}/ovnsb_db.sock", *args],
                          check=check, env=_ENV)


def nbctl(*args: str, check: bool = True):
    return hosts.host_run(CTL, ["ovn-nbctl", f"--db=unix:{_OVN_RUN}/ovnnb_db.sock", *args],
                          check=check, env=_ENV)


# -- Neutron's side ------------------------------------------------------------------

MECH_DRIVER = Path("/usr/lib/python3/dist-packages/neutron/plugins/ml2/drivers/ovn/"
                   "mech_driver/mech_driver.py")
_UNPATCHED = ("                    vif_type = portbindings.VIF_TYPE_OVS\n"
              "                    vif_details = self.vif_details[vif_type]\n")
_PATCHED = ("                    vif_type = portbindings.VIF_TYPE_OVS\n"
            "                    vif_details = dict(self.vif_details[vif_type])\n"
            "                    # rally_lm testbed: os-vif plugs into the chassis' own\n"
            "                    # datapath type (userspace here), as later Neutron does.\n"
            "                    if datapath_type:\n"
            "                        vif_details[portbindings.OVS_DATAPATH_TYPE] = datapath_type\n")


def patch_neutron() -> str:
    """Bind-mount a copy of Neutron's OVN mechanism driver that tells os-vif the
    chassis' datapath type over the package's file, in the controller's mount
    namespace only; the machine's own file is left as it is. Idempotent."""
    source = MECH_DRIVER.read_text()
    if _UNPATCHED not in source:
        raise RuntimeError(f"{MECH_DRIVER} is not the Neutron 21 (Zed) file the testbed's "
                           "OVN patch was written for")
    patched = config.private_path(CTL, "/var/lib/neutron/rally-lm-mech_driver.py")
    patched.parent.mkdir(parents=True, exist_ok=True)
    patched.write_text(source.replace(_UNPATCHED, _PATCHED))
    mounted = hosts.host_run(CTL, ["findmnt", "-n", str(MECH_DRIVER)], check=False).stdout
    if not mounted.strip():
        hosts.host_run(CTL, ["mount", "--bind", "/var/lib/neutron/rally-lm-mech_driver.py",
                             str(MECH_DRIVER)])
    return f"{MECH_DRIVER} (datapath_type in the OVS binding's details)"


def ml2_options() -> dict:
    """ml2_conf.ini for ML2/OVN: Geneve tenant networks, a flat external one."""
    return {
        "ml2": {"type_drivers": "flat,geneve", "tenant_network_types": "geneve",
                "mechanism_drivers": "ovn", "extension_drivers": "port_security",
                "overlay_ip_version": 4},
        "ml2_type_geneve": {"vni_ranges": "1:65536", "max_header_size": 38},
        "ml2_type_flat": {"flat_networks": layout.EXTERNAL_PHYSNET},
        "securitygroup": {"enable_security_group": True},
        "ovn": {"ovn_nb_connection": NB_REMOTE, "ovn_sb_connection": SB_REMOTE,
                "ovn_l3_scheduler": "leastloaded", "ovn_metadata_enabled": False,
                # Centralised NAT on the gateway chassis, as most clouds run it.
                "enable_distributed_floating_ip": False},
    }


# -- chassis: ovsdb-server, ovs-vswitchd, ovn-controller (computes, network node) -----

def _vsctl(host: Host, *args: str, check: bool = True):
    return hosts.host_run(host, ["ovs-vsctl", "--timeout=20", *args], check=check, env=_ENV)


def chassis_configure(host: Host) -> None:
    hosts.host_run(host, ["mkdir", "-p", "/etc/openvswitch", _OVS_RUN, _OVN_RUN,
                          "/var/lib/openvswitch", "/var/lib/ovn"])
    hosts.host_run(host, ["sh", "-c", "[ -f /etc/openvswitch/conf.db ] || ovsdb-tool create "
                                      "/etc/openvswitch/conf.db "
                                      "/usr/share/openvswitch/vswitch.ovsschema"])


def chassis_start(host: Host) -> None:
    """The switch, then its bridges and OVN's settings, then ovn-controller."""
    hosts.spawn(host, f"{host.name}-ovsdb-server", [
        "ovsdb-server", "/etc/openvswitch/conf.db", f"--remote=punix:{_OVS_RUN}/db.sock",
        "--remote=db:Open_vSwitch,Open_vSwitch,manager_options",
        f"--pidfile={_OVS_RUN}/ovsdb-server.pid", *_LOG], env=_ENV)
    _wait_socket(host, f"{_OVS_RUN}/db.sock", f"{host.name}-ovsdb-server")
    _vsctl(host, "--no-wait", "init")
    hosts.spawn(host, f"{host.name}-ovs-vswitchd", [
        "ovs-vswitchd", f"unix:{_OVS_RUN}/db.sock", f"--pidfile={_OVS_RUN}/ovs-vswitchd.pid",
        *_LOG], env=_ENV)
    _bridges(host)
    hosts.spawn(host, f"{host.name}-ovn-controller", [
        "ovn-controller", f"unix:{_OVS_RUN}/db.sock",
        f"--pidfile={_OVN_RUN}/ovn-controller.pid", *_LOG], env=_ENV)


def _wait_socket(host: Host, path: str, name: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if hosts.host_run(host, ["test", "-S", path], check=False).returncode == 0:
            return
        if not hosts.running_pid(name):
            raise RuntimeError(f"{name} exited during start-up:\n"
                               + hosts.tail(hosts.log_file(name)))
        time.sleep(0.2)
    raise TimeoutError(f"{name}: no {path} after {timeout:.0f}s")


def _bridges(host: Host) -> None:
    """br-phy holding the tenant wire and the Geneve endpoint; on the gateway, br-ex
    holding the external wire; OVN's settings in the switch's own database."""
    mappings = f"{layout.EXTERNAL_PHYSNET}:br-ex" if host == GATEWAY else ""
    settings = {
        "system-id": host.name, "hostname": host.name, "ovn-remote": SB_REMOTE,
        "ovn-encap-type": "geneve", "ovn-encap-ip": encap_ip(host),
        "ovn-bridge-datapath-type": "netdev", "ovn-bridge-mappings": mappings,
        "ovn-cms-options": "enable-chassis-as-gw" if host == GATEWAY else "",
    }
    _vsctl(host, "set", "Open_vSwitch", ".",
           *(f"external_ids:{k}=\"{v}\"" for k, v in settings.items()))
    _vsctl(host, "--may-exist", "add-br", "br-phy", "--", "set", "Bridge", "br-phy",
           "datapath_type=netdev", "--", "--may-exist", "add-port", "br-phy", network.TENANT_DEV,
           "--", "set", "Interface", network.TENANT_DEV, f"mtu_request={UNDERLAY_MTU}",
           "--", "set", "Interface", "br-phy", f"mtu_request={UNDERLAY_MTU}")
    hosts.host_run(host, ["ip", "link", "set", network.TENANT_DEV, "mtu", str(UNDERLAY_MTU),
                          "up"])
    _wait_link(host, "br-phy")
    hosts.host_run(host, ["sh", "-c", f"ip addr replace {encap_ip(host)}/24 dev br-phy && "
                                      "ip link set br-phy up"])
    if host == GATEWAY:
        _vsctl(host, "--may-exist", "add-br", "br-ex", "--", "set", "Bridge", "br-ex",
               "datapath_type=netdev", "--", "--may-exist", "add-port", "br-ex",
               network.EXTERNAL_DEV)
        hosts.host_run(host, ["ip", "link", "set", network.EXTERNAL_DEV, "up"])
        _wait_link(host, "br-ex")
        hosts.host_run(host, ["ip", "link", "set", "br-ex", "up"])


def _wait_link(host: Host, device: str, timeout: float = 20.0) -> None:
    """ovs-vswitchd makes a netdev bridge's own interface (a tap) a moment after the
    bridge is added."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if hosts.host_run(host, ["ip", "link", "show", device], check=False).returncode == 0:
            return
        time.sleep(0.2)
    raise TimeoutError(f"{host.name}: no {device} after {timeout:.0f}s")


#: What Neutron 21 reads from Chassis.external_ids and OVN 23.03 writes to other_config.
_MIRRORED = ("datapath-type", "iface-types", "ovn-bridge-mappings", "ovn-cms-options",
             "is-interconn")


def mirror_chassis_config(timeout: float = 60.0) -> dict[str, dict]:
    """Copy each chassis' other_config keys Neutron reads into its external_ids, once
    every chassis registered (ovn-controller leaves external_ids alone)."""
    deadline = time.monotonic() + timeout
    wanted = {h.name for h in CHASSIS}
    found: dict[str, dict] = {}
    while time.monotonic() < deadline:
        found = _chassis_other_config()
        if wanted <= set(found):
            break
        time.sleep(0.5)
    else:
        raise TimeoutError(f"OVN chassis registered: {sorted(found)}; expected {sorted(wanted)}")
    for name, other in found.items():
        pairs = [f'external_ids:{k}="{other[k]}"' for k in _MIRRORED if k in other]
        if pairs:
            sbctl("set", "Chassis", name, *pairs)
    return {name: {k: other.get(k) for k in _MIRRORED if k in other}
            for name, other in found.items()}


def _chassis_other_config() -> dict[str, dict]:
    answer = json.loads(sbctl("--format=json", "--columns=name,other_config",
                              "list", "Chassis").stdout)
    # OVSDB's JSON: a map is ["map", [[key, value], ...]].
    return {name: dict(other[1]) for name, other in answer["data"]}


def chassis_stop(host: Host) -> None:
    for daemon in reversed(daemons_chassis(host)):
        hosts.stop(daemon)


def central_stop() -> None:
    for daemon in reversed(daemons_central()):
        hosts.stop(daemon)
