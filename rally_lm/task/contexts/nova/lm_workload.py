"""The workload VMs, booted on the source host and ready to be probed."""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable

from rally.common import logging
from rally.task import context

from rally_lm.clients.nova import MICROVERSION, NovaAdapter, NovaError
from rally_lm.probes import readiness
from rally_lm.workload import status as workload_status
from rally_lm.workload import user_data

LOG = logging.getLogger(__name__)


def agent_argv(agent: dict) -> list[str]:
    """The workload agent's command line (the same for both agents, see docs/agent.md)."""
    argv = ["--tcp-echo", str(agent["tcp_echo_port"]), "--udp-echo", str(agent["udp_echo_port"])]
    if agent["dirty_rate_mib"] > 0 and agent["dirty_working_set_mib"] > 0:
        argv += ["--dirty-mib", str(agent["dirty_working_set_mib"]),
                 "--dirty-rate", str(agent["dirty_rate_mib"])]
    if agent["disk_fill_percent"] > 0:
        if agent.get("disk_device"):
            argv += ["--disk", agent["disk_device"]]
        else:
            argv += ["--fill-path", agent["disk_fill_path"]]
        argv += ["--disk-fill", str(agent["disk_fill_percent"])]
    if agent.get("tx_checksum_offload", "keep") == "off":
        argv += ["--tx-checksum-offload", "off"]
    return argv


def dirty_rates(agent: dict, count: int) -> list[float]:
    """Each VM's dirty rate, MiB/s, in boot order.

    ``agent.dirty_rate_mib`` is one rate for every VM or a list of one per VM
    (a host's guests rarely all dirty memory alike; the policy sweep puts one
    VM below, near and above the migration link's rate in one task).
    """
    rate = agent["dirty_rate_mib"]
    if not isinstance(rate, (list, tuple)):  # Rally's frozen config holds tuples
        return [rate] * count
    if len(rate) != count:
        raise ValueError(f"agent.dirty_rate_mib lists {len(rate)} rates for {count} VMs: give "
                         "one rate per VM, or a single rate for all of them")
    return list(rate)


def probe_source_prefix(cidr: str) -> str:
    """This host's address on the route towards a subnet, as a one-address prefix."""
    network = ipaddress.ip_network(cidr, strict=False)
    family = socket.AF_INET6 if network.version == 6 else socket.AF_INET
    probe = str(next(iter(network.hosts()), network.network_address))
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect((probe, 7))  # no packet is sent: the kernel only picks the route
        address = sock.getsockname()[0]
    return f"{address}/{network.max_prefixlen}"


def probe_rules(agent: dict, source: str) -> list[dict]:
    """The ingress rules that let the probes in - ICMP, and TCP/UDP to the agent's
    echo ports - from the probes' own prefix only: UDP echo open to the world
    reflects attacks. Neutron security-group-rule bodies, without the group."""
    ethertype = "IPv6" if ":" in source else "IPv4"
    rules = [{"protocol": "icmp" if ethertype == "IPv4" else "ipv6-icmp"}]
    rules += [{"protocol": proto, "port_range_min": port, "port_range_max": port}
              for proto, port in (("tcp", agent["tcp_echo_port"]),
                                  ("udp", agent["udp_echo_port"]))]
    return [{"direction": "ingress", "ethertype": ethertype, "remote_ip_prefix": source,
             **rule} for rule in rules]


def agent_user_data(agent: dict) -> str:
    """The user data that starts the agent, as ``agent.delivery`` asks (see user_data)."""
    return user_data.user_data(agent_argv(agent), agent.get("delivery", "cloud-init"))


def _says_ready(console: Callable[[str], str], server_id: str) -> bool:
    """Whether the server's console log has its agent's ready line (unreadable: no)."""
    try:
        return workload_status.ready(console(server_id))
    except Exception:  # noqa: BLE001 - only a hint: an unreadable log proves nothing
        return False


