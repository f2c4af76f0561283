"""Probe capacity: how many targets x what rate one probe thread sustains.

Targets are loopback addresses (127.0.1.1, 127.0.1.2, ...): the kernel
answers ICMP echo for all of 127/8, so nothing leaves the machine and every
loss is the probe's own (a "false loss"). For each (targets, interval) the
probe runs a few seconds; the script prints requests sent, replies, false
losses, the longest send gap and the CPU the probe process used.

    sudo .venv/bin/python bench/probe_capacity.py            # needs a raw socket
    .venv/bin/python bench/probe_capacity.py --udp           # UDP echo, no root
"""

from __future__ import annotations

import argparse
import resource
import time

from rally_lm.probes.downtime import DowntimeProbe
from rally_lm.probes.echo_server import EchoServer
from rally_lm.probes.timeline import find_disruptions


def targets(count: int) -> list[str]:
    return [f"127.0.{1 + i // 250}.{1 + i % 250}" for i in range(count)]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(count: int, interval: float, seconds: float, udp_port: int | None) -> dict:
    addresses = targets(count)
    probe = DowntimeProbe(addresses, interval=interval,
                          protocol="udp" if udp_port else "icmp", udp_port=udp_port,
                          reply_timeout=0.5)
    cpu0, wall0 = cpu_seconds(), time.monotonic()
    probe.start()
    time.sleep(seconds)
    timelines = probe.stop()
    cpu, wall = cpu_seconds() - cpu0, time.monotonic() - wall0
    sent = sum(t.requests_sent for t in timelines)
    replies = sum(t.replies for t in timelines)
    outages = sum(len(find_disruptions(t)[0]) for t in timelines)
    return {
        "targets": count, "interval_ms": interval * 1000, "rate_per_target":
        round(sent / count / seconds, 1), "sent": sent, "false_loss": sent - replies,
        "outages": outages, "max_send_gap_ms": round(max(t.max_send_gap_ms()
                                                         for t in timelines), 1),
        "cpu_percent_of_one_core": round(100 * cpu / wall, 1), "transport": probe.transport,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--udp", action="store_true",
                        help="probe a local UDP echo server instead of ICMP")
    args = parser.parse_args()
    servers = []
    udp_port = None
    if args.udp:
        servers = [EchoServer("0.0.0.0").start()]
        udp_port = servers[0].udp_port
    print("targets x rate: sustained with zero false loss?")
    for count, interval in ((6, 0.01), (100, 0.01), (250, 0.01), (500, 0.01), (1000, 0.01)):
        result = run(count, interval, args.seconds, udp_port)
        print(result)
    print("smallest interval for 6 targets without false loss:")
    for interval in (0.01, 0.005, 0.002, 0.001):
        result = run(6, interval, args.seconds, udp_port)
        print(result)
    for server in servers:
        server.stop()


if __name__ == "__main__":
    main()
