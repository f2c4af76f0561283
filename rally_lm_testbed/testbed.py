"""The testbed's life cycle: up, down, status, mode, env."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rally_lm_testbed import (
    ceph,
    cgroups,
    cloud_image,
    compute,
    controller,
    hosts,
    image,
    layout,
    netns,
    network,
    network_node,
    ovn,
    policy,
)

DEFAULT_MODE = {"storage": "local", "tunnelled": "off", "policy": policy.Policy().to_dict(),
                "network": layout.NETWORK_BACKENDS[0]}


def log(message: str) -> None:
    print(f"[testbed {time.strftime('%H:%M:%S')}] {message}", flush=True)


def read_mode() -> dict:
    try:
        mode = json.loads(layout.MODE_FILE.read_text())
    except (OSError, ValueError):
        mode = {}
    # A mode file from before policies existed means Nova's default policy.
    return {**DEFAULT_MODE, **mode}


def write_mode(mode: dict) -> None:
    layout.STATE.mkdir(parents=True, exist_ok=True)
    layout.MODE_FILE.write_text(json.dumps(mode))


def in_probe(argv: list[str], check: bool = True, timeout: float = 600) -> str:
    """Run a command in the probe namespace (where the APIs are reachable)."""
    proc = subprocess.run(["ip", "netns", "exec", layout.PROBE, *argv], capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed in {layout.PROBE}:\n{proc.stderr[-3000:]}")
    return proc.stdout


def bootstrap(step: str, *args: str) -> dict:
    out = in_probe([sys.executable, "-m", "rally_lm_testbed.bootstrap", step, *args])
    return json.loads(out.strip().splitlines()[-1])


def preflight(network_backend: str = "linuxbridge") -> None:
    netns.require_root("rally-lm testbed")
    tools = ["libvirtd", "nova-compute", "neutron-server", "mariadbd", "uwsgi", "bindfs",
             "genisoimage", "busybox", "ceph-mon", "cinder-volume", "neutron-l3-agent",
             "mmdebstrap", "tcpdump"]
    if network_backend == "ovn":
        tools += ["ovsdb-server", "ovs-vswitchd", "ovn-northd", "ovn-controller", "ethtool"]
    missing = [tool for tool in tools
               if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists()]
    if missing:
        raise RuntimeError(f"testbed packages missing ({', '.join(missing)}): run "
                           "tools/install-system-deps.sh first")
    version = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True,
                             text=True).stdout
    if "version 7." in version:
        raise RuntimeError("QEMU 7.x loses guest memory writes while migrating under TCG: "
                           "install QEMU 10 from bookworm-backports (tools/install-system-deps.sh)")


def all_daemons(network_backend: str | None = None) -> list[str]:
    """Every daemon of the testbed with this network backend (by default, its own)."""
    backend = network_backend or read_mode()["network"]
    return (ceph.daemons() + controller.daemons(backend)
            + [d for h in layout.COMPUTES for d in compute.daemons(h, backend)]
            + network_node.daemons(backend))


def is_up() -> bool:
    return all(hosts.running_pid(d) for d in all_daemons())


def up(network_backend: str | None = None) -> float:
    """Bring everything up; returns seconds taken. Changes nothing if already up.

    ``network_backend`` (linuxbridge or ovn; default: the last one, else
    linuxbridge) is chosen here only: another one needs ``down`` first.
    """
    if network_backend is not None and network_backend not in layout.NETWORK_BACKENDS:
        raise ValueError(f"network backend must be one of {', '.join(layout.NETWORK_BACKENDS)}")
    mode = read_mode()
    running = any(hosts.running_pid(d) for b in layout.NETWORK_BACKENDS
                  for d in all_daemons(b))
    if running and network_backend not in (None, mode["network"]):
        raise RuntimeError(f"the testbed runs with network {mode['network']}: "
                           f"`rally-lm testbed down` first, then `up --network "
                           f"{network_backend}`")
    backend = network_backend or mode["network"]
    preflight(backend)
    started = time.monotonic()
    if is_up():
        log("already up")
        return 0.0
    if not running:
        # Nothing of ours runs: clear leftovers of a killed run first.
        down(quiet=True)
    mode = {**read_mode(), "network": backend}
    write_mode(mode)
    if cgroups.configure():
        log(f"cpu shares: {cgroups.shares()} (cgroup v1: guests cannot starve the rest)")
    else:
        log("cpu shares: no writable cgroup v1 cpu/cpuacct here: every process weighs the same")
    log("network namespaces and links")
    network.configure()
    for host in layout.HOSTS:
        hosts.create_host(host)
    log("guest images (tiny, and a whole-disk cloud image)")
    guest = image.build()
    # Building the cloud image (~2 min when it is not cached: package downloads,
    # dpkg, compression; about one core) overlaps the services' start-up, which
    # waits on ports and daemons as much as it computes. Nothing needs the image
    # before its upload; a failed build fails `up` there, after the build ended.
    with ThreadPoolExecutor(max_workers=1) as builder:
        cloud_build = builder.submit(cloud_image.build, log=log)
        ceph_seconds = ceph.up((layout.CONTROLLER, *layout.COMPUTES), log=log)
        policy.tls_certificates()
        controller.up(after_keystone=lambda: bootstrap("register"), network=backend, log=log)
        for host in layout.COMPUTES:
            compute.up(host, mode, log=log)
        network_node.up(backend, log=log)
        if backend == "ovn":
            log(f"  OVN chassis settings Neutron reads: {ovn.mirror_chassis_config()}")
        migration_policy = policy.Policy.from_dict(mode.get("policy"))
        for host in layout.COMPUTES:
            policy.shape_link(host, migration_policy.link_mbit)
        log("waiting for both computes and agents")
        wait_computes()
        controller.nova_discover_hosts()
        log(f"  {bootstrap('wait-hypervisors')}")
        log(f"  {bootstrap('wait-volume-pools')}")
        log(f"  {bootstrap('flavors')}")
        log(f"  {bootstrap('images', str(guest.kernel), str(guest.ramdisk), str(guest.root_disk))}")
        if not cloud_build.done():
            log("waiting for the cloud image's build")
        cloud = cloud_build.result()
    log(f"  {bootstrap('cloud-image', str(cloud.path))}")
    log(f"  {bootstrap('network', backend)}")
    log(f"  rally-lm-runs quotas {bootstrap('rally-quotas')}")
    elapsed = time.monotonic() - started
    log(f"up in {elapsed:.0f}s, Ceph healthy after {ceph_seconds:.0f}s "
        f"(mode: storage={mode['storage']} tunnelled={mode['tunnelled']} "
        f"policy={migration_policy.name()} network={backend})")
    return elapsed


def wait_computes(since: float | None = None) -> None:
    """Until Nova lists both computes up (with ``since``: reporting after that moment)."""
    try:
        since_arg = [repr(since)] if since is not None else []
        log(f"  {bootstrap('wait-computes', read_mode()['network'], *since_arg)}")
    except RuntimeError as exc:
        dead = [d for d in all_daemons() if not hosts.running_pid(d)]
        details = "".join(f"\n--- {d} ---\n{hosts.tail(hosts.log_file(d))}" for d in dead)
        raise RuntimeError(f"{exc}\ndaemons that died: {dead or 'none'}{details}") from exc


def down(quiet: bool = False) -> None:
    """Stop everything and remove every namespace, mount and state of the testbed."""
    netns.require_root("rally-lm testbed")
    network_node.stop_all()  # every backend's daemons: whichever ran
    for host in layout.COMPUTES:
        compute.stop_all(host)
    controller.stop_all()
    ceph.stop_all()
    removed = network.cleanup()  # kills what is left inside (guests, bindfs, epmd)
    stragglers = hosts.kill_leftovers()
    hosts.destroy_host_namespaces()
    for left in cgroups.remove():
        log(f"down: a cgroup stayed: {left}")
    if layout.STATE.exists():
        shutil.rmtree(layout.STATE, ignore_errors=True)
    if not quiet:
        log(f"down: removed namespaces {', '.join(removed) or '(none)'}"
            + (f"; killed {len(stragglers)} process(es) left in them" if stragglers else ""))


def set_mode(storage: str | None, tunnelled: str | None,
             policy_changes: dict | None = None, reset_policy: bool = False,
             guests_gone_within: float = 0.0) -> dict:
    """Switch storage, tunnelling and/or the migration policy; restarts nova-compute only.

    ``policy_changes`` names Policy fields to change (the rest keep their
    current values; ``reset_policy`` starts from Nova's defaults instead).
    Refused before anything changes when Nova would refuse the result. A
    storage switch needs the computes without guests: ``guests_gone_within``
    seconds are given to guests being deleted (a task's cleanup still under
    way) before that refusal.
    """
    mode = read_mode()
    preflight(mode["network"])
    if not is_up():
        raise RuntimeError("the testbed is not up: run `rally-lm testbed up` first")
    current = policy.Policy() if reset_policy else policy.Policy.from_dict(mode.get("policy"))
    try:
        wanted = dataclasses.replace(current, **(policy_changes or {}))
    except TypeError as exc:
        raise RuntimeError(f"unknown policy setting: {exc}") from exc
    new = {"storage": storage or mode["storage"], "tunnelled": tunnelled or mode["tunnelled"],
           "policy": wanted.to_dict(), "network": mode["network"]}
    problems = wanted.problems(new["tunnelled"] == "on")
    if problems:
        raise RuntimeError("; ".join(problems))
    if new == mode and _computes_as_configured(wanted):
        # Restarting nova-compute for nothing costs its start-up, and the next
        # migration waits for it.
        log(f"mode: storage={new['storage']} tunnelled={new['tunnelled']} "
            f"policy={wanted.name()} already; nothing restarted")
        return new
    if new["storage"] != mode["storage"]:
        deadline = time.monotonic() + guests_gone_within
        guests = {h.name: guests_on(h) for h in layout.COMPUTES}
        while any(guests.values()) and time.monotonic() < deadline:
            time.sleep(2)
            guests = {h.name: guests_on(h) for h in layout.COMPUTES}
        if any(guests.values()):
            raise RuntimeError(f"cannot switch storage with guests running: {guests}; "
                               "delete the servers first")
    try:
        stopped = _restart_computes(new)
    except Exception:
        _restart_computes(mode)  # leave the testbed as it was
        raise
    write_mode(new)
    log(f"mode: storage={new['storage']} tunnelled={new['tunnelled']} "
        f"policy={wanted.name()} link={wanted.link_mbit or 'unshaped'}; waiting for computes")
    wait_computes(since=stopped)
    return new


def _computes_as_configured(wanted: policy.Policy) -> bool:
    """Every compute daemon running, and each migration link shaped as the policy says."""
    backend = read_mode()["network"]
    running = all(hosts.running_pid(d) for h in layout.COMPUTES
                  for d in compute.daemons(h, backend))
    return running and all(policy.link_shaped_as(h, wanted.link_mbit) for h in layout.COMPUTES)


def _restart_computes(mode: dict) -> float:
    """Restart both nova-computes in ``mode``; when the old ones had exited (epoch seconds)."""
    migration_policy = policy.Policy.from_dict(mode.get("policy"))
    for host in layout.COMPUTES:
        compute.nova_compute_stop(host)
    stopped = time.time()
    for host in layout.COMPUTES:
        compute.storage_apply(host, mode["storage"])
        compute.nova_compute_configure(host, mode["tunnelled"] == "on", mode["storage"],
                                       migration_policy, mode["network"])
        policy.shape_link(host, migration_policy.link_mbit)
        compute.services_start(host, mode["network"])
    return stopped


def guests_on(host: layout.Host) -> list[str]:
    if not hosts.running_pid(f"{host.name}-libvirtd"):
        return []
    out = compute.virsh(host, "list", "--name", check=False).stdout
    return [line for line in out.splitlines() if line.strip()]


def status() -> dict:
    daemons = {d: bool(hosts.running_pid(d)) for d in all_daemons()}
    return {
        "up": all(daemons.values()),
        "mode": read_mode(),
        "network": read_mode()["network"],
        "services": daemons,
        "guests": {h.name: guests_on(h) for h in layout.COMPUTES},
        "policy": policy.Policy.from_dict(read_mode().get("policy")).name(),
        "migration_link": {h.name: policy.link_state(h) for h in layout.COMPUTES}
        if all(daemons.values()) else {},
        "ceph": ceph.status() if hosts.running_pid("ceph-mon") else {"health": "not running"},
        "cpu_shares": cgroups.shares(),
        "namespaces": [ns for ns in netns.list_netns() if ns.startswith(layout.PREFIX)],
        "logs": str(layout.LOG_DIR),
    }


def credentials() -> dict[str, str]:
    return {
        "OS_AUTH_URL": layout.KEYSTONE_URL,
        "OS_USERNAME": "admin",
        "OS_PASSWORD": layout.PASSWORD,
        "OS_PROJECT_NAME": "admin",
        "OS_USER_DOMAIN_NAME": "Default",
        "OS_PROJECT_DOMAIN_NAME": "Default",
        "OS_REGION_NAME": layout.REGION,
        "OS_IDENTITY_API_VERSION": "3",
        "OS_INTERFACE": "public",
    }


def clouds_yaml() -> str:
    creds = credentials()
    return "\n".join([
        "clouds:",
        "  rally-lm-testbed:",
        "    auth:",
        f"      auth_url: {creds['OS_AUTH_URL']}",
        f"      username: {creds['OS_USERNAME']}",
        f"      password: {creds['OS_PASSWORD']}",
        f"      project_name: {creds['OS_PROJECT_NAME']}",
        "      user_domain_name: Default",
        "      project_domain_name: Default",
        f"    region_name: {creds['OS_REGION_NAME']}",
        "    identity_api_version: 3",
        "",
    ])


def probe_command(argv: list[str]) -> list[str]:
    """How to run ``argv`` where the testbed's APIs and guests are reachable."""
    return ["ip", "netns", "exec", layout.PROBE, *argv]
