"""Cloud-side set-up of the testbed, through the OpenStack APIs (idempotent).

Run inside the probe namespace (the root namespace has no route to the
testbed): ``python -m rally_lm_testbed.bootstrap STEP``. Plain REST through a
keystoneauth session, so nothing here depends on a client library's quirks.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import sys
import time
from pathlib import Path

from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

from rally_lm_testbed import layout

SERVICES = {
    # name: (type, port, path)
    "glance": ("image", 9292, ""),
    "placement": ("placement", 8778, ""),
    "nova": ("compute", 8774, "/v2.1"),
    "neutron": ("network", 9696, ""),
    "cinder": ("volumev3", 8776, "/v3/%(project_id)s"),
}

#: The seed's flavors by name, and testbed-scaled ones that fit one 2-core
#: machine: memory / 16, disk / 40, vCPUs / 4 (at least 1).
SEED_FLAVORS = {"small": (2, 4096, 40), "medium": (4, 8192, 80), "large": (8, 16384, 160)}
SCALE_SUFFIX = "scaled-16"


#: For the whole-disk cloud image (systemd and cloud-init need more than the tiny guest).
CLOUD_FLAVOR = ("lm.cloud", (1, 512, 3))
CLOUD_IMAGE_NAME = "rally-lm-cloud"


def scaled_flavors() -> dict[str, tuple[int, int, int]]:
    return {
        f"lm.{name}.{SCALE_SUFFIX}": (max(1, vcpus // 4), ram // 16, max(1, disk // 40))
        for name, (vcpus, ram, disk) in SEED_FLAVORS.items()
    }


def admin_session() -> ks_session.Session:
    auth = v3.Password(auth_url=layout.KEYSTONE_URL, username="admin",
                       password=layout.PASSWORD, project_name="admin",
                       user_domain_name="Default", project_domain_name="Default")
    return ks_session.Session(auth=auth)


def _get(sess, service: str, path: str, **kwargs) -> dict:
    return sess.get(path, endpoint_filter={"service_type": service, "interface": "public"},
                    **kwargs).json()


def _post(sess, service: str, path: str, body: dict, **kwargs) -> dict:
    resp = sess.post(path, json=body,
                     endpoint_filter={"service_type": service, "interface": "public"}, **kwargs)
    return resp.json() if resp.content else {}


def register_services() -> dict:
    """Service project, users and catalog entries (keystone itself is bootstrapped),
    and the project and member user Rally's tasks run as."""
    sess = admin_session()
    ident = {"service_type": "identity", "interface": "public"}

    def find(kind: str, name: str, key: str = "name") -> dict | None:
        items = sess.get(f"/{kind}", endpoint_filter=ident).json()[kind]
        return next((i for i in items if i.get(key) == name), None)

    project = find("projects", "service") or sess.post(
        "/projects", endpoint_filter=ident,
        json={"project": {"name": "service", "domain_id": "default"}}).json()["project"]
    admin_role = find("roles", "admin")
    # Cinder (since OSSA-2023-003) lets only a caller whose service token carries
    # the ``service`` role delete an attachment Nova made: without it, deleting a
    # boot-from-volume server leaves its volume behind, still attached.
    service_role = find("roles", "service") or sess.post(
        "/roles", endpoint_filter=ident, json={"role": {"name": "service"}}).json()["role"]
    for name, (service_type, port, path) in SERVICES.items():
        user = find("users", name) or sess.post(
            "/users", endpoint_filter=ident,
            json={"user": {"name": name, "domain_id": "default",
                           "password": layout.PASSWORD}}).json()["user"]
        for role in (admin_role, service_role):
            sess.put(f"/projects/{project['id']}/users/{user['id']}/roles/{role['id']}",
                     endpoint_filter=ident)
        service = find("services", service_type, key="type") or sess.post(
            "/services", endpoint_filter=ident,
            json={"service": {"name": name, "type": service_type}}).json()["service"]
        endpoints = sess.get(f"/endpoints?service_id={service['id']}",
                             endpoint_filter=ident).json()["endpoints"]
        have = {e["interface"] for e in endpoints}
        for interface in ("public", "internal", "admin"):
            if interface not in have:
                sess.post("/endpoints", endpoint_filter=ident, json={"endpoint": {
                    "service_id": service["id"], "interface": interface,
                    "region_id": layout.REGION,
                    "url": f"http://{layout.CONTROLLER.ip}:{port}{path}"}})
    runs = find("projects", layout.RALLY_PROJECT) or sess.post(
        "/projects", endpoint_filter=ident,
        json={"project": {"name": layout.RALLY_PROJECT, "domain_id": "default"}}).json()["project"]
    runner = find("users", layout.RALLY_USER) or sess.post(
        "/users", endpoint_filter=ident,
        json={"user": {"name": layout.RALLY_USER, "domain_id": "default",
                       "password": layout.PASSWORD}}).json()["user"]
    sess.put(f"/projects/{runs['id']}/users/{runner['id']}/roles/{find('roles', 'member')['id']}",
             endpoint_filter=ident)
    return {"registered": sorted(SERVICES), "rally_user": layout.RALLY_USER}


