"""The probes measure real, injected outages on real links."""

import json
import time

import pytest

pytestmark = pytest.mark.functional


def run_probe_around(hosts, probe_args, inject, settle=1.0):
    proc = hosts.probe(*probe_args, "--json")
    time.sleep(settle)
    window = inject()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return json.loads(out)["targets"][0], window


@pytest.mark.parametrize("transport, interval, cut_for", [
    ("icmp", 0.01, 1.0),
    ("udp", 0.01, 1.0),
    ("udp", 0.002, 0.3),
])
def test_link_cut_is_measured_within_one_interval(paired_hosts, transport, interval, cut_for):
    """Blocking the target's bridge port cuts the link for exactly as long as asked.

    (A carrier flap, ``ip link set down/up``, lasts longer than its commands:
    the bridge learns of the carrier through the kernel's linkwatch, which is
    rate-limited to one run a second. See the next test.)
    """
    hosts = paired_hosts
    hosts.start_echo(udp_port=7007, tcp_port=7007)
    args = [hosts.target_ip, "--interval", str(interval), "--duration", "3.5"]
    if transport == "udp":
        args += ["--udp", "7007"]

    def cut_link():
        blocked = hosts.timed(["bridge", "link", "set", "dev", hosts.target_dev, "state", "0"])
        time.sleep(cut_for)
        restored = hosts.timed(["bridge", "link", "set", "dev", hosts.target_dev, "state", "3"])
        # The link was surely cut from the end of the first command to the
        # start of the second, and at most from the start of one to the end
        # of the other.
        return restored[0] - blocked[1], restored[1] - blocked[0]

    result, (shortest, longest) = run_probe_around(hosts, args, cut_link)
    assert len(result["outages"]) == 1, result["outages"]
    measured = result["longest_outage_ms"] / 1000.0
    resolution = max(interval, result["max_send_gap_ms"] / 1000.0)
    assert shortest - resolution <= measured <= longest + resolution, (
        f"measured {measured:.4f}s, link cut {shortest:.4f}-{longest:.4f}s")
    assert result["outages"][0]["lost"] >= int(shortest / interval) - 1


def test_carrier_flap_is_never_underestimated(paired_hosts):
    hosts = paired_hosts
    hosts.start_echo(udp_port=7007, tcp_port=7007)

    def flap():
        down = hosts.timed(["ip", "link", "set", hosts.target_dev, "down"])
        time.sleep(0.5)
        up = hosts.timed(["ip", "link", "set", hosts.target_dev, "up"])
        return up[0] - down[1], up[1] - down[0]

    args = [hosts.target_ip, "--udp", "7007", "--duration", "4"]
    result, (shortest, _longest) = run_probe_around(hosts, args, flap)
    assert len(result["outages"]) == 1, result["outages"]
    # Bounded above by linkwatch's one-second period on top of the flap.
    assert shortest - 0.01 <= result["longest_outage_ms"] / 1000.0 <= shortest + 1.2


def next_retransmission(after: float) -> float:
    """Latest time TCP can first retransmit at or after ``after`` seconds.

    Retransmissions come at RTO x (2^k - 1) after the first lost segment,
    with Linux's RTO at 200 ms plus the smoothed RTT: take the worst case
    over RTOs from 200 to 250 ms.
    """
    latest = 0.0
    for step in range(51):
        rto = 0.2 + step * 0.001
        k = 1
        while rto * (2**k - 1) < after:
            k += 1
        latest = max(latest, rto * (2**k - 1))
    return latest


def test_blocked_tcp_path_is_a_stall_of_that_length_with_no_loss(paired_hosts):
    hosts = paired_hosts
    hosts.start_echo(tcp_port=7007, udp_port=7007)
    block_for = 1.5
    rule = ["INPUT", "-p", "tcp", "--dport", "7007", "-j", "DROP"]

    def block_tcp():
        start = hosts.timed(["iptables", "-I", *rule])
        time.sleep(block_for)
        end = hosts.timed(["iptables", "-D", *rule])
        return end[0] - start[1], end[1] - start[0]

    args = [hosts.target_ip, "--udp", "7007", "--tcp", "7007", "--tcp-rate", "10240",
            "--duration", "5"]
    result, (shortest, longest) = run_probe_around(hosts, args, block_tcp)
    tcp = result["tcp"]
    assert tcp["bytes_lost"] == 0 and tcp["bytes_corrupted"] == 0
    assert tcp["bytes_verified"] == tcp["bytes_sent"] > 0
    assert tcp["resets"] == 0 and tcp["original_connection_survived"]
    stall = tcp["max_stall_ms"] / 1000.0
    # TCP learns the path is back only at its next retransmission, which
    # backs off exponentially: RTO x (2^k - 1) after the first lost segment.
    assert shortest - 0.02 <= stall <= next_retransmission(longest) + 0.1, (
        f"stall {stall:.3f}s for a {shortest:.3f}-{longest:.3f}s block")
    # The UDP probe crossed the same link unhindered: the block was TCP only.
    assert result["outages"] == []
