"""Millisecond downtime probe: echo requests to many targets from one thread.

Sends are scheduled on the monotonic clock (``ping -i 0.01`` manages only ~85
requests/s on a loaded 2-core host), every send and reply time is recorded,
and the analysis in :mod:`rally_lm.probes.timeline` works on those records.
A thread late by more than an interval (starved of CPU) skips the rounds it
missed instead of sending them in a burst: the gap in the send times is the
probe's blind spot, and the analysis states its resolution from those gaps.

Transports:

* ``icmp`` - ICMP echo through a raw socket (needs CAP_NET_RAW) or, where the
  kernel allows it (``net.ipv4.ping_group_range``), the unprivileged datagram
  ICMP socket. ``transport`` on the probe says which one was used.
* ``udp`` - datagrams to a UDP echo service (RFC 862), e.g. the guest agent.

A reply's time is the kernel's receive timestamp (``SO_TIMESTAMPNS``), not
the moment the probe thread got round to reading it: on a benchmark host
whose CPUs are busy (emulated guests, other probes) the thread can be late
by tens of milliseconds, and every outage would end that much late.
"""

from __future__ import annotations

import array
import errno
import math
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence

from rally_lm.probes.records import ProbeClock, TargetTimeline

MIN_INTERVAL = 0.001
#: Payload after the ICMP header / the whole UDP datagram.
_PAYLOAD = struct.Struct("!4sIII")
_MAGIC = b"RLMP"
_ICMP_ECHO_REQUEST = 8
_ICMP_ECHO_REPLY = 0
_ICMP_HEADER = struct.Struct("!BBHHH")
#: A whole echo request: the ICMP header, then the payload.
_ICMP_ECHO = struct.Struct("!BBHHH4sIII")


class ProbeError(Exception):
    """The probe cannot measure as asked; the message says what to fix."""


class ProbeNotPermitted(ProbeError):
    """Neither a raw nor a datagram ICMP socket may be opened here."""


_WORDS = {}


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    words = _WORDS.get(len(data))
    if words is None:
        words = _WORDS[len(data)] = struct.Struct(f"!{len(data) // 2}H")
    return _fold(sum(words.unpack(data)))


def _fold(total: int) -> int:
    """The Internet checksum (RFC 1071) of 16-bit words summing to ``total``."""
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _echo_checksum_base(token: int, index: int) -> int:
    """The sum of an echo request's words that do not change with the sequence number."""
    request = _ICMP_HEADER.pack(_ICMP_ECHO_REQUEST, 0, 0, token & 0xFFFF, 0) \
        + _PAYLOAD.pack(_MAGIC, token, index, 0)
    return sum(struct.unpack(f"!{len(request) // 2}H", request))


def _icmp_echo_request(token: int, index: int, seq: int, base: int) -> bytes:
    """Echo request ``seq`` to target ``index``; ``base`` is its _echo_checksum_base.

    The checksum is the base plus the sequence number's words (once in the
    header, 16 bits, once in the payload, 32): this runs 100 times a second
    per target, and _checksum's sum over the packet's words costs more.
    """
    checksum = _fold(base + 2 * (seq & 0xFFFF) + (seq >> 16))
    return _ICMP_ECHO.pack(_ICMP_ECHO_REQUEST, 0, checksum, token & 0xFFFF, seq & 0xFFFF,
                           _MAGIC, token, index, seq)


def open_icmp_socket() -> tuple[socket.socket, str]:
    """Open the best ICMP socket permitted: ('raw' or 'datagram')."""
    try:
        return socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP), "raw"
    except PermissionError:
        pass
    try:
        return socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP), "datagram"
    except PermissionError as exc:
        low, high = _ping_group_range()
        raise ProbeNotPermitted(
            "ICMP probing is not permitted: no CAP_NET_RAW for a raw socket and gid "
            f"{os.getgid()} is outside net.ipv4.ping_group_range ({low} {high}). Run as root, "
            "grant CAP_NET_RAW, widen ping_group_range, or use the UDP probe (--udp PORT)."
        ) from exc


PING_GROUP_RANGE = "/proc/sys/net/ipv4/ping_group_range"


