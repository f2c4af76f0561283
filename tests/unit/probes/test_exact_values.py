"""Exact values at the places a figure is computed or named.

Each test pins a literal: a checksum from RFC 1071's arithmetic, a JSON key
and its rounding, the arguments a socket is opened with. Values carry more
digits than the rounding keeps, so rounding to another precision (or not at
all) changes them; written for the survivors of a mutation run
(docs/mutation.md).
"""

from __future__ import annotations

import array
import os
import socket
import types

import pytest

from rally_lm.probes import downtime, records
from rally_lm.probes.downtime import (
    DowntimeProbe,
    ProbeNotPermitted,
    _checksum,
    _ping_group_range,
    open_icmp_socket,
)
from rally_lm.probes.echo_server import EchoServer
from rally_lm.probes.records import Outage, ProbeClock, TargetTimeline, TcpContinuity, TcpStall
from rally_lm.probes.summary import outage_dict, tcp_summary
from rally_lm.probes.timeline import (
    MigrationDisruption,
    MigrationWindow,
    find_disruptions,
    late_threshold,
    median_rtt,
)
from tests.unit.probes.test_timeline import make_timeline


@pytest.mark.parametrize("data, expected", [
    # RFC 1071 section 3's worked example.
    (bytes.fromhex("0001f203f4f5f6f7"), 0x220D),
    # An echo request (id 0x1234, seq 1, payload "abcd") with its checksum field zero.
    (bytes.fromhex("080000001234000161626364"), 0x2104),
    # An odd length is padded with a zero byte at the end, not the start.
    (bytes.fromhex("010203"), 0xFBFD),
    # The first fold carries again: 0xffff + 0xffff + 0x0001 is 0x0001 in one's complement.
    (bytes.fromhex("ffffffff0001"), 0xFFFE),
    (b"", 0xFFFF),
])
def test_the_icmp_checksum_is_rfc_1071s(data, expected, monkeypatch):
    # An empty cache: the struct for this length is built here, not by an earlier test.
    monkeypatch.setattr(downtime, "_WORDS", {})
    assert _checksum(data) == expected
    # Twice: the second call reads the cached struct for that length.
    assert _checksum(data) == expected


class _SocketModule(types.SimpleNamespace):
    """Stands in for the socket module: records how sockets are asked for."""

    def __init__(self, refused: set[int]) -> None:
        super().__init__(AF_INET=socket.AF_INET, SOCK_RAW=socket.SOCK_RAW,
                         SOCK_DGRAM=socket.SOCK_DGRAM, IPPROTO_ICMP=socket.IPPROTO_ICMP)
        self.refused = refused
        self.asked: list[tuple[int, int, int]] = []

    def socket(self, family, kind, proto):
        self.asked.append((family, kind, proto))
        if kind in self.refused:
            raise PermissionError(1, "Operation not permitted")
        return f"socket {kind}"


