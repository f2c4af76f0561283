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
