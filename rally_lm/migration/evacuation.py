"""One round trip of the seed's benchmark: drain a host, then move everything back.

Probes run across the whole round trip, so each migration's window is cut
out of one continuous timeline and disruption of VMs that are *not* moving
at the time is seen as collateral. Plain Python: the Rally scenario only
wraps it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rally_lm.migration import hypervisor
from rally_lm.migration.driver import MigrationDriver, MigrationRecord, reconcile_with_hypervisor
from rally_lm.probes.downtime import DowntimeProbe
from rally_lm.probes.records import TargetTimeline, TcpContinuity
from rally_lm.probes.tcp_continuity import TcpContinuityProbe
from rally_lm.probes.timeline import (
    MigrationWindow,
    NothingMeasured,
    collateral,
    disruption_in_window,
    find_disruptions,
)


@dataclasses.dataclass(frozen=True)
class WorkloadVM:
    id: str
    name: str
    ip: str
    instance_name: str = ""


@dataclasses.dataclass(frozen=True)
class ProbeSettings:
    interval: float = 0.01
    udp_port: int | None = 7
    tcp_port: int | None = 7
    tcp_rate_bytes: float = 102_400.0
    settle: float = 2.0


@dataclasses.dataclass
class RoundTrip:
    records: list[MigrationRecord]
    drain_seconds: dict[str, float]
    vms: dict[str, dict[str, Any]]
    probe: dict[str, Any]


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

    def round_trip(self) -> RoundTrip:
        ips = [vm.ip for vm in self.vms]
        downtime = DowntimeProbe(ips, interval=self.probes.interval,
                                 protocol="udp" if self.probes.udp_port else "icmp",
                                 udp_port=self.probes.udp_port)
        tcp = (TcpContinuityProbe(ips, self.probes.tcp_port,
                                  rate_bytes_per_s=self.probes.tcp_rate_bytes)
               if self.probes.tcp_port else None)
        if tcp is not None:
            tcp.start()
        downtime.start()
        records: list[MigrationRecord] = []
        drains: dict[str, float] = {}
        try:
            for direction, src, dst in (("out", self.source, self.target),
                                        ("back", self.target, self.source)):
                began = time.monotonic()
                with self.timer(f"nova.drain_host_{direction}"):
                    records += self._move_all(src, dst, direction)
                drains[direction] = time.monotonic() - began
                if direction == "out":
                    time.sleep(self.pause)
        finally:
            # Let the probes see the last migration's recovery.
            time.sleep(self.probes.settle)
            timelines = downtime.stop()
            tcp_results = tcp.stop() if tcp is not None else []
        vms = self._measure(records, timelines, tcp_results)
        probe = {"transport": downtime.transport, "interval_ms": self.probes.interval * 1000,
                 "max_send_gap_ms": max(t.max_send_gap_ms() for t in timelines)}
        return RoundTrip(records=records, drain_seconds=drains, vms=vms, probe=probe)

    # -- migrations ----------------------------------------------------------------

    def _move_all(self, source: str, target: str, direction: str) -> list[MigrationRecord]:
        movable = []
        for vm in self.vms:
            server = self.driver.adapter.server(vm.id)
            if server is not None and server["host"] == source and server["status"] == "ACTIVE":
                movable.append(vm)
        if self.max_parallel <= 1:
            return [self._move(vm, source, target, direction) for vm in movable]
        with ThreadPoolExecutor(max_workers=self.max_parallel) as pool:
            return list(pool.map(lambda vm: self._move(vm, source, target, direction), movable))

    def _move(self, vm: WorkloadVM, source: str, target: str, direction: str) -> MigrationRecord:
        record = self.driver.migrate(vm.id, vm.name, source, target, direction)
        if vm.instance_name and self.hypervisor_uris:
            reconcile_with_hypervisor(record, self._libvirt_states(vm.instance_name,
                                                                   (source, target)))
        where = record.running_on or record.final_host or source
        uri = self.hypervisor_uris.get(where)
        # libvirt keeps no downtime for a migration that did not finish.
        if uri and vm.instance_name and record.succeeded:
            try:
                record.measurements["hypervisor"] = hypervisor.completed_job(
                    uri, vm.instance_name)
            except hypervisor.HypervisorStatsError as exc:
                record.measurements["hypervisor"] = {"error": str(exc)}
        return record

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

    def _measure(self, records: list[MigrationRecord], timelines: list[TargetTimeline],
                 tcp_results: list[TcpContinuity]) -> dict[str, dict[str, Any]]:
        by_ip = {t.target: t for t in timelines}
        tcp_by_ip = {r.target: r for r in tcp_results}
        ip_of = {vm.id: vm.ip for vm in self.vms}
        analysed = {ip: find_disruptions(t) for ip, t in by_ip.items()}
        for record in records:
            ip = ip_of[record.server_id]
            window = MigrationWindow(ip, *record.window, label=f"{record.vm} {record.direction}")
            outages, spikes = analysed[ip]
            try:
                network = disruption_in_window(by_ip[ip], window, outages, spikes).to_dict()
            except NothingMeasured as exc:
                network = {"error": str(exc)}
            record.measurements["network"] = network
            hyper = record.measurements.get("hypervisor", {})
            if "downtime_ms" in network and "downtime_ms" in hyper:
                network["convergence_ms"] = round(network["downtime_ms"] - hyper["downtime_ms"], 3)
            tcp = tcp_by_ip.get(ip)
            if tcp is not None:
                start, end = record.window
                stalls = [s for s in tcp.stalls if s.start < end and s.end > start]
                record.measurements["tcp"] = {
                    "max_stall_ms": round(max((s.duration_ms for s in stalls), default=0.0), 3),
                    "stalls": len(stalls),
                }
        vms: dict[str, dict[str, Any]] = {}
        for vm in self.vms:
            own = [r for r in records if r.server_id == vm.id]
            outages, _spikes = analysed[vm.ip]
            windows = [MigrationWindow(vm.ip, *r.window) for r in own]
            extra = collateral(outages, windows)
            summary: dict[str, Any] = {
                "ip": vm.ip,
                "migrations": len(own),
                "succeeded": sum(r.succeeded for r in own),
                "collateral_outages": len(extra),
                "collateral_longest_ms": round(max((o.duration_ms for o in extra), default=0.0),
                                               3),
                "replies": by_ip[vm.ip].replies,
            }
            tcp = tcp_by_ip.get(vm.ip)
            if tcp is not None:
                summary["tcp"] = {k: v for k, v in tcp.to_dict().items() if k != "stalls"}
            vms[vm.name] = summary
        return vms
