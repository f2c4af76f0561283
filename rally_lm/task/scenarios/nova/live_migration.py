"""Live-migration scenarios: the seed's host evacuation, and a quick back-and-forth.

Argument types are annotations: Rally (5.1+) validates every argument
against them before any context creates anything.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Literal, TypedDict

from rally.common import logging
from rally.task import atomic, validation
from rally.task.scenario import Field
from rally_openstack.task import scenario

from rally_lm.clients.nova import MICROVERSION, NovaAdapter, NovaError
from rally_lm.export.influx import InfluxExporter, InfluxSettings
from rally_lm.export.points import migration_points
from rally_lm.migration.driver import MigrationDriver, MigrationPolicy, MigrationRecord
from rally_lm.migration.evacuation import Evacuation, ProbeSettings, RoundTrip, WorkloadVM
from rally_lm.provenance import provenance
from rally_lm.task import output
from rally_lm.workload import status as workload_status

LOG = logging.getLogger(__name__)

BlockMigration = Literal["auto"] | bool
Seconds = Annotated[float, Field(gt=0, le=86400)]
Observer = Literal["adaptive", "minimal"]
#: An OVSDB remote, as ovsdb-client takes it.
OvsdbRemote = Annotated[str, Field(pattern=r"^(tcp|ssl):\S+:\d+$|^unix:/\S+$")]

#: The task labels every InfluxDB point carries as tags (the dashboard's variables).
EXPORTED_LABELS = ("storage", "tunnelling", "policy", "network")

#: How long Nova took to record each migration's end after libvirt's or the
#: probe's hint, per (source, target), over this Rally process's iterations: the
#: adaptive observer's dense looks start from the shortest (MigrationDriver).
HINT_LAGS: dict[tuple[str, str], list[float]] = {}

#: The minimal observer's one look at Nova every so many seconds (nothing else
#: asked of the cloud or the hypervisors): to measure what observing costs.
MINIMAL_LOOK_S = 5.0

#: How long the guest view waits for an agent's status line: two of the agents'
#: 10 s status intervals. Where the instance directory is not shared, Nova
#: removes the source's copy (console log included) after a migration, so a VM
#: just back on its first host has a console log that starts at its return.
GUEST_STATUS_WAIT_S = 20.0


class InfluxConfig(TypedDict, total=False):
    url: Annotated[str, Field(pattern=r"^https?://[^/\s]+(/\S*)?$")]
    org: str
    bucket: str
    token_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


def progress_line(record: MigrationRecord, provisional: dict | None = None) -> str:
    """One line per migration for Rally's console log (rally_lm.study reads them)."""
    line = (f"rally_lm: {record.vm} {record.direction} {record.source} -> {record.target}: "
            f"{record.outcome}")
    if record.outcome != "skipped":
        line += f" in {record.duration:.1f}s"
    if (provisional or {}).get("client_downtime_ms") is not None:
        line += f", client downtime {provisional['client_downtime_ms']:.0f} ms"
    hyper = record.measurements.get("hypervisor", {})
    if "downtime_ms" in hyper:
        line += f", hypervisor downtime {hyper['downtime_ms']:.0f} ms"
    throttle = record.measurements.get("job", {}).get("max_throttle_percent")
    if throttle:
        line += f", CPU throttled up to {throttle} %"
    if record.timeout_by:
        line += f", timeout by {record.timeout_by}"
    if record.error:
        line += f" ({record.error[:200]})"
    return line


def _unread(vm_name: str, why: str) -> list:
    """A guest-table row for a VM whose agent could not be read: every figure unknown."""
    return [vm_name, None, None, None, None, None, why]