def wait_computes(network_backend: str = "linuxbridge", since: str | None = None,
                  timeout: float = 240.0) -> dict:
    """Until both nova-compute services are up, and the network's agents alive: the
    linuxbridge agents of both computes and of the network node and its L3 agent,
    or with ML2/OVN the OVN controllers of both computes and the gateway's.

    ``since`` (seconds since the epoch, as a string: a command-line argument)
    is when the old nova-compute processes had exited: a service counts as up
    only once it reported after that. The stopped process's last report keeps
    Nova saying "up" for a minute while the new one still starts - and the new
    one errors out every instance it finds building when it gets there.
    """
    stopped = float(since) if since is not None else None
    sess = admin_session()
    wanted = {h.name for h in layout.COMPUTES}
    bridged = wanted | {layout.NETWORK_NODE.name}
    deadline = time.monotonic() + timeout
    state: dict = {}
    while time.monotonic() < deadline:
        try:
            services = _get(sess, "compute", "/os-services?binary=nova-compute")["services"]
            agents = _get(sess, "network", "/v2.0/agents")["agents"]
        except Exception as exc:  # noqa: BLE001 - APIs still warming up: retry
            state = {"error": str(exc)}
            time.sleep(2)
            continue
        up = {s["host"] for s in services if s["state"] == "up" and s["status"] == "enabled"
              and (stopped is None or _reported_after(s, stopped))}
        if network_backend == "ovn":
            alive = {a["host"] for a in agents if a["alive"] and a["agent_type"] in
                     ("OVN Controller agent", "OVN Controller Gateway agent")}
            l3 = {a["host"] for a in agents
                  if a["alive"] and a["agent_type"] == "OVN Controller Gateway agent"}
        else:
            alive = {a["host"] for a in agents
                     if a["alive"] and a["agent_type"] == "Linux bridge agent"}
            l3 = {a["host"] for a in agents if a["alive"] and a["agent_type"] == "L3 agent"}
        state = {"computes_up": sorted(up), "agents_alive": sorted(alive & wanted),
                 "network_node": sorted((alive & {layout.NETWORK_NODE.name}) | l3)}
        if wanted <= up and bridged <= alive and layout.NETWORK_NODE.name in l3:
            return state
        time.sleep(2)
    raise TimeoutError(f"computes not ready after {timeout:.0f}s: {state}")


def _reported_after(service: dict, moment: float) -> bool:
    """Whether Nova's service record was updated in a later second than ``moment``.

    Whole seconds: Nova's database keeps no fractions, so a report in the same
    second as ``moment`` cannot be told from one just before it. Its times are UTC.
    """
    updated = service.get("updated_at")
    if not updated:
        return False
    when = datetime.datetime.fromisoformat(updated.rstrip("Z"))
    return int(when.replace(tzinfo=datetime.timezone.utc).timestamp()) > int(moment)


def wait_hypervisors(timeout: float = 120.0) -> dict:
    sess = admin_session()
    wanted = {h.name for h in layout.COMPUTES}
    deadline = time.monotonic() + timeout
    found: set = set()
    while time.monotonic() < deadline:
        hypervisors = _get(sess, "compute", "/os-hypervisors")["hypervisors"]
        found = {h["hypervisor_hostname"] for h in hypervisors}
        if wanted <= found:
            return {"hypervisors": sorted(found)}
        time.sleep(2)
    raise TimeoutError(f"hypervisors not mapped after {timeout:.0f}s: {sorted(found)}")


