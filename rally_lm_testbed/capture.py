"""Packet captures on the testbed, to check the tool's outage anatomy against the wire.

``tcpdump`` runs inside a host's network namespace on its tenant uplink
(kernel timestamps, microseconds, wall clock), filtered to one guest's echo
traffic and to RARP (QEMU's announce of the guest's MAC). This module reads
the pcap files itself and answers, for one migration:

* when the first echo request reached the destination host, and when the
  guest's first reply left it;
* when the destination announced the guest (the first RARP from its MAC);
* the reply silence seen on the probe's own interface, computed with the same
  definition as the tool's client-perceived downtime, from capture times.
"""

from __future__ import annotations

import array
import dataclasses
import math
import signal
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

from rally_lm.probes.anatomy import longest_silence, reply_silences, switchover_silence
from rally_lm.probes.downtime import _MAGIC, _PAYLOAD
from rally_lm.probes.records import ProbeClock, TargetTimeline

_GLOBAL = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")
_MICRO, _NANO = 0xA1B2C3D4, 0xA1B23C4D
ETH_IPV4, ETH_RARP = 0x0800, 0x8035


@dataclasses.dataclass(frozen=True)
class Packet:
    """One frame: what the analysis needs of it."""

    ts: float
    kind: str  # "udp", "icmp", "rarp", "other"
    src: str = ""
    dst: str = ""
    src_mac: str = ""
    #: Our probes' payload: (probe token, target index, sequence number).
    probe: tuple[int, int, int] | None = None
    icmp_type: int | None = None
    #: From a capture on every interface (Linux cooked v2): the interface's index,
    #: and whether the host sent the frame out of it (toward a guest, on a tap).
    ifindex: int = 0
    outgoing: bool | None = None


def _ip(raw: bytes) -> str:
    return ".".join(str(b) for b in raw)


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def _probe_payload(data: bytes) -> tuple[int, int, int] | None:
    if len(data) < _PAYLOAD.size:
        return None
    magic, token, index, seq = _PAYLOAD.unpack_from(data)
    return (token, index, seq) if magic == _MAGIC else None


def parse_frame(ts: float, frame: bytes) -> Packet:
    if len(frame) < 14:
        return Packet(ts, "other")
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    src_mac = _mac(frame[6:12])
    if ethertype == ETH_RARP:
        return Packet(ts, "rarp", src_mac=src_mac)
    if ethertype != ETH_IPV4 or len(frame) < 34:
        return Packet(ts, "other", src_mac=src_mac)
    ip = frame[14:]
    header = (ip[0] & 0x0F) * 4
    proto, src, dst = ip[9], _ip(ip[12:16]), _ip(ip[16:20])
    body = ip[header:]
    if proto == 17 and len(body) >= 8:
        return Packet(ts, "udp", src, dst, src_mac, _probe_payload(body[8:]))
    if proto == 1 and len(body) >= 8:
        return Packet(ts, "icmp", src, dst, src_mac, _probe_payload(body[8:]), body[0])
    return Packet(ts, "other", src, dst, src_mac)


#: pcap link types: Ethernet, and Linux cooked v2 (``tcpdump -i any -y LINUX_SLL2``).
LINK_ETHERNET, LINK_SLL2 = 1, 276
_SLL2 = struct.Struct("!HHIHBB8s")
_SLL2_OUTGOING = 4


def link_type(path: Path) -> int:
    data = Path(path).read_bytes()[:_GLOBAL.size]
    return _GLOBAL.unpack_from(data)[6] if len(data) == _GLOBAL.size else LINK_ETHERNET


def parse_sll2(ts: float, frame: bytes) -> Packet:
    """A Linux cooked v2 frame: the interface it was seen on, then as if Ethernet."""
    if len(frame) < _SLL2.size:
        return Packet(ts, "other")
    protocol, _reserved, ifindex, _hatype, kind, length, address = _SLL2.unpack_from(frame)
    ethernet = b"\0" * 6 + address[:6].ljust(6, b"\0") + struct.pack("!H", protocol) + \
        frame[_SLL2.size:]
    return dataclasses.replace(parse_frame(ts, ethernet), ifindex=ifindex,
                               outgoing=kind == _SLL2_OUTGOING)


