"""What probing costs the benchmark host: UDP echo + kernel ICMP echo + TCP streams.

The Rally scenario's probing of 6 VMs, against loopback stand-ins: a UDP echo
request every 10 ms per VM, an ICMP echo request every 10 ms per VM (raw
socket: run as root) and a 100 kB/s verified TCP stream per VM. The echo
services run in a child process, so the CPU counted is the probes' alone
(this process's user + system time over the window).

    sudo .venv/bin/python bench/probe_overhead.py --vms 6 --seconds 20 --repeats 5

Goal (issue 13): at most 5 % of one core for 6 VMs x 100 Hz UDP + ICMP.
The scenario sends UDP and ICMP from one thread (``start_together``); the
"2 threads" row starts each on its own, to show what sharing saves. This
machine's figures vary by a point or two between runs of the same row, so
``--repeats`` alternates the rows and the table gives each one's median.
CPU is this process's user + system time (the probe threads, and the main
thread asleep); the kernel accounts it by tick, so only the sum is exact.
On loopback the system share includes work a real network does elsewhere:
the kernel delivers each request to the echo service, and answers each ICMP
echo, inside the probe's own send call. ``--network tun`` takes that work
off the probe, as a NIC would: in a namespace of its own (``rlm-bench``,
removed afterwards) the targets sit behind a TUN device whose other end is
a child process answering UDP and ICMP echoes, so the probe's send ends
when the packet is queued to the device and the reply's delivery is the
child's. No TCP row there (the child speaks no TCP).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import multiprocessing
import os
import resource
import select
import statistics
import struct
import subprocess
import time
from collections.abc import Iterator

from rally_lm.probes.downtime import DowntimeProbe, _checksum, start_together
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


BENCH_NETNS = "rlm-bench"
TUN_NAME = "rlmbench0"
TUN_NET = "10.253.0"
_TUNSETIFF, _IFF_TUN, _IFF_NO_PI = 0x400454CA, 0x0001, 0x1000
_CLONE_NEWNET = 0x40000000


def enter_bench_namespace() -> None:
    """Move this process (before any thread or socket) into a fresh namespace of its own."""
    subprocess.run(["ip", "netns", "delete", BENCH_NETNS], capture_output=True)
    subprocess.run(["ip", "netns", "add", BENCH_NETNS], check=True)
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{BENCH_NETNS}", os.O_RDONLY)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns into the bench namespace")
    finally:
        os.close(fd)
    # The namespace lives while this process does; its name goes now.
    subprocess.run(["ip", "netns", "delete", BENCH_NETNS], check=True)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)


def echo_reply(packet: bytes, udp_port: int) -> bytes | None:
    """The reply an echo service would send to this IPv4 packet, or None."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    header = (packet[0] & 0x0F) * 4
    reply = bytearray(packet)
    # Swapping the addresses leaves the IP header's checksum as it was.
    reply[12:16], reply[16:20] = packet[16:20], packet[12:16]
    if packet[9] == 17 and struct.unpack_from("!H", packet, header + 2)[0] == udp_port:
        reply[header:header + 4] = packet[header + 2:header + 4] + packet[header:header + 2]
        reply[header + 6:header + 8] = b"\0\0"  # no UDP checksum (allowed over IPv4)
        return bytes(reply)
    if packet[9] == 1 and packet[header] == 8:
        reply[header] = 0
        reply[header + 2:header + 4] = b"\0\0"
        struct.pack_into("!H", reply, header + 2, _checksum(bytes(reply[header:])))
        return bytes(reply)
    return None


def tun_responder(port: int, ready, stop) -> None:
    """The far end of the TUN device: answers UDP and ICMP echoes (a child process)."""
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", TUN_NAME.encode(), _IFF_TUN | _IFF_NO_PI))
    subprocess.run(["ip", "addr", "add", f"{TUN_NET}.1/24", "dev", TUN_NAME], check=True)
    subprocess.run(["ip", "link", "set", TUN_NAME, "up"], check=True)
    ready.set()
    while not stop.is_set():
        if not select.select([fd], [], [], 0.2)[0]:
            continue
        reply = echo_reply(os.read(fd, 65536), port)
        if reply is not None:
            os.write(fd, reply)
    os.close(fd)


