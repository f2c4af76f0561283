import socket
import struct
import time

import pytest

from rally_lm.probes.downtime import (
    _ANCILLARY_SPACE,
    SCM_TIMESTAMPNS,
    SO_TIMESTAMPNS,
    DowntimeProbe,
    ProbeError,
    _checksum,
    _echo_checksum_base,
    _icmp_echo_request,
    arrival_time,
    start_together,
)
from rally_lm.probes.echo_server import EchoServer
from rally_lm.probes.timeline import find_disruptions


def test_icmp_checksum_of_known_packet():
    # Echo request, id 0x1234, seq 1, payload "abcd": checksum from RFC 1071 folding.
    header = bytes([8, 0, 0, 0, 0x12, 0x34, 0, 1]) + b"abcd"
    value = _checksum(header)
    data = header[:2] + value.to_bytes(2, "big") + header[4:]
    assert _checksum(data) == 0


@pytest.mark.parametrize("token", [0, 0x89ABCDEF, 0xFFFFFFFF])
@pytest.mark.parametrize("index", [0, 5, 0xFFFF])
@pytest.mark.parametrize("seq", [0, 1, 0xFFFF, 0x10000, 0x1FFFE, 0xFFFFFFFF])
def test_an_echo_requests_checksum_holds_for_every_sequence_number(token, index, seq):
    packet = _icmp_echo_request(token, index, seq, _echo_checksum_base(token, index))
    # A packet carrying its checksum sums to zero (RFC 1071).
    assert _checksum(packet) == 0
    kind, code, _checksum_field, ident, seq16, magic, token_, index_, seq_ = struct.unpack(
        "!BBHHH4sIII", packet)
    assert (kind, code, ident, seq16) == (8, 0, token & 0xFFFF, seq & 0xFFFF)
    assert (magic, token_, index_, seq_) == (b"RLMP", token, index, seq)


def test_udp_echo_on_loopback_is_fully_answered():
    server = EchoServer().start()
    try:
        probe = DowntimeProbe(["127.0.0.1"], interval=0.005, protocol="udp",
                              udp_port=server.udp_port, reply_timeout=0.3)
        probe.start()
        time.sleep(0.5)
        (timeline,) = probe.stop()
    finally:
        server.stop()
    assert timeline.requests_sent >= 50
    assert timeline.replies == timeline.requests_sent
    assert find_disruptions(timeline) == ([], [])


def test_udp_target_without_service_is_all_lost_never_zero_downtime():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    probe = DowntimeProbe(["127.0.0.1"], interval=0.01, protocol="udp", udp_port=port,
                          reply_timeout=0.1)
    probe.start()
    time.sleep(0.2)
    (timeline,) = probe.stop()
    assert timeline.replies == 0
    outages, _ = find_disruptions(timeline)
    assert outages and outages[0].ongoing


def test_cli_json_carries_outages_and_the_raw_timeline(capsys):
    import json

    from rally_lm.cli.main import main

    server = EchoServer().start()
    try:
        code = main(["probe", "127.0.0.1", "--udp", str(server.udp_port), "--interval", "0.01",
                     "--duration", "0.5", "--json", "--raw"])
    finally:
        server.stop()
    assert code == 0
    (target,) = json.loads(capsys.readouterr().out)["targets"]
    assert target["outages"] == [] and target["longest_outage_ms"] == 0.0
    assert len(target["timeline"]) == target["requests"] >= 40
    sent, received = target["timeline"][0]
    assert 0 <= sent < received


def make_probe():
    probe = DowntimeProbe(["127.0.0.1", "127.0.0.2"], interval=0.01, protocol="udp",
                          udp_port=7)
    for index in range(2):
        for _ in range(3):
            probe._timelines[index].sent.append(100.0)
            probe._timelines[index].received.append(float("nan"))
    return probe


def reply(probe, index, seq, token=None):
    from rally_lm.probes.downtime import _MAGIC, _PAYLOAD

    return _PAYLOAD.pack(_MAGIC, probe._token if token is None else token, index, seq)


def test_a_duplicate_reply_keeps_the_first_arrival():
    probe = make_probe()
    probe._record_reply(reply(probe, 0, 1), "127.0.0.1", 100.002)
    probe._record_reply(reply(probe, 0, 1), "127.0.0.1", 100.050)
    probe._record_reply(reply(probe, 0, 1), "127.0.0.1", 100.070)
    timeline = probe._timelines[0]
    assert timeline.received[1] == 100.002 and timeline.duplicates == 2
    probe._sock.close()


def test_a_reply_to_the_request_not_yet_recorded_is_ignored():
    probe = make_probe()
    sent = len(probe._timelines[0].received)
    probe._record_reply(reply(probe, 0, sent), "127.0.0.1", 100.002)  # sequence numbers start at 0
    assert len(probe._timelines[0].received) == sent
    probe._sock.close()


