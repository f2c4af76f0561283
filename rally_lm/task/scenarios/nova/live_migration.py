"""Live-migration scenarios: the seed's host evacuation, and a quick back-and-forth."""

from __future__ import annotations

import os
from pathlib import Path

from rally.task import atomic, validation
from rally_openstack.task import scenario

from rally_lm.clients.nova import MICROVERSION, NovaAdapter
from rally_lm.export.influx import InfluxExporter, InfluxSettings
from rally_lm.export.points import migration_points
from rally_lm.migration.driver import MigrationDriver, MigrationPolicy
from rally_lm.migration.evacuation import Evacuation, ProbeSettings, WorkloadVM
from rally_lm.task import output

LABELS_SCHEMA = {"type": "object", "additionalProperties": {"type": "string"}}


class _LiveMigrationBase(scenario.OpenStackScenario):
    def _timer(self, name: str):
        return atomic.ActionTimer(self, name)

    def _evacuation(self, vms, source_host, target_host, block_migration, max_parallel,
                    migration_timeout, on_timeout, pause_between_directions, probe_interval,
                    tcp_rate_bytes, status_grace, hypervisor_uris) -> Evacuation:
        workload = self.context["lm_workload"]
        adapter = NovaAdapter(self.admin_clients("nova", version=MICROVERSION))
        # Atomic actions are per scenario instance: not shareable between threads.
        timer = self._timer if max_parallel == 1 else None
        driver = MigrationDriver(adapter, MigrationPolicy(
            block_migration=block_migration, timeout=migration_timeout,
            on_timeout=on_timeout, status_grace=status_grace), timer=timer)
        agent = workload["agent"]
        return Evacuation(
            driver, vms, source_host, target_host,
            ProbeSettings(interval=probe_interval, udp_port=agent["udp_echo_port"],
                          tcp_port=agent["tcp_echo_port"], tcp_rate_bytes=tcp_rate_bytes),
            max_parallel=max_parallel, pause=pause_between_directions,
            hypervisor_uris=hypervisor_uris, timer=self._timer)

    def _export(self, trip, labels: dict, flavor: str, influx: dict) -> None:
        task = self.context["task"]["uuid"]
        tags = {"task": task, "iteration": self.context["iteration"], "flavor": flavor,
                **{k: v for k, v in labels.items() if k in ("storage", "tunnelling")}}
        spool = Path(os.path.expanduser("~/.rally/rally-lm-spool")) / f"{task}.lp"
        exporter = InfluxExporter(InfluxSettings.from_config(influx), spool).start()
        for record in trip.records:
            for point in migration_points(record, tags):
                exporter.write(*point)
        stats = exporter.close()
        self.add_output(complete=output.export_stats_chart("InfluxDB export (migrations)",
                                                           stats))

    def _vms(self) -> list[WorkloadVM]:
        return [WorkloadVM(id=s["id"], name=s["name"], ip=s["ip"],
                           instance_name=s.get("instance_name", ""))
                for s in self.context["lm_workload"]["servers"]]

    def _report(self, trip, labels: dict, config: dict, influx: dict | None = None) -> None:
        workload = self.context["lm_workload"]
        all_labels = {**labels, **{k: str(v) for k, v in config.items()},
                      "flavor": workload["flavor"]["name"], "vms": str(len(self._vms()))}
        for kind, chart in output.round_trip_output(trip, all_labels):
            self.add_output(**{kind: chart})
        if influx:
            self._export(trip, labels, workload["flavor"]["name"], influx)
        disk_copied = [r for r in trip.records if any(
            (p.get("disk_total_bytes") or 0) > 0 for p in r.progress)]
        storage = labels.get("storage")
        # One-sided check: a disk copy seen proves non-shared storage.
        if storage == "shared" and disk_copied:
            self.add_output(complete={
                "title": "Warning", "chart_plugin": "TextArea",
                "data": [f"labelled shared storage, but Nova copied disks for "
                         f"{len(disk_copied)} migration(s): check the storage label"]})


@validation.add("required_platform", platform="openstack", admin=True)
@validation.add("required_services", services=["nova"])
@validation.add("lm_hosts")
@validation.add("lm_workload_resources")
@validation.add("number", param_name="max_parallel", minval=1, maxval=50, integer_only=True,
                nullable=True)