def wait_volume_pools(timeout: float = 180.0) -> dict:
    """Until Cinder's scheduler knows the Ceph pool.

    cinder-volume reports its pools to the scheduler some seconds after it
    starts; a volume created before that fails at once ("No valid backend"),
    and a boot from volume with it ("did not finish being created ... its
    status is error"), although the service already shows ``up``.
    """
    sess = admin_session()
    deadline = time.monotonic() + timeout
    state: dict = {}
    while time.monotonic() < deadline:
        try:
            pools = _get(sess, "volumev3", "/scheduler-stats/get_pools").get("pools", [])
        except Exception as exc:  # noqa: BLE001 - cinder-api still warming up: retry
            state = {"error": str(exc)}
        else:
            if pools:
                return {"volume_pools": sorted(p["name"] for p in pools)}
            state = {"volume_pools": []}
        time.sleep(2)
    raise TimeoutError(f"Cinder's scheduler has no pool after {timeout:.0f}s: {state}")


def ensure_flavors() -> dict:
    sess = admin_session()
    existing = {f["name"] for f in _get(sess, "compute", "/flavors?is_public=None")["flavors"]}
    wanted = {f"lm.{n}": spec for n, spec in SEED_FLAVORS.items()} | scaled_flavors()
    wanted[CLOUD_FLAVOR[0]] = CLOUD_FLAVOR[1]
    for name, (vcpus, ram, disk) in wanted.items():
        if name not in existing:
            _post(sess, "compute", "/flavors",
                  {"flavor": {"name": name, "vcpus": vcpus, "ram": ram, "disk": disk}})
    return {"flavors": sorted(wanted)}


def guest_command_line(network_backend: str) -> str:
    """The guest kernel's command line on this testbed.

    On ML2/OVN the guest computes its own TCP/UDP checksums (virtio_net.csum=0):
    the testbed's OVS has no kernel datapath, and its userspace one forwards a
    virtio guest's checksum-offloaded packets with their checksum unfilled,
    which OVN's conntrack (the floating IP's NAT) then drops as invalid. A
    cloud's kernel or DPDK datapath fills them; ICMP, checksummed in software,
    passes either way. (The stock cloud image keeps its own command line: its
    agent turns the offload off instead, ``agent.tx_checksum_offload``.)
    """
    line = "console=ttyS0 quiet panic=-1"
    return line + " virtio_net.csum=0" if network_backend == "ovn" else line


def ensure_images(kernel: str, ramdisk: str, root: str) -> dict:
    """Kernel, ramdisk and root disk, all raw: Debian's nova refuses aki/ari/ami
    (deep image inspection) on the migration destination."""
    sess = admin_session()
    images = {i["name"]: i for i in _get(sess, "image", "/v2/images?limit=1000")["images"]}

    def upload(name: str, path: str, properties: dict) -> str:
        data = Path(path).read_bytes()
        old = images.get(name)
        same = old and old["status"] == "active" and old.get("checksum") == hashlib.md5(
            data, usedforsecurity=False).hexdigest()
        if same and all(old.get(k) == v for k, v in properties.items()):
            return old["id"]
        if old:  # rebuilt guest: replace it
            sess.delete(f"/v2/images/{old['id']}",
                        endpoint_filter={"service_type": "image", "interface": "public"})
        image = _post(sess, "image", "/v2/images", {
            "name": name, "disk_format": "raw", "container_format": "bare",
            "visibility": "public", **properties})
        sess.put(f"/v2/images/{image['id']}/file", data=data,
                 headers={"Content-Type": "application/octet-stream"},
                 endpoint_filter={"service_type": "image", "interface": "public"})
        return image["id"]

    kernel_id = upload(f"{layout.GUEST_IMAGE_NAME}-kernel", kernel, {})
    ramdisk_id = upload(f"{layout.GUEST_IMAGE_NAME}-ramdisk", ramdisk, {})
    root_id = upload(layout.GUEST_IMAGE_NAME, root, {
        "kernel_id": kernel_id, "ramdisk_id": ramdisk_id,
        "os_command_line": guest_command_line(layout.network_backend())})
    return {"image": root_id, "kernel": kernel_id, "ramdisk": ramdisk_id}