RAW = (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
DATAGRAM = (socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)


def test_a_raw_icmp_socket_is_preferred(monkeypatch):
    fake = _SocketModule(refused=set())
    monkeypatch.setattr(downtime, "socket", fake)
    assert open_icmp_socket() == (f"socket {socket.SOCK_RAW}", "raw")
    assert fake.asked == [RAW]


def test_without_cap_net_raw_the_datagram_icmp_socket_is_used(monkeypatch):
    fake = _SocketModule(refused={socket.SOCK_RAW})
    monkeypatch.setattr(downtime, "socket", fake)
    assert open_icmp_socket() == (f"socket {socket.SOCK_DGRAM}", "datagram")
    assert fake.asked == [RAW, DATAGRAM]


def test_with_neither_icmp_socket_the_error_says_what_to_change(monkeypatch):
    monkeypatch.setattr(downtime, "socket", _SocketModule(refused={socket.SOCK_RAW,
                                                                   socket.SOCK_DGRAM}))
    monkeypatch.setattr(downtime, "_ping_group_range", lambda: (100, 200))
    with pytest.raises(ProbeNotPermitted) as caught:
        open_icmp_socket()
    assert str(caught.value) == (
        "ICMP probing is not permitted: no CAP_NET_RAW for a raw socket and gid "
        f"{os.getgid()} is outside net.ipv4.ping_group_range (100 200). Run as root, "
        "grant CAP_NET_RAW, widen ping_group_range, or use the UDP probe (--udp PORT).")
    assert isinstance(caught.value.__cause__, PermissionError)


@pytest.mark.parametrize("content, expected", [
    ("1\t0\n", (1, 0)),
    ("0\t2147483647\n", (0, 2147483647)),
    ("garbage\n", (1, 0)),
    ("1 2 3\n", (1, 0)),
])
def test_the_ping_group_range_is_read_or_taken_as_empty(tmp_path, content, expected):
    path = tmp_path / "ping_group_range"
    path.write_text(content)
    assert _ping_group_range(str(path)) == expected
    assert _ping_group_range(str(tmp_path / "missing")) == (1, 0)


def test_the_ping_group_range_is_the_kernels():
    if not os.path.exists(downtime.PING_GROUP_RANGE):
        pytest.skip("no /proc/sys/net/ipv4/ping_group_range here")
    with open("/proc/sys/net/ipv4/ping_group_range") as handle:
        low, high = handle.read().split()
    assert _ping_group_range() == (int(low), int(high))


def test_clock_drift_is_the_wall_clocks_move_against_the_monotonic_one(monkeypatch):
    clock = ProbeClock(monotonic=100.0, wall=1000.0)
    monkeypatch.setattr(records, "time", types.SimpleNamespace(time=lambda: 1000.5004,
                                                               monotonic=lambda: 100.25))
    assert clock.drift_ms() == pytest.approx(250.4, abs=1e-6)


def _udp_probe(port: int = 7, reply_timeout: float = 1.0) -> DowntimeProbe:
    return DowntimeProbe(["127.0.0.1", "127.0.0.2"], interval=0.01, protocol="udp",
                         udp_port=port, reply_timeout=reply_timeout)


def test_a_snapshot_is_a_copy_of_every_field():
    probe = _udp_probe()
    try:
        first, second = probe._timelines
        first.sent.extend([1.0, 1.01])
        first.received.extend([1.0005, 1.0107])
        first.duplicates, first.errors = 2, 3
        second.sent.append(1.0)
        second.received.append(1.25)
        snapshot = probe.snapshot()
        assert snapshot == [
            TargetTimeline(target="127.0.0.1", protocol="udp", interval=0.01, clock=probe.clock,
                           sent=array.array("d", [1.0, 1.01]),
                           received=array.array("d", [1.0005, 1.0107]), duplicates=2, errors=3),
            TargetTimeline(target="127.0.0.2", protocol="udp", interval=0.01, clock=probe.clock,
                           sent=array.array("d", [1.0]), received=array.array("d", [1.25])),
        ]
        # A copy: the probe goes on writing its own arrays.
        first.sent.append(1.02)
        first.received.append(1.0203)
        assert (len(snapshot[0].sent), len(snapshot[0].received)) == (2, 2)
    finally:
        probe._sock.close()


def test_leaving_a_with_block_stops_the_probe():
    server = EchoServer().start()
    try:
        with _udp_probe(server.udp_port, reply_timeout=0.05) as probe:
            assert probe._thread.thread.is_alive()
        assert not probe._thread.thread.is_alive() and probe._sock.fileno() == -1
    finally:
        server.stop()


def test_leaving_a_with_block_does_not_stop_a_stopped_probe_again():
    server = EchoServer().start()
    try:
        with _udp_probe(server.udp_port, reply_timeout=0.05) as probe:
            probe._sock.close()  # the probe thread fails on its next send
            probe._thread.thread.join(2)
            probe.stop(raise_on_failure=False)
        # Stopping again would raise the failure a second time.
        assert probe.failure is not None
    finally:
        server.stop()


def test_a_probe_never_started_is_left_alone_by_exit():
    probe = _udp_probe()
    try:
        probe.__exit__(None, None, None)
        assert probe._sock.fileno() != -1 and probe._thread is None
    finally:
        probe._sock.close()


CLOCK = ProbeClock(monotonic=100.0, wall=1000.0)


def test_an_outage_on_the_wall_clock_keeps_microseconds_and_rounds_milliseconds():
    outage = Outage(start=100.1234567891, end=100.2345678912, lost=3, late=2,
                    max_late_ms=12.3456789, ongoing=True)
    assert outage_dict(outage, CLOCK) == {
        "start": 1000.123457, "end": 1000.234568, "duration_ms": 111.111, "lost": 3,
        "late": 2, "max_late_ms": 12.346, "ongoing": True}


def _tcp_result() -> TcpContinuity:
    return TcpContinuity(
        target="10.0.0.5", port=7007, bytes_sent=2048, bytes_verified=1024, bytes_lost=512,
        bytes_corrupted=0, resets=1, reconnects=1, connected=True,
        original_connection_survived=False,
        stalls=[TcpStall(start=100.1234567891, end=100.3456789123, disconnected=True),
                TcpStall(start=101.0, end=101.0123456789, ongoing=True)],
        reset_times=[100.2], errors=["reset by peer"])


def test_tcp_results_round_milliseconds_to_three_places():
    data = _tcp_result().to_dict()
    assert data["max_stall_ms"] == 222.222
    assert data["stalls"] == [
        {"start": 100.1234567891, "end": 100.3456789123, "duration_ms": 222.222,
         "disconnected": True, "ongoing": False},
        {"start": 101.0, "end": 101.0123456789, "duration_ms": 12.346, "disconnected": False,
         "ongoing": True}]


def test_tcp_summary_puts_stalls_on_the_wall_clock():
    assert tcp_summary(_tcp_result(), CLOCK) == {
        "target": "10.0.0.5", "port": 7007, "bytes_sent": 2048, "bytes_verified": 1024,
        "bytes_lost": 512, "bytes_corrupted": 0, "resets": 1, "reconnects": 1,
        "connected": True, "original_connection_survived": False,
        "stalls": [{"start": 1000.123457, "end": 1000.345679, "duration_ms": 222.222,
                    "disconnected": True, "ongoing": False},
                   {"start": 1001.0, "end": 1001.012346, "duration_ms": 12.346,
                    "disconnected": False, "ongoing": True}],
        "reset_times": [100.2], "errors": ["reset by peer"], "max_stall_ms": 222.222}


def test_a_disruption_rounds_milliseconds_and_keeps_clock_readings():
    outage = Outage(start=100.5, end=100.625, lost=12)
    disruption = MigrationDisruption(
        window=MigrationWindow(target="10.0.0.5", start=100.0123456789, end=110.9876543219,
                               label="vm0 out"),
        requests=1098, downtime_ms=125.6004999, kind="loss", lost=12, late=1,
        max_late_ms=31.2345678, first_loss=100.5000001234, recovery=100.6250001234,
        outages=[outage], resolution_ms=10.0123456)
    assert disruption.to_dict() == {
        "target": "10.0.0.5", "label": "vm0 out", "window_start": 100.0123456789,
        "window_end": 110.9876543219, "requests": 1098, "downtime_ms": 125.6, "kind": "loss",
        "lost": 12, "late": 1, "max_late_ms": 31.235, "first_loss": 100.5000001234,
        "recovery": 100.6250001234,
        "outages": [{"start": 100.5, "end": 100.625, "lost": 12, "late": 0, "max_late_ms": 0.0,
                     "ongoing": False, "duration_ms": 125.0}],
        "resolution_ms": 10.012}


def test_the_late_limit_is_three_round_trips_and_ten_ms_when_that_is_longer():
    # 10 ms interval, 20 ms round trips: 3 x 20 + 10 = 70 ms beats 2 intervals.
    timeline = make_timeline([0.02] * 5, interval=0.01, start=0.0)
    assert late_threshold(timeline) == pytest.approx(0.07, abs=1e-12)
    assert late_threshold(make_timeline([0.001] * 5, interval=0.25, start=0.0)) == 0.5


def test_a_timeline_without_replies_has_no_round_trip():
    assert median_rtt(make_timeline([None, None], start=0.0)) == 0.0


def test_a_reply_exactly_at_the_late_limit_is_not_a_delay():
    # Interval 0.25 s, round trips 0.125 s: the late limit is 2 intervals, 0.5 s.
    timeline = make_timeline([True] * 6 + [0.5, True, None, True], interval=0.25, start=0.0,
                             rtt=0.125)
    outages, spikes = find_disruptions(timeline)
    assert spikes == []
    assert [(o.lost, o.late, o.max_late_ms) for o in outages] == [(1, 0, 0.0)]


def _icmp_probe(monkeypatch, transport: str) -> DowntimeProbe:
    """An ICMP probe whose replies are fed by hand (a UDP socket stands in for ICMP's)."""
    monkeypatch.setattr(downtime, "open_icmp_socket", lambda: (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM), "datagram"))
    probe = DowntimeProbe(["127.0.0.1"], protocol="icmp")
    probe.transport = transport
    probe._timelines[0].sent.extend([100.0, 100.01, 100.02])
    probe._timelines[0].received.extend([float("nan")] * 3)
    return probe