class _LiveMigrationBase(scenario.OpenStackScenario):
    def _timer(self, name: str):
        return atomic.ActionTimer(self, name)

    def _evacuation(self, vms, source_host, target_host, block_migration, max_parallel,
                    migration_timeout, on_timeout, pause_between_directions, probe_interval,
                    tcp_rate_bytes, status_grace, hypervisor_uris, icmp_probe=True,
                    dirty_rate_seconds=1, compare_fixed_ip=False,
                    job_interval=0.5, nova_completion_timeout=800.0,
                    observer="adaptive", ovn_sb_connection=None,
                    ovn_chassis_watch=False) -> Evacuation:
        workload = self.context["lm_workload"]
        adapter = NovaAdapter(self.admin_clients("nova", version=MICROVERSION))
        # Atomic actions are per scenario instance: not shareable between threads.
        timer = self._timer if max_parallel == 1 else None
        looks = {"poll_interval": MINIMAL_LOOK_S, "watch_interval": MINIMAL_LOOK_S} \
            if observer == "minimal" else {}
        if observer == "minimal":
            dirty_rate_seconds, job_interval = 0, 0
        driver = MigrationDriver(adapter, MigrationPolicy(
            block_migration=block_migration, timeout=migration_timeout,
            on_timeout=on_timeout, status_grace=status_grace,
            nova_completion_timeout=nova_completion_timeout, **looks), timer=timer,
            hint_lags=HINT_LAGS.setdefault((source_host, target_host), []))
        agent = workload["agent"]
        return Evacuation(
            driver, vms, source_host, target_host,
            ProbeSettings(interval=probe_interval, udp_port=agent["udp_echo_port"],
                          tcp_port=agent["tcp_echo_port"], tcp_rate_bytes=tcp_rate_bytes,
                          icmp=icmp_probe, dirty_rate_seconds=dirty_rate_seconds,
                          compare_fixed=compare_fixed_ip, job_interval=job_interval),
            max_parallel=max_parallel, pause=pause_between_directions,
            hypervisor_uris=hypervisor_uris, timer=self._timer,
            progress=lambda record, provisional: LOG.info(progress_line(record, provisional)),
            ovn_sb_connection=ovn_sb_connection if observer != "minimal" else None,
            ovn_chassis_watch=ovn_chassis_watch)

    def _run_round_trip(self, evacuation: Evacuation, labels: dict, config: dict,
                        influx: dict | None = None) -> None:
        """Run one round trip; report what was measured even if it broke half-way."""
        try:
            evacuation.round_trip()
        finally:
            try:
                self._guest_view(evacuation.trip)
            except Exception as exc:  # noqa: BLE001 - never mask the round trip's own error
                LOG.warning(f"rally_lm: could not read the guests' console logs: {exc}")
            self._report(evacuation.trip, labels, config, influx)

    def _export(self, trip: RoundTrip, labels: dict, flavor: str, influx: dict) -> None:
        task = self.context["task"]["uuid"]
        tags = {"task": task, "iteration": self.context["iteration"], "flavor": flavor,
                **{k: v for k, v in labels.items() if k in EXPORTED_LABELS}}
        spool = Path(os.path.expanduser("~/.rally/rally-lm-spool")) / f"{task}.lp"
        exporter = InfluxExporter(InfluxSettings.from_config(influx), spool).start()
        for record in trip.records:
            for point in migration_points(record, tags):
                exporter.write(*point)
        stats = exporter.close()
        self.add_output(complete=output.export_stats_chart("InfluxDB export (migrations)",
                                                           stats))
        if stats.failed:
            # Rejected by the server (auth, bad data): the run's data did not get there.
            raise RuntimeError(f"InfluxDB export failed: {stats.last_error}")

    def _guest_view(self, trip: RoundTrip) -> None:
        """What the agents say of themselves (console log): the load was really applied."""
        nova = NovaAdapter(self.admin_clients("nova", version=MICROVERSION))
        rows = {}
        deadline = time.monotonic() + GUEST_STATUS_WAIT_S
        vms = self._vms()
        waiting = list(vms)
        while waiting:
            for vm in list(waiting):
                try:
                    current = workload_status.latest(nova.console_output(vm.id, lines=200))
                except NovaError as exc:
                    rows[vm.id] = _unread(vm.name, f"console log: {exc}")
                    waiting.remove(vm)
                    continue
                if current is not None:
                    memory = current.get("memory")
                    # The load was asked and not applied (e.g. the OOM killer ended
                    # the dirtier): the cell's labels would otherwise lie.
                    error = f"memory dirtying {memory}" if str(memory).startswith(
                        "failed") else ""
                    if error:
                        LOG.warning(f"rally_lm: {vm.name}: {error}")
                    rows[vm.id] = [vm.name, current.get("disk"),
                                   current.get("disk_used_percent"), memory,
                                   current.get("dirtied_mib"), current.get("udp_echoes"), error]
                    waiting.remove(vm)
                elif time.monotonic() >= deadline:
                    rows[vm.id] = _unread(vm.name, f"no status line on the console within "
                                                   f"{GUEST_STATUS_WAIT_S:.0f} s")
                    waiting.remove(vm)
            if waiting:
                time.sleep(2.0)
        self.add_output(complete={
            "title": output.GUEST_TITLE, "chart_plugin": "Table",
            "description": "The workload agents' own status lines, read from each VM's "
                           "console log after the round trip.",
            "data": {"cols": ["vm", "disk fill", "disk used %", "memory", "memory dirtied MiB",
                              "UDP echoes answered", "error"],
                     "rows": [rows[vm.id] for vm in vms]}})

    def _hosts(self, source: str | None, target: str | None) -> tuple[str, str]:
        """The hosts given, or the ones lm_workload picked (it boots on the source)."""
        workload = self.context["lm_workload"]
        return source or workload["source_host"], target or workload["target_host"]

    def _vms(self) -> list[WorkloadVM]:
        return [WorkloadVM(id=s["id"], name=s["name"], ip=s["ip"],
                           instance_name=s.get("instance_name", ""),
                           fixed_ip=s.get("fixed_ip", ""),
                           dirty_rate_mib=s.get("dirty_rate_mib"))
                for s in self.context["lm_workload"]["servers"]]

    def _report(self, trip: RoundTrip, labels: dict, config: dict,
                influx: dict | None = None) -> None:
        workload = self.context["lm_workload"]
        all_labels = {**labels, **{k: str(v) for k, v in config.items()},
                      "flavor": workload["flavor"]["name"], "vms": str(len(self._vms())),
                      **{f"cloud {k}": str(v) for k, v in workload.get("cloud", {}).items()},
                      **{f"provenance {k}": v for k, v in provenance().items()}}
        for kind, chart in output.round_trip_output(trip, all_labels):
            self.add_output(**{kind: chart})
        storage = labels.get("storage")
        disk_copied = [r for r in trip.records if output.disk_copy_seen(r)]
        # One-sided check: a disk copy seen proves non-shared storage.
        if storage in ("shared", "ceph") and disk_copied:
            self.add_output(complete={
                "title": "Warning", "chart_plugin": "TextArea",
                "data": [f"labelled {storage} storage, but disks were copied for "
                         f"{len(disk_copied)} migration(s): check the storage label"]})
        if influx:
            self._export(trip, labels, workload["flavor"]["name"], influx)


