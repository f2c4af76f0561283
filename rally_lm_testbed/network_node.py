"""The network node: Neutron's L3 agent and a linuxbridge agent, in the ``net`` host
(with ML2/OVN: OVN's gateway chassis instead, see ``ovn``).

It carries the router between the tenant network and the external network
where floating IPs live (legacy, non-HA routing; one qrouter namespace per
router, created inside the host's own ``/run/netns`` so the root namespace
never sees it). Lifecycle as the other services: configure, start, stop.
"""

from __future__ import annotations

from rally_lm_testbed import config, hosts, layout, network, ovn
from rally_lm_testbed.layout import NETWORK_NODE as NET


def daemons(network_backend: str = "linuxbridge") -> list[str]:
    if network_backend == "ovn":
        return ovn.daemons_chassis(NET)
    return ["net-linuxbridge-agent", "net-l3-agent"]


def configure() -> None:
    config.write(config.private_path(NET, "/etc/neutron/neutron.conf"), {
        "DEFAULT": {"host": NET.name, "transport_url": config.TRANSPORT_URL,
                    "use_stderr": True},
        "oslo_concurrency": {"lock_path": "/var/lib/neutron/tmp"},
    })
    config.write(config.private_path(NET, "/etc/neutron/plugins/ml2/linuxbridge_agent.ini"), {
        "linux_bridge": {"physical_interface_mappings":
                         f"{layout.PHYSNET}:{network.TENANT_DEV},"
                         f"{layout.EXTERNAL_PHYSNET}:{network.EXTERNAL_DEV}"},
        "vxlan": {"enable_vxlan": False},
        "securitygroup": {"firewall_driver": "iptables", "enable_security_group": True},
    })
    config.write(config.private_path(NET, "/etc/neutron/l3_agent.ini"), {
        "DEFAULT": {"interface_driver": "linuxbridge", "agent_mode": "legacy",
                    # Floating IPs answer ARP on the external network at once.
                    "send_arp_for_ha": 3},
    })
    hosts.host_run(NET, ["mkdir", "-p", "/var/lib/neutron/tmp", "/run/netns"])


def start() -> None:
    hosts.spawn(NET, "net-linuxbridge-agent", [
        "neutron-linuxbridge-agent", "--config-file", "/etc/neutron/neutron.conf",
        "--config-file", "/etc/neutron/plugins/ml2/linuxbridge_agent.ini"])
    hosts.spawn(NET, "net-l3-agent", [
        "neutron-l3-agent", "--config-file", "/etc/neutron/neutron.conf",
        "--config-file", "/etc/neutron/l3_agent.ini"])


def up(network_backend: str = "linuxbridge", log=print) -> None:
    if network_backend == "ovn":
        log("net: OVN gateway chassis (external network on br-ex)")
        ovn.chassis_configure(NET)
        ovn.chassis_start(NET)
        return
    log("net: linuxbridge agent, L3 agent")
    configure()
    start()


def stop_all() -> None:
    for backend in layout.NETWORK_BACKENDS:
        for daemon in reversed(daemons(backend)):
            hosts.stop(daemon)
