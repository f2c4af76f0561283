"""The downtime probe's set-up, socket options, send errors and round schedule.

The schedule is driven by a fake clock (sleeping moves it), so a stall of the
probe thread and its stop are exact, without waiting in real time.
"""

from __future__ import annotations

import errno
import re
import socket
import struct

import pytest

from rally_lm.probes import downtime
from rally_lm.probes.downtime import (
    ICMP_FILTER,
    SOL_RAW,
    DowntimeProbe,
    ProbeError,
    ProbeNotPermitted,
    _ProbeThread,
)
from rally_lm.probes.records import ProbeClock


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"targets": []}, "no probe target given"),
        ({"targets": ["127.0.0.1"], "interval": 0.0005},
         "interval 0.5 ms is below the minimum of 1 ms"),
        ({"targets": ["127.0.0.1"], "protocol": "tcp"},
         "unknown probe protocol 'tcp' (icmp or udp)"),
        ({"targets": ["127.0.0.1"], "protocol": "udp"},
         "the UDP probe needs the target's UDP echo port"),
        ({"targets": ["127.0.0.1", "localhost"], "protocol": "udp", "udp_port": 7},
         "the same target is listed twice"),
    ],
)
def test_bad_input_is_rejected_with_the_whole_message(kwargs, message):
    with pytest.raises(ProbeError, match=f"^{re.escape(message)}$"):
        DowntimeProbe(**kwargs)


def test_an_unresolvable_target_is_named_with_the_resolvers_reason():
    with pytest.raises(ProbeError,
                       match=r"^cannot resolve probe target 'no-such-host\.invalid': .+"):
        DowntimeProbe(["no-such-host.invalid"], protocol="udp", udp_port=7)


def test_the_minimum_interval_itself_is_accepted():
    probe = DowntimeProbe(["127.0.0.1"], interval=downtime.MIN_INTERVAL, protocol="udp",
                          udp_port=7)
    assert probe.interval == 0.001
    probe.stop()


def test_a_new_udp_probe_keeps_what_it_was_given_and_has_not_failed():
    probe = DowntimeProbe(["localhost"], interval=0.02, protocol="udp", udp_port=7007,
                          reply_timeout=0.3)
    try:
        assert (probe.targets, probe.addresses) == (["localhost"], ["127.0.0.1"])
        assert (probe.interval, probe.protocol, probe.udp_port, probe.reply_timeout) == (
            0.02, "udp", 7007, 0.3)
        assert probe.transport == "udp"
        assert probe._destinations == [("127.0.0.1", 7007)]
        assert probe.failure is None and probe.failed_at is None
        # A probe never started still has a clock, for the records it returns.
        assert isinstance(probe.clock, ProbeClock)
        assert [t.clock for t in probe._timelines] == [probe.clock]
    finally:
        probe.stop()


def icmp_probe(**kwargs) -> DowntimeProbe:
    try:
        return DowntimeProbe(["127.0.0.1"], **kwargs)
    except ProbeNotPermitted as exc:
        pytest.skip(str(exc))


def test_the_defaults_are_icmp_every_10_ms_and_a_second_for_the_last_replies():
    probe = icmp_probe()
    try:
        assert (probe.interval, probe.protocol, probe.udp_port, probe.reply_timeout) == (
            0.01, "icmp", None, 1.0)
        assert probe.transport in ("raw", "datagram")
        # ICMP has no port; the kernel takes the address alone.
        assert probe._destinations == [("127.0.0.1", 0)]
    finally:
        probe.stop()


def test_a_raw_icmp_socket_lets_only_echo_replies_through():
    probe = icmp_probe(interval=0.01)
    try:
        if probe.transport != "raw":
            pytest.skip("no CAP_NET_RAW: the datagram ICMP socket needs no filter")
        (dropped,) = struct.unpack("I", probe._sock.getsockopt(SOL_RAW, ICMP_FILTER, 4))
        assert dropped == 0xFFFFFFFE  # every type but 0, the echo reply
    finally:
        probe.stop()


def _kernel_limit(name: str) -> int:
    with open(f"/proc/sys/net/core/{name}") as handle:
        return int(handle.read())


def test_the_socket_asks_for_4_mib_buffers_and_kernel_timestamps():
    # Held replies come back in a burst when the guest resumes; the buffer
    # holds the burst until the next round reads it. Linux caps the request
    # at net.core.[rw]mem_max and reports twice what it grants.
    probe = DowntimeProbe(["127.0.0.1"], protocol="udp", udp_port=7)
    try:
        sock = probe._sock
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == \
            2 * min(4 << 20, _kernel_limit("rmem_max"))
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == \
            2 * min(4 << 20, _kernel_limit("wmem_max"))
        assert sock.getsockopt(socket.SOL_SOCKET, downtime.SO_TIMESTAMPNS) == 1
        assert sock.getblocking() is False
    finally:
        probe.stop()


class _RefusingSocket:
    """Stands in for the probe's socket: every send fails with one errno."""

    def __init__(self, code: int) -> None:
        self.code = code
        self.sends = []

    def sendto(self, packet: bytes, destination: tuple[str, int]) -> int:
        self.sends.append(destination)
        raise OSError(self.code, "refused by the test")

    def close(self) -> None:
        pass


