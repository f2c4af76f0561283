"""A second prober, owing nothing to rally_lm's: its own process, sockets, clock and phase.

Sends ICMP echo (raw socket: the guest's kernel answers) and UDP echo (the
guest's agent answers) to every target every ``--interval`` seconds,
starting at a random phase, and records each request's send time and its
reply's arrival on the *wall* clock (the reply's kernel timestamp), until
SIGTERM or SIGINT; then writes them as JSON:

    {"interval": 0.007, "targets": {"10.0.0.5": {"icmp": [[seq, sent, replied|null],
     ...], "udp": [...]}}}

Deliberately written apart from rally_lm.probes: a check that shared the
tool's code, packets or timestamps would prove the tool's bookkeeping, not
its figure (docs/measurement.md).

    ip netns exec rlm-probe .venv/bin/python bench/second_prober.py 10.231.16.5 \
        --interval 0.007 --out second.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import signal
import socket
import struct
import time

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
MARK = b"2ND!"


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def icmp_request(ident: int, seq: int, index: int) -> bytes:
    payload = MARK + struct.pack("!HI", index, seq)
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq & 0xFFFF)
    return struct.pack("!BBHHH", 8, 0, checksum(header + payload), ident, seq & 0xFFFF) + payload


def arrival(ancillary) -> float:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            seconds, nanos = struct.unpack("qq", data[:16])
            return seconds + nanos * 1e-9
    return time.time()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="+")
    parser.add_argument("--interval", type=float, default=0.007)
    parser.add_argument("--udp-port", type=int, default=7)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    ident = random.randrange(1, 0xFFFF)
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for sock in (raw, udp):
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        sock.setblocking(False)
    index = {t: i for i, t in enumerate(args.targets)}
    records = {t: {"icmp": [], "udp": []} for t in args.targets}
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    seq = 0
    next_send = time.monotonic() + random.uniform(0.0, args.interval)
    draining_until = None
    while draining_until is None or time.monotonic() < draining_until:
        if stop and draining_until is None:
            draining_until = time.monotonic() + 0.5  # the last replies
        now = time.monotonic()
        if draining_until is None and now >= next_send:
            for target in args.targets:
                sent = time.time()
                for kind, sock, packet, where in (
                        ("icmp", raw, icmp_request(ident, seq, index[target]), (target, 0)),
                        ("udp", udp, MARK + struct.pack("!HI", index[target], seq),
                         (target, args.udp_port))):
                    try:
                        sock.sendto(packet, where)
                    except OSError:
                        pass
                    records[target][kind].append([seq, sent, None])
            seq += 1
            next_send += args.interval
            if next_send < now:  # starved: no burst, resume one interval on
                next_send = now + args.interval
        wait = 0.05 if draining_until is not None else max(0.0, next_send - time.monotonic())
        readable, _, _ = select.select([raw, udp], [], [], wait)
        for sock in readable:
            while True:
                try:
                    data, ancillary, _flags, (address, _port) = sock.recvmsg(2048, 256)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                when = arrival(ancillary)
                if sock is raw:
                    start = (data[0] & 0x0F) * 4
                    body = data[start:]
                    if len(body) < 18 or body[0] != 0 or body[8:12] != MARK or \
                            struct.unpack("!H", body[4:6])[0] != ident:
                        continue
                    _target, number = struct.unpack("!HI", body[12:18])
                    kind = "icmp"
                else:
                    if data[:4] != MARK or len(data) < 10:
                        continue
                    _target, number = struct.unpack("!HI", data[4:10])
                    kind = "udp"
                rows = records.get(address, {}).get(kind)
                if rows and number < len(rows) and rows[number][2] is None:
                    rows[number][2] = when
    with open(args.out + ".tmp", "w") as handle:
        json.dump({"interval": args.interval, "targets": records}, handle)
    os.replace(args.out + ".tmp", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
