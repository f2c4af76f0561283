"""Would batched syscalls make the downtime probe cheaper? (issue 13's overhead goal)

An experiment, not product code: ``BatchedProbe`` is the DowntimeProbe with
each round's requests sent by one ``sendmmsg`` and the replies read by
``recvmmsg`` (both through ctypes: Python's socket module has neither), so a
round of 6 targets costs 2 syscalls instead of 13. Same targets, rate and
echo services as bench/probe_overhead.py; the stock and the batched probe
alternate, UDP and ICMP together, several times, and every request is
checked answered.

    sudo .venv/bin/python bench/probe_batching.py --seconds 20 --repeats 3

Linux x86-64 only (the struct layouts below are its ABI).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import math
import socket
import statistics
import struct
import time

from probe_overhead import addresses, cpu_seconds, echo_services

from rally_lm.probes import downtime

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


class _IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [("msg_name", ctypes.c_void_p), ("msg_namelen", ctypes.c_uint32),
                ("msg_iov", ctypes.POINTER(_IoVec)), ("msg_iovlen", ctypes.c_size_t),
                ("msg_control", ctypes.c_void_p), ("msg_controllen", ctypes.c_size_t),
                ("msg_flags", ctypes.c_int)]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint)]


_libc.sendmmsg.argtypes = [ctypes.c_int, ctypes.POINTER(_MMsgHdr), ctypes.c_uint, ctypes.c_int]
_libc.recvmmsg.argtypes = [ctypes.c_int, ctypes.POINTER(_MMsgHdr), ctypes.c_uint, ctypes.c_int,
                           ctypes.c_void_p]
_MSG_DONTWAIT = 0x40
_SOCKADDR_IN = struct.Struct("=HH4s8x")
#: struct cmsghdr is a size_t length, then two ints; the timespec follows.
_TIMESTAMP_OFFSET = ctypes.sizeof(ctypes.c_size_t) + 8
_BATCH, _BUFFER, _CONTROL, _NAME = 64, 2048, 64, 16


class BatchedProbe(downtime.DowntimeProbe):
    """DowntimeProbe whose rounds go out in one sendmmsg and come back in recvmmsg batches."""

    def _prepare(self) -> None:
        count = len(self.addresses)
        port = self.udp_port if self.protocol == "udp" else 0
        self._out = [ctypes.create_string_buffer(64) for _ in range(count)]
        self._names = [ctypes.create_string_buffer(_SOCKADDR_IN.pack(
            socket.AF_INET, socket.htons(port), socket.inet_aton(a)), _NAME)
            for a in self.addresses]
        self._out_iov = (_IoVec * count)()
        self._out_vec = (_MMsgHdr * count)()
        for i in range(count):
            self._out_iov[i].iov_base = ctypes.addressof(self._out[i])
            header = self._out_vec[i].msg_hdr
            header.msg_name, header.msg_namelen = ctypes.addressof(self._names[i]), _NAME
            header.msg_iov, header.msg_iovlen = ctypes.pointer(self._out_iov[i]), 1
        self._in = ctypes.create_string_buffer(_BUFFER * _BATCH)
        self._in_control = ctypes.create_string_buffer(_CONTROL * _BATCH)
        self._in_names = ctypes.create_string_buffer(_NAME * _BATCH)
        self._in_iov = (_IoVec * _BATCH)()
        self._in_vec = (_MMsgHdr * _BATCH)()
        for i in range(_BATCH):
            self._in_iov[i].iov_base = ctypes.addressof(self._in) + _BUFFER * i
            self._in_iov[i].iov_len = _BUFFER
            header = self._in_vec[i].msg_hdr
            header.msg_name = ctypes.addressof(self._in_names) + _NAME * i
            header.msg_iov, header.msg_iovlen = ctypes.pointer(self._in_iov[i]), 1
            header.msg_control = ctypes.addressof(self._in_control) + _CONTROL * i
            header.msg_namelen, header.msg_controllen = _NAME, _CONTROL
        self._in_view = memoryview(self._in).cast("B")
        self._control_view = memoryview(self._in_control).cast("B")
        self._names_view = memoryview(self._in_names).cast("B")

    def start(self) -> BatchedProbe:
        self._prepare()
        return super().start()  # the stock loop, calling the two methods below

    def _packet(self, index: int, seq: int) -> bytes:
        payload = downtime._PAYLOAD.pack(downtime._MAGIC, self._token, index, seq)
        if self.protocol != "icmp":
            return payload
        ident = self._token & 0xFFFF
        header = downtime._ICMP_HEADER.pack(downtime._ICMP_ECHO_REQUEST, 0, 0, ident,
                                            seq & 0xFFFF)
        checksum = downtime._checksum(header + payload)
        return downtime._ICMP_HEADER.pack(downtime._ICMP_ECHO_REQUEST, 0, checksum, ident,
                                          seq & 0xFFFF) + payload

    def _send_round(self, count: int) -> list[float]:
        for index in range(count):
            packet = self._packet(index, len(self._timelines[index].sent))
            ctypes.memmove(self._out[index], packet, len(packet))
            self._out_iov[index].iov_len = len(packet)
        sent_at = time.monotonic()
        sent = _libc.sendmmsg(self._sock.fileno(), self._out_vec, count, 0)
        for index in range(max(sent, 0), count):
            self._timelines[index].errors += 1
        return [sent_at] * count

    def _receive_all(self) -> None:
        while True:
            count = _libc.recvmmsg(self._sock.fileno(), self._in_vec, _BATCH, _MSG_DONTWAIT,
                                   None)
            if count <= 0:
                return
            monotonic_now, wall_now = time.monotonic(), time.time()
            for i in range(count):
                entry = self._in_vec[i]
                length = entry.msg_len
                entry.msg_hdr.msg_namelen, entry.msg_hdr.msg_controllen = _NAME, _CONTROL
                data = bytes(self._in_view[_BUFFER * i:_BUFFER * i + length])
                address = socket.inet_ntoa(bytes(self._names_view[_NAME * i + 4:_NAME * i + 8]))
                seconds, nanoseconds = downtime._TIMESPEC.unpack_from(
                    self._control_view, _CONTROL * i + _TIMESTAMP_OFFSET)
                received = monotonic_now - (wall_now - (seconds + nanoseconds / 1e9))
                self._record_reply(data, address, min(received, monotonic_now))
            if count < _BATCH:
                return


def measure(probe_class: type[downtime.DowntimeProbe], targets: list[str], port: int,
            interval: float, seconds: float) -> dict:
    probes = [probe_class(targets, interval=interval, protocol="udp", udp_port=port),
              probe_class(targets, interval=interval, protocol="icmp")]
    cpu0, wall0 = cpu_seconds(), time.monotonic()
    for probe in probes:
        probe.start()
    time.sleep(seconds)
    cpu1, wall = cpu_seconds(), time.monotonic() - wall0
    timelines = [t for probe in probes for t in probe.stop()]
    sent = sum(len(t.sent) for t in timelines)
    answered = sum(1 for t in timelines for r in t.received if not math.isnan(r))
    return {"cpu": (cpu1[0] - cpu0[0] + cpu1[1] - cpu0[1]) / wall * 100,
            "user": (cpu1[0] - cpu0[0]) / wall * 100,
            "system": (cpu1[1] - cpu0[1]) / wall * 100,
            "sent": sent, "unanswered": sent - answered}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vms", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--interval", type=float, default=0.01)
    parser.add_argument("--port", type=int, default=7008)
    args = parser.parse_args()
    targets = addresses(args.vms)
    results: dict[str, list[dict]] = {"stock": [], "batched": []}
    with echo_services(targets, args.port):
        for _ in range(args.repeats):
            for label, probe_class in (("stock", downtime.DowntimeProbe),
                                       ("batched", BatchedProbe)):
                results[label].append(measure(probe_class, targets, args.port,
                                              args.interval, args.seconds))
    print(f"UDP + ICMP, {args.vms} targets, {1 / args.interval:.0f} Hz each, "
          f"{args.seconds:.0f} s x {args.repeats}")
    print(f"{'probe':<8} {'CPU % of a core (each run)':<28} {'median':>7} {'user':>6} "
          f"{'system':>7} {'unanswered':>11}")
    for label, runs in results.items():
        each = " ".join(f"{r['cpu']:.2f}" for r in runs)
        print(f"{label:<8} {each:<28} {statistics.median(r['cpu'] for r in runs):>7.2f} "
              f"{statistics.median(r['user'] for r in runs):>6.2f} "
              f"{statistics.median(r['system'] for r in runs):>7.2f} "
              f"{sum(r['unanswered'] for r in runs):>11}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
