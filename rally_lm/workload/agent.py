#!/usr/bin/env python3
"""rally-lm-agent, Python edition: the workload inside a benchmark guest.

Runs on any cloud image with Python 3.6 or newer (every image with
cloud-init has one), standard library only; delivered in the user data by
the lm_workload context. Same command line and behaviour as the C agent of
the testbed's tiny image (rally_lm_testbed/files/agent.c); docs/agent.md is
their contract, and both pass the same behaviour tests.

  --tcp-echo PORT       TCP echo (RFC 862) for the TCP continuity probe
  --udp-echo PORT       UDP echo for the downtime probe
  --sink PORT           TCP sink for inbound data streams (counts bytes)
  --dirty-mib N         working set the memory dirtier writes over
  --dirty-rate MIB_S    how fast it writes, MiB/s
  --fill-path DIR --disk-fill PCT
                        fill the filesystem holding DIR with files until it is
                        PCT % used (never beyond 95 %, never into the last
                        64 MiB); the files live in DIR/.rally-lm-fill
  --disk DEV --disk-fill PCT
                        write a pattern over the first PCT % of a dedicated
                        data device; refused if DEV, a partition of it or a
                        holder of it is mounted, swapped on or otherwise busy
  --status-every S      print a status line every S seconds (default 10)
  --tx-checksum-offload off
                        before listening, turn off TX checksum offload on every
                        network interface but loopback (SIOCETHTOOL), so the
                        guest's kernel fills its own TCP/UDP checksums: for a
                        datapath that forwards a virtio guest's offloaded
                        checksums unfilled (Open vSwitch's userspace datapath
                        without checksum offload, the testbed's OVN)

Prints "rally-lm-agent: ready ..." once every service listens, and
"rally-lm-agent: status {json}" lines, on stdout and on /dev/console.
"""

import argparse
import array
import fcntl
import json
import mmap
import os
import selectors
import socket
import struct
import sys
import threading
import time

PAGE = 4096
MIB = 1 << 20
#: Never fill a filesystem beyond this, nor into its last FILL_RESERVE bytes.
FILL_CEILING_PERCENT = 95
FILL_RESERVE = 64 * MIB
FILL_CHUNK = 16 * MIB
#: linux/sockios.h and linux/ethtool.h
SIOCETHTOOL = 0x8946
ETHTOOL_GTXCSUM = 0x16
ETHTOOL_STXCSUM = 0x17


class Status:
    """The agent's counters, printed as one JSON line."""

    def __init__(self):
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.values = {"udp_echoes": 0, "tcp_echo_bytes": 0, "sink_bytes": 0,
                       "dirtied_mib": 0.0, "disk_written_mib": 0.0, "disk": "idle",
                       "memory": "idle"}

    def add(self, key, amount):
        with self.lock:
            self.values[key] += amount

    def set(self, **values):
        with self.lock:
            self.values.update(values)

    def line(self):
        with self.lock:
            values = dict(self.values, uptime_s=round(time.monotonic() - self.started, 3))
        return "rally-lm-agent: status " + json.dumps(values, sort_keys=True)


def say(text):
    print(text, flush=True)
    try:
        with open("/dev/console", "w") as console:
            console.write(text + "\n")
    except OSError:
        pass  # no console to write to (a test, a container): stdout has it


