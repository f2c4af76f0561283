"""Byte-exact TCP continuity probe against echo services (RFC 862).

One long-lived connection per target carries fixed-size records - magic,
sequence number, a payload derived from the sequence number and a CRC32 - at
a steady rate. Every byte echoed back is compared with what was sent, so the
probe can tell intact, lost (connection reset with bytes in flight, or a
sequence gap) and corrupted bytes apart, and it times every span in which
bytes were outstanding and nothing was verified (a stall).

The sockets keep the kernel's default retransmission behaviour, so a stall is
what an ordinary application sees: the path outage rounded up to TCP's next
retransmission (0.2, 0.6, 1.4, 3.0 s ... after the first lost segment).
"""

from __future__ import annotations

import dataclasses
import errno
import selectors
import socket
import struct
import threading
import time
import zlib
from collections.abc import Sequence

from rally_lm.probes.records import ProbeClock, TcpContinuity, TcpStall

RECORD_SIZE = 256
#: Seconds between rounds of sends: records due in between go out together,
#: stamped with the round's time (far below the stall threshold).
SEND_ROUND = 0.01
_HEADER = struct.Struct("!4sQ")
_TRAILER = struct.Struct("!I")
_MAGIC = b"RLMT"
_BODY_SIZE = RECORD_SIZE - _HEADER.size - _TRAILER.size


