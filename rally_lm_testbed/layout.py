"""Names, addresses and paths of the testbed, in one place.

Topology (every piece in a namespace the testbed creates; the root namespace
gets no address, route or bridge):

    rlm-fabric   br-mgmt (10.231.0.0/24)   br-tenant (10.231.16.0/24)   br-ext (10.231.32.0/24)
                  |    |    |    |    |       |     |     |     |          |         |
    rlm-ctl     .10    |    |    |    |       |     |     |     |          |         |
    rlm-hv1          .11    |    |    |    uplink   |     |     |          |         |
    rlm-hv2               .12    |    |          uplink   |     |          |         |
    rlm-net                    .13    |                uplink   |       uplink       |
    rlm-ceph                         .14                          |                    |
    rlm-probe                       .20                       .250                 .250

The controller (all APIs, rabbit, DB) is reached on the management network,
which also carries the migration streams. Guests live on the tenant network;
the network node (``net``: L3 agent, router ``.1`` on the tenant network)
connects it to the external network, where floating IPs live. Ceph (``ceph``:
mon, mgr, OSD) serves Glance's images always, Cinder's volumes, and Nova's
instance disks in the ``ceph`` storage mode. The probe
namespace (where Rally and the probes run) sits on all three, so it can
probe a VM by its fixed IP and by its floating IP (through the router).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

PREFIX = "rlm-"
SUPERNET = os.environ.get("RALLY_LM_TESTBED_NET", "10.231.0.0/16")
_BASE = SUPERNET.split(".")[:2]
MGMT_NET = f"{_BASE[0]}.{_BASE[1]}.0.0/24"
TENANT_NET = f"{_BASE[0]}.{_BASE[1]}.16.0/24"
EXTERNAL_NET = f"{_BASE[0]}.{_BASE[1]}.32.0/24"
#: With ML2/OVN the tenant network is a Geneve overlay, not the tenant wire: its
#: addresses are the guests' only (the probe reaches them by floating IP).
OVERLAY_NET = f"{_BASE[0]}.{_BASE[1]}.48.0/24"


def mgmt_ip(last: int) -> str:
    return f"{_BASE[0]}.{_BASE[1]}.0.{last}"


def tenant_ip(last: int) -> str:
    return f"{_BASE[0]}.{_BASE[1]}.16.{last}"


def external_ip(last: int) -> str:
    return f"{_BASE[0]}.{_BASE[1]}.32.{last}"


def overlay_ip(last: int) -> str:
    return f"{_BASE[0]}.{_BASE[1]}.48.{last}"


STATE = Path(os.environ.get("RALLY_LM_TESTBED_STATE", "/var/lib/rally-lm/testbed"))
NS_DIR = STATE / "ns"
LOG_DIR = STATE / "log"
PID_DIR = STATE / "pids"
SHARED_INSTANCES = STATE / "shared-instances"
MODE_FILE = STATE / "mode.json"

PASSWORD = "lm-testbed-admin-secret"  # a throwaway cloud on one machine; printed by `env`
# Rally's tasks run as this existing member user (Rally's "existing users"):
# creating and deleting a temporary project and user per task and per
# validation costs ~25 s each on a loaded testbed, and a long-lived project
# lets the leftover checks see what a task failed to delete.
RALLY_PROJECT = "rally-lm-runs"
RALLY_USER = "rally-lm-runner"
#: Its project outlives every task, so one task's leak must not exhaust the
#: next one's quota (Nova's default is 10 instances, Neutron's 10 security
#: groups): room for the study's 6 VMs many times over.
RALLY_QUOTAS = {
    "compute": {"instances": 40, "cores": 160, "ram": 160 * 1024},
    "network": {"security_group": 100, "security_group_rule": 1000, "port": 200,
                "floatingip": 50},
    "volumev3": {"volumes": 40, "gigabytes": 2000, "snapshots": 40},
}
REGION = "RegionOne"
#: Neutron's mechanism driver, chosen at `testbed up`: linuxbridge (flat tenant
#: network on the tenant wire, L3 agent) or ovn (Geneve, OVN's own L3).
NETWORK_BACKENDS = ("linuxbridge", "ovn")
PHYSNET = "physnet1"
EXTERNAL_PHYSNET = "physnet-ext"
TENANT_NETWORK_NAME = "lm-tenant"
EXTERNAL_NETWORK_NAME = "lm-external"
ROUTER_NAME = "lm-router"
GUEST_IMAGE_NAME = "rally-lm-guest"
FABRIC = f"{PREFIX}fabric"
PROBE = f"{PREFIX}probe"


@dataclasses.dataclass(frozen=True)
class Host:
    """A testbed host: its own network, mount and UTS namespace."""

    name: str
    mgmt_last_octet: int
    private_dirs: tuple[str, ...] = ()

    @property
    def netns(self) -> str:
        return f"{PREFIX}{self.name}"

    @property
    def ip(self) -> str:
        return mgmt_ip(self.mgmt_last_octet)

    @property
    def state(self) -> Path:
        return STATE / self.name

    @property
    def mount_ns(self) -> Path:
        return NS_DIR / f"{self.name}.mnt"

    @property
    def uts_ns(self) -> Path:
        return NS_DIR / f"{self.name}.uts"


# Directories each host keeps private (bind-mounted from its state dir),
# seeded from the machine's own copy where one exists.
_COMMON = ("/etc/hosts", "/run/lock", "/tmp")
#: Open vSwitch's and OVN's state, per host (used with ML2/OVN only).
_OVS = ("/etc/openvswitch", "/var/lib/openvswitch", "/run/openvswitch", "/var/lib/ovn",
        "/run/ovn")
CONTROLLER = Host(
    "ctl", 10,
    _COMMON + ("/etc/keystone", "/etc/glance", "/etc/placement", "/etc/nova", "/etc/neutron",
               "/etc/cinder", "/etc/ceph", "/etc/mysql", "/etc/rabbitmq", "/var/lib/mysql",
               "/run/mysqld", "/var/lib/rabbitmq", "/var/lib/keystone", "/var/lib/glance",
               "/var/lib/nova", "/var/lib/neutron", "/var/lib/placement", "/var/lib/cinder",
               "/var/log/rabbitmq", "/var/lib/ovn", "/run/ovn"),
)
_COMPUTE_DIRS = _COMMON + (
    "/etc/libvirt", "/var/lib/libvirt", "/run/libvirt", "/var/log/libvirt", "/var/cache/libvirt",
    "/etc/nova", "/etc/neutron", "/etc/ceph", "/var/lib/nova", "/var/lib/neutron", "/etc/ssh",
    "/root/.ssh", *_OVS,
)
COMPUTES = (Host("hv1", 11, _COMPUTE_DIRS), Host("hv2", 12, _COMPUTE_DIRS))
#: The network node: its router namespaces live in its own /run/netns.
NETWORK_NODE = Host("net", 13, _COMMON + ("/etc/neutron", "/var/lib/neutron", "/run/netns",
                                          *_OVS))
#: The Ceph cluster (one mon, mgr and OSD), on the management network.
CEPH = Host("ceph", 14, _COMMON + ("/etc/ceph", "/var/lib/ceph", "/var/log/ceph", "/run/ceph"))
HOSTS = (CONTROLLER, *COMPUTES, NETWORK_NODE, CEPH)
PROBE_MGMT_IP = mgmt_ip(20)
PROBE_TENANT_IP = tenant_ip(250)
PROBE_EXTERNAL_IP = external_ip(250)
ROUTER_TENANT_IP = tenant_ip(1)

KEYSTONE_URL = f"http://{CONTROLLER.ip}:5000/v3"


def network_backend() -> str:
    """The network backend the testbed was brought up with (its mode file's)."""
    try:
        return json.loads(MODE_FILE.read_text()).get("network", NETWORK_BACKENDS[0])
    except (OSError, ValueError):
        return NETWORK_BACKENDS[0]