@pytest.mark.parametrize("case", ["other token", "other target", "unsent sequence",
                                  "not ours"])
def test_replies_that_are_not_this_probes_are_ignored(case):
    probe = make_probe()
    data, address = reply(probe, 0, 1), "127.0.0.1"
    if case == "other token":
        data = reply(probe, 0, 1, token=probe._token ^ 1)
    elif case == "other target":
        address = "127.0.0.2"  # index 0 belongs to 127.0.0.1
    elif case == "unsent sequence":
        data = reply(probe, 0, 9)
    else:
        data = b"hello, echo"
    probe._record_reply(data, address, 100.002)
    assert all(r != r for t in probe._timelines for r in t.received)
    assert all(t.duplicates == 0 for t in probe._timelines)
    probe._sock.close()


def test_a_failed_probe_keeps_its_timelines_and_says_when():
    server = EchoServer().start()
    try:
        probe = DowntimeProbe(["127.0.0.1"], interval=0.005, protocol="udp",
                              udp_port=server.udp_port, reply_timeout=0.1)
        probe.start()
        time.sleep(0.2)
        probe._sock.close()  # the socket goes away under the probe thread
        time.sleep(0.2)
        (timeline,) = probe.stop(raise_on_failure=False)
    finally:
        server.stop()
    assert probe.failure is not None and probe.failed_at is not None
    assert timeline.replies >= 10
    assert timeline.sent[-1] <= probe.failed_at
    with pytest.raises(ProbeError, match="downtime probe failed"):
        probe.stop()


def test_probes_started_together_share_a_thread_and_fail_alone():
    server = EchoServer().start()
    try:
        kept, failing = (DowntimeProbe(["127.0.0.1"], interval=0.005, protocol="udp",
                                       udp_port=server.udp_port, reply_timeout=0.1)
                         for _ in range(2))
        start_together([kept, failing])
        assert kept._thread is failing._thread and kept.clock == failing.clock
        time.sleep(0.2)
        failing._sock.close()  # one probe's socket goes away under the thread
        time.sleep(0.3)
        (failed,) = failing.stop(raise_on_failure=False)
        (timeline,) = kept.stop()
    finally:
        server.stop()
    assert failing.failure is not None and kept.failure is None
    assert failed.sent[-1] <= failing.failed_at
    # The other probe went on probing after the failure, every request answered.
    assert sum(1 for s in timeline.sent if s > failing.failed_at) >= 20
    assert timeline.replies == len(timeline.sent)


def test_probes_started_together_need_one_interval_and_start_once():
    fast, slow = (DowntimeProbe(["127.0.0.1"], interval=interval, protocol="udp", udp_port=7)
                  for interval in (0.01, 0.02))
    with pytest.raises(ProbeError, match="^no probe to start$"):
        start_together([])
    with pytest.raises(ProbeError, match="^probes started together need the same interval$"):
        start_together([fast, slow])
    fast.start()
    with pytest.raises(ProbeError, match="^a probe can be started only once$"):
        start_together([fast])
    fast.stop()
    slow._sock.close()


def test_the_probe_thread_reads_the_clock_and_never_keeps_the_process_alive():
    probe = DowntimeProbe(["127.0.0.1"], interval=0.01, protocol="udp", udp_port=7,
                          reply_timeout=0.01)
    before = time.monotonic()
    probe.start()
    thread = probe._thread.thread
    assert (thread.name, thread.daemon) == ("downtime-probe", True)
    assert before <= probe.clock.monotonic <= time.monotonic()
    assert probe._timelines[0].clock is probe.clock
    probe.stop(raise_on_failure=False)


def test_stopping_waits_for_the_longest_reply_timeout_of_the_probes_together():
    quick, patient = (DowntimeProbe([address], interval=0.01, protocol="udp", udp_port=7,
                                    reply_timeout=timeout)
                      for address, timeout in (("127.0.0.1", 0.05), ("127.0.0.2", 0.4)))
    start_together([quick, patient])
    time.sleep(0.05)
    started = time.monotonic()
    quick.stop(raise_on_failure=False)
    waited = time.monotonic() - started
    patient.stop(raise_on_failure=False)
    assert 0.4 <= waited < 2.0
    # No request is sent while the last replies are awaited.
    assert max(t.sent[-1] for p in (quick, patient) for t in p._timelines) < started + 0.02


def test_replies_are_timed_by_the_kernel_not_by_when_the_round_reads_them():
    # At 5 Hz the thread reads each reply about 200 ms after it arrived.
    server = EchoServer().start()
    try:
        probe = DowntimeProbe(["127.0.0.1"], interval=0.2, protocol="udp",
                              udp_port=server.udp_port, reply_timeout=0.3)
        probe.start()
        time.sleep(1.0)
        (timeline,) = probe.stop()
    finally:
        server.stop()
    round_trips = [r - s for s, r in zip(timeline.sent, timeline.received, strict=True)]
    assert len(round_trips) >= 4
    assert max(round_trips) < 0.05