def ensure_cloud_image(path: str) -> dict:
    """The whole-disk cloud image as a normal single Glance image (qcow2)."""
    sess = admin_session()
    images = {i["name"]: i for i in _get(sess, "image", "/v2/images?limit=1000")["images"]}
    key = Path(path).parent.name  # the recipe's hash: a rebuilt image replaces the old one
    old = images.get(CLOUD_IMAGE_NAME)
    if old and old["status"] == "active" and old.get("rally_lm_recipe") == key:
        return {"cloud_image": old["id"]}
    if old:
        sess.delete(f"/v2/images/{old['id']}",
                    endpoint_filter={"service_type": "image", "interface": "public"})
    image = _post(sess, "image", "/v2/images", {
        "name": CLOUD_IMAGE_NAME, "disk_format": "qcow2", "container_format": "bare",
        "visibility": "public", "min_disk": 2, "min_ram": 256, "rally_lm_recipe": key,
        "os_distro": "debian", "os_version": "12"})
    with open(path, "rb") as data:
        sess.put(f"/v2/images/{image['id']}/file", data=data,
                 headers={"Content-Type": "application/octet-stream"},
                 endpoint_filter={"service_type": "image", "interface": "public"})
    return {"cloud_image": image["id"]}


def _flat_network(sess, name: str, physnet: str, cidr: str, gateway: str | None,
                  pool: tuple[int, int], external: bool = False) -> tuple[dict, str]:
    networks = _get(sess, "network", f"/v2.0/networks?name={name}")["networks"]
    if networks:
        network = networks[0]
    else:
        network = _post(sess, "network", "/v2.0/networks", {"network": {
            "name": name, "shared": not external, "router:external": external,
            "provider:network_type": "flat", "provider:physical_network": physnet,
            # ebtables-nft makes the linuxbridge agent loop on rule deletion;
            # without port security it installs no ebtables rules at all.
            "port_security_enabled": False}})["network"]
    return network, _subnet(sess, network, cidr, gateway, pool)


def _subnet(sess, network: dict, cidr: str, gateway: str | None,
            pool: tuple[int, int]) -> str:
    """The network's subnet (made once). No DHCP: the guests' addresses come from
    the config drive, whichever network backend carries them."""
    subnets = _get(sess, "network", f"/v2.0/subnets?network_id={network['id']}")["subnets"]
    if subnets:
        return subnets[0]["id"]
    prefix = cidr.rsplit(".", 1)[0]
    return _post(sess, "network", "/v2.0/subnets", {"subnet": {
        "network_id": network["id"], "name": f"{network['name']}-subnet", "ip_version": 4,
        "cidr": cidr, "gateway_ip": gateway, "enable_dhcp": False,
        "allocation_pools": [{"start": f"{prefix}.{pool[0]}",
                              "end": f"{prefix}.{pool[1]}"}]}})["subnet"]["id"]


def _overlay_network(sess, name: str, cidr: str) -> tuple[dict, str]:
    """A Geneve tenant network (ML2/OVN), shared, with port security, as clouds
    run it (lm_workload then opens the echo ports to the probe alone, in a
    security group of its own).

    Without port security Neutron gives OVN no address for a port ("unknown"),
    so the router learns each VM's MAC from ARP into the southbound MAC_Binding
    table and keeps it after the VM is gone: a later VM given the same fixed IP
    is sent to the old MAC and never answers (Neutron Zed, OVN 23.03; seen on
    this testbed). With port security the router resolves the port's own
    address statically.
    """
    networks = _get(sess, "network", f"/v2.0/networks?name={name}")["networks"]
    network = networks[0] if networks else _post(sess, "network", "/v2.0/networks", {
        "network": {"name": name, "shared": True, "provider:network_type": "geneve",
                    "port_security_enabled": True}})["network"]
    return network, _subnet(sess, network, cidr, f"{cidr.rsplit('.', 1)[0]}.1", (10, 200))