def _ping_group_range(path: str = PING_GROUP_RANGE) -> tuple[int, int]:
    """The gids allowed unprivileged ICMP sockets; (1, 0), i.e. none, if unreadable."""
    try:
        with open(path) as handle:
            low, high = handle.read().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 1, 0


# Python does not name them; the value is Linux's asm-generic/socket.h
# (SO_TIMESTAMPNS_OLD: a native struct timespec, which on 64-bit is 64-bit).
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
_TIMESPEC = struct.Struct("@qq")
# Linux's linux/icmp.h: a raw ICMP socket's filter, a bit mask of the types to drop.
SOL_RAW, ICMP_FILTER = 255, 1
_ANCILLARY_SPACE = socket.CMSG_SPACE(_TIMESPEC.size)


def arrival_time(ancillary: list[tuple[int, int, bytes]], monotonic_now: float,
                 wall_now: float) -> float:
    """When the kernel received a datagram, on the monotonic clock.

    ``ancillary`` is ``recvmsg``'s; its ``SCM_TIMESTAMPNS`` is wall-clock time,
    moved onto the monotonic clock by the offset between the two clocks read
    now. Without a timestamp, or with one from the future (the wall clock
    stepped), the read time stands.
    """
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS \
                and len(data) >= _TIMESPEC.size:
            seconds, nanoseconds = _TIMESPEC.unpack_from(data)
            received = monotonic_now - (wall_now - (seconds + nanoseconds / 1e9))
            return min(received, monotonic_now)
    return monotonic_now