def make_record(seq: int) -> bytes:
    """The record with sequence number ``seq``; anyone can rebuild it."""
    seed = struct.pack("!Q", seq)
    body = (seed * (_BODY_SIZE // len(seed) + 1))[:_BODY_SIZE]
    head = _HEADER.pack(_MAGIC, seq)
    return head + body + _TRAILER.pack(zlib.crc32(head + body))


def parse_record(data: bytes) -> tuple[int, bool] | None:
    """(seq, crc_ok) of a record, or None if it does not even look like one."""
    magic, seq = _HEADER.unpack_from(data)
    if magic != _MAGIC:
        return None
    (crc,) = _TRAILER.unpack_from(data, RECORD_SIZE - _TRAILER.size)
    return seq, crc == zlib.crc32(data[: RECORD_SIZE - _TRAILER.size])


@dataclasses.dataclass
class _Stream:
    """State of one target's connection (replaced on reconnect)."""

    result: TcpContinuity
    address: tuple[str, int]
    sock: socket.socket | None = None
    connecting: bool = False
    next_seq: int = 0
    expected_seq: int = 0
    outbox: bytearray = dataclasses.field(default_factory=bytearray)
    inbox: bytearray = dataclasses.field(default_factory=bytearray)
    send_times: dict[int, float] = dataclasses.field(default_factory=dict)
    conn_sent: int = 0
    conn_verified: int = 0
    last_progress: float = 0.0
    retry_at: float = 0.0
    connections: int = 0
    #: Set while the stream is broken: when it stopped making progress.
    stalled_since: float | None = None


class TcpContinuityProbe:
    """Stream records to every target until stopped; one thread for all."""

    def __init__(
        self,
        targets: Sequence[str],
        port: int,
        rate_bytes_per_s: float = 10_240.0,
        stall_threshold: float = 0.1,
        connect_timeout: float = 5.0,
    ) -> None:
        if not targets:
            raise ValueError("no TCP continuity target given")
        if not 0 < port < 65536:
            raise ValueError(f"TCP port {port} is out of range")
        if rate_bytes_per_s < RECORD_SIZE:
            raise ValueError(f"rate must be at least one {RECORD_SIZE}-byte record per second")
        self.port = port
        self.record_interval = RECORD_SIZE / rate_bytes_per_s
        self.stall_threshold = stall_threshold
        self.connect_timeout = connect_timeout
        self._streams = [
            _Stream(
                result=TcpContinuity(target=t, port=port),
                address=(socket.gethostbyname(t), port),
            )
            for t in targets
        ]
        self._selector = selectors.DefaultSelector()
        self._stopping = threading.Event()
        # Read by the probe thread as soon as _stopping is set: set it first.
        self._drain = 2.0
        self._thread: threading.Thread | None = None
        self.failure: BaseException | None = None
        self.clock = ProbeClock.now()

    def start(self) -> TcpContinuityProbe:
        """Connect to every target (failing loudly if one refuses), then stream."""
        self.clock = ProbeClock.now()
        for stream in self._streams:
            self._connect(stream, blocking=True)
        self._thread = threading.Thread(target=self._run, name="tcp-continuity", daemon=True)
        self._thread.start()
        return self

    def stop(self, drain: float = 2.0) -> list[TcpContinuity]:
        """Stop sending, give echoes ``drain`` seconds to return, then close."""
        self._drain = drain
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        now = time.monotonic()
        for stream in self._streams:
            self._close(stream, now, reason=None)
            if stream.stalled_since is not None:
                # Never got going again: the stall lasts until the probe stopped.
                stream.result.stalls.append(TcpStall(
                    start=stream.stalled_since, end=now, disconnected=True, ongoing=True))
                stream.stalled_since = None
        self._selector.close()
        if self.failure is not None:
            raise RuntimeError(f"TCP continuity probe failed: {self.failure}") from self.failure
        return [s.result for s in self._streams]

    # -- connections --------------------------------------------------------

    def _connect(self, stream: _Stream, blocking: bool = False) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if blocking:
            sock.settimeout(self.connect_timeout)
            try:
                sock.connect(stream.address)
            except OSError as exc:
                sock.close()
                raise ConnectionError(
                    f"TCP echo service {stream.address[0]}:{stream.address[1]} "
                    f"is not reachable: {exc}"
                ) from exc
            sock.setblocking(False)
            self._opened(stream, sock, time.monotonic())
            return
        sock.setblocking(False)
        code = sock.connect_ex(stream.address)
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            stream.retry_at = time.monotonic() + 0.2
            return
        stream.sock = sock
        stream.connecting = True
        self._selector.register(sock, selectors.EVENT_WRITE, stream)

    def _opened(self, stream: _Stream, sock: socket.socket, now: float) -> None:
        stream.sock = sock
        stream.connecting = False
        stream.connections += 1
        stream.result.connected = True
        if stream.connections == 1:
            stream.result.original_connection_survived = True
        else:
            stream.result.reconnects += 1
        stream.expected_seq = stream.next_seq
        stream.conn_sent = stream.conn_verified = 0
        stream.last_progress = now
        try:
            self._selector.register(sock, selectors.EVENT_READ, stream)
        except KeyError:
            self._selector.modify(sock, selectors.EVENT_READ, stream)

    def _close(self, stream: _Stream, now: float, reason: str | None) -> None:
        """Drop a connection; bytes it never echoed back are lost.

        A connection that breaks (``reason``) leaves the stream stalled until
        a new connection verifies its first record: time without a connection
        is stall time.
        """
        if stream.sock is None:
            return
        if reason is None:
            self._finish_stall(stream, now)
        elif stream.stalled_since is None:
            stream.stalled_since = self._waiting_since(stream, now)
        try:
            self._selector.unregister(stream.sock)
        except (KeyError, ValueError):
            pass
        stream.sock.close()
        stream.sock = None
        # Bytes never echoed back are lost, whether the connection broke or
        # the probe stopped before they returned.
        stream.result.bytes_lost += stream.conn_sent - stream.conn_verified
        stream.conn_sent = stream.conn_verified = 0
        if reason is not None:
            stream.result.resets += 1
            stream.result.reset_times.append(now)
            stream.result.original_connection_survived = False
            stream.result.errors.append(reason)
            stream.retry_at = now + 0.1
        stream.outbox.clear()
        stream.inbox.clear()
        stream.send_times.clear()

    # -- the loop -----------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as exc:  # noqa: BLE001 - surfaced by stop()
            self.failure = exc

    def _loop(self) -> None:
        next_record = next_round = time.monotonic()
        stop_at = None
        while True:
            now = time.monotonic()
            if stop_at is None and self._stopping.is_set():
                stop_at = now + self._drain
            if stop_at is not None and (now >= stop_at or self._all_drained()):
                break
            if stop_at is None and now >= next_record:
                # Every record due goes out now: at most one round per SEND_ROUND
                # (a wake-up per record would cost more than the records).
                while now >= next_record:
                    for stream in self._streams:
                        self._queue_record(stream, now)
                    next_record += self.record_interval
                if now - next_record > 1.0:
                    next_record = now
                next_round = now + SEND_ROUND
            for stream in self._streams:
                if stream.sock is None and stop_at is None and now >= stream.retry_at:
                    self._connect(stream)
                if stream.outbox and stream.sock is not None and not stream.connecting:
                    self._flush(stream, now)
            wake = stop_at if stop_at is not None else max(next_record, next_round)
            for key, mask in self._selector.select(max(0.0, min(wake - time.monotonic(), 0.05))):
                stream = key.data
                if stream.connecting and mask & selectors.EVENT_WRITE:
                    self._finish_connect(stream)
                elif mask & selectors.EVENT_READ:
                    self._read(stream)

    def _all_drained(self) -> bool:
        return all(s.sock is None or s.conn_verified == s.conn_sent for s in self._streams)

    def _finish_connect(self, stream: _Stream) -> None:
        sock = stream.sock
        now = time.monotonic()
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self._selector.unregister(sock)
            sock.close()
            stream.sock = None
            stream.connecting = False
            stream.retry_at = now + 0.2
            return
        self._opened(stream, sock, now)

    def _queue_record(self, stream: _Stream, now: float) -> None:
        if stream.sock is None or stream.connecting:
            return
        stream.send_times[stream.next_seq] = now
        stream.outbox += make_record(stream.next_seq)
        stream.next_seq += 1

    def _flush(self, stream: _Stream, now: float) -> None:
        try:
            written = stream.sock.send(stream.outbox)
        except BlockingIOError:
            return
        except OSError as exc:
            self._close(stream, now, reason=f"send: {exc}")
            return
        del stream.outbox[:written]
        stream.conn_sent += written
        stream.result.bytes_sent += written

    def _read(self, stream: _Stream) -> None:
        now = time.monotonic()
        try:
            data = stream.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as exc:
            self._close(stream, now, reason=f"receive: {exc}")
            return
        if not data:
            self._close(stream, now, reason="connection closed by the echo service")
            return
        stream.inbox += data
        while len(stream.inbox) >= RECORD_SIZE:
            self._verify(stream, bytes(stream.inbox[:RECORD_SIZE]), now)
            del stream.inbox[:RECORD_SIZE]

    def _verify(self, stream: _Stream, record: bytes, now: float) -> None:
        result = stream.result
        expected = stream.expected_seq
        parsed = parse_record(record)
        if record == make_record(expected):
            seq = expected
            result.bytes_verified += RECORD_SIZE
        elif parsed is not None and parsed[1] and expected < parsed[0] < stream.next_seq:
            # A well-formed later record: everything between never came back.
            seq = parsed[0]
            result.bytes_lost += (seq - expected) * RECORD_SIZE
            result.bytes_verified += RECORD_SIZE
        else:
            seq = expected
            result.bytes_corrupted += RECORD_SIZE
        stream.conn_verified += (seq - expected + 1) * RECORD_SIZE
        stream.expected_seq = seq + 1
        sent_at = stream.send_times.pop(seq, now)
        for old in [s for s in stream.send_times if s < seq]:
            del stream.send_times[old]
        if stream.stalled_since is not None:
            # First progress after a broken connection ends the stall.
            if now - stream.stalled_since >= self.stall_threshold:
                result.stalls.append(TcpStall(start=stream.stalled_since, end=now,
                                              disconnected=True))
            stream.stalled_since = None
        else:
            waited_since = max(stream.last_progress, sent_at)
            if now - waited_since >= self.stall_threshold:
                result.stalls.append(TcpStall(start=waited_since, end=now))
        stream.last_progress = now

    @staticmethod
    def _waiting_since(stream: _Stream, now: float) -> float:
        """Since when the stream has been waiting for an echo (now, if for none)."""
        if stream.conn_sent > stream.conn_verified and stream.send_times:
            return max(stream.last_progress, min(stream.send_times.values()))
        return now

    def _finish_stall(self, stream: _Stream, now: float) -> None:
        """A connection that ends with bytes outstanding ends in a stall."""
        if stream.stalled_since is not None:
            return
        if stream.conn_sent > stream.conn_verified and stream.send_times:
            waited_since = self._waiting_since(stream, now)
            if now - waited_since >= self.stall_threshold:
                stream.result.stalls.append(TcpStall(start=waited_since, end=now))
