"""Cloud-side set-up of the testbed, through the OpenStack APIs (idempotent).

Run inside the probe namespace (the root namespace has no route to the
testbed): ``python -m rally_lm_testbed.bootstrap STEP``. Plain REST through a
keystoneauth session, so nothing here depends on a client library's quirks.
"""

from __future__ import annotations

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
}

#: The seed's flavors by name, and testbed-scaled ones that fit one 2-core
#: machine: memory / 16, disk / 40, vCPUs / 4 (at least 1).
SEED_FLAVORS = {"small": (2, 4096, 40), "medium": (4, 8192, 80), "large": (8, 16384, 160)}
SCALE_SUFFIX = "scaled-16"


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
    """Service project, users and catalog entries (keystone itself is bootstrapped)."""
    sess = admin_session()
    ident = {"service_type": "identity", "interface": "public"}

    def find(kind: str, name: str, key: str = "name") -> dict | None:
        items = sess.get(f"/{kind}", endpoint_filter=ident).json()[kind]
        return next((i for i in items if i.get(key) == name), None)

    project = find("projects", "service") or sess.post(
        "/projects", endpoint_filter=ident,
        json={"project": {"name": "service", "domain_id": "default"}}).json()["project"]
    admin_role = find("roles", "admin")
    for name, (service_type, port, path) in SERVICES.items():
        user = find("users", name) or sess.post(
            "/users", endpoint_filter=ident,
            json={"user": {"name": name, "domain_id": "default",
                           "password": layout.PASSWORD}}).json()["user"]
        sess.put(f"/projects/{project['id']}/users/{user['id']}/roles/{admin_role['id']}",
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
    return {"registered": sorted(SERVICES)}


def wait_computes(timeout: float = 240.0) -> dict:
    """Until both nova-compute services are up and both linuxbridge agents alive."""
    sess = admin_session()
    wanted = {h.name for h in layout.COMPUTES}
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
        up = {s["host"] for s in services if s["state"] == "up" and s["status"] == "enabled"}
        alive = {a["host"] for a in agents
                 if a["alive"] and a["agent_type"] == "Linux bridge agent"}
        state = {"computes_up": sorted(up), "agents_alive": sorted(alive)}
        if wanted <= up and wanted <= alive:
            return state
        time.sleep(2)
    raise TimeoutError(f"computes not ready after {timeout:.0f}s: {state}")


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


def ensure_flavors() -> dict:
    sess = admin_session()
    existing = {f["name"] for f in _get(sess, "compute", "/flavors?is_public=None")["flavors"]}
    wanted = {f"lm.{n}": spec for n, spec in SEED_FLAVORS.items()} | scaled_flavors()
    for name, (vcpus, ram, disk) in wanted.items():
        if name not in existing:
            _post(sess, "compute", "/flavors",
                  {"flavor": {"name": name, "vcpus": vcpus, "ram": ram, "disk": disk}})
    return {"flavors": sorted(wanted)}


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
        "os_command_line": "console=ttyS0 quiet panic=-1"})
    return {"image": root_id, "kernel": kernel_id, "ramdisk": ramdisk_id}


def ensure_network() -> dict:
    sess = admin_session()
    name = layout.TENANT_NETWORK_NAME
    networks = _get(sess, "network", f"/v2.0/networks?name={name}")["networks"]
    if networks:
        network = networks[0]
    else:
        network = _post(sess, "network", "/v2.0/networks", {"network": {
            "name": name, "shared": True, "provider:network_type": "flat",
            "provider:physical_network": layout.PHYSNET,
            # ebtables-nft makes the linuxbridge agent loop on rule deletion;
            # without port security it installs no ebtables rules at all.
            "port_security_enabled": False}})["network"]
    if not network["subnets"]:
        prefix = layout.TENANT_NET.rsplit(".", 1)[0]
        _post(sess, "network", "/v2.0/subnets", {"subnet": {
            "network_id": network["id"], "name": f"{name}-subnet", "ip_version": 4,
            "cidr": layout.TENANT_NET, "gateway_ip": None, "enable_dhcp": False,
            "allocation_pools": [{"start": f"{prefix}.10", "end": f"{prefix}.200"}]}})
    return {"network": network["id"]}


def leftovers(prefix: str = "rally-lm-") -> dict:
    """Servers, security groups, keypairs and flavors named like a Rally task's, in any project."""
    sess = admin_session()
    servers = _get(sess, "compute", "/servers?all_tenants=1")["servers"]
    groups = _get(sess, "network", "/v2.0/security-groups")["security_groups"]
    keypairs = _get(sess, "compute", "/os-keypairs")["keypairs"]
    flavors = _get(sess, "compute", "/flavors?is_public=None")["flavors"]
    return {"servers": sorted(s["name"] for s in servers if s["name"].startswith(prefix)),
            "security_groups": sorted(g["name"] for g in groups
                                      if g["name"].startswith(prefix)),
            "keypairs": sorted(k["keypair"]["name"] for k in keypairs
                               if k["keypair"]["name"].startswith(prefix)),
            "flavors": sorted(f["name"] for f in flavors if f["name"].startswith(prefix))}


def main(argv: list[str]) -> int:
    step, *args = argv
    steps = {"register": register_services, "wait-computes": wait_computes,
             "wait-hypervisors": wait_hypervisors, "flavors": ensure_flavors,
             "images": ensure_images, "network": ensure_network,
             "leftovers": leftovers}
    print(json.dumps(steps[step](*args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