class DowntimeProbe:
    """Probe several targets at a fixed interval until stopped.

    ``start()`` launches the probe thread; ``stop()`` stops sending, waits
    ``reply_timeout`` for the last replies and returns one
    :class:`TargetTimeline` per target. ``snapshot()`` copies the timelines
    while running (for hooks that report as they go).
    """

    def __init__(
        self,
        targets: Sequence[str],
        interval: float = 0.01,
        protocol: str = "icmp",
        udp_port: int | None = None,
        reply_timeout: float = 1.0,
    ) -> None:
        if not targets:
            raise ProbeError("no probe target given")
        if interval < MIN_INTERVAL:
            raise ProbeError(f"interval {interval * 1000:g} ms is below the minimum of 1 ms")
        if protocol not in ("icmp", "udp"):
            raise ProbeError(f"unknown probe protocol {protocol!r} (icmp or udp)")
        if protocol == "udp" and not udp_port:
            raise ProbeError("the UDP probe needs the target's UDP echo port")
        self.addresses = [self._resolve(t) for t in targets]
        if len(set(self.addresses)) != len(self.addresses):
            raise ProbeError("the same target is listed twice")
        self.targets = list(targets)
        self.interval = interval
        self.protocol = protocol
        self.udp_port = udp_port
        self.reply_timeout = reply_timeout
        self.transport = ""
        self._token = int.from_bytes(os.urandom(4), "big")
        self._index = {addr: i for i, addr in enumerate(self.addresses)}
        self._destinations = [(addr, udp_port if protocol == "udp" else 0)
                              for addr in self.addresses]
        self._checksum_bases = [_echo_checksum_base(self._token, i)
                                for i in range(len(self.addresses))]
        self._sock = self._open_socket()
        self.clock = ProbeClock.now()
        self._timelines = [
            TargetTimeline(target=t, protocol=protocol, interval=interval, clock=self.clock)
            for t in self.targets
        ]
        self._lock = threading.Lock()
        #: Per target: the last reply's arrival, and the latest span between two
        #: arrivals longer than ``gap_threshold`` (a hint for whoever waits for an
        #: outage to end; the analysis never uses it).
        self.gap_threshold = max(3 * interval, 0.05)
        self._last_arrival = [math.nan] * len(self.targets)
        self._last_gap: list[tuple[float, float] | None] = [None] * len(self.targets)
        self._thread: _ProbeThread | None = None
        self.failure: BaseException | None = None
        #: When the probe thread failed (monotonic): later records are incomplete.
        self.failed_at: float | None = None

    @staticmethod
    def _resolve(target: str) -> str:
        try:
            return socket.gethostbyname(target)
        except OSError as exc:
            raise ProbeError(f"cannot resolve probe target {target!r}: {exc}") from exc

    def _open_socket(self) -> socket.socket:
        if self.protocol == "icmp":
            sock, self.transport = open_icmp_socket()
            if self.transport == "raw":
                # A raw ICMP socket gets a copy of every ICMP packet the host
                # receives; let the kernel drop all but echo replies.
                sock.setsockopt(SOL_RAW, ICMP_FILTER,
                                struct.pack("I", 0xFFFFFFFF & ~(1 << _ICMP_ECHO_REPLY)))
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.transport = "udp"
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setblocking(False)
        return sock

    # -- life cycle ---------------------------------------------------------

    def start(self) -> DowntimeProbe:
        start_together([self])
        return self

    def stop(self, raise_on_failure: bool = True) -> list[TargetTimeline]:
        """Stop probing; the timelines, up to ``failed_at`` if the probe thread failed.

        With ``raise_on_failure`` a failed probe raises ProbeError instead.
        Probes started together stop together: the first stop ends the
        shared thread (after the longest ``reply_timeout`` among them).
        """
        if self._thread is not None:
            self._thread.stop()
        self._sock.close()
        if self.failure is not None and raise_on_failure:
            raise ProbeError(f"downtime probe failed: {self.failure}") from self.failure
        return self._timelines

    def snapshot(self) -> list[TargetTimeline]:
        with self._lock:
            return [
                TargetTimeline(
                    target=t.target,
                    protocol=t.protocol,
                    interval=t.interval,
                    clock=t.clock,
                    sent=array.array("d", t.sent),
                    received=array.array("d", t.received),
                    duplicates=t.duplicates,
                    errors=t.errors,
                )
                for t in self._timelines
            ]

    def __enter__(self) -> DowntimeProbe:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        if self._thread is not None and not self._thread.stopping.is_set():
            self.stop()

    # -- one round, called by the probe thread -------------------------------

    def _send_and_record(self) -> None:
        sent = self._send_round(len(self.addresses))
        with self._lock:
            for timeline, sent_at in zip(self._timelines, sent, strict=True):
                timeline.sent.append(sent_at)
                timeline.received.append(math.nan)

    def _send_round(self, count: int) -> list[float]:
        """Send every target its next request; when each was sent."""
        return [self._send(index) for index in range(count)]

    def _send(self, index: int) -> float:
        """Send target ``index`` its next request; when it was sent (recorded by the caller)."""
        timeline = self._timelines[index]
        seq = len(timeline.sent)
        if self.protocol == "icmp":
            packet = _icmp_echo_request(self._token, index, seq, self._checksum_bases[index])
        else:
            packet = _PAYLOAD.pack(_MAGIC, self._token, index, seq)
        # Stamped before the call: the reply's kernel timestamp can come before
        # sendto returns (loopback), and a round trip is never negative.
        sent_at = time.monotonic()
        try:
            self._sock.sendto(packet, self._destinations[index])
        except OSError as exc:
            if exc.errno not in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EAGAIN,
                                 errno.ENOBUFS, errno.EHOSTDOWN, errno.ECONNREFUSED):
                raise
            timeline.errors += 1
        return sent_at

    def _receive_all(self) -> None:
        replies = []
        receive = self._sock.recvmsg
        while True:
            try:
                data, ancillary, _flags, (address, _port) = receive(2048, _ANCILLARY_SPACE)
            except (BlockingIOError, InterruptedError):
                break
            except ConnectionRefusedError:
                # ICMP port unreachable from a UDP target: counts as no reply.
                continue
            replies.append((data, address, ancillary))
        if not replies:
            return
        # Read after the last datagram, so none arrived later than this.
        monotonic_now, wall_now = time.monotonic(), time.time()
        with self._lock:
            for data, address, ancillary in replies:
                self._record_reply(data, address,
                                   arrival_time(ancillary, monotonic_now, wall_now))

    def _record_reply(self, data: bytes, address: str, now: float) -> None:
        """Record one reply (the caller holds the lock while the probe runs)."""
        offset = 0
        if self.protocol == "icmp":
            if self.transport == "raw":
                offset = (data[0] & 0x0F) * 4
            if len(data) < offset + _ICMP_HEADER.size + _PAYLOAD.size \
                    or data[offset] != _ICMP_ECHO_REPLY:
                return
            offset += _ICMP_HEADER.size
        if len(data) < offset + _PAYLOAD.size:
            return
        magic, token, index, seq = _PAYLOAD.unpack_from(data, offset)
        if magic != _MAGIC or token != self._token or self._index.get(address) != index:
            return
        timeline = self._timelines[index]
        if seq >= len(timeline.received):
            return
        if timeline.received[seq] == timeline.received[seq]:  # not NaN: a duplicate
            timeline.duplicates += 1
        else:
            timeline.received[seq] = now
            last = self._last_arrival[index]
            if now - last > self.gap_threshold:
                self._last_gap[index] = (last, now)
            if not now <= last:  # NaN at first
                self._last_arrival[index] = now

    def last_reply_gap(self, target: str) -> tuple[float, float] | None:
        """The latest span without replies from ``target`` longer than ``gap_threshold``:
        (last reply before it, first reply after it), probe clock; None if none yet."""
        with self._lock:
            return self._last_gap[self.targets.index(target)]


