"""Boot one probed guest on hv1, live-migrate it to hv2 and back, print JSON.

Runs inside the probe namespace (``rally-lm testbed`` tests call it with
``ip netns exec``). Uses the same evacuation core as the Rally scenario, plus
libvirt's own statistics of every migration, and deletes the guest after
(``--keep`` leaves it running for a later ``--reuse``: a guest boots in ~30 s
under TCG, and a mode switch of the tunnelling keeps guests running).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from rally_lm.clients.nova import NovaAdapter, make_client
from rally_lm.migration.driver import MigrationDriver, MigrationPolicy
from rally_lm.migration.evacuation import Evacuation, ProbeSettings, WorkloadVM
from rally_lm.probes import readiness
from rally_lm.task.contexts.nova.lm_workload import (
    agent_user_data,
    probe_rules,
    probe_source_prefix,
)
from rally_lm_testbed import bootstrap, layout

#: The tiny guest ships the C agent (delivery "image").
AGENT = {"delivery": "image", "tcp_echo_port": 7, "udp_echo_port": 7, "dirty_rate_mib": 4,
         "dirty_working_set_mib": 32, "disk_fill_percent": 0, "disk_device": "/dev/vda"}


def hypervisor_uris() -> dict[str, str]:
    """libvirt over SSH, as the README recommends for real clouds (the hosts run sshd)."""
    key = layout.STATE / "ssh" / "id_ed25519"
    return {h.name: f"qemu+ssh://root@{h.ip}/system?keyfile={key}&no_verify=1"
            for h in layout.COMPUTES}


NETWORK = {"service_type": "network"}


def floating_ip(server_id: str) -> tuple[str, str]:
    """A floating IP on the external network for the server's port: (id, address)."""
    sess = bootstrap.admin_session()
    port = sess.get(f"/v2.0/ports?device_id={server_id}",
                    endpoint_filter=NETWORK).json()["ports"][0]
    external = sess.get(f"/v2.0/networks?name={layout.EXTERNAL_NETWORK_NAME}",
                        endpoint_filter=NETWORK).json()["networks"][0]
    fip = sess.post("/v2.0/floatingips", endpoint_filter=NETWORK, json={"floatingip": {
        "floating_network_id": external["id"], "port_id": port["id"],
        "project_id": port["project_id"]}}).json()["floatingip"]
    return fip["id"], fip["floating_ip_address"]


def release_floating_ips(server_id: str) -> list[str]:
    """Delete the floating IPs of the server's ports; their addresses."""
    sess = bootstrap.admin_session()
    released = []
    for port in sess.get(f"/v2.0/ports?device_id={server_id}",
                         endpoint_filter=NETWORK).json()["ports"]:
        for fip in sess.get(f"/v2.0/floatingips?port_id={port['id']}",
                            endpoint_filter=NETWORK).json()["floatingips"]:
            sess.delete(f"/v2.0/floatingips/{fip['id']}", endpoint_filter=NETWORK)
            released.append(fip["floating_ip_address"])
    return released


#: The security group this tool boots its guest in where the network has port
#: security (ML2/OVN's tenant network): the echo ports, from the probe alone.
PROBE_GROUP = "rlm-check-probes"


def probe_security_group(sess, floating: bool) -> str:
    """``PROBE_GROUP``, made once: ICMP and the agent's echo ports from the probe's
    own address (on the route to the floating network, or to the tenant one)."""
    found = sess.get(f"/v2.0/security-groups?name={PROBE_GROUP}",
                     endpoint_filter=NETWORK).json()["security_groups"]
    if found:
        return PROBE_GROUP
    source = probe_source_prefix(layout.EXTERNAL_NET if floating else layout.OVERLAY_NET)
    group = sess.post("/v2.0/security-groups", endpoint_filter=NETWORK, json={
        "security_group": {"name": PROBE_GROUP,
                           "description": f"rally_lm migration_check: probes from {source}"}}
    ).json()["security_group"]
    for rule in probe_rules(AGENT, source):
        sess.post("/v2.0/security-group-rules", endpoint_filter=NETWORK, json={
            "security_group_rule": {"security_group_id": group["id"], **rule}})
    return PROBE_GROUP


def boot_guest(nova: NovaAdapter, name: str, agent: dict | None = None,
               floating: bool = False) -> WorkloadVM:
    """Boot the probed guest on hv1; with ``floating``, probed by a floating IP (the
    only way to it through ML2/OVN's Geneve network)."""
    sess = bootstrap.admin_session()
    images = sess.get("/v2/images", endpoint_filter={"service_type": "image"}).json()["images"]
    image = next(i["id"] for i in images if i["name"] == layout.GUEST_IMAGE_NAME)
    network = sess.get(f"/v2.0/networks?name={layout.TENANT_NETWORK_NAME}",
                       endpoint_filter={"service_type": "network"}).json()["networks"][0]
    groups = [probe_security_group(sess, floating)] \
        if network.get("port_security_enabled") else None
    flavor = nova.find_flavor(f"lm.small.{bootstrap.SCALE_SUFFIX}")
    server_id = nova.boot(name, image, flavor["id"], "hv1", network["id"],
                          agent_user_data(agent or AGENT), security_groups=groups)
    deadline = time.monotonic() + 300
    while (server := nova.server(server_id))["status"] != "ACTIVE":
        if server["status"] == "ERROR" or time.monotonic() > deadline:
            raise RuntimeError(f"guest did not boot: {server}")
        time.sleep(1)
    fixed = server["addresses"][0]
    address = floating_ip(server_id)[1] if floating else fixed
    vm = WorkloadVM(id=server_id, name=name, ip=address,
                    instance_name=server["instance_name"], fixed_ip=fixed)
    if readiness.wait_until_answering([vm.ip], AGENT["udp_echo_port"],
                                      max(deadline - time.monotonic(), 1.0)):
        raise RuntimeError(f"guest agent at {vm.ip} never answered")
    return vm