@pytest.mark.parametrize("code", [errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EAGAIN,
                                  errno.ENOBUFS, errno.EHOSTDOWN, errno.ECONNREFUSED])
def test_a_send_the_network_refuses_is_counted_and_the_request_stands(code):
    probe = DowntimeProbe(["127.0.0.1"], protocol="udp", udp_port=7)
    probe._sock.close()
    probe._sock = _RefusingSocket(code)
    for _ in range(3):
        probe._send_and_record()
    (timeline,) = probe.stop()
    assert timeline.errors == 3
    # Each refused request is still a request: lost, never left out.
    assert len(timeline.sent) == 3 and timeline.replies == 0
    assert probe._sock.sends == [("127.0.0.1", 7)] * 3


def test_any_other_send_error_fails_the_probe():
    probe = DowntimeProbe(["127.0.0.1"], protocol="udp", udp_port=7)
    probe._sock.close()
    probe._sock = _RefusingSocket(errno.EBADF)
    with pytest.raises(OSError, match="refused by the test"):
        probe._send(0)
    assert probe._timelines[0].errors == 0
    probe.stop()


# -- the round schedule, on a fake clock --------------------------------------

INTERVAL = 1 / 64        # binary fractions: the fake clock's sums are exact
REPLY_TIMEOUT = 1 / 4


class _Runaway(BaseException):
    """Raised past the probe's own error handling when the loop spins without sleeping."""


class _FakeTime:
    """time.monotonic / time.time / time.sleep where only sleeping moves the clock.

    ``stall_at``: on that sleep the thread also loses ``stall`` seconds (starved
    of CPU); ``stop_after``: the sleep that sets the thread's stop flag.
    """

    def __init__(self, thread: _ProbeThread, stall_at: int, stall: float,
                 stop_after: int) -> None:
        self.now = 1024.0
        self.thread = thread
        self.stall_at, self.stall, self.stop_after = stall_at, stall, stop_after
        self.sleeps: list[float] = []
        self.readings = 0

    def monotonic(self) -> float:
        self.readings += 1
        if self.readings > 10_000:
            raise _Runaway(f"{self.readings} clock readings and {len(self.sleeps)} sleeps")
        return self.now

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if len(self.sleeps) == self.stall_at:
            self.now += self.stall
        if len(self.sleeps) == self.stop_after:
            self.thread.stopping.set()


def run_on_fake_clock(monkeypatch, stall_at: int, stall: float, stop_after: int
                      ) -> tuple[list[float], _FakeTime]:
    probe = DowntimeProbe(["127.0.0.1"], interval=INTERVAL, protocol="udp", udp_port=7,
                          reply_timeout=REPLY_TIMEOUT)
    thread = _ProbeThread([probe])
    clock = _FakeTime(thread, stall_at, stall, stop_after)
    monkeypatch.setattr(downtime, "time", clock)
    thread._run()
    (timeline,) = probe.stop()
    assert probe.failure is None
    return list(timeline.sent), clock


def test_rounds_are_one_interval_apart_and_the_stop_waits_once_for_the_last_replies(
        monkeypatch):
    sent, clock = run_on_fake_clock(monkeypatch, stall_at=0, stall=0.0, stop_after=10)
    start = 1024.0
    assert sent == [start + i * INTERVAL for i in range(10)]
    # Ten sleeps of one interval, then (asked to stop, nothing more sent) one
    # until the reply timeout has passed.
    assert clock.sleeps == [INTERVAL] * 10 + [REPLY_TIMEOUT]


def test_a_stalled_thread_skips_ahead_instead_of_sending_a_burst(monkeypatch):
    # On the 4th sleep the thread loses ten intervals.
    sent, clock = run_on_fake_clock(monkeypatch, stall_at=4, stall=10 * INTERVAL,
                                    stop_after=8)
    gaps = [later - earlier for earlier, later in zip(sent, sent[1:], strict=False)]
    # The missed rounds are a gap in the send times (the timeline shows the
    # probe's blind spot), and the schedule goes on one interval at a time.
    assert gaps == [INTERVAL] * 3 + [11 * INTERVAL] + [INTERVAL] * 3
    assert clock.sleeps == [INTERVAL] * 8 + [REPLY_TIMEOUT]


def test_a_thread_late_by_less_than_an_interval_keeps_its_schedule(monkeypatch):
    sent, _clock = run_on_fake_clock(monkeypatch, stall_at=2, stall=INTERVAL / 2,
                                     stop_after=6)
    start = 1024.0
    # The late round goes out late, the next one on the original schedule.
    assert sent == [start, start + INTERVAL, start + 2.5 * INTERVAL] + [
        start + i * INTERVAL for i in range(3, 6)]


def test_a_thread_late_by_exactly_an_interval_sends_one_round_not_two(monkeypatch):
    sent, _clock = run_on_fake_clock(monkeypatch, stall_at=2, stall=INTERVAL, stop_after=5)
    start = 1024.0
    # Round 2, due at 2 intervals, goes out at 3, and the schedule restarts
    # from there: never two requests at one instant.
    assert sent == [start + i * INTERVAL for i in (0, 1, 3, 4, 5)]
