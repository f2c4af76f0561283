"""Both workload agents pass the same behaviour tests (docs/agent.md).

The C agent (the testbed's tiny image) and the Python agent (any cloud image,
delivered by cloud-init) run here as processes on loopback: echo for the
probes, an inbound sink, memory dirtying at a rate, a data-safe disk fill
into files on a small real filesystem, a raw fill only of a dedicated device
that nothing uses, and their status lines.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rally_lm.probes.downtime import DowntimeProbe
from rally_lm.probes.tcp_continuity import TcpContinuityProbe
from tests.functional.conftest import require

pytestmark = pytest.mark.functional
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def c_agent(tmp_path_factory):
    require(shutil.which("gcc") is not None, "gcc is not installed")
    binary = tmp_path_factory.mktemp("agent") / "rally-lm-agent"
    subprocess.run(["gcc", "-O2", "-static", "-o", str(binary),
                    str(ROOT / "rally_lm_testbed" / "files" / "agent.c")], check=True)
    return [str(binary)]


PYTHON_AGENT = ["/usr/bin/python3", str(ROOT / "rally_lm" / "workload" / "agent.py")]


@pytest.fixture(params=["c", "python"])
def agent(request, c_agent):
    return c_agent if request.param == "c" else PYTHON_AGENT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Running:
    def __init__(self, command, *args):
        self.proc = subprocess.Popen([*command, *args, "--status-every", "0.3"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self.lines: list[str] = []

    def wait_for(self, text, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line.rstrip())
            if text in line:
                return line
        raise AssertionError(f"agent never said {text!r}: {self.lines[-20:]}")

    def status(self):
        line = self.wait_for("rally-lm-agent: status ")
        return json.loads(line.split("rally-lm-agent: status ", 1)[1])

    def status_where(self, condition, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            current = self.status()
            if condition(current):
                return current
        raise AssertionError(f"status never satisfied the test: {self.lines[-5:]}")

    def stop(self):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def run():
    started = []

    def start(command, *args):
        running = Running(command, *args)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


def test_echo_for_the_probes_and_an_inbound_sink(agent, run):
    echo, sink = free_port(), free_port()
    running = run(agent, "--tcp-echo", str(echo), "--udp-echo", str(echo), "--sink", str(sink))
    running.wait_for("rally-lm-agent: ready")
    udp = DowntimeProbe(["127.0.0.1"], interval=0.01, protocol="udp", udp_port=echo,
                        reply_timeout=0.2).start()
    tcp = TcpContinuityProbe(["127.0.0.1"], echo, rate_bytes_per_s=51200).start()
    with socket.create_connection(("127.0.0.1", sink)) as stream:
        stream.sendall(b"x" * 100_000)
    time.sleep(1.0)
    (timeline,) = udp.stop()
    (stream_result,) = tcp.stop()
    assert timeline.requests_sent >= 50 and timeline.replies == timeline.requests_sent
    assert stream_result.intact and stream_result.bytes_verified > 30_000
    # Status lines wait in the pipe in order: the first that shows all of it.
    running.status_where(lambda s: s["sink_bytes"] >= 100_000
                         and s["udp_echoes"] >= timeline.replies
                         and s["tcp_echo_bytes"] >= stream_result.bytes_verified)


def test_memory_is_dirtied_at_the_rate_asked(agent, run):
    running = run(agent, "--udp-echo", str(free_port()), "--dirty-mib", "16",
                  "--dirty-rate", "8")
    running.wait_for("rally-lm-agent: ready")
    first = running.status()
    last = running.status_where(lambda s: s["uptime_s"] >= first["uptime_s"] + 2.0)
    rate = (last["dirtied_mib"] - first["dirtied_mib"]) / (last["uptime_s"] - first["uptime_s"])
    assert 6.0 <= rate <= 10.0, rate
    assert last["memory"] == "dirtying"


def mapping_of_size(pid: int, size: int) -> int | None:
    """Where the process maps exactly ``size`` bytes (the dirtier's working set)."""
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        start, end = (int(x, 16) for x in line.split()[0].split("-"))
        if end - start == size:
            return start
    return None


def first_bytes_of_pages(pid: int, start: int, size: int) -> bytes:
    with open(f"/proc/{pid}/mem", "rb") as mem:
        out = bytearray()
        for page in range(start, start + size, 4096):
            mem.seek(page)
            out += mem.read(1)
        return bytes(out)


def test_every_pass_changes_every_pages_content(agent, run):
    # QEMU's dirty-rate sampling (virsh domdirtyrate-calc) hashes sampled pages:
    # a page rewritten with the bytes it already held reads as clean, and a
    # guest dirtying 48 MiB/s once measured 0 MiB/s. 3 MiB at 8 MiB/s: a pass
    # every ~0.4 s.
    size = 3 << 20
    running = run(agent, "--udp-echo", str(free_port()), "--dirty-mib", "3",
                  "--dirty-rate", "8")
    running.status_where(lambda s: s["memory"] == "dirtying" and s["dirtied_mib"] >= 3)
    children = Path(f"/proc/{running.proc.pid}/task/{running.proc.pid}/children")
    pid, start = next((p, at) for p in [running.proc.pid,
                                        *(int(c) for c in children.read_text().split())]
                      if (at := mapping_of_size(p, size)) is not None)
    before = first_bytes_of_pages(pid, start, size)
    time.sleep(1.0)
    after = first_bytes_of_pages(pid, start, size)
    unchanged = sum(a == b for a, b in zip(before, after, strict=True))
    assert unchanged == 0, f"{unchanged} of {len(before)} pages read the same a second apart"


def test_a_working_set_it_cannot_map_is_a_failure_in_the_status(agent, run):
    # 2 GiB under a 1 GB address-space limit: the load cannot be applied, and the
    # status says so instead of reading like an idle dirtier.
    running = run(["prlimit", "--as=1000000000", *agent], "--udp-echo", str(free_port()),
                  "--dirty-mib", "2048", "--dirty-rate", "8")
    status = running.status_where(lambda s: s["memory"] != "idle")
    assert status["memory"].startswith("failed: mmap"), status
    assert status["dirtied_mib"] == 0.0


def test_a_dirtier_killed_by_the_oom_killer_is_a_failure_in_the_status(c_agent, run):
    # The C agent dirties in a child process; in a guest short of memory the OOM
    # killer can end it silently (128 MiB guests asked for a 64 MiB working set
    # read 0 MiB dirtied with no word of why).
    running = run(c_agent, "--udp-echo", str(free_port()), "--dirty-mib", "16",
                  "--dirty-rate", "8")
    assert running.status_where(lambda s: s["memory"] == "dirtying")["dirtied_mib"] >= 0
    children = Path(f"/proc/{running.proc.pid}/task/{running.proc.pid}/children")
    dirtier = max((int(pid) for pid in children.read_text().split()),
                  key=lambda pid: int(Path(f"/proc/{pid}/statm").read_text().split()[1]))
    subprocess.run(["kill", "-KILL", str(dirtier)], check=True)
    status = running.status_where(lambda s: s["memory"] != "dirtying")
    assert status["memory"] == "failed: the dirtier was killed (out of memory?)", status


def test_no_dirtying_asked_reads_idle(agent, run):
    running = run(agent, "--udp-echo", str(free_port()))
    assert running.status()["memory"] == "idle"


@pytest.fixture
def small_filesystem(tmp_path, root_with_netns):
    where = tmp_path / "fs"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(where)], check=True)
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