def read_frames(path: Path) -> list[tuple[float, bytes]]:
    """(timestamp, frame) of every frame of a classic pcap file, in capture order."""
    data = Path(path).read_bytes()
    if len(data) < _GLOBAL.size:
        return []
    magic = _GLOBAL.unpack_from(data)[0]
    if magic not in (_MICRO, _NANO):
        raise ValueError(f"{path}: not a little-endian pcap file (magic {magic:#x})")
    scale = 1e-6 if magic == _MICRO else 1e-9
    frames, offset = [], _GLOBAL.size
    while offset + _RECORD.size <= len(data):
        seconds, fraction, captured, _length = _RECORD.unpack_from(data, offset)
        offset += _RECORD.size
        frames.append((seconds + fraction * scale, data[offset:offset + captured]))
        offset += captured
    return frames


def read_pcap(path: Path) -> list[Packet]:
    """Every frame of a classic pcap file (Ethernet or Linux cooked v2), in capture order."""
    parse = parse_sll2 if link_type(path) == LINK_SLL2 else parse_frame
    return [parse(ts, frame) for ts, frame in read_frames(path)]


@dataclasses.dataclass(frozen=True)
class TcpSegment:
    ts: float
    src: str
    dst: str
    sport: int
    dport: int
    #: The payload's first bytes (as many as the capture's snap length kept).
    payload: bytes


def tcp_segments(path: Path) -> list[TcpSegment]:
    """The TCP segments with payload in a pcap file."""
    segments = []
    for ts, frame in read_frames(path):
        if len(frame) < 34 or struct.unpack_from("!H", frame, 12)[0] != ETH_IPV4:
            continue
        ip = frame[14:]
        if ip[9] != 6:
            continue
        body = ip[(ip[0] & 0x0F) * 4:]
        if len(body) < 20:
            continue
        payload = body[(body[12] >> 4) * 4:]
        if payload:
            sport, dport = struct.unpack_from("!HH", body)
            segments.append(TcpSegment(ts, _ip(ip[12:16]), _ip(ip[16:20]), sport, dport,
                                       bytes(payload)))
    return segments


#: QEMU's migration stream opens with QEMU_VM_FILE_MAGIC ("QEVM").
QEMU_STREAM_MAGIC = b"QEVM"
#: TLS record content types: change_cipher_spec, alert, handshake, application_data.
TLS_CONTENT_TYPES = (0x14, 0x15, 0x16, 0x17)


def stream_verdict(segments: list[TcpSegment]) -> dict:
    """Whether migration connections carried TLS or QEMU's plain stream.

    ``segments`` are those sent to the migration ports (capture with a ``dst
    host ... and dst portrange ...`` filter). A connection is TLS when its
    first payload is a TLS handshake record (0x16 0x03 ...); the stream is
    plain when QEMU's magic appears in any captured payload.
    """
    connections: dict[tuple, bytes] = {}
    for segment in segments:
        connections.setdefault((segment.src, segment.sport, segment.dst, segment.dport),
                               segment.payload)
    tls = [k for k, p in connections.items() if len(p) >= 3 and p[0] == 0x16 and p[1] == 0x03]
    return {"connections": len(connections), "tls_connections": len(tls),
            "plain_qemu_stream": any(QEMU_STREAM_MAGIC in s.payload for s in segments),
            "first_bytes": sorted({p[:4].hex() for p in connections.values()})}


class Capture:
    """``tcpdump`` on one interface of one testbed namespace, until stopped."""

    def __init__(self, netns: str, device: str, path: Path, bpf: str) -> None:
        """``device`` "any": every interface, each frame with its interface's index
        (Linux cooked v2), so taps that come and go during a migration are seen too."""
        self.path = Path(path)
        cooked = ["-y", "LINUX_SLL2"] if device == "any" else []
        self._proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{netns}", "tcpdump", "-i", device, *cooked, "-U",
             "-n", "-s", "128", "-w", str(self.path), bpf],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def stop(self) -> list[Packet]:
        self._proc.send_signal(signal.SIGINT)
        try:
            _out, err = self._proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            _out, err = self._proc.communicate()
        if not self.path.exists():
            raise RuntimeError(f"tcpdump wrote nothing to {self.path}: {err.strip()[-300:]}")
        return read_pcap(self.path)


