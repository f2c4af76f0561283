import socket
import threading
import time

import pytest

from rally_lm.probes.echo_server import EchoServer
from rally_lm.probes.tcp_continuity import (
    RECORD_SIZE,
    TcpContinuityProbe,
    make_record,
    parse_record,
)


def test_record_round_trip_and_corruption_detected():
    record = make_record(42)
    assert len(record) == RECORD_SIZE
    assert parse_record(record) == (42, True)
    damaged = bytearray(record)
    damaged[40] ^= 0xFF
    assert parse_record(bytes(damaged)) == (42, False)
    assert parse_record(b"\0" * RECORD_SIZE) is None


@pytest.fixture
def echo():
    server = EchoServer().start()
    yield server
    server.stop()


def test_clean_stream_verifies_every_byte(echo):
    probe = TcpContinuityProbe(["127.0.0.1"], echo.tcp_port, rate_bytes_per_s=20 * RECORD_SIZE)
    probe.start()
    time.sleep(1.0)
    (result,) = probe.stop()
    assert result.bytes_sent >= 10 * RECORD_SIZE
    assert result.bytes_verified == result.bytes_sent
    assert result.bytes_lost == result.bytes_corrupted == result.resets == 0
    assert result.original_connection_survived and result.intact


class MisbehavingEcho:
    """An echo peer that damages one record, then drops the connection."""

    def __init__(self, corrupt_record: int, reset_after_records: int):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.port = self.listener.getsockname()[1]
        self.corrupt_record = corrupt_record
        self.reset_after = reset_after_records
        self.connections = 0
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            first = self.connections == 1
            threading.Thread(target=self.echo, args=(conn, first), daemon=True).start()

    def echo(self, conn, misbehave):
        received = 0
        with conn:
            while True:
                data = conn.recv(RECORD_SIZE - received % RECORD_SIZE)
                if not data:
                    return
                index = received // RECORD_SIZE
                received += len(data)
                if misbehave and index == self.corrupt_record:
                    data = bytes(b ^ 0x55 for b in data)
                if misbehave and index >= self.reset_after:
                    # Swallow this record and abort: RST with bytes in flight.
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
                    return
                conn.sendall(data)

    def close(self):
        self.listener.close()


def test_corruption_reset_and_reconnect_are_counted():
    peer = MisbehavingEcho(corrupt_record=3, reset_after_records=8)
    try:
        probe = TcpContinuityProbe(["127.0.0.1"], peer.port, rate_bytes_per_s=50 * RECORD_SIZE)
        probe.start()
        time.sleep(1.5)
        (result,) = probe.stop()
    finally:
        peer.close()
    assert result.bytes_corrupted == RECORD_SIZE
    assert result.resets == 1 and result.reconnects == 1
    assert not result.original_connection_survived
    assert result.bytes_lost >= RECORD_SIZE
    assert result.bytes_verified + result.bytes_lost + result.bytes_corrupted == result.bytes_sent
    assert not result.intact


def test_unreachable_echo_service_fails_before_streaming():
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    probe = TcpContinuityProbe(["127.0.0.1"], port)
    with pytest.raises(ConnectionError, match="not reachable"):
        probe.start()


@pytest.mark.parametrize("kwargs", [{"port": 0}, {"port": 7, "rate_bytes_per_s": 10}])
def test_bad_arguments_are_rejected(kwargs):
    with pytest.raises(ValueError):
        TcpContinuityProbe(["127.0.0.1"], **kwargs)


class GapEcho(MisbehavingEcho):
    """Swallows one whole record (a sequence gap), echoes everything else."""

    def echo(self, conn, misbehave):
        received = 0
        with conn:
            while True:
                data = conn.recv(RECORD_SIZE - received % RECORD_SIZE)
                if not data:
                    return
                index = received // RECORD_SIZE
                received += len(data)
                if index != self.corrupt_record:
                    conn.sendall(data)


def test_a_missing_record_is_counted_lost_and_the_rest_verified():
    peer = GapEcho(corrupt_record=4, reset_after_records=10**9)
    try:
        probe = TcpContinuityProbe(["127.0.0.1"], peer.port, rate_bytes_per_s=50 * RECORD_SIZE)
        probe.start()
        time.sleep(0.6)
        (result,) = probe.stop()
    finally:
        peer.close()
    assert result.bytes_lost == RECORD_SIZE
    assert result.bytes_corrupted == 0 and result.resets == 0
    assert result.bytes_verified == result.bytes_sent - RECORD_SIZE
    assert result.original_connection_survived and not result.intact


class RefusingForAWhile:
    """Echo that resets its first connection, then refuses for ``refuse_s`` seconds."""

    def __init__(self, refuse_s: float):
        self.refuse_s = refuse_s
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.listener.listen(4)
        self.reset_at = None
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        conn, _ = self.listener.accept()
        data = conn.recv(RECORD_SIZE)
        conn.sendall(data)
        time.sleep(0.2)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        conn.close()  # RST
        self.reset_at = time.monotonic()
        self.listener.close()  # connection refused from now on
        time.sleep(self.refuse_s)
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(4)
        conn, _ = listener.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)


def test_time_without_a_connection_is_stall_time():
    peer = RefusingForAWhile(refuse_s=1.0)
    probe = TcpContinuityProbe(["127.0.0.1"], peer.port, rate_bytes_per_s=40 * RECORD_SIZE)
    probe.start()
    time.sleep(2.0)
    (result,) = probe.stop()
    assert result.resets == 1 and result.reconnects == 1
    assert len(result.reset_times) == 1
    disconnected = [s for s in result.stalls if s.disconnected]
    assert len(disconnected) == 1, result.stalls
    # From the last progress before the reset to the first echo on the new
    # connection: at least the second of refused connections.
    assert disconnected[0].duration_ms >= 1000.0
    assert disconnected[0].start <= peer.reset_at <= disconnected[0].end
    assert result.max_stall_ms >= 1000.0


def test_a_connection_that_never_comes_back_is_an_ongoing_stall():
    peer = RefusingForAWhile(refuse_s=30.0)
    probe = TcpContinuityProbe(["127.0.0.1"], peer.port, rate_bytes_per_s=40 * RECORD_SIZE)
    probe.start()
    time.sleep(1.0)
    (result,) = probe.stop(drain=0.1)
    (stall,) = [s for s in result.stalls if s.disconnected]
    assert stall.ongoing and stall.duration_ms >= 500.0
    assert not result.original_connection_survived


class StopSeenAtOnce(threading.Event):
    """set() waits until the probe thread has surely seen it: the race, made certain."""

    def set(self):
        super().set()
        time.sleep(0.3)


def test_stop_hands_its_drain_to_the_probe_thread_before_signalling():
    server = EchoServer().start()
    try:
        probe = TcpContinuityProbe(["127.0.0.1"], server.tcp_port)
        probe._stopping = StopSeenAtOnce()
        probe.start()
        time.sleep(0.1)
        began = time.monotonic()
        (result,) = probe.stop(drain=0.0)
        took = time.monotonic() - began
    finally:
        server.stop()
    # The thread used the drain stop() was given (0 s), not a missing or old one.
    assert took < 1.0 and result.connected
