"""What probing costs the benchmark host: UDP echo + kernel ICMP echo + TCP streams.

The Rally scenario's probing of 6 VMs, against loopback stand-ins: a UDP echo
request every 10 ms per VM, an ICMP echo request every 10 ms per VM (raw
socket: run as root) and a 100 kB/s verified TCP stream per VM. The echo
services run in a child process, so the CPU counted is the probes' alone
(this process's user + system time over the window).

    sudo .venv/bin/python bench/probe_overhead.py --vms 6 --seconds 30

Goal (issue 13): at most 5 % of one core for 6 VMs x 100 Hz UDP + ICMP.
The system share includes work a real network does elsewhere: on loopback
the kernel delivers each request to the echo service, and answers each
ICMP echo, inside the probe's own send call.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import resource
import time
from collections.abc import Iterator

from rally_lm.probes.downtime import DowntimeProbe
from rally_lm.probes.echo_server import EchoServer
from rally_lm.probes.tcp_continuity import TcpContinuityProbe
from rally_lm.probes.timeline import find_disruptions


def addresses(count: int) -> list[str]:
    return [f"127.0.3.{1 + i}" for i in range(count)]


def serve(targets: list[str], port: int, ready, stop) -> None:
    servers = [EchoServer(a, tcp_port=port, udp_port=port).start() for a in targets]
    ready.set()
    stop.wait()
    for server in servers:
        server.stop()


@contextlib.contextmanager
def echo_services(targets: list[str], port: int) -> Iterator[None]:
    """UDP and TCP echo services on every target address, in a child process."""
    ready, stop = multiprocessing.Event(), multiprocessing.Event()
    server = multiprocessing.Process(target=serve, args=(targets, port, ready, stop))
    server.start()
    ready.wait(10)
    try:
        yield
    finally:
        stop.set()
        server.join(10)


def cpu_seconds() -> tuple[float, float]:
    """(user, system) CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vms", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=0.01)
    parser.add_argument("--tcp-rate", type=float, default=102400.0)
    parser.add_argument("--port", type=int, default=7007)
    args = parser.parse_args()
    targets = addresses(args.vms)
    rows = []
    with echo_services(targets, args.port):
        for label, use_icmp, use_tcp in (("UDP", False, False), ("UDP + ICMP", True, False),
                                         ("UDP + ICMP + TCP", True, True)):
            probes = [DowntimeProbe(targets, interval=args.interval, protocol="udp",
                                    udp_port=args.port)]
            if use_icmp:
                probes.append(DowntimeProbe(targets, interval=args.interval, protocol="icmp"))
            tcp = TcpContinuityProbe(targets, args.port, rate_bytes_per_s=args.tcp_rate) \
                if use_tcp else None
            cpu0, wall0 = cpu_seconds(), time.monotonic()
            for probe in probes:
                probe.start()
            if tcp is not None:
                tcp.start()
            time.sleep(args.seconds)
            # The window is the steady state: stopping (draining late replies) is not.
            end = time.monotonic()
            cpu1 = cpu_seconds()
            user, system = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
            wall = end - wall0
            # TCP first: it sends until stopped, and the rate counts the window only.
            streams = tcp.stop() if tcp is not None else []
            timelines = [t for probe in probes for t in probe.stop()]
            sent = sum(sum(1 for s in t.sent if s <= end) for t in timelines)
            rate = sent / wall / len(timelines)
            lost = sum(len(find_disruptions(t)[0]) for t in timelines)
            tcp_rate = sum(s.bytes_sent for s in streams) / wall / len(targets) \
                if streams else None
            rows.append((label, (user + system) / wall * 100, user / wall * 100,
                         system / wall * 100, rate, tcp_rate, lost,
                         sum(s.bytes_lost for s in streams)))
    print(f"{args.vms} targets, {1 / args.interval:.0f} Hz each, {args.seconds:.0f} s per row")
    print(f"{'probing':<18} {'CPU % of a core':>16} {'user':>6} {'system':>7} "
          f"{'req/s per target':>17} {'TCP B/s per target':>19} {'outages':>8} "
          f"{'TCP bytes lost':>15}")
    for label, cpu, user, system, rate, tcp_rate, lost, tcp_lost in rows:
        tcp = f"{tcp_rate:>19.0f}" if tcp_rate is not None else f"{'-':>19}"
        print(f"{label:<18} {cpu:>16.1f} {user:>6.1f} {system:>7.1f} {rate:>17.1f} {tcp} "
              f"{lost:>8} {tcp_lost:>15}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
