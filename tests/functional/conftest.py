"""Fixtures for functional tests: real namespaces, real links, real daemons.

They need root and the packages of tools/install-system-deps.sh. Outside CI a
missing prerequisite skips them; with RALLY_LM_REQUIRE_FUNCTIONAL=1 (set by
.ci/run) it fails them, so CI can never pass by skipping.
"""

import os
import shutil
import subprocess
import sys
import time

import pytest

from rally_lm_testbed import netns

PREFIX = f"rlmft{os.getpid() % 10000}-"
# 10.231.0.0/16 is checked against the root namespace's routes before use.
SUBNET = "10.231.7.0/24"


def require(condition: bool, why: str) -> None:
    if condition:
        return
    if os.environ.get("RALLY_LM_REQUIRE_FUNCTIONAL") == "1":
        pytest.fail(f"functional prerequisite missing: {why}")
    pytest.skip(why)


@pytest.fixture(scope="session")
def root_with_netns():
    require(os.geteuid() == 0, "functional tests need root")
    require(shutil.which("ip") is not None, "iproute2 is not installed")
    netns.check_subnet_free(SUBNET)
    yield
    netns.delete_netns_with_prefix(PREFIX)


@pytest.fixture(scope="session")
def testbed_session(root_with_netns):
    """The embedded testbed, built from nothing once per session and torn down at its end."""
    from rally_lm_testbed import testbed

    require(shutil.which("libvirtd") is not None and shutil.which("nova-compute") is not None,
            "testbed packages missing: run tools/install-system-deps.sh")
    testbed.down(quiet=True)
    elapsed = testbed.up()
    yield elapsed
    testbed.down(quiet=True)


class PairedHosts:
    """Two namespaces joined by a veth pair: ``probe`` 10.231.7.1, ``target`` .2.

    The target's address sits on a bridge with the veth as its port, as a
    guest's does, and both sides pin each other's MAC: taking the link down
    then cuts exactly the link, not ARP state too (an admin-down device loses
    its neighbour entries and re-learning them adds up to a second).
    """

    def __init__(self, tag: str):
        self.probe_ns = f"{PREFIX}{tag}-p"
        self.target_ns = f"{PREFIX}{tag}-t"
        self.probe_ip = "10.231.7.1"
        self.target_ip = "10.231.7.2"
        self.target_dev = "veth-t"
        self.processes: list[subprocess.Popen] = []
        for ns in (self.probe_ns, self.target_ns):
            netns.add_netns(ns)
        netns.add_veth("veth-p", self.probe_ns, self.target_dev, self.target_ns)
        netns.add_bridge("br-t", self.target_ns)
        netns.enslave(self.target_dev, "br-t", self.target_ns)
        netns.add_address("veth-p", f"{self.probe_ip}/24", self.probe_ns)
        netns.add_address("br-t", f"{self.target_ip}/24", self.target_ns)
        self._pin_neighbour(self.probe_ns, "veth-p", self.target_ip, self.target_ns, "br-t")
        self._pin_neighbour(self.target_ns, "br-t", self.probe_ip, self.probe_ns, "veth-p")

    @staticmethod
    def _pin_neighbour(ns, dev, peer_ip, peer_ns, peer_dev):
        mac = netns.run(["cat", f"/sys/class/net/{peer_dev}/address"], netns=peer_ns).stdout
        netns.run(["ip", "neigh", "replace", peer_ip, "lladdr", mac.strip(), "dev", dev,
                   "nud", "permanent"], netns=ns)

    def start_echo(self, tcp_port: int = 7, udp_port: int = 7) -> None:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.target_ns, sys.executable, "-m",
             "rally_lm.probes.echo_server", "--tcp", str(tcp_port), "--udp", str(udp_port)],
            stdout=subprocess.PIPE, text=True,
        )
        assert "echo on" in proc.stdout.readline()
        self.processes.append(proc)

    def probe(self, *args: str, without_net_raw: bool = False) -> subprocess.Popen:
        # Dropping CAP_NET_RAW from the bounding set makes even root a user who
        # may not open raw sockets (and keeps the venv readable, unlike nobody).
        drop = ["setpriv", "--bounding-set=-net_raw", "--inh-caps=-net_raw"] \
            if without_net_raw else []
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.probe_ns, *drop, sys.executable, "-m",
             "rally_lm.cli.main", "probe", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.processes.append(proc)
        return proc

    def timed(self, argv: list[str]) -> tuple[float, float]:
        before = time.monotonic()
        netns.run(argv, netns=self.target_ns)
        return before, time.monotonic()

    def close(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        netns.delete_netns(self.probe_ns)
        netns.delete_netns(self.target_ns)


@pytest.fixture
def paired_hosts(root_with_netns, request):
    hosts = PairedHosts(request.node.name[-8:].replace("[", "").replace("]", ""))
    yield hosts
    hosts.close()


def pytest_collection_modifyitems(session, config, items):
    # Stable: the tests marked last keep their order among themselves.
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)


def _figures_file():
    from pathlib import Path

    return Path(os.environ.get("RALLY_LM_RESULTS", "/tmp/rally-lm-test-results")) / "figures.jsonl"


def pytest_sessionstart(session):
    _figures_file().unlink(missing_ok=True)


def pytest_terminal_summary(terminalreporter):
    path = _figures_file()
    if path.exists():
        terminalreporter.section("figures measured by this run")
        for line in path.read_text().splitlines():
            terminalreporter.write_line(line)


class _TimePerFile:
    """Seconds spent per test file (setup, call and teardown), printed last.

    CI shows only the tail of the output; the budget is kept by knowing which
    files cost what, so this comes after the per-test durations.
    """

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter):
        spent: dict[str, float] = {}
        for reports in terminalreporter.stats.values():
            for report in reports:
                duration = getattr(report, "duration", None)
                nodeid = getattr(report, "nodeid", "")
                if duration is None or not nodeid:
                    continue
                path = nodeid.split("::")[0]
                key = path if path.startswith("tests/functional") else "tests/unit"
                spent[key] = spent.get(key, 0.0) + duration
        if spent:
            terminalreporter.section("seconds per test file")
            terminalreporter.write_line("  ".join(
                f"{name.removeprefix('tests/functional/')}={seconds:.0f}"
                for name, seconds in sorted(spent.items(), key=lambda kv: -kv[1])))


def pytest_configure(config):
    config.pluginmanager.register(_TimePerFile(), "rally-lm-time-per-file")
