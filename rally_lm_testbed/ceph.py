"""A single-node Ceph cluster for the testbed: one mon, one mgr, one OSD.

Debian's own Ceph (Pacific), started by hand without systemd in the ``ceph``
host's namespaces, on the management network, so both computes and the
controller reach it as they would a real cluster. BlueStore on a sparse file,
pools of size 1 (one OSD), cephx on. Pools ``vms`` (Nova's instance disks),
``images`` (Glance: Nova clones from it copy-on-write) and ``volumes``
(Cinder); one client key, ``client.openstack``, for all three services, and
the same key in each compute's libvirt as a secret.

Lifecycle as the other services: configure, init (cluster, OSD, pools and
keys, from nothing), start (daemons, then until HEALTH_OK), distribute
(client configuration to the hosts that use it), stop. The verified settings
and traps are in the team's notes (../shared/notes): no
``bluestore_block_path``, write the OSD keyring yourself, run every daemon
inside the namespace that owns the address, stop the OSD before the mon.
"""

from __future__ import annotations

import json
import time
import uuid

from rally_lm_testbed import config, hosts, layout
from rally_lm_testbed.layout import CEPH

FSID = str(uuid.uuid5(uuid.NAMESPACE_DNS, "rally-lm-testbed-ceph"))
#: libvirt secret holding client.openstack's key, on both computes.
SECRET_UUID = str(uuid.uuid5(uuid.NAMESPACE_DNS, "rally-lm-testbed-ceph-client"))
CLIENT = "openstack"
POOLS = ("vms", "images", "volumes")
OSD_DATA = "/var/lib/ceph/osd/ceph-0"
#: The mon speaks both protocols (Pacific warns MON_MSGR2_NOT_ENABLED otherwise).
MON_ADDRS = f"[v2:{CEPH.ip}:3300,v1:{CEPH.ip}:6789]"
#: Sparse; the study's large cell boots 6 VMs of 4 GB (Nova counts Ceph's free
#: space once per compute, so DISK_GB is not the limit: the pool is).
OSD_SIZE_GB = 48


def daemons() -> list[str]:
    return ["ceph-mon", "ceph-mgr", "ceph-osd"]


def _run(argv: list[str], **kwargs):
    return hosts.host_run(CEPH, argv, **kwargs)


def cluster_conf() -> str:
    return "\n".join([
        "[global]",
        f"fsid = {FSID}",
        f"mon_initial_members = {CEPH.name}",
        f"mon_host = {MON_ADDRS}",
        f"public_network = {layout.MGMT_NET}",
        "auth_cluster_required = cephx",
        "auth_service_required = cephx",
        "auth_client_required = cephx",
        # One OSD on one host.
        "osd_pool_default_size = 1",
        "osd_pool_default_min_size = 1",
        "mon_allow_pool_size_one = true",
        "mon_warn_on_pool_no_redundancy = false",
        "osd_crush_chooseleaf_type = 0",
        "osd_pool_default_pg_autoscale_mode = off",
        # This disk may have little free space: no MON_DISK_LOW warnings.
        "mon_data_avail_warn = 10",
        # Pacific's default warns (AUTH_INSECURE_GLOBAL_ID_RECLAIM_ALLOWED): all our
        # clients are new enough to do without it.
        "auth_allow_insecure_global_id_reclaim = false",
        "",
        "[osd]",
        "osd_objectstore = bluestore",
        "bluestore_block_create = true",
        f"bluestore_block_size = {OSD_SIZE_GB}G",
        "osd_memory_target = 896M",
        "bluestore_cache_autotune = false",
        "bluestore_cache_size = 256M",
        "",
    ])


def client_conf() -> str:
    """What the OpenStack hosts need to reach the cluster."""
    return "\n".join([
        "[global]",
        f"fsid = {FSID}",
        f"mon_host = {MON_ADDRS}",
        "auth_cluster_required = cephx",
        "auth_service_required = cephx",
        "auth_client_required = cephx",
        "",
    ])


def configure() -> None:
    target = config.private_path(CEPH, "/etc/ceph/ceph.conf")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(cluster_conf())
    for path in ("/var/lib/ceph/mon", "/var/lib/ceph/mgr", "/var/lib/ceph/osd",
                 "/var/log/ceph", "/run/ceph"):
        config.private_path(CEPH, path).mkdir(parents=True, exist_ok=True)


def init() -> None:
    """A new cluster with its mon's store, from nothing (idempotent)."""
    if config.private_path(CEPH, f"/var/lib/ceph/mon/ceph-{CEPH.name}/store.db").exists():
        return
    _run(["ceph-authtool", "--create-keyring", "/etc/ceph/ceph.mon.keyring", "--gen-key",
          "-n", "mon.", "--cap", "mon", "allow *"])
    _run(["ceph-authtool", "--create-keyring", "/etc/ceph/ceph.client.admin.keyring",
          "--gen-key", "-n", "client.admin", "--cap", "mon", "allow *", "--cap", "osd",
          "allow *", "--cap", "mds", "allow *", "--cap", "mgr", "allow *"])
    _run(["ceph-authtool", "/etc/ceph/ceph.mon.keyring", "--import-keyring",
          "/etc/ceph/ceph.client.admin.keyring"])
    _run(["monmaptool", "--create", "--clobber", "--addv", CEPH.name, MON_ADDRS, "--fsid",
          FSID, "/etc/ceph/monmap"])
    _run(["ceph-mon", "--mkfs", "-i", CEPH.name, "--monmap", "/etc/ceph/monmap", "--keyring",
          "/etc/ceph/ceph.mon.keyring"])


