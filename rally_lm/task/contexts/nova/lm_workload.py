"""The workload VMs, booted on the source host and ready to be probed."""

from __future__ import annotations

import shlex
import time

from rally.common import logging
from rally.task import context

from rally_lm.clients.nova import MICROVERSION, NovaAdapter, NovaError
from rally_lm.probes import readiness

LOG = logging.getLogger(__name__)


def agent_user_data(agent: dict) -> str:
    """user_data starting rally-lm-agent (the testbed image has it; see docs)."""
    argv = ["rally-lm-agent", "--tcp-echo", str(agent["tcp_echo_port"]),
            "--udp-echo", str(agent["udp_echo_port"])]
    if agent["dirty_rate_mib"] > 0 and agent["dirty_working_set_mib"] > 0:
        argv += ["--dirty-mib", str(agent["dirty_working_set_mib"]),
                 "--dirty-rate", str(agent["dirty_rate_mib"])]
    if agent["disk_fill_percent"] > 0:
        argv += ["--disk", agent["disk_device"], "--disk-fill", str(agent["disk_fill_percent"])]
    return "#!/bin/sh\n# rally-lm workload agent\nexec " + shlex.join(argv) + "\n"


@context.configure(name="lm_workload", platform="openstack", order=500)
class LiveMigrationWorkload(context.Context):
    """Boot the VMs to migrate, pinned to the source host, and wait until they answer.

    Each VM runs rally-lm-agent from its user data (config drive): TCP and UDP
    echo for the probes, optional memory dirtying and disk filling. Setup
    fails, deleting what it booted, if a VM does not boot or answer in time.
    """

    CONFIG_SCHEMA = {
        "type": "object",
        "$schema": "http://json-schema.org/draft-07/schema#",
        "additionalProperties": False,
        "required": ["source_host", "flavor", "image", "network"],
        "properties": {
            "source_host": {"type": "string", "minLength": 1,
                            "description": "Compute host the VMs are booted on."},
            "flavor": {"type": "string", "minLength": 1, "description": "Flavor name or id."},
            "image": {"type": "string", "minLength": 1, "description": "Image name or id."},
            "network": {"type": "string", "minLength": 1,
                        "description": "Network name or id the probes can reach."},
            "count": {"type": "integer", "minimum": 1, "maximum": 100,
                      "description": "Number of VMs (the seed used 6)."},
            "boot_timeout": {"type": "number", "minimum": 10, "maximum": 3600},
            "ready_timeout": {"type": "number", "minimum": 5, "maximum": 3600,
                              "description": "Seconds for every agent to answer its UDP echo."},
            "agent": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "tcp_echo_port": {"type": "integer", "minimum": 1, "maximum": 65535},
                    "udp_echo_port": {"type": "integer", "minimum": 1, "maximum": 65535},
                    "dirty_rate_mib": {"type": "number", "minimum": 0, "maximum": 10240,
                                       "description": "Memory the guest rewrites, MiB/s."},
                    "dirty_working_set_mib": {"type": "integer", "minimum": 0,
                                              "maximum": 1048576},
                    "disk_fill_percent": {"type": "integer", "minimum": 0, "maximum": 100,
                                          "description": "Fill the root disk (seed: 50)."},
                    "disk_device": {"type": "string", "minLength": 1},
                },
            },
        },
    }
    DEFAULT_CONFIG = {"count": 6, "boot_timeout": 600, "ready_timeout": 300,
                      "agent": {"tcp_echo_port": 7, "udp_echo_port": 7, "dirty_rate_mib": 0,
                                "dirty_working_set_mib": 0, "disk_fill_percent": 0,
                                "disk_device": "/dev/vda"}}

    def _clients(self):
        return self.context["admin"]["credential"].clients()

    def setup(self) -> None:
        cfg = self.config
        agent = {**self.DEFAULT_CONFIG["agent"], **cfg.get("agent", {})}
        clients = self._clients()
        nova = NovaAdapter(clients.nova(version=MICROVERSION))
        flavor = nova.find_flavor(cfg["flavor"])
        image = self._find_image(clients, cfg["image"])
        network, port_security = self._find_network(clients, cfg["network"])
        servers: list[dict] = []
        self.context["lm_workload"] = {"servers": servers, "agent": agent,
                                       "flavor": flavor, "source_host": cfg["source_host"],
                                       "security_group": None}
        # Named after the task: the metrics hook finds them by this prefix.
        prefix = f"rally-lm-{self.context['task']['uuid'][:8]}"
        try:
            groups = None
            if port_security:
                group = self._probe_security_group(clients, prefix, agent)
                self.context["lm_workload"]["security_group"] = group
                groups = [group]
            for index in range(cfg["count"]):
                server_id = nova.boot(f"{prefix}-vm{index}", image, flavor["id"],
                                      cfg["source_host"], network, agent_user_data(agent),
                                      security_groups=groups)
                servers.append({"id": server_id, "name": f"{prefix}-vm{index}"})
            self._wait_active(nova, servers, cfg["boot_timeout"])
            self._wait_answering(servers, agent, cfg["ready_timeout"])
        except Exception:
            self.cleanup()
            raise

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
    def _probe_security_group(clients, prefix: str, agent: dict) -> str:
        """A group letting the probes in: ICMP, and TCP/UDP to the agent's echo ports."""
        neutron = clients.neutron()
        group = neutron.create_security_group({"security_group": {
            "name": f"{prefix}-probes",
            "description": "rally_lm: echo probes to the workload agent"}})["security_group"]
        rules = [{"protocol": "icmp"}]
        rules += [{"protocol": proto, "port_range_min": port, "port_range_max": port}
                  for proto, port in (("tcp", agent["tcp_echo_port"]),
                                      ("udp", agent["udp_echo_port"]))]
        for rule in rules:
            neutron.create_security_group_rule({"security_group_rule": {
                "security_group_id": group["id"], "direction": "ingress",
                "ethertype": "IPv4", **rule}})
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
    def _wait_answering(servers: list[dict], agent: dict, timeout: float) -> None:
        silent = readiness.wait_until_answering([s["ip"] for s in servers],
                                                agent["udp_echo_port"], timeout)
        if silent:
            names = ", ".join(s["name"] for s in servers if s["ip"] in silent)
            raise TimeoutError(f"workload agent of {names} did not answer UDP echo on port "
                               f"{agent['udp_echo_port']} within {timeout:.0f}s: is the "
                               "network reachable from where Rally runs?")

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
        workload = self.context.get("lm_workload") or {}
        servers = workload.get("servers", [])
        nova = NovaAdapter(self._clients().nova(version=MICROVERSION))
        self._stop_migrations(nova, servers)
        for server in servers:
            try:
                nova.delete(server["id"])
            except NovaError as exc:
                LOG.warning(f"could not delete workload VM {server['name']}: {exc}")
        deadline = time.monotonic() + 300
        remaining = [s["id"] for s in servers]
        while remaining and time.monotonic() < deadline:
            remaining = [sid for sid in remaining if nova.server(sid) is not None]
            if remaining:
                time.sleep(2)
        if remaining:
            LOG.warning(f"workload VMs still present after cleanup: {remaining}")
        group = workload.get("security_group")
        if group:
            neutron = self._clients().neutron()
            for found in neutron.list_security_groups(name=group)["security_groups"]:
                try:
                    neutron.delete_security_group(found["id"])
                except Exception as exc:  # noqa: BLE001 - report, never mask the run
                    LOG.warning(f"could not delete security group {group}: {exc}")
