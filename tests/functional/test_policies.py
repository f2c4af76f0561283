"""Migration policies on the real testbed: what each one does to a guest it cannot outrun.

One guest (256 MiB) dirties a 64 MiB working set at 24 MiB/s while its
migration traffic is shaped to 40 Mbit/s (about 4.8 MiB/s): pre-copy cannot
converge. Nova's completion timeout is 5 s/GiB, i.e. 10 s (Nova counts at
least 2 GiB). Each policy's outcome is read back from Nova, libvirt's events
and the job sampled on the source - and for TLS from the wire. Ceph storage,
so only memory moves. The testbed is left in Nova's default policy.
"""

import json
import statistics

import pytest

from rally_lm_testbed import capture, hosts, layout, policy, testbed
from tests.functional.test_testbed import migration_check, record

pytestmark = [pytest.mark.functional, pytest.mark.testbed]

LINK_MBIT = 40
LINK_BYTES_PER_S = LINK_MBIT * 1e6 / 8
PRESSURE = ("--dirty-rate", "24", "--working-set", "64", "--timeout", "120",
            "--probe-interval", "0.02")


@pytest.fixture(scope="module")
def policies(testbed_session):
    testbed.up()
    yield
    migration_check("--delete-kept")  # were the post-copy test not run
    # Nova's default policy again, in the mode the next modules start from
    # (shared storage, no tunnelling): they find it set and restart nothing.
    testbed.set_mode("shared", "off", {}, reset_policy=True)


def daemon_pids(daemon: str) -> dict:
    return {h.name: hosts.running_pid(f"{h.name}-{daemon}") for h in layout.COMPUTES}


def run_under(changes: dict, *options: str) -> dict:
    wanted = {"completion_timeout": 5, **changes}
    before = testbed.read_mode()
    agents, computes = daemon_pids("linuxbridge-agent"), daemon_pids("nova-compute")
    mode = testbed.set_mode("ceph", "off", wanted, reset_policy=True)
    assert {key: mode["policy"][key] for key in wanted} == wanted
    # A switch restarts nova-compute to read its new configuration; the
    # linuxbridge agent, configured the same in every mode, keeps running.
    restarted = daemon_pids("nova-compute")
    if mode != before:
        assert all(restarted[h] != computes[h] for h in restarted), (computes, restarted)
    assert daemon_pids("linuxbridge-agent") == agents
    return migration_check(*options, "--nova-completion-timeout",
                           str(wanted["completion_timeout"]))


def out_and_back(result: dict) -> tuple[dict, dict]:
    out, back = result["records"]
    return out, back


def figures(migration: dict) -> dict:
    copy = migration["measurements"].get("copy", {})
    job = migration["measurements"].get("job", {})
    hyper = migration["measurements"].get("hypervisor", {})
    rates = [s["memory_bytes_per_s"] for s in job.get("samples", [])
             if s["memory_bytes_per_s"]]
    return {"direction": migration["direction"], "outcome": migration["outcome"],
            "timeout_by": migration["timeout_by"], "duration_s": round(migration["duration"], 2),
            "copy_mode": copy.get("mode"), "postcopy_ms": copy.get("postcopy_ms"),
            "max_throttle_percent": copy.get("max_throttle_percent"),
            "hypervisor_downtime_ms": hyper.get("downtime_ms"),
            "client_downtime_ms": migration["measurements"]["network"].get("client_downtime_ms"),
            "dirty_rate_mib_s": migration["measurements"].get("dirty_rate", {}).get("mib_per_s"),
            "peak_bytes_per_s": max(rates, default=None),
            "median_bytes_per_s": statistics.median(rates) if rates else None}