def start_together(probes: Sequence[DowntimeProbe]) -> None:
    """Start probes of the same interval on one thread, e.g. UDP and ICMP.

    Every wake-up costs CPU of its own (on the benchmark host a bare 100 Hz
    thread takes 0.9 % of a core, and each round runs on cold caches), so
    two transports at one rate on one thread save a wake-up a round: 0.8
    points of a core for UDP + ICMP to 6 targets at 100 Hz
    (bench/probe_overhead.py). The probes share one clock reading, and a
    probe that fails stops alone: the others keep probing.
    """
    if not probes:
        raise ProbeError("no probe to start")
    if len({probe.interval for probe in probes}) > 1:
        raise ProbeError("probes started together need the same interval")
    if any(probe._thread is not None for probe in probes):
        raise ProbeError("a probe can be started only once")
    thread = _ProbeThread(probes)
    for probe in probes:
        probe._thread = thread
    thread.start()


class _ProbeThread:
    """The thread that sends each round and reads the replies of one or more probes."""

    def __init__(self, probes: Sequence[DowntimeProbe]) -> None:
        self.probes = list(probes)
        self.interval = self.probes[0].interval
        self.reply_timeout = max(probe.reply_timeout for probe in self.probes)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="downtime-probe", daemon=True)

    def start(self) -> None:
        clock = ProbeClock.now()
        for probe in self.probes:
            probe.clock = clock
            for timeline in probe._timelines:
                timeline.clock = clock
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join()

    def _run(self) -> None:
        # One round of requests, one per target and probe, each interval: the
        # thread wakes once per round instead of once per request (its CPU cost
        # is mostly wake-ups), and requests to different targets never queue
        # behind each other anywhere but in a socket's send buffer (microseconds).
        active = self.probes
        next_send = time.monotonic()
        stop_at = None
        while active:
            now = time.monotonic()
            if stop_at is None and self.stopping.is_set():
                stop_at = now + self.reply_timeout
            if stop_at is not None:
                if now >= stop_at:
                    break
            elif now >= next_send:
                active = _each(active, DowntimeProbe._send_and_record)
                next_send += self.interval
                if next_send <= now:
                    # Starved of CPU for an interval or more: skip the rounds
                    # missed rather than send them in a burst (the send times
                    # show the gap); the round just sent went out at ``now``.
                    next_send = now + self.interval
            # Replies carry the kernel's receive time, so reading them once a
            # round loses nothing; waking for each one would cost a wake-up each.
            wake = stop_at if stop_at is not None else next_send
            delay = wake - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            active = _each(active, DowntimeProbe._receive_all)


def _each(probes: list[DowntimeProbe], step: Callable[[DowntimeProbe], None]
          ) -> list[DowntimeProbe]:
    """Run ``step`` for every probe; those it raised for are failed and left out."""
    alive = []
    for probe in probes:
        try:
            step(probe)
        except Exception as exc:  # noqa: BLE001 - surfaced by the probe's stop()
            probe.failed_at = time.monotonic()
            probe.failure = exc
        else:
            alive.append(probe)
    return alive