def ensure_network(network_backend: str = "linuxbridge") -> dict:
    """The tenant network, the external one (floating IPs), and a router between them.

    With ML2/OVN the tenant network is a Geneve overlay the probe cannot reach
    but through the router: its VMs are probed by floating IP.
    """
    sess = admin_session()
    if network_backend == "ovn":
        tenant, tenant_subnet = _overlay_network(sess, layout.TENANT_NETWORK_NAME,
                                                 layout.OVERLAY_NET)
    else:
        tenant, tenant_subnet = _flat_network(sess, layout.TENANT_NETWORK_NAME, layout.PHYSNET,
                                              layout.TENANT_NET, layout.ROUTER_TENANT_IP,
                                              (10, 200))
    external, _ext_subnet = _flat_network(sess, layout.EXTERNAL_NETWORK_NAME,
                                          layout.EXTERNAL_PHYSNET, layout.EXTERNAL_NET, None,
                                          (100, 200), external=True)
    routers = _get(sess, "network", f"/v2.0/routers?name={layout.ROUTER_NAME}")["routers"]
    if routers:
        router = routers[0]
    else:
        router = _post(sess, "network", "/v2.0/routers", {"router": {
            "name": layout.ROUTER_NAME,
            "external_gateway_info": {"network_id": external["id"]}}})["router"]
        sess.put(f"/v2.0/routers/{router['id']}/add_router_interface",
                 json={"subnet_id": tenant_subnet},
                 endpoint_filter={"service_type": "network", "interface": "public"})
    return {"network": tenant["id"], "external": external["id"], "router": router["id"],
            "backend": network_backend}


def rally_quotas() -> dict:
    """Quotas of the project Rally's tasks run in (layout.RALLY_QUOTAS), read back."""
    sess = admin_session()
    ident = {"service_type": "identity", "interface": "public"}
    projects = sess.get(f"/projects?name={layout.RALLY_PROJECT}",
                        endpoint_filter=ident).json()["projects"]
    project = projects[0]["id"]
    paths = {"compute": f"/os-quota-sets/{project}", "network": f"/v2.0/quotas/{project}",
             "volumev3": f"/os-quota-sets/{project}"}
    keys = {"compute": "quota_set", "network": "quota", "volumev3": "quota_set"}
    found = {}
    for service, limits in layout.RALLY_QUOTAS.items():
        target = {"service_type": service, "interface": "public"}
        sess.put(paths[service], json={keys[service]: limits}, endpoint_filter=target)
        now = sess.get(paths[service], endpoint_filter=target).json()[keys[service]]
        found[service] = {k: now[k] for k in limits}
    return found


def leftovers(prefix: str = "rally-lm-") -> dict:
    """Servers, security groups, keypairs and flavors named like a Rally task's, in any
    project, and every floating IP and volume (the testbed itself holds none)."""
    sess = admin_session()
    servers = _get(sess, "compute", "/servers?all_tenants=1")["servers"]
    groups = _get(sess, "network", "/v2.0/security-groups")["security_groups"]
    keypairs = _get(sess, "compute", "/os-keypairs")["keypairs"]
    flavors = _get(sess, "compute", "/flavors?is_public=None")["flavors"]
    fips = _get(sess, "network", "/v2.0/floatingips")["floatingips"]
    found = {"servers": sorted(s["name"] for s in servers if s["name"].startswith(prefix)),
             "security_groups": sorted(g["name"] for g in groups
                                       if g["name"].startswith(prefix)),
             "keypairs": sorted(k["keypair"]["name"] for k in keypairs
                                if k["keypair"]["name"].startswith(prefix)),
             "flavors": sorted(f["name"] for f in flavors if f["name"].startswith(prefix))}
    if fips:
        found["floating_ips"] = sorted(f["floating_ip_address"] for f in fips)
    volumes = _get(sess, "volumev3", "/volumes?all_tenants=1").get("volumes", [])
    if volumes:
        found["volumes"] = sorted(v["id"] for v in volumes)
    return found


def main(argv: list[str]) -> int:
    step, *args = argv
    steps = {"register": register_services, "wait-computes": wait_computes,
             "wait-hypervisors": wait_hypervisors, "wait-volume-pools": wait_volume_pools,
             "flavors": ensure_flavors,
             "images": ensure_images, "cloud-image": ensure_cloud_image,
             "network": ensure_network, "rally-quotas": rally_quotas,
             "leftovers": leftovers}
    print(json.dumps(steps[step](*args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