def _ceph(*args: str, timeout: float = 30.0) -> str:
    return _run(["ceph", "--connect-timeout", "10", *args], timeout=timeout).stdout


def start_mon() -> None:
    hosts.spawn(CEPH, "ceph-mon", ["ceph-mon", "-f", "-i", CEPH.name])
    hosts.wait_for_port(CEPH, 6789, 60, "ceph-mon")


def start_mgr() -> None:
    keyring = f"/var/lib/ceph/mgr/ceph-{CEPH.name}/keyring"
    if not config.private_path(CEPH, keyring).exists():
        config.private_path(CEPH, keyring).parent.mkdir(parents=True, exist_ok=True)
        key = _ceph("auth", "get-or-create", f"mgr.{CEPH.name}", "mon", "allow profile mgr",
                    "osd", "allow *", "mds", "allow *")
        config.private_path(CEPH, keyring).write_text(key)
    hosts.spawn(CEPH, "ceph-mgr", ["ceph-mgr", "-f", "-i", CEPH.name])


def start_osd() -> None:
    keyring = config.private_path(CEPH, f"{OSD_DATA}/keyring")
    if not keyring.exists():
        osd_uuid = str(uuid.uuid5(uuid.NAMESPACE_DNS, "rally-lm-testbed-osd-0"))
        osd_id = _ceph("osd", "new", osd_uuid).strip()
        if osd_id != "0":
            raise RuntimeError(f"expected OSD id 0, Ceph gave {osd_id!r}")
        keyring.parent.mkdir(parents=True, exist_ok=True)
        # ceph-osd --mkfs does not write the keyring it is given: write it ourselves.
        keyring.write_text(_ceph("auth", "get-or-create", "osd.0", "mon", "allow profile osd",
                                 "mgr", "allow profile osd", "osd", "allow *"))
        _run(["ceph-osd", "-i", "0", "--mkfs", "--osd-uuid", osd_uuid, "--osd-data", OSD_DATA],
             timeout=120)
    hosts.spawn(CEPH, "ceph-osd", ["ceph-osd", "-f", "-i", "0"])


def create_pools_and_client() -> str:
    """Pools for Nova, Glance and Cinder, and client.openstack's key (returned)."""
    existing = set(json.loads(_ceph("osd", "pool", "ls", "--format", "json")))
    for pool in POOLS:
        if pool not in existing:
            _ceph("osd", "pool", "create", pool, "16", "16")
            _run(["rbd", "pool", "init", pool], timeout=60)
    caps = ", ".join(f"profile rbd pool={p}" for p in POOLS)
    _ceph("auth", "get-or-create", f"client.{CLIENT}", "mon", "profile rbd", "osd", caps,
          "mgr", caps)
    return _ceph("auth", "get-key", f"client.{CLIENT}").strip()


def wait_healthy(timeout: float = 120.0) -> dict:
    """Until the OSD is up and in and every PG active+clean (HEALTH_OK)."""
    deadline = time.monotonic() + timeout
    state: dict = {}
    while time.monotonic() < deadline:
        try:
            state = json.loads(_ceph("status", "--format", "json"))
        except Exception as exc:  # noqa: BLE001 - the mon may not answer yet
            state = {"error": str(exc)}
            time.sleep(1)
            continue
        health = state.get("health", {}).get("status")
        osdmap = state.get("osdmap", {})
        pgs = state.get("pgmap", {}).get("pgs_by_state", [])
        clean = all(p["state_name"] == "active+clean" for p in pgs)
        if health == "HEALTH_OK" and osdmap.get("num_up_osds") == 1 and clean:
            return {"health": health, "pgs": sum(p["count"] for p in pgs)}
        time.sleep(1)
    raise TimeoutError(f"Ceph not healthy after {timeout:.0f}s: "
                       f"{json.dumps(state.get('health', state))[:1500]}")


def distribute(key: str, hosts_using: tuple[layout.Host, ...]) -> None:
    """ceph.conf and client.openstack's keyring into the hosts that use the cluster."""
    keyring = f"[client.{CLIENT}]\n\tkey = {key}\n"
    for host in hosts_using:
        for path, text in (("/etc/ceph/ceph.conf", client_conf()),
                           (f"/etc/ceph/ceph.client.{CLIENT}.keyring", keyring)):
            target = config.private_path(host, path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            target.chmod(0o640 if path.endswith("keyring") else 0o644)


def status() -> dict:
    """Health as Ceph reports it (for `rally-lm testbed status`)."""
    try:
        state = json.loads(_ceph("status", "--format", "json", timeout=15))
    except Exception as exc:  # noqa: BLE001 - a status must always answer
        return {"health": f"unreachable: {exc}"}
    return {"health": state.get("health", {}).get("status"),
            "osds_up": state.get("osdmap", {}).get("num_up_osds"),
            "pgs": {p["state_name"]: p["count"]
                    for p in state.get("pgmap", {}).get("pgs_by_state", [])}}


def up(hosts_using: tuple[layout.Host, ...], log=print) -> float:
    """Configure, init, start; returns seconds until HEALTH_OK."""
    began = time.monotonic()
    log("ceph: mon, mgr, osd")
    configure()
    init()
    start_mon()
    start_mgr()
    start_osd()
    key = create_pools_and_client()
    distribute(key, hosts_using)
    log(f"  ceph {wait_healthy()}")
    return time.monotonic() - began


def stop_all() -> None:
    # The OSD before the mon: an OSD without its mon hangs on shutdown.
    for daemon in ("ceph-osd", "ceph-mgr", "ceph-mon"):
        hosts.stop(daemon)