#: The name of the guest this tool boots, keeps and reuses.
GUEST_NAME = "rlm-check"


def delete_guest(nova: NovaAdapter, server_id: str, timeout: float = 120.0) -> None:
    release_floating_ips(server_id)
    nova.delete(server_id)
    deadline = time.monotonic() + timeout
    while nova.server(server_id) is not None and time.monotonic() < deadline:
        time.sleep(1)


def kept_guest(nova: NovaAdapter) -> WorkloadVM | None:
    """A guest an earlier ``--keep`` left ACTIVE and answering on hv1; any other is deleted."""
    kept = [s for s in nova.list_servers() if s["name"] == GUEST_NAME]
    for listed in kept[1:]:
        delete_guest(nova, listed["id"])
    if not kept:
        return None
    server = nova.server(kept[0]["id"])
    if server is not None and (server["status"], server["host"]) == ("ACTIVE", "hv1") \
            and not readiness.wait_until_answering(server["addresses"][:1],
                                                   AGENT["udp_echo_port"], 30):
        return WorkloadVM(id=server["id"], name=GUEST_NAME, ip=server["addresses"][0],
                          instance_name=server["instance_name"])
    delete_guest(nova, kept[0]["id"])
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dirty-rate", type=float, default=AGENT["dirty_rate_mib"],
                        help="the guest dirties memory at this rate, MiB/s")
    parser.add_argument("--working-set", type=int, default=AGENT["dirty_working_set_mib"],
                        help="over this many MiB")
    parser.add_argument("--timeout", type=float, default=240,
                        help="our own migration timeout, seconds (Nova's may act first)")
    parser.add_argument("--probe-interval", type=float, default=0.01)
    parser.add_argument("--nova-completion-timeout", type=float, default=800.0,
                        help="the computes' live_migration_completion_timeout, s/GiB")
    parser.add_argument("--floating", action="store_true",
                        help="probe the guest by a floating IP (ML2/OVN: the only way in)")
    parser.add_argument("--ovn-sb", metavar="REMOTE",
                        help="OVN's southbound database (ML2/OVN): the port's binding steps")
    parser.add_argument("--chassis-watch", action="store_true",
                        help="with --ovn-sb: also watch both computes over ssh (the RARPs "
                             "they receive, ovn-controller's flows installed)")
    parser.add_argument("--keep", action="store_true",
                        help="leave the guest running on hv1 for a later --reuse")
    parser.add_argument("--reuse", action="store_true",
                        help="migrate the guest an earlier --keep left (booted with the "
                             "same agent options), if it still runs on hv1 and answers")
    parser.add_argument("--delete-kept", action="store_true",
                        help="only delete a guest an earlier --keep left, then exit")
    options = parser.parse_args(argv)
    agent = {**AGENT, "dirty_rate_mib": options.dirty_rate,
             "dirty_working_set_mib": options.working_set}
    nova = NovaAdapter(make_client(bootstrap.admin_session()))
    if options.delete_kept:
        deleted = [s["id"] for s in nova.list_servers() if s["name"] == GUEST_NAME]
        for server_id in deleted:
            delete_guest(nova, server_id)
        print(json.dumps({"deleted": deleted}))
        return 0
    vm = (kept_guest(nova) if options.reuse and not options.floating else None) or \
        boot_guest(nova, GUEST_NAME, agent, floating=options.floating)
    kept = False
    try:
        policy = MigrationPolicy(timeout=options.timeout, status_grace=30,
                                 nova_completion_timeout=options.nova_completion_timeout)
        evacuation = Evacuation(MigrationDriver(nova, policy), [vm], "hv1", "hv2",
                                ProbeSettings(interval=options.probe_interval), pause=1.0,
                                hypervisor_uris=hypervisor_uris(),
                                ovn_sb_connection=options.ovn_sb,
                                ovn_chassis_watch=options.chassis_watch)
        trip = evacuation.round_trip()
        answering = vm.ip in readiness.answering([vm.ip], AGENT["udp_echo_port"])
        server = nova.server(vm.id)
        print(json.dumps({
            **trip.to_dict(), "ip": vm.ip, "instance_name": vm.instance_name,
            "server": server, "answering_after": answering,
        }, default=str))
        # Only a guest back home and answering is worth keeping.
        kept = options.keep and answering and server is not None and server["host"] == "hv1"
    finally:
        if not kept:
            delete_guest(nova, vm.id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