@validation.add("number", param_name="migration_timeout", minval=1, nullable=True)
@validation.add("number", param_name="probe_interval", minval=0.001, maxval=1.0, nullable=True)
@validation.add("enum", param_name="on_timeout", values=["abort", "force_complete", "wait"],
                missed=True)
@validation.add("number", param_name="status_grace", minval=0, nullable=True)
@validation.add("number", param_name="pause_between_directions", minval=0, nullable=True)
@validation.add("lm_influx")
@scenario.configure(name="LiveMigration.evacuate_host", platform="openstack")
class EvacuateHost(_LiveMigrationBase):

    def run(self, source_host: str, target_host: str, block_migration="auto",
            max_parallel: int = 1, migration_timeout: float = 600, on_timeout: str = "abort",
            pause_between_directions: float = 5.0, probe_interval: float = 0.01,
            tcp_rate_bytes: float = 102400, status_grace: float = 60,
            hypervisor_uris: dict | None = None, labels: dict | None = None,
            influx: dict | None = None) -> None:
        """Live-migrate every workload VM to another host and back (one round trip).

        The seed's benchmark: VMs leave ``source_host`` one at a time (or
        ``max_parallel`` at a time), then come back. While they move, every
        VM is probed (UDP echo at ``probe_interval``, a verified TCP stream),
        so each migration gets its own network downtime and TCP stall.

        :param source_host: compute host the lm_workload VMs start on
        :param target_host: compute host to drain them to
        :param block_migration: "auto" (Nova decides from the storage), true or false
        :param max_parallel: migrations at once (the seed: 1)
        :param migration_timeout: seconds before on_timeout applies
        :param on_timeout: abort, force_complete or wait
        :param pause_between_directions: seconds between draining and returning
        :param probe_interval: seconds between echo requests per VM
        :param tcp_rate_bytes: TCP continuity stream per VM, bytes/s (seed: 100 kB/s)
        :param status_grace: seconds Nova's record may lag before "stale_status"
        :param hypervisor_uris: compute host -> libvirt URI, to read the hypervisor's
            own downtime (e.g. {"hv1": "qemu+tcp://10.0.0.11/system"})
        :param labels: recorded as-is, e.g. {"storage": "ceph", "tunnelling": "off"}
        :param influx: write every migration to InfluxDB: {"url", "org", "bucket",
            "token_env"} (the token is read from that environment variable)
        """
        if influx:
            InfluxSettings.from_config(influx)  # a malformed URL fails before migrating
        evacuation = self._evacuation(
            self._vms(), source_host, target_host, block_migration, max_parallel,
            migration_timeout, on_timeout, pause_between_directions, probe_interval,
            tcp_rate_bytes, status_grace, hypervisor_uris)
        trip = evacuation.round_trip()
        self._report(trip, labels or {}, {
            "block_migration": block_migration, "max_parallel": max_parallel,
            "migration_timeout": migration_timeout, "on_timeout": on_timeout,
            "source_host": source_host, "target_host": target_host}, influx)


@validation.add("required_platform", platform="openstack", admin=True)
@validation.add("required_services", services=["nova"])
@validation.add("lm_hosts")
@validation.add("lm_workload_resources")
@validation.add("number", param_name="probe_interval", minval=0.001, maxval=1.0, nullable=True)
@scenario.configure(name="LiveMigration.migrate_server", platform="openstack")
class MigrateServer(_LiveMigrationBase):

    def run(self, source_host: str, target_host: str, block_migration="auto",
            migration_timeout: float = 600, probe_interval: float = 0.01,
            tcp_rate_bytes: float = 102400, hypervisor_uris: dict | None = None,
            labels: dict | None = None) -> None:
        """Move the first workload VM to the target host and back: a quick check.

        :param source_host: compute host the VM starts on
        :param target_host: compute host to move it to
        :param block_migration: "auto", true or false
        :param migration_timeout: seconds before the migration is aborted
        :param probe_interval: seconds between echo requests
        :param tcp_rate_bytes: TCP continuity stream, bytes/s
        :param hypervisor_uris: compute host -> libvirt URI for the hypervisor's downtime
        :param labels: recorded as-is
        """
        evacuation = self._evacuation(
            self._vms()[:1], source_host, target_host, block_migration, 1, migration_timeout,
            "abort", 1.0, probe_interval, tcp_rate_bytes, 60, hypervisor_uris)
        trip = evacuation.round_trip()
        self._report(trip, labels or {}, {"block_migration": block_migration,
                                          "source_host": source_host,
                                          "target_host": target_host})