@contextlib.contextmanager
def tun_network(port: int) -> Iterator[None]:
    ready, stop = multiprocessing.Event(), multiprocessing.Event()
    responder = multiprocessing.Process(target=tun_responder, args=(port, ready, stop))
    responder.start()
    if not ready.wait(10):
        responder.kill()
        raise RuntimeError("the TUN responder did not come up")
    try:
        yield
    finally:
        stop.set()
        responder.join(10)


def cpu_seconds() -> tuple[float, float]:
    """(user, system) CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def measure(targets: list[str], args: argparse.Namespace, use_icmp: bool, together: bool,
            use_tcp: bool) -> tuple:
    """One row: probe for ``args.seconds``; (CPU %, user %, system %, req/s, TCP B/s, ...)."""
    probes = [DowntimeProbe(targets, interval=args.interval, protocol="udp",
                            udp_port=args.port)]
    if use_icmp:
        probes.append(DowntimeProbe(targets, interval=args.interval, protocol="icmp"))
    tcp = TcpContinuityProbe(targets, args.port, rate_bytes_per_s=args.tcp_rate) \
        if use_tcp else None
    cpu0, wall0 = cpu_seconds(), time.monotonic()
    if together:
        start_together(probes)
    else:
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
    tcp_rate = sum(s.bytes_sent for s in streams) / wall / len(targets) if streams else None
    return ((user + system) / wall * 100, user / wall * 100, system / wall * 100, rate,
            tcp_rate, lost, sum(s.bytes_lost for s in streams))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vms", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=0.01)
    parser.add_argument("--tcp-rate", type=float, default=102400.0)
    parser.add_argument("--port", type=int, default=7007)
    parser.add_argument("--repeats", type=int, default=1,
                        help="measure every row this many times, alternating; "
                             "the table gives each row's median")
    parser.add_argument("--network", choices=["loopback", "tun"], default="loopback",
                        help="loopback echo services, or targets behind a TUN device "
                             "answered by another process (root)")
    args = parser.parse_args()
    # (label, ICMP too, UDP and ICMP on one thread, TCP streams too)
    kinds = [("UDP", False, True, False),
             ("UDP + ICMP, 2 threads", True, False, False),
             ("UDP + ICMP", True, True, False)]
    if args.network == "tun":
        enter_bench_namespace()
        targets = [f"{TUN_NET}.{2 + i}" for i in range(args.vms)]
        network = tun_network(args.port)
    else:
        targets = addresses(args.vms)
        network = echo_services(targets, args.port)
        kinds.append(("UDP + ICMP + TCP", True, True, True))
    runs: dict[str, list[tuple]] = {kind[0]: [] for kind in kinds}
    with network:
        for _ in range(args.repeats):
            for label, use_icmp, together, use_tcp in kinds:
                runs[label].append(measure(targets, args, use_icmp, together, use_tcp))
    print(f"{args.vms} targets over {args.network}, {1 / args.interval:.0f} Hz each, "
          f"{args.seconds:.0f} s per row, {args.repeats} alternating run(s) per row")
    print(f"{'probing':<22} {'CPU % of a core':>16} {'runs':>24} "
          f"{'req/s per target':>17} {'TCP B/s per target':>19} {'outages':>8} "
          f"{'TCP bytes lost':>15}")
    for label, measured in runs.items():
        cpu = statistics.median(row[0] for row in measured)
        each = " ".join(f"{row[0]:.1f}" for row in measured)
        rate = min(row[3] for row in measured)
        tcp_rates = [row[4] for row in measured if row[4] is not None]
        tcp = f"{min(tcp_rates):>19.0f}" if tcp_rates else f"{'-':>19}"
        lost = sum(row[5] for row in measured)
        tcp_lost = sum(row[6] for row in measured)
        print(f"{label:<22} {cpu:>16.1f} {each:>24} {rate:>17.1f} {tcp} "
              f"{lost:>8} {tcp_lost:>15}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
