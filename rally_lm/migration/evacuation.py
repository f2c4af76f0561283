"""One round trip of the seed's benchmark: drain a host, then move everything back.

Probes run across the whole round trip, so each migration's window is cut
out of one continuous timeline and disruption of VMs that are *not* moving
at the time is seen as collateral. Plain Python: the Rally scenario only
wraps it.

Nothing measured is lost and nothing unmeasured passes as zero:

* every planned migration gets a record, kept in ``RoundTrip`` as soon as it
  ends; a VM that is not ACTIVE on the host it should leave is ``skipped``
  with where it is;
* a failure of the tool while driving one migration is that migration's
  ``tool_error`` and the round trip goes on; a failure while measuring one
  is an ``error`` in that measurement;
* a probe that failed measures the migrations that ended before it failed,
  and the later ones carry the probe's error.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import math
import os
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from rally_lm.clients import hosts
from rally_lm.clients.nova import NovaError
from rally_lm.migration import hypervisor, phases, sdn
from rally_lm.migration.driver import (
    MigrationDriver,
    MigrationFinished,
    MigrationRecord,
    reconcile_with_hypervisor,
)
from rally_lm.probes.anatomy import (
    dissect,
    longest_silence,
    reply_silences,
    switchover_silence,
)
from rally_lm.probes.downtime import DowntimeProbe, ProbeError, start_together
from rally_lm.probes.host_load import HostLoadSampler
from rally_lm.probes.records import ProbeClock, TargetTimeline, TcpContinuity
from rally_lm.probes.tcp_continuity import TcpContinuityProbe
from rally_lm.probes.timeline import (
    MigrationWindow,
    NothingMeasured,
    collateral,
    disruption_in_window,
    find_disruptions,
)

#: How often the VMs' whereabouts are asked again when Nova's API fails.
WHEREABOUTS_ATTEMPTS = 3


@dataclasses.dataclass(frozen=True)
class WorkloadVM:
    id: str
    name: str
    #: Where the probes reach the VM (its fixed IP, or a floating IP).
    ip: str
    instance_name: str = ""
    #: With a floating ``ip``: the fixed IP, probed beside it when asked.
    fixed_ip: str = ""
    #: The memory dirty rate its agent was asked for, MiB/s (None: not known).
    dirty_rate_mib: float | None = None


@dataclasses.dataclass(frozen=True)
class ProbeSettings:
    interval: float = 0.01
    udp_port: int | None = 7
    tcp_port: int | None = 7
    tcp_rate_bytes: float = 102_400.0
    settle: float = 2.0
    #: Kernel-level ICMP echo beside the agent's UDP echo (needs a raw or
    #: permitted datagram ICMP socket; without one the ICMP view is an error).
    icmp: bool = True
    #: Measure the guest's dirty rate this long before each migration (needs
    #: hypervisor URIs); 0 turns it off.
    dirty_rate_seconds: int = 1
    #: Read the running job on the source this often while a VM migrates
    #: (needs hypervisor URIs; auto-converge's throttle is only seen so); 0: off.
    job_interval: float = 0.5
    #: Probing floating IPs: also probe the fixed IPs, same migrations, side by side.
    compare_fixed: bool = False


@dataclasses.dataclass
class Drain:
    """One direction of the round trip: every VM leaving one host.

    Its duration, defined twice: ``seconds`` is the drain's wall time, from
    the first migration's API call to the last one's end (what an operator
    draining the host waits); ``migrations_s`` the sum of its migrations'
    durations (the seed's "evacuation"). The difference, ``tool_s``, is
    rally_lm's own time between migrations.
    """

    direction: str
    source: str
    target: str
    planned: int
    attempted: int = 0
    succeeded: int = 0
    #: Wall time of the drain; None when no VM could be moved at all.
    seconds: float | None = None
    migrations_s: float | None = None

    @property
    def tool_s(self) -> float | None:
        if self.seconds is None or self.migrations_s is None:
            return None
        return self.seconds - self.migrations_s

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class RoundTrip:
    records: list[MigrationRecord] = dataclasses.field(default_factory=list)
    drains: list[Drain] = dataclasses.field(default_factory=list)
    vms: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    probe: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: Problems of the tool itself (a probe or event listener that failed).
    errors: list[str] = dataclasses.field(default_factory=list)
    #: The probes' clock reading: [monotonic, wall] (maps every record's times).
    clock: list[float] = dataclasses.field(default_factory=list)
    #: HTTP requests the round trip sent Nova, by route (its migrations' and the
    #: whereabouts read before each drain).
    api_requests: dict[str, int] = dataclasses.field(default_factory=dict)
    #: How busy the host that measured was (rally_lm.probes.host_load).
    host_load: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def drain_seconds(self) -> dict[str, float]:
        return {d.direction: d.seconds for d in self.drains if d.seconds is not None}

    def to_dict(self) -> dict[str, Any]:
        return {"records": [r.to_dict() for r in self.records],
                "drains": [d.to_dict() for d in self.drains],
                "vms": self.vms, "probe": self.probe, "errors": self.errors,
                "clock": self.clock, "api_requests": self.api_requests,
                "host_load": self.host_load}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RoundTrip:
        return cls(records=[MigrationRecord.from_dict(r) for r in data["records"]],
                   drains=[Drain(**d) for d in data["drains"]], vms=data["vms"],
                   probe=data["probe"], errors=list(data["errors"]),
                   clock=list(data.get("clock", [])),
                   api_requests=dict(data.get("api_requests", {})),
                   host_load=dict(data.get("host_load", {})))


@dataclasses.dataclass
class _ProbeResults:
    """What the probes returned, and from when on each could not be trusted."""

    clock: ProbeClock
    udp: dict[str, TargetTimeline]
    icmp: dict[str, TargetTimeline]
    tcp: dict[str, TcpContinuity]
    #: Per view ("udp", "icmp", "tcp"): (failed at, why) - windows ending
    #: later than that are not measured by that view.
    failures: dict[str, tuple[float, str]]


def _classify_forced(record: MigrationRecord, libvirt: list[hypervisor.DomainEvent]) -> None:
    """Call a completed migration whose copy was forced (post-copy, paused) ``timeout_forced``.

    Nobody asked the API to force it, so Nova's completion timeout did.
    """
    forced_by_api = any(e.get("event") == "compute_live_migration_force_complete"
                        for e in record.events)
    if record.outcome == "completed" and not forced_by_api \
            and phases.copy_mode(libvirt, record.source) != "pre-copy":
        record.outcome, record.timeout_by = "timeout_forced", "nova"


def _skipped(vm: WorkloadVM, source: str, target: str, direction: str,
             reason: str) -> MigrationRecord:
    return MigrationRecord(server_id=vm.id, vm=vm.name, direction=direction, source=source,
                           target=target, started_at=time.time(), finished_at=time.time(),
                           outcome="skipped", error=reason)


class Evacuation:
    """Move VMs from ``source`` to ``target`` one (or ``max_parallel``) at a time and back."""

    def __init__(
        self,
        driver: MigrationDriver,
        vms: list[WorkloadVM],
        source: str,
        target: str,
        probes: ProbeSettings,
        max_parallel: int = 1,
        pause: float = 5.0,
        hypervisor_uris: dict[str, str] | None = None,
        timer: Callable[[str], Any] | None = None,
        progress: Callable[[MigrationRecord, dict[str, Any]], None] | None = None,
        ovn_sb_connection: str | None = None,
        ovn_chassis_watch: bool = False,
    ) -> None:
        if source == target:
            raise ValueError("source and target host are the same")
        self.driver = driver
        self.vms = vms
        self.source = source
        self.target = target
        self.probes = probes
        self.max_parallel = max_parallel
        self.pause = pause
        self.hypervisor_uris = hypervisor_uris or {}
        self.timer = timer or (lambda _name: contextlib.nullcontext())
        self.progress = progress
        #: OVN's southbound database (``tcp:host:6642``): the port bindings' view.
        self.ovn_sb_connection = ovn_sb_connection
        #: With it, each compute's own view too (sdn.ChassisListener, over the ssh
        #: login of its qemu+ssh:// hypervisor URI): RARPs received, flows installed.
        self.ovn_chassis_watch = ovn_chassis_watch
        #: The round trip under way: readable even if round_trip() raised.
        self.trip = RoundTrip()
        self._udp: DowntimeProbe | None = None
        self._listeners: dict[str, hypervisor.DomainEventListener] = {}

    def round_trip(self) -> RoundTrip:
        self.trip = trip = RoundTrip()
        asked = collections.Counter(self.driver.adapter.requests)
        load = HostLoadSampler().start()
        ips = [vm.ip for vm in self.vms]
        compared = [vm.fixed_ip for vm in self.vms
                    if self.probes.compare_fixed and vm.fixed_ip and vm.fixed_ip != vm.ip]
        udp = DowntimeProbe(ips + compared, interval=self.probes.interval,
                            protocol="udp" if self.probes.udp_port else "icmp",
                            udp_port=self.probes.udp_port)
        icmp, icmp_error = self._icmp_probe(ips)
        tcp = (TcpContinuityProbe(ips, self.probes.tcp_port,
                                  rate_bytes_per_s=self.probes.tcp_rate_bytes)
               if self.probes.tcp_port else None)
        if tcp is not None:
            tcp.start()
        # One thread for both: a second one would cost wake-ups of its own.
        start_together([udp] + ([icmp] if icmp is not None else []))
        self._udp = udp
        listeners = {host: hypervisor.DomainEventListener(uri, host).start()
                     for host, uri in self.hypervisor_uris.items()
                     if host in (self.source, self.target)}
        self._listeners = listeners
        southbound = sdn.SouthboundListener(self.ovn_sb_connection).start() \
            if self.ovn_sb_connection else None
        chassis = self._chassis_listeners() if southbound is not None else []
        try:
            for direction, src, dst in (("out", self.source, self.target),
                                        ("back", self.target, self.source)):
                self._drain(trip, direction, src, dst)
                if direction == "out":
                    time.sleep(self.pause)
        finally:
            # Let the probes see the last migration's recovery, then keep
            # whatever they measured, whatever else failed.
            with contextlib.suppress(Exception):
                time.sleep(self.probes.settle)
            results = self._stop_probes(trip, udp, icmp, icmp_error, tcp)
            events: list[hypervisor.DomainEvent] = []
            self._listeners = {}
            for listener in listeners.values():
                events += listener.stop()
                if listener.error:
                    trip.errors.append(listener.error)
            port_events: list[sdn.PortEvent] | None = None
            if southbound is not None:
                port_events = southbound.stop()
                for watch in chassis:
                    # Named by the southbound rows: a RARP by its MAC, flows by port.
                    port_events += southbound.table.identify(watch.stop())
                    if watch.error:
                        trip.errors.append(watch.error)
                if southbound.error:
                    trip.errors.append(southbound.error)
                    port_events = None
            self._measure(trip, results, events, port_events)
            trip.api_requests = dict(collections.Counter(self.driver.adapter.requests) - asked)
            trip.host_load = load.stop().to_dict()
        return trip

    def _chassis_listeners(self) -> list[sdn.ChassisListener]:
        if not self.ovn_chassis_watch:
            return []
        shells = {host: hosts.ssh_command(self.hypervisor_uris.get(host, ""))
                  for host in (self.source, self.target)}
        missing = sorted(host for host, shell in shells.items() if shell is None)
        if missing:
            # The validator refuses this before anything boots; a caller without it:
            self.trip.errors.append(f"ovn_chassis_watch: no qemu+ssh:// hypervisor URI for "
                                    f"{', '.join(missing)}")
        return [sdn.ChassisListener(host, shell).start()
                for host, shell in shells.items() if shell is not None]

    # -- probes ----------------------------------------------------------------------

    def _icmp_probe(self, ips: list[str]) -> tuple[DowntimeProbe | None, str | None]:
        if not self.probes.icmp or not self.probes.udp_port:
            return None, "ICMP probing is off" if not self.probes.icmp else None
        try:
            return DowntimeProbe(ips, interval=self.probes.interval, protocol="icmp"), None
        except ProbeError as exc:
            return None, str(exc)

    def _stop_probes(self, trip: RoundTrip, udp: DowntimeProbe, icmp: DowntimeProbe | None,
                     icmp_error: str | None, tcp: TcpContinuityProbe | None) -> _ProbeResults:
        failures: dict[str, tuple[float, str]] = {}
        stopped = [("udp", udp)] + ([("icmp", icmp)] if icmp is not None else [])
        timelines: dict[str, dict[str, TargetTimeline]] = {"udp": {}, "icmp": {}}
        for view, probe in stopped:
            result = probe.stop(raise_on_failure=False)
            timelines[view] = {t.target: t for t in result}
            if probe.failure is not None:
                why = f"{view} probe failed: {probe.failure}"
                failures[view] = (probe.failed_at or 0.0, why)
                trip.errors.append(why)
        if icmp is None and icmp_error and self.probes.udp_port:
            failures["icmp"] = (float("-inf"), icmp_error)
        tcp_results: dict[str, TcpContinuity] = {}
        if tcp is not None:
            try:
                tcp_results = {r.target: r for r in tcp.stop()}
            except RuntimeError as exc:
                failures["tcp"] = (float("-inf"), str(exc))
                trip.errors.append(str(exc))
        trip.probe = {"transport": udp.transport, "icmp": icmp.transport if icmp else None,
                      "interval_ms": self.probes.interval * 1000,
                      "max_send_gap_ms": max((t.max_send_gap_ms()
                                              for t in timelines["udp"].values()), default=None),
                      "clock_drift_ms": round(udp.clock.drift_ms(), 3)}
        trip.clock = [udp.clock.monotonic, udp.clock.wall]
        return _ProbeResults(clock=udp.clock, udp=timelines["udp"], icmp=timelines["icmp"],
                             tcp=tcp_results, failures=failures)

    # -- migrations ----------------------------------------------------------------

    def _whereabouts(self, vm: WorkloadVM,
                     listed: dict[str, dict] | None = None) -> dict | None | str:
        """The server as Nova sees it, None if gone, or why Nova could not tell.

        ``listed``: the servers one list found; a server not in it is asked alone.
        """
        if listed and vm.id in listed:
            return listed[vm.id]
        error = ""
        for attempt in range(WHEREABOUTS_ATTEMPTS):
            try:
                return self.driver.adapter.server(vm.id)
            except NovaError as exc:
                error = str(exc)
                if attempt + 1 < WHEREABOUTS_ATTEMPTS:
                    self.driver.sleep(1.0)
        return f"Nova could not say where the server is: {error}"

    def _listed(self) -> dict[str, dict]:
        """The VMs as one server list shows them (one request, not one per VM); {} when
        the list cannot be had or their names share no prefix to filter on."""
        prefix = os.path.commonprefix([vm.name for vm in self.vms])
        if len(prefix) < 2:
            return {}
        try:
            found = self.driver.adapter.list_servers(name=f"^{re.escape(prefix)}")
        except NovaError:
            return {}
        return {s["id"]: s for s in found}

    def _drain(self, trip: RoundTrip, direction: str, source: str, target: str) -> None:
        drain = Drain(direction=direction, source=source, target=target, planned=len(self.vms))
        trip.drains.append(drain)
        movable = []
        listed = self._listed()
        for vm in self.vms:
            server = self._whereabouts(vm, listed)
            if isinstance(server, str):
                reason = server
            elif server is None:
                reason = "the server no longer exists"
            elif server["host"] != source or server["status"] != "ACTIVE":
                reason = (f"not ACTIVE on {source}: the server is {server['status']} on "
                          f"{server['host']}")
            else:
                movable.append(vm)
                continue
            record = _skipped(vm, source, target, direction, reason)
            trip.records.append(record)
            self._report(record)
        drain.attempted = len(movable)
        if not movable:
            return
        dirty = self._dirty_rates(movable, source)
        began = time.monotonic()
        with self.timer(f"nova.drain_host_{direction}"):
            if self.max_parallel <= 1:
                for vm in movable:
                    trip.records.append(self._move(vm, source, target, direction, dirty))
            else:
                with ThreadPoolExecutor(max_workers=self.max_parallel) as pool:
                    for record in pool.map(
                            lambda vm: self._move(vm, source, target, direction, dirty),
                            movable):
                        trip.records.append(record)
        drain.seconds = time.monotonic() - began
        moved = [r for r in trip.records if r.direction == direction and r.outcome != "skipped"]
        drain.migrations_s = sum(r.duration for r in moved)
        drain.succeeded = sum(r.succeeded for r in moved)
        # Nova's phases of the completed migrations: their timelines only, so read
        # once the drain is over, not between its migrations.
        with self.timer(f"nova.read_actions_{direction}"):
            for record in moved:
                if record.migration_id is not None and not record.events:
                    self.driver.read_events(record)

    def _dirty_rates(self, vms: list[WorkloadVM], source: str) -> dict[str, dict[str, Any]]:
        """Each guest's dirty rate, measured for all of them at once before the drain.

        QEMU samples each guest's memory for ``dirty_rate_seconds``; side by
        side, the drain waits that long once instead of once per migration.
        """
        uri = self.hypervisor_uris.get(source)
        measured = [vm for vm in vms if vm.instance_name]
        if not uri or not measured or not self.probes.dirty_rate_seconds:
            return {}

        def one(vm: WorkloadVM) -> dict[str, Any]:
            try:
                return {**hypervisor.dirty_rate(uri, vm.instance_name,
                                                self.probes.dirty_rate_seconds),
                        "measured_at": time.monotonic()}
            except hypervisor.HypervisorStatsError as exc:
                return {"error": str(exc)}

        with ThreadPoolExecutor(max_workers=min(8, len(measured))) as pool:
            return dict(zip((vm.id for vm in measured), pool.map(one, measured), strict=True))

    def _report(self, record: MigrationRecord) -> None:
        if self.progress is not None:
            with contextlib.suppress(Exception):
                self.progress(record, self._provisional(record))

    def _provisional(self, record: MigrationRecord) -> dict[str, Any]:
        """The client downtime so far, for progress lines (the record gets the final one)."""
        vm = next((v for v in self.vms if v.id == record.server_id), None)
        if self._udp is None or vm is None or record.outcome == "skipped":
            return {}
        timeline = next((t for t in self._udp.snapshot() if t.target == vm.ip), None)
        silence = longest_silence(reply_silences(timeline), *record.window) \
            if timeline is not None else None
        return {"client_downtime_ms": round(silence.duration_ms, 1)} if silence else {}

    def _move(self, vm: WorkloadVM, source: str, target: str, direction: str,
              dirty: dict[str, dict[str, Any]] | None = None) -> MigrationRecord:
        before: dict[str, Any] = {}
        uri = self.hypervisor_uris.get(source)
        if vm.id in (dirty or {}):
            rate = dict(dirty[vm.id])
            if "measured_at" in rate:
                # How long before this migration's call QEMU measured it.
                rate["seconds_before"] = round(time.monotonic() - rate.pop("measured_at"), 1)
            before["dirty_rate"] = rate
        sampler = hypervisor.JobSampler(uri, vm.instance_name, self.probes.job_interval,
                                        clock=self.driver.clock) \
            if uri and vm.instance_name and self.probes.job_interval else None
        if sampler is not None:
            sampler.start()
        start = time.monotonic()
        try:
            record = self.driver.migrate(vm.id, vm.name, source, target, direction,
                                         end_hint=self._end_hint(vm, source, start))
        except Exception as exc:  # noqa: BLE001 - ours, not the migration's: recorded
            record = self._tool_error(vm, source, target, direction, start, exc)
        if sampler is not None:
            job = sampler.stop()
            # On the migration's timeline: seconds since the API call.
            for sample in job["samples"]:
                sample["t"] = round(sample["t"] - record.window[0], 4)
            before["job"] = job
        record.measurements.update(before)
        try:
            self._ask_hypervisor(record, vm, source, target)
        except Exception as exc:  # noqa: BLE001 - a measurement error, recorded as such
            record.measurements["hypervisor"] = {"error": f"{type(exc).__name__}: {exc}"}
        if vm.instance_name and self._listeners:
            # The events read so far already tell a forced completion: say so on
            # the progress line (the round trip's end reads them all again).
            seen = [e for listener in self._listeners.values() for e in listener.events()]
            _classify_forced(record, phases.domain_events(
                seen, vm.instance_name, record.started_at - 1.0, record.finished_at + 1.0))
        self._report(record)
        return record

    def _end_hint(self, vm: WorkloadVM, source: str,
                  since: float) -> Callable[[], float | None] | None:
        """When the copy was over, on the monotonic clock, as seen from outside Nova:

        libvirt's source reported its job done, where its events are heard;
        else the probe heard the guest again after a silence that began after
        the call (a guest stalled during the copy can fool it: libvirt cannot
        be). Only a hint for when to look at Nova densely; nothing is measured by it.
        """
        listeners = [self._listeners[h] for h in (source,) if h in self._listeners] \
            if vm.instance_name else []
        probe = self._udp if not listeners else None
        if probe is None and not listeners:
            return None
        since_wall = time.time() - (time.monotonic() - since)

        def hint() -> float | None:
            seen = []
            gap = probe.last_reply_gap(vm.ip) if probe is not None else None
            if gap is not None and gap[0] >= since:
                seen.append(gap[1])
            for listener in listeners:
                over = phases.copy_over_at(listener.events(), vm.instance_name, source,
                                           since_wall)
                if over is not None:
                    seen.append(since + (over - since_wall))
            return min(seen, default=None)

        return hint

    def _tool_error(self, vm: WorkloadVM, source: str, target: str, direction: str,
                    start: float, exc: Exception) -> MigrationRecord:
        """Record a failure of our own, after letting the migration finish on its own."""
        finished = MigrationFinished(self.driver.adapter, vm.id)
        deadline = start + self.driver.policy.timeout
        with contextlib.suppress(Exception):
            while not finished() and time.monotonic() < deadline:
                self.driver.sleep(self.driver.policy.poll_interval)
        end = time.monotonic()
        return MigrationRecord(
            server_id=vm.id, vm=vm.name, direction=direction, source=source, target=target,
            started_at=time.time() - (end - start), finished_at=time.time(),
            duration=end - start, window=(start, end), outcome="tool_error",
            error=f"{type(exc).__name__}: {exc}")

    def _ask_hypervisor(self, record: MigrationRecord, vm: WorkloadVM, source: str,
                        target: str) -> None:
        """Where libvirt runs the guest, and the job's statistics: from libvirt's events
        where they tell it all (a completed migration), else asked with virsh."""
        if not vm.instance_name or not self.hypervisor_uris:
            return
        seen = phases.domain_events(
            [e for h in (source, target) if h in self._listeners
             for e in self._listeners[h].events()],
            vm.instance_name, record.started_at - 1.0, record.finished_at + 1.0)
        told = phases.whereabouts(seen, source, target) if record.succeeded else None
        reconcile_with_hypervisor(record, told or self._libvirt_states(vm.instance_name,
                                                                       (source, target)))
        # libvirt keeps no downtime for a migration that did not finish.
        if not record.succeeded:
            return
        completed = [e for e in seen if e.kind == "job-completed" and e.host == source
                     and e.params]
        if completed:
            record.measurements["hypervisor"] = {**hypervisor.summarize(completed[-1].params),
                                                 "from": "job-completed event"}
            return
        uri = self.hypervisor_uris.get(record.running_on or record.final_host or source)
        if uri:
            try:
                record.measurements["hypervisor"] = hypervisor.completed_job(
                    uri, vm.instance_name)
            except hypervisor.HypervisorStatsError as exc:
                record.measurements["hypervisor"] = {"error": str(exc)}

    def _libvirt_states(self, instance_name: str, hosts: tuple[str, str]) -> dict[str, str]:
        """What each host's libvirt says about the domain ("absent" if it has none)."""
        states = {}
        for host in hosts:
            uri = self.hypervisor_uris.get(host)
            if uri is None:
                continue
            try:
                states[host] = hypervisor.domain_state(uri, instance_name) or "absent"
            except (hypervisor.HypervisorStatsError, OSError) as exc:
                states[host] = f"unknown: {exc}"
        return states

    # -- measurements -----------------------------------------------------------------

    def _measure(self, trip: RoundTrip, results: _ProbeResults,
                 events: list[hypervisor.DomainEvent],
                 port_events: list[sdn.PortEvent] | None = None) -> None:
        ip_of = {vm.id: vm.ip for vm in self.vms}
        instance_of = {vm.id: vm.instance_name for vm in self.vms}
        analysed = {ip: find_disruptions(t) for ip, t in results.udp.items()}
        for record in trip.records:
            if record.outcome == "skipped":
                continue
            try:
                self._measure_one(record, ip_of[record.server_id],
                                  instance_of[record.server_id], results, analysed, events)
                self._network_share(record, port_events, results.clock)
            except Exception as exc:  # noqa: BLE001 - one migration's measurement failed
                record.measurements.setdefault("network", {})["error"] = (
                    f"measuring failed: {type(exc).__name__}: {exc}")
        trip.vms = self._per_vm(trip, results, analysed)

    def _measure_one(self, record: MigrationRecord, ip: str, instance: str,
                     results: _ProbeResults, analysed: dict, events: list) -> None:
        window = MigrationWindow(ip, *record.window, label=f"{record.vm} {record.direction}")
        libvirt = phases.domain_events(events, instance, record.started_at - 1.0,
                                       record.finished_at + 1.0) if instance else []
        if libvirt:
            record.measurements["libvirt_events"] = [e.to_dict() for e in libvirt]
            completed = [e for e in libvirt if e.kind == "job-completed"
                         and e.host == record.source and e.params]
            if completed and "error" in record.measurements.get("hypervisor", {"error": ""}):
                # virsh could not be asked afterwards, but the event said it all.
                record.measurements["hypervisor"] = {
                    **hypervisor.summarize(completed[-1].params), "from": "job-completed event"}
        paused, resumed = phases.hypervisor_pause(libvirt, record.source, record.target)
        if paused is not None and resumed is not None:
            record.measurements.setdefault("hypervisor", {})["pause_events_ms"] = round(
                (resumed - paused) * 1000.0, 3)
        resumed_at = results.clock.to_monotonic(resumed) if resumed is not None else None
        if libvirt or "job" in record.measurements:
            copy = phases.copy_outcome(
                libvirt, record.source, record.target, record.measurements.get("job"),
                record.measurements.get("hypervisor"),
                lambda wall: results.clock.to_monotonic(wall) - record.window[0])
            record.measurements["copy"] = copy
            _classify_forced(record, libvirt)
        paused_at = results.clock.to_monotonic(paused) if paused is not None else None
        # An aborted or failed job leaves the guest where it was: no switchover.
        switched_over = (record.running_on or record.final_host) != record.source

        for view, timelines in (("network", results.udp), ("icmp", results.icmp)):
            failure = results.failures.get("udp" if view == "network" else view)
            if failure is not None and failure[0] <= window.end:
                record.measurements[view] = {"error": failure[1]}
                continue
            timeline = timelines.get(ip)
            if timeline is None:
                record.measurements[view] = {"error": f"no {view} probe of {ip}"}
                continue
            outages, spikes = analysed[ip] if view == "network" else find_disruptions(timeline)
            record.measurements[view] = self._network_view(timeline, window, outages, spikes,
                                                           paused_at, resumed_at, switched_over)
        fixed = self._fixed_ip_of(record.server_id)
        if fixed and fixed in results.udp and "udp" not in results.failures:
            timeline = results.udp[fixed]
            outages, spikes = find_disruptions(timeline)
            record.measurements["network_fixed"] = self._network_view(
                timeline, MigrationWindow(fixed, *record.window, label=window.label), outages,
                spikes, paused_at, resumed_at, switched_over)
        network = record.measurements["network"]
        hyper = record.measurements.get("hypervisor", {})
        if "pause_ms" in network.get("anatomy", {}) and "downtime_ms" in hyper:
            network["pause_vs_hypervisor_ms"] = round(
                network["anatomy"]["pause_ms"] - hyper["downtime_ms"], 3)

        tcp_failure = results.failures.get("tcp")
        tcp = results.tcp.get(ip)
        if tcp_failure is not None and tcp_failure[0] <= window.end:
            record.measurements["tcp"] = {"error": tcp_failure[1]}
        elif tcp is not None:
            stalls = tcp.stalls_in(window.start, window.end)
            record.measurements["tcp"] = {
                "max_stall_ms": round(max((s.duration_ms for s in stalls), default=0.0), 3),
                "stalls": len(stalls),
                "resets": tcp.resets_in(window.start, window.end),
                "disconnected_ms": round(sum(s.duration_ms for s in stalls
                                             if s.disconnected), 3),
            }
        record.measurements["timeline"] = [
            e.to_dict() for e in phases.build(record, results.clock, libvirt,
                                              network.get("anatomy"),
                                              self.driver.policy.poll_interval)]

    def _network_share(self, record: MigrationRecord, events: list[sdn.PortEvent] | None,
                       clock: ProbeClock) -> None:
        """The network's share of the outage: from the guest's resume (libvirt) to the
        first request through (the probe); with OVN's southbound view (``events``), its
        steps for this VM's port on the timeline and the one that ended that share."""
        mine: list[sdn.PortEvent] = []
        if events is not None:
            vm = next(v for v in self.vms if v.id == record.server_id)
            mine = sdn.port_events(events, vm.fixed_ip or vm.ip, record.started_at - 1.0,
                                   record.finished_at + 1.0, device=vm.id)
            record.measurements["sdn_events"] = [e.to_dict() for e in mine]
            origin = record.window[0]
            timeline = record.measurements.setdefault("timeline", [])
            timeline += [phases.PhaseEvent(clock.to_monotonic(e.wall) - origin, "ovn", e.kind,
                                           e.chassis, resolution_ms=1.0,
                                           detail=e.detail or None).to_dict() for e in mine]
            timeline.sort(key=lambda e: e["t"])
        if "anatomy" not in record.measurements.get("network", {}):
            return
        anatomy = record.measurements.get("network", {}).get("anatomy", {})
        resumed = phases.hypervisor_pause(
            [hypervisor.DomainEvent.from_dict(e)
             for e in record.measurements.get("libvirt_events", [])],
            record.source, record.target)[1]
        through = anatomy.get("first_through")
        found = sdn.attribute(mine, resumed,
                              clock.to_wall(through) if through is not None else None,
                              slack=anatomy.get("resolution_ms", 0.0) / 1000.0,
                              destination=record.target)
        if found is not None:
            record.measurements["network"]["sdn"] = found

    def _fixed_ip_of(self, server_id: str) -> str | None:
        """The fixed IP probed beside a floating one, if that was asked."""
        if not self.probes.compare_fixed:
            return None
        vm = next((v for v in self.vms if v.id == server_id), None)
        return vm.fixed_ip if vm and vm.fixed_ip and vm.fixed_ip != vm.ip else None

    @staticmethod
    def _network_view(timeline: TargetTimeline, window: MigrationWindow, outages: list,
                      spikes: list, paused_at: float | None,
                      resumed_at: float | None, switched_over: bool = True) -> dict[str, Any]:
        """The probe's outage in the window, its longest silence (the gated client
        downtime) and the switchover's silence dissected."""
        try:
            view = disruption_in_window(timeline, window, outages, spikes).to_dict()
        except NothingMeasured as exc:
            return {"error": str(exc)}
        silences = reply_silences(timeline)
        longest = longest_silence(silences, window.start, window.end)
        switchover = switchover_silence(timeline, silences, window.start, window.end,
                                        paused_at, resumed_at)
        if longest is None or switchover is None:
            view["error"] = f"no reply from {timeline.target} around {window.label}"
            return view
        anatomy = dissect(timeline, switchover, switched_over)
        view["anatomy"] = anatomy.to_dict()
        view["client_downtime_ms"] = round(longest.duration_ms, 3)
        if longest is not switchover:
            # Longer than the switchover: a stall of the guest or the path elsewhere.
            view["stall_ms"] = round(longest.duration_ms, 3)
        view["requests"] = requests_around(timeline, anatomy.silence_start,
                                           anatomy.recovered or switchover.end)
        return view

    def _per_vm(self, trip: RoundTrip, results: _ProbeResults,
                analysed: dict) -> dict[str, dict[str, Any]]:
        vms: dict[str, dict[str, Any]] = {}
        for vm in self.vms:
            own = [r for r in trip.records if r.server_id == vm.id]
            windows = [MigrationWindow(vm.ip, *r.window) for r in own if r.outcome != "skipped"]
            outages = analysed.get(vm.ip, ([], []))[0]
            extra = collateral(outages, windows)
            timeline = results.udp.get(vm.ip)
            summary: dict[str, Any] = {
                "ip": vm.ip,
                "dirty_rate_mib": vm.dirty_rate_mib,
                "migrations": len(own),
                "succeeded": sum(r.succeeded for r in own),
                "collateral_outages": len(extra),
                "collateral_longest_ms": round(max((o.duration_ms for o in extra), default=0.0),
                                               3),
                "replies": timeline.replies if timeline is not None else None,
            }
            tcp = results.tcp.get(vm.ip)
            if tcp is not None:
                summary["tcp"] = {k: v for k, v in tcp.to_dict().items()
                                  if k not in ("stalls", "reset_times")}
            elif "tcp" in results.failures:
                summary["tcp"] = {"error": results.failures["tcp"][1]}
            vms[vm.name] = summary
        return vms


def requests_around(timeline: TargetTimeline, start: float, end: float,
                    margin: float = 0.05) -> list[list[float | None]]:
    """[send, reply] of every request near an outage (probe clock; reply None: lost)."""
    sent = np.frombuffer(timeline.sent, dtype=float)
    received = np.frombuffer(timeline.received, dtype=float)
    first = int(np.searchsorted(sent, start - margin, side="left"))
    last = int(np.searchsorted(sent, end + margin, side="right"))
    return [[round(float(s), 6), None if math.isnan(r) else round(float(r), 6)]
            for s, r in zip(sent[first:last], received[first:last], strict=True)]