NAME = {"type": "string", "pattern": r"^\S.*$"}
RATE = {"type": "number", "minimum": 0, "maximum": 10240}


@context.configure(name="lm_workload", platform="openstack", order=500)
class LiveMigrationWorkload(context.Context):
    """Boot the VMs to migrate, pinned to the source host, and wait until they answer.

    Each VM runs the workload agent from its user data: TCP and UDP echo for
    the probes, optional memory dirtying and disk filling. Setup fails,
    deleting what it booted, if a VM does not boot or answer in time. The
    disk is filled with files (to a share of the filesystem at
    ``agent.disk_fill_path``); a raw device is written only when
    ``agent.disk_device`` names one, and the agent refuses a device that
    holds a mounted filesystem.
    """

    CONFIG_SCHEMA = {
        "type": "object",
        "$schema": "http://json-schema.org/draft-07/schema#",
        "additionalProperties": False,
        "required": ["flavor", "image", "network"],
        "properties": {
            "source_host": {**NAME, "description": "Compute host the VMs are booted on "
                                                  "(default: picked, with target_host: two "
                                                  "enabled, up hosts of one zone with room)."},
            "target_host": {**NAME, "description": "Compute host they are drained to (with "
                                                  "source_host; picked when both are "
                                                  "absent)."},
            "flavor": {**NAME, "description": "Flavor name or id."},
            "image": {**NAME, "description": "Image name or id."},
            "network": {**NAME, "description": "Network name or id the probes can reach."},
            "count": {"type": "integer", "minimum": 1, "maximum": 100,
                      "description": "Number of VMs (the seed used 6)."},
            "boot_timeout": {"type": "number", "minimum": 10, "maximum": 3600,
                             "description": "Seconds for every VM to become ACTIVE."},
            "ready_timeout": {"type": "number", "minimum": 5, "maximum": 3600,
                              "description": "Seconds for every agent to answer its UDP echo "
                                             "(and to finish its disk fill)."},
            "boot_from_volume": {"type": "boolean",
                                 "description": "Boot each VM from a new Cinder volume made "
                                                "from the image (the seed's lesson 3: the "
                                                "volume's availability zone must suit the "
                                                "host's)."},
            "volume_size_gb": {"type": "integer", "minimum": 1, "maximum": 16384,
                               "description": "Size of each boot volume (default: the "
                                              "flavor's disk, at least 1 GB)."},
            "probe_via": {"enum": ["fixed", "floating"],
                          "description": "Probe each VM at its fixed IP (default; the probes "
                                         "must reach the tenant network) or at a floating IP "
                                         "the context creates on floating_network."},
            "floating_network": {**NAME, "description": "External network for the floating "
                                                        "IPs (probe_via: floating)."},
            "probe_cidr": {"type": "string", "pattern": r"^[0-9a-fA-F:.]+/[0-9]+$",
                           "description": "Source prefix the probe security group admits "
                                          "(default: this host's address on the route to "
                                          "the VMs)."},
            "agent": {
                "type": "object",
                "additionalProperties": False,
                "description": "What the workload agent in each VM does.",
                "properties": {
                    "delivery": {"enum": list(user_data.DELIVERIES),
                                 "description": "cloud-init (default): the Python agent in "
                                                "cloud-config, for stock cloud images; image: "
                                                "the image ships rally-lm-agent."},
                    "tcp_echo_port": {"type": "integer", "minimum": 1, "maximum": 65535,
                                      "description": "TCP echo port (the TCP stream)."},
                    "udp_echo_port": {"type": "integer", "minimum": 1, "maximum": 65535,
                                      "description": "UDP echo port (the downtime probe)."},
                    "dirty_rate_mib": {
                        "anyOf": [{**RATE, "description": "One rate for every VM."},
                                  {"type": "array", "items": RATE, "minItems": 1,
                                   "maxItems": 100,
                                   "description": "One rate per VM, in boot order (as many "
                                                  "as count)."}],
                        "description": "Memory the guest rewrites, MiB/s."},
                    "dirty_working_set_mib": {"type": "integer", "minimum": 0,
                                              "maximum": 1048576,
                                              "description": "Memory the dirtier writes over, "
                                                             "MiB."},
                    "disk_fill_percent": {"type": "integer", "minimum": 0, "maximum": 95,
                                          "description": "Fill the disk to this share, % (the "
                                                         "seed: 50)."},
                    "disk_fill_path": {"type": "string", "pattern": "^/",
                                       "description": "Fill the filesystem holding this "
                                                      "directory with files (default /)."},
                    "disk_device": {"type": "string", "pattern": "^/dev/\\S+$",
                                    "description": "Instead, write raw blocks over this "
                                                   "dedicated data device (never one with a "
                                                   "mounted filesystem)."},
                    "tx_checksum_offload": {
                        "enum": ["keep", "off"],
                        "description": "off: the agent turns TX checksum offload off on "
                                       "the guest's interfaces before it answers, so the "
                                       "guest fills its own TCP/UDP checksums. For a "
                                       "datapath that forwards a virtio guest's offloaded "
                                       "checksums unfilled (Open vSwitch's userspace "
                                       "datapath without offload support, as on the "
                                       "testbed's OVN); keep (default) leaves the guest "
                                       "as the image made it."},
                },
            },
        },
    }
    DEFAULT_CONFIG = {"count": 6, "boot_timeout": 600, "ready_timeout": 300, "probe_via": "fixed",
                      "agent": {"delivery": "cloud-init", "tcp_echo_port": 7,
                                "udp_echo_port": 7, "dirty_rate_mib": 0,
                                "dirty_working_set_mib": 0, "disk_fill_percent": 0,
                                "disk_fill_path": "/"}}

    def _clients(self):
        return self.context["admin"]["credential"].clients()

    def setup(self) -> None:
        cfg = self.config
        agent = {**self.DEFAULT_CONFIG["agent"], **cfg.get("agent", {})}
        rates = dirty_rates(agent, cfg["count"])  # refused before anything is created
        clients = self._clients()
        nova = NovaAdapter(clients.nova(version=MICROVERSION))
        flavor = nova.find_flavor(cfg["flavor"])
        source_host, target_host = cfg.get("source_host"), cfg.get("target_host")
        if not source_host:
            source_host, target_host, why = nova.pick_hosts(flavor["ram"], cfg["count"])
            LOG.info(f"rally_lm: {why}")
        image = self._find_image(clients, cfg["image"])
        network, port_security = self._find_network(clients, cfg["network"])
        servers: list[dict] = []
        via = cfg.get("probe_via", "fixed")
        self.context["lm_workload"] = {"servers": servers, "agent": agent,
                                       "flavor": flavor, "source_host": source_host,
                                       "target_host": target_host,
                                       "security_group": None, "cloud": self._cloud(nova),
                                       "probe_via": via, "floating_ips": []}
        # Rally's name generator: the task's own part in every name, so Rally's
        # cleanup of an aborted task, and the metrics hook, recognise them.
        group_name = self.generate_random_name()
        try:
            groups = None
            floating = self._find_network(clients, cfg["floating_network"])[0] \
                if via == "floating" else None
            if port_security:
                source = self._probe_prefix(clients, floating or network,
                                            cfg.get("probe_cidr"))
                group = self._probe_security_group(clients, group_name, agent, source)
                self.context["lm_workload"]["security_group"] = group
                groups = [group]
            for index, rate in enumerate(rates):
                volume = max(cfg.get("volume_size_gb") or flavor.get("disk") or 1, 1) \
                    if cfg.get("boot_from_volume") else None
                name = self.generate_random_name()
                server_id = nova.boot(name, image, flavor["id"],
                                      source_host, network,
                                      agent_user_data({**agent, "dirty_rate_mib": rate}),
                                      security_groups=groups, volume_size_gb=volume)
                servers.append({"id": server_id, "name": name, "index": index,
                                "dirty_rate_mib": rate})
            self._wait_active(nova, servers, cfg["boot_timeout"])
            if floating:
                self._attach_floating_ips(clients, servers, floating,
                                          self.context["lm_workload"]["floating_ips"])
            # The whole log, read only on failure: the ready line comes once, early.
            self._wait_answering(servers, agent, cfg["ready_timeout"],
                                 console=nova.console_output)
            if agent["disk_fill_percent"] > 0:
                self._wait_disk_filled(nova, servers, cfg["ready_timeout"])
        except Exception:
            try:
                self.cleanup()
            except Exception as exc:  # noqa: BLE001 - the setup's own error is the one to see
                LOG.error(f"rally_lm: cleaning up after the failed setup: {exc}")
            raise

    @staticmethod
    def _cloud(nova: NovaAdapter) -> dict:
        """What the cloud says about itself, for the report's configuration table."""
        try:
            return nova.cloud_facts()
        except NovaError as exc:
            return {"error": str(exc)}

    @staticmethod
    def _find_image(clients, name_or_id: str) -> str:
        glance = clients.glance(version="2")
        for image in glance.images.list(filters={"name": name_or_id}):
            return image["id"]
        return glance.images.get(name_or_id)["id"]

    @staticmethod
    def _find_network(clients, name_or_id: str) -> tuple[str, bool]:
        neutron = clients.neutron()
        found = neutron.list_networks(name=name_or_id)["networks"] or \
            neutron.list_networks(id=name_or_id)["networks"]
        return found[0]["id"], bool(found[0].get("port_security_enabled", False))

    @staticmethod
    def _probe_prefix(clients, network_id: str, configured: str | None) -> str:
        """Where the probes come from: ``probe_cidr``, else this host's source address
        on the route to the VMs' subnet (a /32 or /128)."""
        if configured:
            return configured
        subnets = clients.neutron().list_subnets(network_id=network_id)["subnets"]
        if not subnets:
            raise RuntimeError("the workload network has no subnet: set lm_workload.probe_cidr")
        return probe_source_prefix(subnets[0]["cidr"])

    @staticmethod
    def _probe_security_group(clients, name: str, agent: dict, source: str) -> str:
        """A group letting the probes in (``probe_rules``)."""
        neutron = clients.neutron()
        group = neutron.create_security_group({"security_group": {
            "name": name,
            "description": f"rally_lm: echo probes from {source} to the workload agent"}}
        )["security_group"]
        for rule in probe_rules(agent, source):
            neutron.create_security_group_rule({"security_group_rule": {
                "security_group_id": group["id"], **rule}})
        return group["name"]

    @staticmethod
    def _wait_active(nova: NovaAdapter, servers: list[dict], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = {s["id"]: s for s in servers}
        while pending:
            for server_id in list(pending):
                state = nova.server(server_id)
                if state is None or state["status"] == "ERROR":
                    fault = state and state.get("fault")
                    raise RuntimeError(f"workload VM {pending[server_id]['name']} failed to "
                                       f"boot: {fault or 'server vanished'}")
                if state["status"] == "ACTIVE":
                    pending[server_id].update(ip=state["addresses"][0], host=state["host"],
                                              instance_name=state["instance_name"])
                    del pending[server_id]
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} workload VM(s) not ACTIVE after "
                                   f"{timeout:.0f}s")
            if pending:
                time.sleep(2)

    @staticmethod
    def _wait_answering(servers: list[dict], agent: dict, timeout: float,
                        console: Callable[[str], str] | None = None) -> None:
        """Until every agent answers; else name the silent ones and the likelier cause.

        ``console`` reads a server's console log (by id): an agent that says
        there it is ready, yet never answered, puts the fault on the path.
        """
        silent = readiness.wait_until_answering([s["ip"] for s in servers],
                                                agent["udp_echo_port"], timeout)
        if not silent:
            return
        quiet = [s for s in servers if s["ip"] in silent]
        names = ", ".join(s["name"] for s in quiet)
        ready = [s["name"] for s in quiet if console is not None and
                 _says_ready(console, s["id"])]
        answered = len(servers) - len(silent)
        if ready:
            # The guest runs and its agent listens: requests or replies are lost
            # on the way (rules, NAT, or a guest that cannot route its answer).
            hint = (f"the agent of {', '.join(ready)} says in the console log that it is "
                    "ready, so the path between here and the guest fails: a security group "
                    "or firewall, the floating IP's NAT, a guest without a route back "
                    "(no default gateway: it answers its own subnet only), or a datapath "
                    "that drops the guest's offloaded checksums unfilled (ICMP passes, "
                    "UDP/TCP do not: agent.tx_checksum_offload off)")
        elif answered:
            # Others answering proves the path from here; a silent few point at
            # their guests (a slow or failed boot: their console logs say).
            hint = (f"{answered} of {len(servers)} answered, so the network is reachable: "
                    "read the silent VM's console log (a guest that did not finish booting?)")
        else:
            hint = "is the network reachable from where Rally runs?"
        raise TimeoutError(f"workload agent of {names} did not answer UDP echo on port "
                           f"{agent['udp_echo_port']} within {timeout:.0f}s: {hint}")

    @staticmethod
    def _attach_floating_ips(clients, servers: list[dict], network_id: str,
                             created: list[str]) -> None:
        """A floating IP per VM; the probes use it, the fixed IP is kept beside it."""
        neutron = clients.neutron()
        for server in servers:
            ports = neutron.list_ports(device_id=server["id"])["ports"]
            if not ports:
                raise RuntimeError(f"workload VM {server['name']} has no port to attach a "
                                   "floating IP to")
            fip = neutron.create_floatingip({"floatingip": {
                "floating_network_id": network_id, "port_id": ports[0]["id"],
                "description": f"rally_lm probes of {server['name']}"}})["floatingip"]
            created.append(fip["id"])
            server["fixed_ip"], server["ip"] = server["ip"], fip["floating_ip_address"]

    @staticmethod
    def _wait_disk_filled(nova: NovaAdapter, servers: list[dict], timeout: float) -> None:
        """Until every agent says (on its console) its disk fill is done, as the seed's
        "disk half full" was before migrating; a refusal fails the setup with its reason."""
        deadline = time.monotonic() + timeout
        waiting = {s["id"]: s for s in servers}
        while waiting:
            for server_id in list(waiting):
                try:
                    console = nova.console_output(server_id, lines=200)
                except NovaError as exc:
                    LOG.warning(f"console log of {waiting[server_id]['name']}: {exc}")
                    continue
                why = workload_status.refused(console)
                if why:
                    raise RuntimeError(f"workload agent of {waiting[server_id]['name']} "
                                       f"did not fill its disk: {why}")
                current = workload_status.latest(console)
                if current and current.get("disk") == "done":
                    waiting[server_id]["disk_used_percent"] = current.get("disk_used_percent")
                    del waiting[server_id]
            if waiting and time.monotonic() > deadline:
                names = ", ".join(s["name"] for s in waiting.values())
                raise TimeoutError(f"the disk fill of {names} did not finish within "
                                   f"{timeout:.0f}s (the agent reports on the console log)")
            if waiting:
                time.sleep(5)

    @staticmethod
    def _stop_migrations(nova: NovaAdapter, servers: list[dict], timeout: float = 120) -> None:
        """Abort migrations an interrupted run left in flight, and let them settle.

        Deleting a server mid-migration leaves its incoming domain on the
        destination until libvirt gives up on the migration.
        """
        moving = []
        for server in servers:
            try:
                view = nova.server(server["id"])
                if view is None or view["task_state"] != "migrating":
                    continue
                moving.append(server["id"])
                for migration in nova.migration_progress(server["id"]):
                    nova.abort_migration(server["id"], migration["id"])
            except NovaError as exc:
                LOG.warning(f"could not abort the migration of {server['name']}: {exc}")
        deadline = time.monotonic() + timeout
        while moving and time.monotonic() < deadline:
            time.sleep(2)
            still = []
            for server_id in moving:
                try:
                    view = nova.server(server_id)
                except NovaError:
                    continue
                if view is not None and view["task_state"] == "migrating":
                    still.append(server_id)
            moving = still
        if moving:
            LOG.warning(f"workload VMs still migrating at cleanup: {moving}")

    def cleanup(self) -> None:
        """Delete every VM, floating IP and the security group; then say what is left.

        One failure (a locked server's 409, a 5xx, an unreachable keystone)
        never stops the rest: each resource is tried, what could not be
        deleted stays in the context (Rally calls cleanup again after a failed
        setup, and nothing is deleted twice) and is named in one error at the end.
        """
        workload = self.context.get("lm_workload") or {}
        servers = workload.get("servers", [])
        left: list[str] = []
        try:
            nova = NovaAdapter(self._clients().nova(version=MICROVERSION))
        except Exception as exc:  # noqa: BLE001 - reported below with what it leaves
            nova = None
            left += [f"workload VM {s['name']} ({s['id']}): {exc}" for s in servers]
        if nova is not None:
            left += self._delete_servers(nova, servers)
        workload["floating_ips"] = self._release_floating_ips(workload.get("floating_ips", []),
                                                              left)
        group = workload.get("security_group")
        if group and self._delete_security_group(group, left):
            workload["security_group"] = None
        if left:
            raise RuntimeError("lm_workload left behind: " + "; ".join(left))

    def _delete_servers(self, nova: NovaAdapter, servers: list[dict]) -> list[str]:
        """Delete the VMs (after aborting migrations left in flight); what could not go."""
        self._stop_migrations(nova, servers)
        failed: dict[str, str] = {}
        for server in servers:
            try:
                nova.delete(server["id"])
            except NovaError as exc:
                failed[server["id"]] = str(exc)
        deadline = time.monotonic() + 300
        waiting = [s["id"] for s in servers if s["id"] not in failed]
        while waiting and time.monotonic() < deadline:
            still = []
            for server_id in waiting:
                try:
                    if nova.server(server_id) is not None:
                        still.append(server_id)
                except NovaError as exc:
                    failed[server_id] = f"could not tell whether it is gone: {exc}"
            waiting = still
            if waiting:
                time.sleep(2)
        for server_id in waiting:
            failed[server_id] = "still present 300 s after its delete"
        # What is gone leaves the context: a second cleanup must not delete it twice.
        servers[:] = [s for s in servers if s["id"] in failed]
        return [f"workload VM {s['name']} ({s['id']}): {failed[s['id']]}" for s in servers]

    def _release_floating_ips(self, floating_ips: list[str], left: list[str]) -> list[str]:
        """Release the floating IPs (Neutron's 404 counts as released); the ones kept."""
        kept = []
        for fip in floating_ips:
            try:
                self._clients().neutron().delete_floatingip(fip)
            except Exception as exc:  # noqa: BLE001 - report, never mask the run
                if getattr(exc, "status_code", None) != 404:
                    kept.append(fip)
                    left.append(f"floating IP {fip}: {exc}")
        return kept

    def _delete_security_group(self, group: str, left: list[str]) -> bool:
        """Delete the probe security group (every group of that name); True when gone."""
        try:
            neutron = self._clients().neutron()
            found = neutron.list_security_groups(name=group)["security_groups"]
        except Exception as exc:  # noqa: BLE001 - report, never mask the run
            left.append(f"security group {group}: {exc}")
            return False
        gone = True
        for each in found:
            try:
                neutron.delete_security_group(each["id"])
            except Exception as exc:  # noqa: BLE001 - report, never mask the run
                gone = False
                left.append(f"security group {group} ({each['id']}): {exc}")
        return gone