def test_the_shaped_link_holds_migration_traffic_to_its_rate(policies):
    # The guest stays for the post-copy test (a policy switch keeps it running).
    result = run_under({"link_mbit": LINK_MBIT}, *PRESSURE, "--keep")
    out, _back = out_and_back(result)
    # QEMU's own throughput figure, sampled while it copied: the link's rate, not
    # the wire's. Its single readings spike above it (QEMU counts bytes as sent
    # once they are in the socket's buffer), so the median is the sustained rate.
    found = figures(out)
    record("policy_shaped_link", {**found, "link_bytes_per_s": LINK_BYTES_PER_S})
    assert found["median_bytes_per_s"] is not None, found
    assert 0.5 * LINK_BYTES_PER_S <= found["median_bytes_per_s"] <= 1.2 * LINK_BYTES_PER_S, found
    state = policy.link_state(layout.COMPUTES[0])
    assert state["shaped"] and state["rate"] == f"{LINK_MBIT}Mbit"
    # Pre-copy could not keep up: Nova aborted it at its own timeout, guest unharmed.
    assert (out["outcome"], out["timeout_by"]) == ("timeout_aborted", "nova"), out["error"]
    assert figures(out)["copy_mode"] == "pre-copy"
    assert result["server"]["host"] == "hv1" and result["answering_after"]


def test_post_copy_completes_what_pre_copy_could_not(policies):
    result = run_under({"link_mbit": LINK_MBIT, "post_copy": True,
                        "timeout_action": "force_complete"}, *PRESSURE, "--reuse")
    for migration in out_and_back(result):
        found = figures(migration)
        record("policy_post_copy", found)
        assert (found["outcome"], found["timeout_by"], found["copy_mode"]) == (
            "timeout_forced", "nova", "post-copy"), (found, migration["error"])
        assert found["postcopy_ms"] is not None and found["postcopy_ms"] > 0
    assert result["server"]["host"] == "hv1" and result["answering_after"]


def test_auto_converge_throttles_a_guest_that_outruns_the_link(policies):
    # 8 MiB/s over 16 MiB against the 4.8 MiB/s link. QEMU raises its vCPU
    # throttle from 20 % by 10 % a round. Measured here: 60 % within Nova's
    # 60 s (30 s/GiB, at least 2 GiB) and still no convergence - the agent paces
    # its writes and needs little CPU, so taking CPU from it barely slows them
    # (docs/findings.md). The test holds what is always true: the throttle rose
    # round after round, the outcome is named, and the guest is unharmed.
    result = run_under({"link_mbit": LINK_MBIT, "auto_converge": True,
                        "completion_timeout": 30},
                       "--dirty-rate", "8", "--working-set", "16", "--timeout", "120",
                       "--probe-interval", "0.02")
    out, _back = out_and_back(result)
    found = figures(out)
    record("policy_auto_converge", found)
    assert found["max_throttle_percent"] is not None and found["max_throttle_percent"] >= 30, found
    if out["outcome"] == "completed":
        assert out["final_host"] == "hv2", out
    else:
        assert (out["outcome"], out["timeout_by"]) == ("timeout_aborted", "nova"), out["error"]
    assert result["server"]["host"] == "hv1" and result["answering_after"]


def test_native_tls_is_tls_on_the_wire(policies, tmp_path):
    destination = layout.COMPUTES[1]
    pcap = tmp_path / "hv2-migration.pcap"
    bpf = (f"tcp and dst host {destination.ip} and dst portrange "
           f"{policy.MIGRATION_PORTS[0]}-{policy.MIGRATION_PORTS[1]}")
    testbed.set_mode("ceph", "off", {"native_tls": True}, reset_policy=True)
    tap = capture.Capture(destination.netns, "mgmt0", pcap, bpf)
    try:
        result = migration_check("--probe-interval", "0.02")
    finally:
        tap.stop()
    verdict = capture.stream_verdict(capture.tcp_segments(pcap))
    out, back = out_and_back(result)
    record("policy_native_tls", {"verdict": json.dumps(verdict), **figures(out)})
    assert [out["outcome"], back["outcome"]] == ["completed", "completed"]
    assert verdict["connections"] >= 1
    assert verdict["tls_connections"] == verdict["connections"], verdict
    assert not verdict["plain_qemu_stream"], verdict


def test_tls_together_with_tunnelling_is_refused_before_anything_changes(policies):
    before = testbed.read_mode()
    with pytest.raises(RuntimeError, match="native TLS and tunnelling together"):
        testbed.set_mode("ceph", "on", {"native_tls": True}, reset_policy=True)
    assert testbed.read_mode() == before