def guest_filter(ip: str) -> str:
    """BPF: the guest's echo traffic (UDP and ICMP) and every RARP frame."""
    return f"(host {ip} and (udp or icmp)) or rarp"


@dataclasses.dataclass
class WireView:
    """What the capture saw of one migration (wall-clock times)."""

    rarp: float | None
    first_request_at_destination: float | None
    first_reply_leaving_destination: float | None
    #: The same two packets on the probe's interface (matched by probe sequence):
    #: when that request left the probe, when that reply reached it (None: lost
    #: on the way). The difference is the fabric's transit, which a loaded
    #: machine can stretch (softirqs wait for a CPU) although nothing is lost.
    first_request_left_probe: float | None
    first_reply_reached_probe: float | None
    #: The longest reply silence on the probe's interface, by the tool's own
    #: definition (what the gated client downtime measures).
    silence_start: float | None
    silence_end: float | None
    #: The switchover's silence: the one the destination's RARP falls in (QEMU
    #: announces the guest when it resumes it). The first request and reply
    #: above belong to it; a stall elsewhere in the window can outlast it.
    switchover_start: float | None = None
    switchover_end: float | None = None
    #: The tool's "path back" computed from the capture: the first request,
    #: from the first one to reach the destination on, after which every
    #: request of the switchover was answered (a reply reached the probe's
    #: interface), as it left the probe. Later than the first request at the
    #: destination when requests that reached it still went unanswered.
    path_back_left_probe: float | None = None
    #: Requests of the switchover, from the first at the destination on, that
    #: reached the destination's uplink and got no reply from it: dropped on
    #: the destination host or by the guest, not on the fabric.
    unanswered_at_destination: int = 0
    #: Replies of the switchover that left the destination and never reached
    #: the probe: lost on the fabric on the way back.
    replies_lost_on_the_way: int = 0

    @property
    def silence_ms(self) -> float | None:
        if self.silence_start is None or self.silence_end is None:
            return None
        return (self.silence_end - self.silence_start) * 1000.0


def _is_request(packet: Packet, guest: str, protocol: str) -> bool:
    if packet.kind != protocol or packet.dst != guest or packet.probe is None:
        return False
    return protocol == "udp" or packet.icmp_type == 8


def _is_reply(packet: Packet, guest: str, protocol: str) -> bool:
    if packet.kind != protocol or packet.src != guest or packet.probe is None:
        return False
    return protocol == "udp" or packet.icmp_type == 0


def _sequences(packets: list[Packet], guest: str, protocol: str) -> list[int]:
    """The probe sequence numbers of the requests, in timeline order."""
    return sorted({p.probe[2] for p in packets if _is_request(p, guest, protocol)})


def probe_side_timeline(packets: list[Packet], guest: str, protocol: str,
                        interval: float) -> TargetTimeline:
    """The probe's requests and replies as the probe's interface saw them."""
    sent: dict[int, float] = {}
    received: dict[int, float] = {}
    for packet in packets:
        if _is_request(packet, guest, protocol):
            sent.setdefault(packet.probe[2], packet.ts)
        elif _is_reply(packet, guest, protocol):
            received.setdefault(packet.probe[2], packet.ts)
    order = _sequences(packets, guest, protocol)
    return TargetTimeline(target=guest, protocol=protocol, interval=interval,
                          clock=ProbeClock(0.0, 0.0),
                          sent=array.array("d", [sent[s] for s in order]),
                          received=array.array("d", [received.get(s, math.nan)
                                                     for s in order]))


def guest_mac(probe_side: list[Packet], guest: str) -> str | None:
    """The guest's MAC: the source of its replies (one flat L2 network)."""
    return next((p.src_mac for p in probe_side if p.src == guest), None)


