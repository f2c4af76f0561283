"""The testbed's wires: a fabric namespace with two bridges, and veth uplinks."""

from __future__ import annotations

from rally_lm_testbed import layout, netns

MGMT_BRIDGE = "br-mgmt"
TENANT_BRIDGE = "br-tenant"
EXTERNAL_BRIDGE = "br-ext"
#: Name of the management, tenant and external interfaces inside every host.
MGMT_DEV = "mgmt0"
TENANT_DEV = "tenant0"
EXTERNAL_DEV = "ext0"
#: The tenant wire carries ML2/OVN's Geneve tunnels: room for their 58 bytes
#: around a guest's 1500 (the fabric's side of every chassis' link).
TENANT_WIRE_MTU = 1600


def _uplink(ns: str, short: str, bridge: str, dev: str, prefix: str) -> None:
    fabric_side = f"{prefix}-{short}"
    if netns.run(["ip", "link", "show", dev], netns=ns, check=False).returncode == 0:
        return
    netns.add_veth(dev, ns, fabric_side, layout.FABRIC)
    netns.enslave(fabric_side, bridge, layout.FABRIC)


def configure() -> None:
    """Create every namespace link and address (idempotent)."""
    netns.check_subnet_free(layout.SUPERNET)
    netns.add_netns(layout.FABRIC)
    netns.add_bridge(MGMT_BRIDGE, layout.FABRIC)
    netns.add_bridge(TENANT_BRIDGE, layout.FABRIC)
    netns.add_bridge(EXTERNAL_BRIDGE, layout.FABRIC)
    for host in layout.HOSTS:
        netns.add_netns(host.netns)
        _uplink(host.netns, host.name, MGMT_BRIDGE, MGMT_DEV, "m")
        netns.add_address(MGMT_DEV, f"{host.ip}/24", host.netns)
    for host in (*layout.COMPUTES, layout.NETWORK_NODE):
        # Unaddressed: the linuxbridge agent puts it into the network's bridge
        # (with ML2/OVN, Open vSwitch's br-phy, which holds the tunnel address).
        _uplink(host.netns, host.name, TENANT_BRIDGE, TENANT_DEV, "t")
        netns.run(["ip", "link", "set", f"t-{host.name}", "mtu", str(TENANT_WIRE_MTU)],
                  netns=layout.FABRIC)
    _uplink(layout.NETWORK_NODE.netns, layout.NETWORK_NODE.name, EXTERNAL_BRIDGE,
            EXTERNAL_DEV, "e")
    netns.add_netns(layout.PROBE)
    _uplink(layout.PROBE, "probe", MGMT_BRIDGE, MGMT_DEV, "m")
    _uplink(layout.PROBE, "probe", TENANT_BRIDGE, TENANT_DEV, "t")
    _uplink(layout.PROBE, "probe", EXTERNAL_BRIDGE, EXTERNAL_DEV, "e")
    netns.add_address(MGMT_DEV, f"{layout.PROBE_MGMT_IP}/24", layout.PROBE)
    netns.add_address(TENANT_DEV, f"{layout.PROBE_TENANT_IP}/24", layout.PROBE)
    netns.add_address(EXTERNAL_DEV, f"{layout.PROBE_EXTERNAL_IP}/24", layout.PROBE)
    if layout.network_backend() == "ovn":
        # The probes' packets leave with their TCP/UDP checksum filled: the
        # testbed's Open vSwitch is userspace (no kernel datapath here), and a
        # checksum left to the device reaches it unfilled, which OVN's conntrack
        # (the floating IP's NAT) drops as invalid. ICMP passes either way.
        for device in (TENANT_DEV, EXTERNAL_DEV):
            netns.run(["ethtool", "-K", device, "tx", "off"], netns=layout.PROBE)


def cleanup() -> list[str]:
    """Delete every testbed namespace (and with them every veth and bridge)."""
    return netns.delete_netns_with_prefix(layout.PREFIX)