def listen(kind, port):
    sock = socket.socket(socket.AF_INET, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", port))
    if kind == socket.SOCK_STREAM:
        sock.listen(64)
    sock.setblocking(False)
    return sock


def serve(tcp_port, udp_port, sink_port, status):
    selector = selectors.DefaultSelector()
    if tcp_port:
        selector.register(listen(socket.SOCK_STREAM, tcp_port), selectors.EVENT_READ, "echo")
    if udp_port:
        selector.register(listen(socket.SOCK_DGRAM, udp_port), selectors.EVENT_READ, "udp")
    if sink_port:
        selector.register(listen(socket.SOCK_STREAM, sink_port), selectors.EVENT_READ, "sink")
    say("rally-lm-agent: ready tcp-echo=%d udp-echo=%d sink=%d" % (tcp_port or 0,
                                                                     udp_port or 0,
                                                                     sink_port or 0))
    while True:
        for key, mask in selector.select():
            sock, role = key.fileobj, key.data
            if role == "udp":
                while True:
                    try:
                        data, peer = sock.recvfrom(65535)
                    except (BlockingIOError, InterruptedError):
                        break
                    try:
                        sock.sendto(data, peer)
                        status.add("udp_echoes", 1)
                    except OSError:
                        pass
            elif role in ("echo", "sink"):
                try:
                    conn, _peer = sock.accept()
                except (BlockingIOError, InterruptedError):
                    continue
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn.setblocking(False)
                selector.register(conn, selectors.EVENT_READ,
                                  ["conn", role == "echo", bytearray()])
            else:
                _stream(selector, sock, role, mask, status)


def _stream(selector, conn, state, mask, status):
    _kind, echo, pending = state
    if mask & selectors.EVENT_READ:
        try:
            data = conn.recv(65536)
        except (BlockingIOError, InterruptedError):
            data = None
        except OSError:
            data = b""
        if data == b"":
            selector.unregister(conn)
            conn.close()
            return
        if data:
            if echo:
                pending += data
            else:
                status.add("sink_bytes", len(data))
    if pending:
        try:
            sent = conn.send(pending)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            selector.unregister(conn)
            conn.close()
            return
        del pending[:sent]
        status.add("tcp_echo_bytes", sent)
    events = selectors.EVENT_READ | (selectors.EVENT_WRITE if pending else 0)
    selector.modify(conn, events, state)


def dirty_memory(mib, rate_mib, status):
    """Write one byte per page over the working set at the rate asked: what pre-copy resends."""
    size = mib * MIB
    try:
        memory = mmap.mmap(-1, size)
    except (OSError, ValueError) as exc:
        # Said in the status line: a run must not pass as "dirtying" on an idle guest.
        status.set(memory="failed: mmap: %s" % exc)
        say("rally-lm-agent: cannot dirty memory: mmap: %s" % exc)
        return
    status.set(memory="dirtying")
    pages = size // PAGE
    tick = 0.01
    per_tick = max(1, int(rate_mib * MIB / PAGE * tick))
    say("rally-lm-agent: dirtying %d MiB at %.1f MiB/s" % (mib, rate_mib))
    # The byte written is the pass number: every pass changes every page's
    # content, which QEMU's dirty-rate sampling (page hashes) needs to see it.
    page, passes, next_tick = 0, 1, time.monotonic()
    while True:
        left = per_tick
        while left:
            count = min(left, pages - page)
            memory[page * PAGE:(page + count) * PAGE:PAGE] = bytes([passes % 256]) * count
            page += count
            if page == pages:
                page, passes = 0, passes + 1
            left -= count
        status.add("dirtied_mib", per_tick * PAGE / MIB)
        next_tick += tick
        delay = next_tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif delay < -1.0:
            next_tick = time.monotonic()  # starved: do not try to catch up a backlog


def used_percent(path):
    st = os.statvfs(path)
    total = st.f_blocks * st.f_frsize
    free = st.f_bavail * st.f_frsize
    return 100.0 * (total - free) / total if total else 100.0, free


def fill_files(path, percent, status):
    """Fill the filesystem holding ``path`` with files until it is ``percent`` % used."""
    if not os.path.isdir(path):
        status.set(disk="refused: %s is not a directory" % path)
        say("rally-lm-agent: cannot fill %s: not a directory" % path)
        return
    target = min(percent, FILL_CEILING_PERCENT)
    folder = os.path.join(path, ".rally-lm-fill")
    os.makedirs(folder, exist_ok=True)
    block = bytes(range(256)) * (FILL_CHUNK // 256)
    index = len(os.listdir(folder))
    status.set(disk="filling")
    while True:
        used, free = used_percent(path)
        status.set(disk_used_percent=round(used, 1))
        if used >= target or free <= FILL_RESERVE + FILL_CHUNK:
            break
        name = os.path.join(folder, "fill-%05d" % index)
        with open(name, "wb") as handle:
            handle.write(block[:8] + index.to_bytes(8, "big") + block[16:])
            handle.flush()
            os.fsync(handle.fileno())
        status.add("disk_written_mib", FILL_CHUNK / MIB)
        index += 1
    used, _free = used_percent(path)
    status.set(disk="done", disk_used_percent=round(used, 1))
    say("rally-lm-agent: filled %s to %.1f%% (asked %d%%)" % (path, used, percent))


def device_in_use(device):
    """Why a block device must not be written raw (None if it is free to use)."""
    real = os.path.realpath(device)
    name = os.path.basename(real)
    related = {real}
    sys_block = "/sys/class/block/" + name
    if os.path.isdir(sys_block):
        related |= {"/dev/" + p for p in os.listdir(sys_block) if p.startswith(name)}
        holders = os.path.join(sys_block, "holders")
        if os.path.isdir(holders) and os.listdir(holders):
            return "%s is held by %s" % (device, ", ".join(os.listdir(holders)))
    with open("/proc/mounts") as mounts:
        for line in mounts:
            source, where = line.split()[:2]
            if os.path.realpath(source) in related:
                return "%s holds the filesystem mounted on %s" % (source, where)
    with open("/proc/swaps") as swaps:
        for line in swaps.readlines()[1:]:
            if os.path.realpath(line.split()[0]) in related:
                return "%s is a swap device" % line.split()[0]
    return None


def fill_device(device, percent, status):
    """Write a pattern over the first ``percent`` % of a dedicated data device."""
    busy = device_in_use(device)
    if busy:
        status.set(disk="refused: " + busy)
        say("rally-lm-agent: refusing to write %s raw: %s" % (device, busy))
        return
    try:
        # O_EXCL on a block device: the kernel refuses it while anything uses it.
        fd = os.open(device, os.O_WRONLY | os.O_EXCL)
    except OSError as exc:
        status.set(disk="refused: %s" % exc)
        say("rally-lm-agent: cannot open %s: %s" % (device, exc))
        return
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        os.lseek(fd, 0, os.SEEK_SET)
        target = size * min(percent, 100) // 100
        block = bytearray(bytes(range(256)) * (MIB // 256))
        done = 0
        status.set(disk="filling")
        while done < target:
            block[0:8] = (done // MIB).to_bytes(8, "big")  # no two blocks alike
            length = min(MIB, target - done)
            os.write(fd, block[:length])
            done += length
            status.add("disk_written_mib", length / MIB)
        os.fsync(fd)
    finally:
        os.close(fd)
    status.set(disk="done")
    say("rally-lm-agent: filled %d MiB of %s (%d%%)" % (done // MIB, device, percent))


def _ethtool_value(sock, device, command, value=0):
    """One ETHTOOL_*TXCSUM call: struct ifreq (name, pointer to ethtool_value)."""
    data = array.array("B", struct.pack("II", command, value))
    address = data.buffer_info()[0]
    request = struct.pack("16sP", device.encode()[:15], address)
    request += bytes(40 - len(request))  # sizeof(struct ifreq) on 64-bit
    fcntl.ioctl(sock.fileno(), SIOCETHTOOL, request)
    return struct.unpack("II", data.tobytes())[1]


def tx_checksum_offload_off():
    """Turn TX checksum offload off on every interface but loopback; what was done."""
    said = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _, device in socket.if_nameindex():
            if device == "lo":
                continue
            try:
                if _ethtool_value(sock, device, ETHTOOL_GTXCSUM):
                    _ethtool_value(sock, device, ETHTOOL_STXCSUM, 0)
                left_on = _ethtool_value(sock, device, ETHTOOL_GTXCSUM)
            except OSError as exc:
                said.append("could not turn TX checksum offload off on %s: %s"
                            % (device, exc.strerror or exc))
                continue
            said.append("TX checksum offload %s on %s" % ("still on" if left_on else "off",
                                                           device))
    return said


def report(status, every):
    while True:
        time.sleep(every)
        say(status.line())


def parse(argv):
    parser = argparse.ArgumentParser(prog="rally-lm-agent")
    parser.add_argument("--tcp-echo", type=int, default=0)
    parser.add_argument("--udp-echo", type=int, default=0)
    parser.add_argument("--sink", type=int, default=0)
    parser.add_argument("--dirty-mib", type=int, default=0)
    parser.add_argument("--dirty-rate", type=float, default=0.0)
    parser.add_argument("--fill-path")
    parser.add_argument("--disk")
    parser.add_argument("--disk-fill", type=int, default=0)
    parser.add_argument("--status-every", type=float, default=10.0)
    parser.add_argument("--tx-checksum-offload", choices=("keep", "off"), default="keep")
    args = parser.parse_args(argv)
    if args.fill_path and args.disk:
        parser.error("--fill-path and --disk exclude each other")
    return args


def main(argv=None):
    args = parse(sys.argv[1:] if argv is None else argv)
    status = Status()
    if args.tx_checksum_offload == "off":
        for line in tx_checksum_offload_off():
            say("rally-lm-agent: " + line)
    if args.disk_fill > 0 and (args.fill_path or args.disk):
        filler = (fill_device, args.disk) if args.disk else (fill_files, args.fill_path)
        threading.Thread(target=filler[0], args=(filler[1], args.disk_fill, status),
                         daemon=True).start()
    if args.dirty_mib > 0 and args.dirty_rate > 0:
        threading.Thread(target=dirty_memory, args=(args.dirty_mib, args.dirty_rate, status),
                         daemon=True).start()
    threading.Thread(target=report, args=(status, args.status_every), daemon=True).start()
    serve(args.tcp_echo, args.udp_echo, args.sink, status)
    return 0


if __name__ == "__main__":
    sys.exit(main())
