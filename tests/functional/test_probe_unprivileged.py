"""Probes without CAP_NET_RAW: fall back, or stop with a clear error; never report zero."""

import json
import time

import pytest

from rally_lm_testbed import netns

pytestmark = pytest.mark.functional


def allow_ping_sockets(hosts, allowed: bool) -> None:
    # ping_group_range is per network namespace: this changes only the probe's.
    value = "0 2147483647" if allowed else "1 0"
    netns.run(["sysctl", "-q", "-w", f"net.ipv4.ping_group_range={value}"],
              netns=hosts.probe_ns)


def probe_through_a_cut(hosts, args, cut_for=0.5):
    proc = hosts.probe(*args, "--duration", "3", "--json", without_net_raw=True)
    time.sleep(1.0)
    hosts.timed(["bridge", "link", "set", "dev", hosts.target_dev, "state", "0"])
    time.sleep(cut_for)
    hosts.timed(["bridge", "link", "set", "dev", hosts.target_dev, "state", "3"])
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


def test_icmp_probe_without_net_raw_falls_back_to_the_ping_socket(paired_hosts):
    allow_ping_sockets(paired_hosts, True)
    code, out, err = probe_through_a_cut(paired_hosts, [paired_hosts.target_ip])
    assert code == 0, err
    (target,) = json.loads(out)["targets"]
    assert target["transport"] == "datagram"
    assert len(target["outages"]) == 1
    assert 0.45 <= target["longest_outage_ms"] / 1000.0 <= 0.6


def test_icmp_probe_with_no_permitted_socket_stops_and_says_what_to_do(paired_hosts):
    allow_ping_sockets(paired_hosts, False)
    code, out, err = probe_through_a_cut(paired_hosts, [paired_hosts.target_ip])
    assert code == 2
    assert out == ""  # no figures at all, least of all a zero
    assert "ICMP probing is not permitted" in err
    assert "ping_group_range (1 0)" in err and "--udp PORT" in err


def test_udp_probe_needs_no_privilege(paired_hosts):
    allow_ping_sockets(paired_hosts, False)
    paired_hosts.start_echo(udp_port=7007, tcp_port=7007)
    code, out, err = probe_through_a_cut(paired_hosts, [paired_hosts.target_ip, "--udp", "7007"])
    assert code == 0, err
    (target,) = json.loads(out)["targets"]
    assert target["transport"] == "udp"
    assert 0.45 <= target["longest_outage_ms"] / 1000.0 <= 0.6
