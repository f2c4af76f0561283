"""The testbed's pcap reader and wire view, on a real capture of a migration.

tcpdump on hv2's and the probe's tenant uplinks while the guest moved
hv1 -> hv2 (2026-12-01; the same migration as
tests/fixtures/probe/migration-local-hv1-hv2.json).
"""

import array
import json
import math
from pathlib import Path

import pytest

from rally_lm.probes.anatomy import dissect, longest_silence, reply_silences
from rally_lm.probes.records import ProbeClock, TargetTimeline
from rally_lm_testbed.capture import Packet, guest_mac, read_pcap, wire_view

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
GUEST = "10.231.16.135"


@pytest.fixture(scope="module")
def packets():
    return (read_pcap(FIXTURES / "capture" / "hv2-tenant0.pcap"),
            read_pcap(FIXTURES / "capture" / "probe-tenant0.pcap"))


def test_frames_are_decoded(packets):
    destination, probe = packets
    kinds = {p.kind for p in destination}
    assert {"udp", "icmp", "rarp"} <= kinds
    assert guest_mac(probe, GUEST) == "fa:16:3e:9d:64:dc"
    udp = [p for p in probe if p.kind == "udp" and p.dst == GUEST]
    assert all(p.probe is not None for p in udp)
    seqs = [p.probe[2] for p in udp]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


@pytest.mark.parametrize("protocol", ["udp", "icmp"])
def test_the_tool_matches_the_wire(packets, protocol):
    destination, probe = packets
    data = json.loads((FIXTURES / "probe" / "migration-local-hv1-hv2.json").read_text())
    raw = data[protocol]
    clock = ProbeClock(*raw["clock"])
    timeline = TargetTimeline(GUEST, protocol, 0.01, clock, array.array("d", raw["sent"]),
                              array.array("d", [math.nan if r is None else r
                                                for r in raw["received"]]))
    silence = longest_silence(reply_silences(timeline), timeline.sent[0], timeline.sent[-1])
    tool = dissect(timeline, silence)
    wire = wire_view(destination, probe, GUEST, 1796086540.4, 1796086541.0, protocol)
    assert clock.to_wall(tool.path_back) == pytest.approx(wire.first_request_at_destination,
                                                         abs=0.01)
    assert clock.to_wall(tool.first_reply) == pytest.approx(
        wire.first_reply_leaving_destination, abs=0.01)
    assert 0 <= wire.first_request_at_destination - wire.rarp <= 0.01
    assert 0.9 <= tool.client_downtime_ms / wire.silence_ms <= 1.1
    # The same packets on the probe's interface: sent before, received after.
    assert clock.to_wall(tool.path_back) == pytest.approx(wire.first_request_left_probe,
                                                         abs=0.01)
    assert 0 < wire.first_request_at_destination - wire.first_request_left_probe < 0.01
    assert 0 < wire.first_reply_reached_probe - wire.first_reply_leaving_destination < 0.01
    assert wire.first_reply_reached_probe == pytest.approx(wire.silence_end, abs=1e-6)
    # Nothing that reached the destination went unanswered: the path was back
    # with the first request there.
    assert wire.path_back_left_probe == wire.first_request_left_probe
    assert (wire.unanswered_at_destination, wire.replies_lost_on_the_way) == (0, 0)


def _echo(ts, src, dst, seq):
    return Packet(ts, "udp", src, dst, "fa:16:3e:00:00:01", (7, 0, seq))


def test_transit_is_matched_by_probe_sequence_not_by_order():
    probe_ip, guest = "10.0.0.250", "10.0.0.5"
    destination = [Packet(1.0, "rarp", src_mac="fa:16:3e:00:00:01"),
                   _echo(1.05, probe_ip, guest, 41), _echo(1.06, guest, probe_ip, 41),
                   _echo(1.07, probe_ip, guest, 42), _echo(1.08, guest, probe_ip, 42)]
    # Reply 41 was lost on the way back; reply 42 arrived 120 ms after leaving.
    probe = [_echo(0.99, probe_ip, guest, 40), _echo(1.04, probe_ip, guest, 41),
             _echo(1.065, probe_ip, guest, 42), _echo(1.2, guest, probe_ip, 42)]
    wire = wire_view(destination, probe, guest, 0.9, 1.5)
    assert (wire.first_request_left_probe, wire.first_request_at_destination) == (1.04, 1.05)
    assert wire.first_reply_leaving_destination == 1.06
    assert wire.first_reply_reached_probe is None
    found = wire_view(destination[:1] + destination[3:], probe, guest, 0.9, 1.5)
    assert (found.first_reply_leaving_destination, found.first_reply_reached_probe) == \
        (1.08, 1.2)
    assert found.first_request_left_probe == 1.065
    # The client never got reply 41: the path is back with request 42, and the
    # loss was on the way back, not at the destination.
    assert wire.path_back_left_probe == 1.065
    assert (wire.unanswered_at_destination, wire.replies_lost_on_the_way) == (0, 1)