@validation.add("required_platform", platform="openstack", admin=True)
@validation.add("required_services", services=["nova"])
@validation.add("lm_hosts")
@validation.add("lm_workload_resources")
@validation.add("lm_offline")
@validation.add("lm_labels")
@validation.add("lm_influx")
@validation.add("lm_network_view")
@scenario.configure(name="LiveMigration.evacuate_host", platform="openstack")
class EvacuateHost(_LiveMigrationBase):

    def run(self, source_host: str | None = None, target_host: str | None = None,
            block_migration: BlockMigration = "auto",
            max_parallel: Annotated[int, Field(ge=1, le=50)] = 1,
            migration_timeout: Seconds = 600,
            on_timeout: Literal["abort", "force_complete", "wait"] = "abort",
            pause_between_directions: Annotated[float, Field(ge=0, le=3600)] = 5.0,
            probe_interval: Annotated[float, Field(ge=0.001, le=1.0)] = 0.01,
            tcp_rate_bytes: Annotated[float, Field(ge=256, le=1e9)] = 102400,
            status_grace: Annotated[float, Field(ge=0, le=3600)] = 60,
            icmp_probe: bool = True,
            dirty_rate_seconds: Annotated[int, Field(ge=0, le=60)] = 1,
            job_interval: Annotated[float, Field(ge=0, le=10)] = 0.5,
            compare_fixed_ip: bool = False,
            nova_completion_timeout: Annotated[float, Field(ge=0, le=86400)] = 800,
            observer: Observer = "adaptive",
            hypervisor_uris: dict[str, str] | None = None,
            ovn_sb_connection: OvsdbRemote | None = None,
            ovn_chassis_watch: bool = False,
            labels: dict[str, str] | None = None,
            influx: InfluxConfig | None = None) -> None:
        """Live-migrate every workload VM to another host and back (one round trip).

        The seed's benchmark: VMs leave ``source_host`` one at a time (or
        ``max_parallel`` at a time), then come back. While they move, every
        VM is probed (UDP echo at ``probe_interval`` and kernel ICMP echo, a
        verified TCP stream), so each migration gets its own client-perceived
        downtime, split into pause, convergence, resume lag and recovery
        tail, and its own TCP stall. Every planned migration is reported,
        including those that could not be attempted.

        :param source_host: compute host the lm_workload VMs start on (default:
            the one lm_workload picked - see its source_host)
        :param target_host: compute host to drain them to (default: lm_workload's pick)
        :param block_migration: "auto" (Nova decides from the storage), true or false
        :param max_parallel: migrations at once (the seed: 1)
        :param migration_timeout: seconds before on_timeout applies
        :param on_timeout: abort, force_complete or wait
        :param pause_between_directions: seconds between draining and returning
        :param probe_interval: seconds between echo requests per VM
        :param tcp_rate_bytes: TCP continuity stream per VM, bytes/s (seed: 100 kB/s)
        :param status_grace: seconds Nova's record may lag before "stale_status"
        :param icmp_probe: also probe with kernel ICMP echo (needs a raw socket
            or ping_group_range; without one the ICMP columns carry the error)
        :param dirty_rate_seconds: measure each guest's memory dirty rate for
            this long before its migration (needs hypervisor_uris; 0: off)
        :param job_interval: read the running migration job on the source this
            often, in seconds (needs hypervisor_uris; auto-converge's CPU
            throttle is only seen so; 0: off)
        :param compare_fixed_ip: when lm_workload probes floating IPs, also probe
            the fixed IPs (if reachable from here), to show what the router adds
        :param nova_completion_timeout: the cloud's [libvirt]
            live_migration_completion_timeout (s per GiB of RAM; Nova's
            default 800, 0: none); a migration Nova calls failed that ran past
            it, with nobody calling the abort API, is Nova's timeout abort
        :param hypervisor_uris: compute host -> libvirt URI, to read the
            hypervisor's statistics and events (e.g. {"hv1": "qemu+ssh://root@hv1/system"})
        :param ovn_sb_connection: with ML2/OVN, OVN's southbound database
            (e.g. "tcp:ovn-central:6642"; ssl: needs ovsdb-client's certificate
            options in OVN_SB_CLIENT_ARGS): each VM port's binding steps go on
            the timeline, and the network's share of the outage is named by
            the step that ended it (needs ovsdb-client, and hypervisor_uris
            for the guest's resume)
        :param ovn_chassis_watch: with ovn_sb_connection, also watch both
            computes themselves over the ssh login of their qemu+ssh://
            hypervisor_uris: the RARP frames the guest announces itself with
            (tcpdump) and ovn-controller's ovn-installed mark on the VM's OVS
            interface (its flows installed there), on the timeline beside the
            database's steps; needs tcpdump, ovsdb-client and the right to
            capture on the computes (checked before anything boots)
        :param observer: how the migrations are followed. "adaptive" (default):
            Nova's migration record, looked at every 3 s and every 0.25 s once
            libvirt or the probe say the copy is over (docs/measurement.md);
            "minimal": one look every 5 s and nothing else asked of the cloud or
            the hypervisors (no dirty rate, no running-job samples) - durations
            known to 5 s only; for measuring what observing costs
        :param labels: recorded as-is, e.g. {"storage": "ceph", "tunnelling": "off"}
        :param influx: write every migration to InfluxDB: {"url", "org", "bucket",
            "token_env"} (the token is read from that environment variable)
        """
        source_host, target_host = self._hosts(source_host, target_host)
        evacuation = self._evacuation(
            self._vms(), source_host, target_host, block_migration, max_parallel,
            migration_timeout, on_timeout, pause_between_directions, probe_interval,
            tcp_rate_bytes, status_grace, hypervisor_uris, icmp_probe, dirty_rate_seconds,
            compare_fixed_ip, job_interval, nova_completion_timeout, observer,
            ovn_sb_connection, ovn_chassis_watch)
        self._run_round_trip(evacuation, labels or {}, {
            "block_migration": block_migration, "max_parallel": max_parallel,
            "migration_timeout": migration_timeout, "on_timeout": on_timeout,
            "observer": observer,
            "source_host": source_host, "target_host": target_host,
            "probe_via": self.context["lm_workload"].get("probe_via", "fixed")},
            dict(influx or {}))


