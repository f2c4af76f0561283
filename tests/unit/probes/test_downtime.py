import socket
import time

import pytest

from rally_lm.probes.downtime import DowntimeProbe, ProbeError, _checksum
from rally_lm.probes.echo_server import EchoServer
from rally_lm.probes.timeline import find_disruptions


def test_icmp_checksum_of_known_packet():
    # Echo request, id 0x1234, seq 1, payload "abcd": checksum from RFC 1071 folding.
    header = bytes([8, 0, 0, 0, 0x12, 0x34, 0, 1]) + b"abcd"
    value = _checksum(header)
    data = header[:2] + value.to_bytes(2, "big") + header[4:]
    assert _checksum(data) == 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"targets": []}, "no probe target"),
        ({"targets": ["127.0.0.1"], "interval": 0.0005}, "below the minimum"),
        ({"targets": ["127.0.0.1"], "protocol": "tcp"}, "unknown probe protocol"),
        ({"targets": ["127.0.0.1"], "protocol": "udp"}, "UDP echo port"),
        ({"targets": ["127.0.0.1", "127.0.0.1"], "protocol": "udp", "udp_port": 7}, "twice"),
        ({"targets": ["no-such-host.invalid"], "protocol": "udp", "udp_port": 7}, "resolve"),
    ],
)
def test_bad_input_is_rejected(kwargs, message):
    with pytest.raises(ProbeError, match=message):
        DowntimeProbe(**kwargs)


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