def test_icmp_echo_on_loopback_is_fully_answered_by_the_kernel():
    try:
        probe = DowntimeProbe(["127.0.0.1", "127.0.0.2"], interval=0.01, protocol="icmp",
                              reply_timeout=0.2)
    except ProbeError as exc:
        pytest.skip(str(exc))
    probe.start()
    time.sleep(0.3)
    timelines = probe.stop()
    for timeline in timelines:
        assert len(timeline.sent) >= 20
        assert timeline.replies == len(timeline.sent)
        assert timeline.errors == 0 and timeline.duplicates == 0


def timestamp(wall: float) -> list[tuple[int, int, bytes]]:
    seconds = int(wall)
    return [(socket.SOL_SOCKET, SCM_TIMESTAMPNS,
             struct.pack("@qq", seconds, round((wall - seconds) * 1e9)))]


def test_arrival_is_the_kernels_timestamp_on_the_monotonic_clock():
    # Read at monotonic 500.0 = wall 1000.0; the kernel stamped it 30 ms before.
    assert arrival_time(timestamp(999.970), 500.0, 1000.0) == pytest.approx(499.970, abs=1e-6)


@pytest.mark.parametrize("ancillary", [
    [],                                                        # no timestamp
    [(socket.SOL_SOCKET, SCM_TIMESTAMPNS + 1, b"\0" * 16)],   # another kind
    [(socket.SOL_SOCKET + 1, SCM_TIMESTAMPNS, b"\0" * 16)],   # another level
    [(socket.SOL_SOCKET, SCM_TIMESTAMPNS, b"\0" * 8)],        # truncated
])
def test_arrival_without_a_usable_timestamp_is_the_read_time(ancillary):
    assert arrival_time(ancillary, 500.0, 1000.0) == 500.0


def test_a_timestamp_from_the_future_is_not_believed():
    # The wall clock stepped back between the kernel's stamp and our reading.
    assert arrival_time(timestamp(1000.5), 500.0, 1000.0) == 500.0


def test_a_datagram_read_late_keeps_its_arrival_time():
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def delivered_after(delay: float) -> tuple[float, float, list]:
        sent = time.monotonic()
        sender.sendto(b"x", receiver.getsockname())
        time.sleep(delay)  # the probe thread, starved
        _data, ancillary, _flags, _peer = receiver.recvmsg(16, _ANCILLARY_SPACE)
        read = time.monotonic()
        return sent, read, ancillary

    try:
        receiver.bind(("127.0.0.1", 0))
        receiver.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        # The kernel switches receive timestamps on a moment later (a deferred
        # static key); until then it stamps at read time. The probe opens its
        # socket long before its first reply; here, wait for the switch.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            sent, read, ancillary = delivered_after(0.01)
            if arrival_time(ancillary, read, time.time()) < read - 0.005:
                break
        sent, read, ancillary = delivered_after(0.2)
        arrived = arrival_time(ancillary, read, time.time())
    finally:
        receiver.close()
        sender.close()
    assert ancillary, "the kernel attached no timestamp"
    assert sent - 0.001 <= arrived < read - 0.15


def test_the_latest_gap_between_replies_is_kept_per_target_as_a_hint():
    probe = DowntimeProbe(["127.0.0.1", "127.0.0.2"], interval=0.01, protocol="udp",
                          udp_port=7)
    assert probe.gap_threshold == 0.05
    for _ in range(6):
        for index in range(2):
            probe._timelines[index].sent.append(100.0)
            probe._timelines[index].received.append(float("nan"))
    assert probe.last_reply_gap("127.0.0.1") is None
    probe._record_reply(reply(probe, 0, 0), "127.0.0.1", 100.00)
    probe._record_reply(reply(probe, 0, 1), "127.0.0.1", 100.05)  # exactly the threshold
    assert probe.last_reply_gap("127.0.0.1") is None
    probe._record_reply(reply(probe, 0, 2), "127.0.0.1", 100.30)
    probe._record_reply(reply(probe, 0, 3), "127.0.0.1", 100.31)
    assert probe.last_reply_gap("127.0.0.1") == (100.05, 100.30)
    # A duplicate or a late reply arriving out of order opens no gap of its own.
    probe._record_reply(reply(probe, 0, 3), "127.0.0.1", 100.90)
    probe._record_reply(reply(probe, 0, 4), "127.0.0.1", 100.305)
    assert probe.last_reply_gap("127.0.0.1") == (100.05, 100.30)
    probe._record_reply(reply(probe, 0, 5), "127.0.0.1", 101.00)
    assert probe.last_reply_gap("127.0.0.1") == (100.31, 101.00)
    assert probe.last_reply_gap("127.0.0.2") is None
    assert DowntimeProbe(["127.0.0.1"], interval=0.02, protocol="udp",
                         udp_port=7).gap_threshold == pytest.approx(0.06)
    probe._sock.close()