@validation.add("required_platform", platform="openstack", admin=True)
@validation.add("required_services", services=["nova"])
@validation.add("lm_hosts")
@validation.add("lm_workload_resources")
@validation.add("lm_offline")
@validation.add("lm_labels")
@scenario.configure(name="LiveMigration.migrate_server", platform="openstack")
class MigrateServer(_LiveMigrationBase):

    def run(self, source_host: str | None = None, target_host: str | None = None,
            block_migration: BlockMigration = "auto",
            migration_timeout: Seconds = 600,
            probe_interval: Annotated[float, Field(ge=0.001, le=1.0)] = 0.01,
            tcp_rate_bytes: Annotated[float, Field(ge=256, le=1e9)] = 102400,
            hypervisor_uris: dict[str, str] | None = None,
            labels: dict[str, str] | None = None) -> None:
        """Move the first workload VM to the target host and back: a quick check.

        :param source_host: compute host the VM starts on (default: lm_workload's pick)
        :param target_host: compute host to move it to (default: lm_workload's pick)
        :param block_migration: "auto", true or false
        :param migration_timeout: seconds before the migration is aborted
        :param probe_interval: seconds between echo requests
        :param tcp_rate_bytes: TCP continuity stream, bytes/s
        :param hypervisor_uris: compute host -> libvirt URI for the hypervisor's view
        :param labels: recorded as-is
        """
        source_host, target_host = self._hosts(source_host, target_host)
        evacuation = self._evacuation(
            self._vms()[:1], source_host, target_host, block_migration, 1, migration_timeout,
            "abort", 1.0, probe_interval, tcp_rate_bytes, 60, hypervisor_uris)
        self._run_round_trip(evacuation, labels or {}, {
            "block_migration": block_migration, "source_host": source_host,
            "target_host": target_host})