def test_a_request_dropped_at_the_destination_moves_the_path_back_after_it():
    # Seen in CI (shared, tunnelled, ICMP): the first request reached the
    # destination's uplink 2 ms after its RARP and was never answered; the
    # tool's path back (the first request answered after the last loss) was
    # the next one, 20 ms later. The capture says where that loss happened.
    probe_ip, guest = "10.0.0.250", "10.0.0.5"
    destination = [Packet(1.000, "rarp", src_mac="fa:16:3e:00:00:01"),
                   _echo(1.002, probe_ip, guest, 41),
                   _echo(1.012, probe_ip, guest, 42),
                   _echo(1.022, probe_ip, guest, 43), _echo(1.040, guest, probe_ip, 43),
                   _echo(1.041, guest, probe_ip, 44)]
    probe = [_echo(0.90, probe_ip, guest, 39), _echo(0.901, guest, probe_ip, 39),
             _echo(0.91, probe_ip, guest, 40), _echo(1.001, probe_ip, guest, 41),
             _echo(1.011, probe_ip, guest, 42), _echo(1.021, probe_ip, guest, 43),
             _echo(1.031, probe_ip, guest, 44), _echo(1.041, guest, probe_ip, 43),
             _echo(1.042, guest, probe_ip, 44)]
    wire = wire_view(destination, probe, guest, 0.8, 1.5)
    assert wire.first_request_left_probe == 1.001
    assert wire.path_back_left_probe == 1.021
    assert (wire.unanswered_at_destination, wire.replies_lost_on_the_way) == (2, 0)


def test_a_held_reply_to_an_older_request_does_not_end_the_silence():
    # Seen in CI (ceph, ICMP): request 40 reached the guest on the source just
    # before the pause; 41 was answered, then 42 and 43 waited. After resuming,
    # the guest answered 40 from the destination first: that reply does not
    # answer anything the client was waiting for, so the silence (and the
    # tool's first reply) ends with reply 42.
    probe_ip, guest = "10.0.0.250", "10.0.0.5"
    destination = [Packet(1.0, "rarp", src_mac="fa:16:3e:00:00:01"),
                   _echo(1.063, guest, probe_ip, 40),
                   _echo(1.064, probe_ip, guest, 42), _echo(1.090, guest, probe_ip, 42),
                   _echo(1.091, probe_ip, guest, 43), _echo(1.092, guest, probe_ip, 43)]
    probe = [_echo(0.90, probe_ip, guest, 40), _echo(0.91, probe_ip, guest, 41),
             _echo(0.915, guest, probe_ip, 41), _echo(0.92, probe_ip, guest, 42),
             _echo(1.083, guest, probe_ip, 40), _echo(1.085, probe_ip, guest, 43),
             _echo(1.094, guest, probe_ip, 42), _echo(1.095, guest, probe_ip, 43)]
    wire = wire_view(destination, probe, guest, 0.8, 1.5)
    assert (wire.silence_start, wire.silence_end) == (0.92, 1.094)
    assert wire.first_reply_leaving_destination == 1.090
    assert wire.first_reply_reached_probe == wire.silence_end


