"""``rally-lm probe``: downtime and TCP continuity for a fixed time."""

from __future__ import annotations

import argparse
import json
import sys
import time

from rally_lm.probes.downtime import DowntimeProbe, ProbeError
from rally_lm.probes.summary import raw_timeline, tcp_summary, timeline_summary
from rally_lm.probes.tcp_continuity import TcpContinuityProbe


def run(args: argparse.Namespace) -> int:
    if args.duration <= 0:
        print("rally-lm probe: --duration must be positive", file=sys.stderr)
        return 2
    try:
        probe = DowntimeProbe(
            args.targets,
            interval=args.interval,
            protocol="udp" if args.udp else "icmp",
            udp_port=args.udp,
        )
        tcp = (
            TcpContinuityProbe(args.targets, args.tcp, rate_bytes_per_s=args.tcp_rate)
            if args.tcp
            else None
        )
    except (ProbeError, ValueError, OSError) as exc:
        print(f"rally-lm probe: {exc}", file=sys.stderr)
        return 2

    try:
        if tcp is not None:
            tcp.start()
    except ConnectionError as exc:
        print(f"rally-lm probe: {exc}", file=sys.stderr)
        return 2
    probe.start()
    try:
        time.sleep(args.duration)
    except KeyboardInterrupt:
        pass
    timelines = probe.stop()
    tcp_results = tcp.stop() if tcp is not None else []

    report = []
    for index, timeline in enumerate(timelines):
        entry = timeline_summary(timeline, probe.transport)
        if args.raw:
            entry["timeline"] = raw_timeline(timeline)
        if tcp is not None:
            entry["tcp"] = tcp_summary(tcp_results[index], tcp.clock)
        report.append(entry)

    if args.json:
        json.dump({"targets": report}, sys.stdout, indent=2)
        print()
    else:
        _print_table(report)
    unmeasured = [e["target"] for e in report if not e["measured"]]
    if unmeasured:
        print(f"rally-lm probe: no reply at all from {', '.join(unmeasured)}: "
              "nothing was measured for them", file=sys.stderr)
        return 1
    return 0


def _print_table(report: list[dict]) -> None:
    print(f"{'target':<18} {'transport':<9} {'sent':>7} {'replies':>7} {'outages':>7} "
          f"{'longest ms':>10} {'send gap ms':>11}")
    for entry in report:
        print(f"{entry['target']:<18} {entry['transport']:<9} {entry['requests']:>7} "
              f"{entry['replies']:>7} {len(entry['outages']):>7} "
              f"{entry['longest_outage_ms']:>10.1f} {entry['max_send_gap_ms']:>11.1f}")
        for outage in entry["outages"]:
            print(f"    outage {outage['duration_ms']:.1f} ms, {outage['lost']} lost, "
                  f"{outage['late']} late (max {outage['max_late_ms']:.1f} ms)")
        tcp = entry.get("tcp")
        if tcp:
            kept = "kept" if tcp["original_connection_survived"] else "LOST"
            print(f"    tcp: sent {tcp['bytes_sent']} verified {tcp['bytes_verified']} "
                  f"lost {tcp['bytes_lost']} corrupted {tcp['bytes_corrupted']} "
                  f"resets {tcp['resets']} max stall {tcp['max_stall_ms']:.1f} ms "
                  f"original connection {kept}")