def _same_on(packets: list[Packet], seen: Packet | None,
             kind: Callable[[Packet, str, str], bool], guest: str,
             protocol: str) -> float | None:
    """When the probe packet ``seen`` elsewhere appears in ``packets`` (None: never)."""
    if seen is None:
        return None
    return next((p.ts for p in packets if kind(p, guest, protocol) and p.probe == seen.probe),
                None)


def wire_view(destination: list[Packet], probe_side: list[Packet], guest: str,
              start: float, end: float, protocol: str = "udp",
              interval: float = 0.01) -> WireView:
    """The capture's account of the migration running between two wall times."""
    mac = guest_mac(probe_side, guest)
    after = [p for p in destination if start <= p.ts <= end + 5.0]
    rarp = next((p.ts for p in after if p.kind == "rarp" and p.src_mac == mac), None)
    first_request = next((p for p in after if _is_request(p, guest, protocol)), None)
    timeline = probe_side_timeline(probe_side, guest, protocol, interval)
    silences = reply_silences(timeline)
    silence = longest_silence(silences, start, end)
    # The tool's own rule, with the RARP standing for libvirt's pause and resume.
    switchover = switchover_silence(timeline, silences, start, end, rarp, rarp)
    # The reply that ends the switchover's silence answers a request the client
    # was waiting for. A reply to an older request (one the guest took into its
    # memory on the source before the pause and answers after resuming) can
    # leave the destination earlier; it does not end the silence, by the
    # tool's definition or the wire's.
    waiting_from = (_sequences(probe_side, guest, protocol)[switchover.first_index]
                    if switchover else -1)
    first_reply = next((p for p in after if _is_reply(p, guest, protocol)
                        and p.probe[2] >= waiting_from), None)
    losses = _losses_after_arrival(after, probe_side, guest, protocol, first_request,
                                   switchover.end if switchover else None)
    return WireView(rarp=rarp,
                    first_request_at_destination=first_request.ts if first_request else None,
                    first_reply_leaving_destination=first_reply.ts if first_reply else None,
                    first_request_left_probe=_same_on(probe_side, first_request, _is_request,
                                                      guest, protocol),
                    first_reply_reached_probe=_same_on(probe_side, first_reply, _is_reply,
                                                       guest, protocol),
                    silence_start=silence.start if silence else None,
                    silence_end=silence.end if silence else None,
                    switchover_start=switchover.start if switchover else None,
                    switchover_end=switchover.end if switchover else None,
                    **losses)


def _losses_after_arrival(destination: list[Packet], probe_side: list[Packet], guest: str,
                          protocol: str, first_request: Packet | None,
                          silence_end: float | None) -> dict:
    """Where the requests sent from the first at the destination to the silence's end went.

    A request the client got no reply to was either dropped at the
    destination (it reached the uplink, no reply left) or its reply was lost
    on the way back; the path is back after the last such loss (the tool's
    rule, which also looks at every request sent before the silence ended).
    """
    if first_request is None or silence_end is None:
        return {}
    arrived = {p.probe[2] for p in destination if _is_request(p, guest, protocol)}
    replied_at_destination = {p.probe[2] for p in destination if _is_reply(p, guest, protocol)}
    replied_at_probe = {p.probe[2] for p in probe_side if _is_reply(p, guest, protocol)}
    left_probe = {}
    for packet in probe_side:
        if _is_request(packet, guest, protocol):
            left_probe.setdefault(packet.probe[2], packet.ts)
    window = [s for s in sorted(left_probe)
              if s >= first_request.probe[2] and left_probe[s] < silence_end]
    unanswered = [s for s in window if s not in replied_at_probe]
    back = next((s for s in window if not unanswered or s > unanswered[-1]), None)
    return {
        "path_back_left_probe": left_probe[back] if back is not None else None,
        "unanswered_at_destination": sum(1 for s in unanswered if s in arrived
                                         and s not in replied_at_destination),
        "replies_lost_on_the_way": sum(1 for s in unanswered if s in replied_at_destination),
    }