def test_the_switchover_is_the_silence_around_the_rarp_not_a_longer_stall_after_it():
    # Seen in CI (shared, UDP): the switchover's silence (0.98-1.11, RARP at
    # 1.01) was followed by a 138 ms stall of late replies (1.12-1.258) that
    # outlasted it. The client downtime is the longest silence; the first
    # request and reply the tool dissects belong to the switchover's.
    probe_ip, guest = "10.0.0.250", "10.0.0.5"
    destination = [Packet(1.0096, "rarp", src_mac="fa:16:3e:00:00:01"),
                   _echo(1.039, probe_ip, guest, 43), _echo(1.105, guest, probe_ip, 43),
                   _echo(1.106, probe_ip, guest, 44), _echo(1.107, guest, probe_ip, 44),
                   _echo(1.12, probe_ip, guest, 45), _echo(1.25, guest, probe_ip, 45)]
    probe = [_echo(0.95, probe_ip, guest, 40), _echo(0.96, guest, probe_ip, 40),
             _echo(0.98, probe_ip, guest, 41), _echo(0.99, probe_ip, guest, 42),
             _echo(1.038, probe_ip, guest, 43), _echo(1.105, probe_ip, guest, 44),
             _echo(1.110, guest, probe_ip, 43), _echo(1.1198, guest, probe_ip, 44),
             _echo(1.1199, probe_ip, guest, 45), _echo(1.2579, guest, probe_ip, 45)]
    wire = wire_view(destination, probe, guest, 0.9, 1.5)
    assert (wire.silence_start, wire.silence_end) == (1.1199, 1.2579)
    assert (wire.switchover_start, wire.switchover_end) == (0.98, 1.110)
    assert wire.first_reply_leaving_destination == 1.105
    assert wire.first_reply_reached_probe == wire.switchover_end


def _tcp_frame(src, dst, sport, dport, payload):
    import struct

    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, 0x18, 65535, 0, 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0,
                     bytes(map(int, src.split("."))), bytes(map(int, dst.split("."))))
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + tcp


def _pcap(path, frames):
    import struct

    data = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 128, 1)
    for index, frame in enumerate(frames):
        data += struct.pack("<IIII", 1000 + index, 0, len(frame), len(frame)) + frame
    path.write_bytes(data)
    return path


def test_a_tls_migration_stream_is_told_from_a_plain_one(tmp_path):
    from rally_lm_testbed.capture import stream_verdict, tcp_segments

    hello = bytes([0x16, 0x03, 0x01, 0x02, 0x00]) + b"\x01" * 20
    tls = _pcap(tmp_path / "tls.pcap", [
        _tcp_frame("10.0.0.11", "10.0.0.12", 40001, 49152, hello),
        _tcp_frame("10.0.0.11", "10.0.0.12", 40001, 49152, bytes([0x17, 0x03, 0x03]) + b"x"),
    ])
    plain = _pcap(tmp_path / "plain.pcap", [
        _tcp_frame("10.0.0.11", "10.0.0.12", 40002, 49153, b"QEVM\x00\x00\x00\x03"),
    ])
    assert [s.payload[:1] for s in tcp_segments(tls)] == [b"\x16", b"\x17"]
    assert stream_verdict(tcp_segments(tls)) == {
        "connections": 1, "tls_connections": 1, "plain_qemu_stream": False,
        "first_bytes": ["16030102"]}
    verdict = stream_verdict(tcp_segments(plain))
    assert verdict["tls_connections"] == 0 and verdict["plain_qemu_stream"] is True


def test_a_cooked_v2_frame_says_its_interface_and_direction():
    import struct as st

    from rally_lm.probes.downtime import _MAGIC, _PAYLOAD
    from rally_lm_testbed import capture as cap

    udp = st.pack("!HHHH", 40000, 7, 8 + _PAYLOAD.size, 0) + _PAYLOAD.pack(_MAGIC, 9, 0, 41)
    ip = st.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                 bytes([10, 231, 16, 250]), bytes([10, 231, 16, 5])) + udp
    # protocol, reserved, ifindex, ARPHRD_ETHER, packet type 4 (outgoing), address
    frame = st.pack("!HHIHBB8s", 0x0800, 0, 17, 1, 4, 6, bytes.fromhex("fa163e000001") + b"\0\0")
    packet = cap.parse_sll2(12.5, frame + ip)
    assert (packet.kind, packet.src, packet.dst, packet.probe) == (
        "udp", "10.231.16.250", "10.231.16.5", (9, 0, 41))
    assert (packet.ifindex, packet.outgoing, packet.src_mac) == (17, True, "fa:16:3e:00:00:01")
    rarp = cap.parse_sll2(13.0, st.pack("!HHIHBB8s", 0x8035, 0, 18, 1, 0, 6,
                                        bytes(8)) + bytes(28))
    assert (rarp.kind, rarp.ifindex, rarp.outgoing) == ("rarp", 18, False)
