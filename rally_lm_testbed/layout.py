"""Names, addresses and paths of the testbed, in one place.

Topology (every piece in a namespace the testbed creates; the root namespace
gets no address, route or bridge):

    rlm-fabric   br-mgmt (10.231.0.0/24)      br-tenant (10.231.16.0/24, flat)
                  |      |     |     |            |       |       |
    rlm-ctl     .10      |     |     |            |       |       |
    rlm-hv1           .11      |     |         uplink     |       |
    rlm-hv2                 .12      |                 uplink     |
    rlm-probe                     .20                          .250

The controller (all APIs, rabbit, DB) is reached on the management network,
which also carries the migration streams. Guests live on the tenant network;
the probe namespace (where Rally and the probes run) sits on both.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

PREFIX = "rlm-"
SUPERNET = os.environ.get("RALLY_LM_TESTBED_NET", "10.231.0.0/16")
_BASE = SUPERNET.split(".")[:2]
MGMT_NET = f"{_BASE[0]}.{_BASE[1]}.0.0/24"
TENANT_NET = f"{_BASE[0]}.{_BASE[1]}.16.0/24"


def mgmt_ip(last: int) -> str:
    return f"{_BASE[0]}.{_BASE[1]}.0.{last}"


def tenant_ip(last: int) -> str:
    return f"{_BASE[0]}.{_BASE[1]}.16.{last}"


STATE = Path(os.environ.get("RALLY_LM_TESTBED_STATE", "/var/lib/rally-lm/testbed"))
NS_DIR = STATE / "ns"
LOG_DIR = STATE / "log"
PID_DIR = STATE / "pids"
SHARED_INSTANCES = STATE / "shared-instances"
MODE_FILE = STATE / "mode.json"

PASSWORD = "lm-testbed-admin-secret"  # a throwaway cloud on one machine; printed by `env`
REGION = "RegionOne"
PHYSNET = "physnet1"
TENANT_NETWORK_NAME = "lm-tenant"
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
CONTROLLER = Host(
    "ctl", 10,
    _COMMON + ("/etc/keystone", "/etc/glance", "/etc/placement", "/etc/nova", "/etc/neutron",
               "/etc/mysql", "/etc/rabbitmq", "/var/lib/mysql", "/run/mysqld",
               "/var/lib/rabbitmq", "/var/lib/keystone", "/var/lib/glance", "/var/lib/nova",
               "/var/lib/neutron", "/var/lib/placement", "/var/log/rabbitmq"),
)
_COMPUTE_DIRS = _COMMON + (
    "/etc/libvirt", "/var/lib/libvirt", "/run/libvirt", "/var/log/libvirt", "/var/cache/libvirt",
    "/etc/nova", "/etc/neutron", "/var/lib/nova", "/var/lib/neutron", "/etc/ssh", "/root/.ssh",
)
COMPUTES = (Host("hv1", 11, _COMPUTE_DIRS), Host("hv2", 12, _COMPUTE_DIRS))
HOSTS = (CONTROLLER, *COMPUTES)
PROBE_MGMT_IP = mgmt_ip(20)
PROBE_TENANT_IP = tenant_ip(250)

KEYSTONE_URL = f"http://{CONTROLLER.ip}:5000/v3"
