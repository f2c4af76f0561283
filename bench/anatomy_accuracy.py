"""How well the outage anatomy matches libvirt and the wire, over many migrations.

On the embedded testbed (root; `rally-lm testbed up`, any storage mode):
boots ``--vms`` guests on hv1, runs ``--round-trips`` evacuations (hv1 -> hv2
-> hv1, one VM at a time, the benchmark's own Evacuation with hypervisor
URIs) while tcpdump captures both hosts' and the probe's tenant uplinks, then
prints per migration and in total:

* the pause against libvirt's downtime (goal: within one probe interval
  + 5 ms on >= 90 % of migrations),
* the client-perceived downtime against the capture's reply silence
  (goal: 0.9-1.1x on every migration),
* how far each boundary (path back, first reply) is from the wire.

    ip netns exec rlm-probe .venv/bin/python bench/anatomy_accuracy.py --vms 3 --round-trips 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from rally_lm.clients.nova import NovaAdapter, make_client
from rally_lm.migration.driver import MigrationDriver, MigrationPolicy
from rally_lm.migration.evacuation import Evacuation, ProbeSettings
from rally_lm.probes.records import ProbeClock
from rally_lm_testbed import bootstrap, capture, layout, testbed
from rally_lm_testbed.migration_check import boot_guest, hypervisor_uris


def compare(trip, packets, vms) -> list[dict]:
    clock = ProbeClock(*trip.clock)
    interval = trip.probe["interval_ms"] / 1000.0
    ip_of = {vm.id: vm.ip for vm in vms}
    rows = []
    for record in trip.records:
        if not record.succeeded:
            continue
        network = record.measurements["network"]
        anatomy = network["anatomy"]
        hyper = record.measurements.get("hypervisor", {})
        wire = capture.wire_view(packets[f"{layout.PREFIX}{record.target}"],
                                 packets[layout.PROBE], ip_of[record.server_id],
                                 record.started_at, record.finished_at, "udp", interval)
        rows.append({
            "vm": record.vm, "direction": record.direction,
            "libvirt_downtime_ms": hyper.get("downtime_ms"),
            "pause_ms": anatomy["pause_ms"], "resume_lag_ms": anatomy["resume_lag_ms"],
            "client_downtime_ms": anatomy["client_downtime_ms"],
            "wire_silence_ms": wire.silence_ms,
            "path_back_vs_wire_ms": (clock.to_wall(anatomy["path_back"])
                                     - wire.first_request_at_destination) * 1000.0,
            "first_reply_vs_wire_ms": (clock.to_wall(anatomy["first_reply"])
                                       - wire.first_reply_leaving_destination) * 1000.0,
            "icmp_resume_lag_ms": record.measurements.get("icmp", {}).get(
                "anatomy", {}).get("resume_lag_ms"),
        })
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=3)
    parser.add_argument("--round-trips", type=int, default=2)
    parser.add_argument("--json", help="also write every row here")
    args = parser.parse_args()
    nova = NovaAdapter(make_client(bootstrap.admin_session()))
    vms = [boot_guest(nova, f"rlm-accuracy-{i}") for i in range(args.vms)]
    rows: list[dict] = []
    try:
        with tempfile.TemporaryDirectory(prefix="rally-lm-capture-") as tmp:
            for _ in range(args.round_trips):
                captures = {ns: capture.Capture(ns, "tenant0", Path(tmp) / f"{ns}.pcap",
                                                "udp port 7 or icmp or rarp")
                            for ns in (*(h.netns for h in layout.COMPUTES), layout.PROBE)}
                try:
                    driver = MigrationDriver(nova, MigrationPolicy(timeout=300, status_grace=30))
                    trip = Evacuation(driver, vms, "hv1", "hv2", ProbeSettings(), pause=2.0,
                                      hypervisor_uris=hypervisor_uris()).round_trip()
                finally:
                    packets = {ns: c.stop() for ns, c in captures.items()}
                rows += compare(trip, packets, vms)
    finally:
        for vm in vms:
            nova.delete(vm.id)
    interval_ms = 10.0
    print(f"mode {json.dumps(testbed.read_mode())}: {len(rows)} successful migrations")
    print(f"{'vm':>16} {'dir':>4} {'libvirt':>8} {'pause':>7} {'lag':>6} {'client':>7} "
          f"{'wire':>7} {'ratio':>6} {'back Δ':>7} {'reply Δ':>8}")
    for r in rows:
        print(f"{r['vm']:>16} {r['direction']:>4} {r['libvirt_downtime_ms']:>8} "
              f"{r['pause_ms']:7.1f} {r['resume_lag_ms']:6.1f} {r['client_downtime_ms']:7.1f} "
              f"{r['wire_silence_ms']:7.1f} {r['client_downtime_ms'] / r['wire_silence_ms']:6.3f} "
              f"{r['path_back_vs_wire_ms']:7.2f} {r['first_reply_vs_wire_ms']:8.2f}")
    close = [abs(r["pause_ms"] - r["libvirt_downtime_ms"]) <= interval_ms + 5 for r in rows
             if r["libvirt_downtime_ms"] is not None]
    ratios = [r["client_downtime_ms"] / r["wire_silence_ms"] for r in rows]
    print(f"pause within {interval_ms + 5:g} ms of libvirt's downtime: {sum(close)}/{len(close)} "
          f"({100.0 * sum(close) / max(len(close), 1):.0f} %, goal >= 90 %)")
    print(f"client downtime / wire silence: {min(ratios):.4f}-{max(ratios):.4f} "
          f"(goal 0.9-1.1 on every migration)")
    print(f"resume lag UDP median {statistics.median(r['resume_lag_ms'] for r in rows):.1f} ms, "
          f"ICMP median {statistics.median(r['icmp_resume_lag_ms'] for r in rows):.1f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