def test_the_disk_is_filled_with_files_to_the_share_asked(agent, run, small_filesystem):
    running = run(agent, "--udp-echo", str(free_port()), "--fill-path", str(small_filesystem),
                  "--disk-fill", "50")
    status = running.status_where(lambda s: s["disk"] == "done")
    usage = shutil.disk_usage(small_filesystem)
    assert 50.0 <= 100.0 * usage.used / usage.total <= 60.0
    assert status["disk_used_percent"] >= 50.0 and status["disk_written_mib"] >= 112
    files = list((small_filesystem / ".rally-lm-fill").iterdir())
    assert len(files) == int(status["disk_written_mib"] // 16)


@pytest.fixture
def loop_device(tmp_path, root_with_netns):
    backing = tmp_path / "data.img"
    with open(backing, "wb") as handle:
        handle.truncate(32 << 20)
    device = subprocess.run(["losetup", "--find", "--show", str(backing)], check=True,
                            capture_output=True, text=True).stdout.strip()
    yield device
    subprocess.run(["losetup", "--detach", device], check=False)


def test_a_device_with_a_mounted_filesystem_is_refused(agent, run, loop_device, tmp_path):
    subprocess.run(["mkfs.ext4", "-q", loop_device], check=True)
    where = tmp_path / "mnt"
    where.mkdir()
    subprocess.run(["mount", loop_device, str(where)], check=True)
    (where / "precious").write_text("do not overwrite")
    try:
        running = run(agent, "--udp-echo", str(free_port()), "--disk", loop_device,
                      "--disk-fill", "50")
        line = running.wait_for("refusing to write")
        assert "mounted on" in line
    finally:
        subprocess.run(["umount", str(where)], check=True)
    subprocess.run(["mount", loop_device, str(where)], check=True)
    assert (where / "precious").read_text() == "do not overwrite"
    subprocess.run(["umount", str(where)], check=True)


def test_a_dedicated_device_is_written_raw(agent, run, loop_device):
    running = run(agent, "--udp-echo", str(free_port()), "--disk", loop_device,
                  "--disk-fill", "50")
    running.wait_for("filled 16 MiB")
    with open(loop_device, "rb") as device:
        written = device.read(16 << 20)
        untouched = device.read(1 << 20)
    assert len(set(written[1:4096])) > 100  # the pattern
    assert untouched == bytes(1 << 20)


def test_the_python_agent_runs_on_the_oldest_python_we_claim():
    # Python 3.6 (Ubuntu 18.04, CentOS 8): no syntax newer than that.
    import ast

    tree = ast.parse((ROOT / "rally_lm" / "workload" / "agent.py").read_text(),
                     feature_version=(3, 6))
    assert tree is not None
    assert sys.version_info >= (3, 6)


#: Inside a private network namespace: a veth pair, the agent started on it,
#: then a UDP datagram sent out of one end and read raw at the other - as a
#: userspace datapath reads a guest's frames - with its checksum checked.
CHECKSUM_SEEN = r'''
import json, os, socket, struct, subprocess, sys, time
def run(*cmd):
    subprocess.run(cmd, check=True)
run("ip", "link", "add", "veth-guest", "type", "veth", "peer", "name", "veth-wire")
run("ip", "addr", "add", "10.9.0.1/24", "dev", "veth-guest")
for dev in ("lo", "veth-guest", "veth-wire"):
    run("ip", "link", "set", dev, "up")
run("ip", "neigh", "add", "10.9.0.2", "lladdr", "02:00:00:00:00:02", "dev", "veth-guest")
agent = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, text=True)
said = []
while not said or "ready" not in said[-1]:
    said.append(agent.stdout.readline().strip())
wire = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
wire.bind(("veth-wire", 0))
wire.settimeout(5)
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
    udp.sendto(b"rally-lm" * 8, ("10.9.0.2", 9))
while True:
    frame = wire.recv(2048)
    ip = frame[14:]
    if ip[9] == 17 and ip[16:20] == socket.inet_aton("10.9.0.2"):
        break
header = (ip[0] & 15) * 4
segment = ip[header:struct.unpack("!H", ip[2:4])[0]]
pseudo = ip[12:20] + struct.pack("!BBH", 0, 17, len(segment))
data = pseudo + segment + b"\0" * (len(segment) % 2)
total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
while total >> 16:
    total = (total & 0xFFFF) + (total >> 16)
features = subprocess.run(["ethtool", "-k", "veth-guest"], capture_output=True,
                          text=True).stdout
agent.kill()
print(json.dumps({"said": said, "checksum_valid": total == 0xFFFF,
                  "tx_checksumming": "tx-checksumming: on" in features,
                  "loopback": subprocess.run(["ethtool", "-k", "lo"], capture_output=True,
                                             text=True).stdout.count("tx-checksumming: on")}))
'''


@pytest.mark.parametrize("offload", ["keep", "off"])
def test_tx_checksum_offload_is_turned_off_only_when_asked(agent, offload):
    require(os.geteuid() == 0 and shutil.which("unshare") and shutil.which("ethtool"),
            "root, unshare and ethtool are needed for a private network namespace")
    # The datagram is read raw beside the sender, as Open vSwitch's userspace
    # datapath reads a guest's tap: left to the device, its checksum is unfilled.
    done = subprocess.run(["unshare", "--net", sys.executable, "-c", CHECKSUM_SEEN, *agent,
                           "--udp-echo", "7", "--status-every", "60",
                           "--tx-checksum-offload", offload],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["loopback"] == 1, seen  # loopback is left alone
    if offload == "off":
        assert "rally-lm-agent: TX checksum offload off on veth-guest" in seen["said"], seen
        assert not seen["tx_checksumming"] and seen["checksum_valid"], seen
    else:
        assert not any("checksum" in line for line in seen["said"]), seen
        assert seen["tx_checksumming"] and not seen["checksum_valid"], seen


def test_an_unknown_tx_checksum_choice_is_refused(agent):
    done = subprocess.run([*agent, "--udp-echo", "7", "--tx-checksum-offload", "no"],
                          capture_output=True, text=True, timeout=10)
    assert done.returncode == 2 and "--tx-checksum-offload" in done.stderr, done.stderr