def _echo(probe: DowntimeProbe, seq: int, kind: int = 0, ip_words: int = 0) -> bytes:
    payload = downtime._PAYLOAD.pack(downtime._MAGIC, probe._token, 0, seq)
    icmp = downtime._ICMP_HEADER.pack(kind, 0, 0, probe._token & 0xFFFF, seq) + payload
    # A raw socket hands over the IP header too; its length is in the first byte's low nibble.
    return (bytes([0x40 | ip_words]) + bytes(4 * ip_words - 1) if ip_words else b"") + icmp


@pytest.mark.parametrize("transport, ip_words", [("raw", 6), ("raw", 5), ("datagram", 0)])
def test_an_icmp_echo_reply_is_read_past_its_headers(monkeypatch, transport, ip_words):
    probe = _icmp_probe(monkeypatch, transport)
    try:
        probe._record_reply(_echo(probe, 1, ip_words=ip_words), "127.0.0.1", 100.0125)
        assert list(probe._timelines[0].received)[1] == 100.0125
    finally:
        probe._sock.close()


@pytest.mark.parametrize("case", ["an echo request", "cut short"])
def test_what_is_not_an_echo_reply_is_ignored(monkeypatch, case):
    probe = _icmp_probe(monkeypatch, "raw")
    try:
        packet = _echo(probe, 1, kind=8 if case == "an echo request" else 0, ip_words=5)
        if case == "cut short":
            packet = packet[:-1]
        probe._record_reply(packet, "127.0.0.1", 100.0125)
        assert all(r != r for r in probe._timelines[0].received)
    finally:
        probe._sock.close()
