"""The embedded testbed, end to end: real Nova, libvirt, QEMU; the real rally CLI.

One module, in order: up from nothing, up again, a live migration in each
storage x tunnelling mode, Rally tasks with their SLAs. Tearing the testbed
down is checked by the session's last test (marked ``last``, see conftest), so
the modules after this one run on the same testbed.
"""

import ast
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rally_lm.probes.records import ProbeClock
from rally_lm.report import cells
from rally_lm_testbed import (
    capture,
    hosts,
    layout,
    netns,
    rally_runner,
    testbed,
)
from tests.functional.conftest import require

pytestmark = [pytest.mark.functional, pytest.mark.testbed]

ROOT = Path(__file__).resolve().parents[2]
ARGS = ROOT / "task_templates" / "args"
TEMPLATE = ROOT / "task_templates" / "evacuate_host.yaml.j2"
RESULTS = Path(os.environ.get("RALLY_LM_RESULTS", "/tmp/rally-lm-test-results"))


def record(name: str, data: dict) -> None:
    """Keep the figures a run measured (printed at the end of the session)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / "figures.jsonl", "a") as handle:
        handle.write(json.dumps({"test": name, **data}, default=str) + "\n")


@pytest.fixture(scope="module")
def testbed_up(testbed_session):
    record("up_from_nothing", {"seconds": round(testbed_session, 1)})
    return testbed_session


def all_daemons() -> list[str]:
    return testbed.all_daemons()


def test_up_from_nothing_answers_and_registers_both_computes(testbed_up):
    status = testbed.status()
    assert status["up"], status["services"]
    assert sorted(status["guests"]) == ["hv1", "hv2"]
    out = testbed.bootstrap("wait-computes", testbed.read_mode()["network"])
    assert out["computes_up"] == ["hv1", "hv2"] and out["agents_alive"] == ["hv1", "hv2"]
    # The project Rally's tasks run in has room for leaks (read back from each API).
    assert testbed.bootstrap("rally-quotas") == layout.RALLY_QUOTAS


def test_up_again_changes_nothing(testbed_up):
    before = {d: hosts.running_pid(d) for d in all_daemons()}
    assert testbed.up() == 0.0
    assert {d: hosts.running_pid(d) for d in all_daemons()} == before


#: How far libvirt's downtime may run past the guest's real resume: its end is
#: stamped by the destination's libvirtd once `cont` has returned in the Finish
#: phase (docs/measurement.md). Measured on the loaded testbed: up to 72 ms
#: (libvirt 324 ms against a 252 ms silence with a 10 ms resolution).
LIBVIRT_END_STAMP_LAG_MS = 100.0


def network_covers_pause(client_ms: float, resolution_ms: float, libvirt_ms: float) -> bool:
    """The client cannot be answered before the guest runs again.

    The silence may start up to one probe interval after the vCPUs stopped
    (the last request before the stop can still be answered), and libvirt's
    figure runs from its daemons' stamps, in whole milliseconds, up to after
    its resume bookkeeping on a possibly busy destination.
    """
    return client_ms + resolution_ms + 1.0 + LIBVIRT_END_STAMP_LAG_MS >= libvirt_ms


def migration_check(*options: str) -> dict:
    proc = subprocess.run(testbed.probe_command([sys.executable, "-m",
                                                 "rally_lm_testbed.migration_check",
                                                 *options]),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def captured_migration_check(tmp_path: Path, *options: str) -> tuple[dict, dict]:
    """migration_check with tcpdump on both hosts' and the probe's tenant uplinks."""
    captures = {ns: capture.Capture(ns, "tenant0", tmp_path / f"{ns}.pcap",
                                    "udp port 7 or icmp or rarp")
                for ns in (*(h.netns for h in layout.COMPUTES), layout.PROBE)}
    try:
        result = migration_check(*options)
    finally:
        packets = {ns: c.stop() for ns, c in captures.items()}
    return result, packets


def check_against_the_wire(result: dict, packets: dict, mode: str) -> None:
    """Every phase boundary the tool reports is the packet the capture saw, within one interval.

    The tool names a request (the path is back) and a reply (the first one
    the client got); the capture finds the first request to reach the
    destination, the requests the destination dropped after it, and the first
    reply to leave it. They must be the same packets: the tool's send and
    receive times match the probe's own interface, and the fabric's transit
    between the probe and the host (which a loaded 2-core machine can stretch
    by a hundred milliseconds, as softirqs wait for a CPU) is reported beside
    them, not blamed on the guest.
    """
    clock = ProbeClock(*result["clock"])
    interval = result["probe"]["interval_ms"] / 1000.0
    send_gap = max(interval, result["probe"]["max_send_gap_ms"] / 1000.0)
    for migration in result["records"]:
        network = migration["measurements"]["network"]
        destination = packets[f"{layout.PREFIX}{migration['target']}"]
        for protocol, view in (("udp", network), ("icmp", migration["measurements"]["icmp"])):
            tool = view["anatomy"]
            wire = capture.wire_view(destination, packets[layout.PROBE], result["ip"],
                                     migration["started_at"], migration["finished_at"],
                                     protocol, interval)
            path_back = clock.to_wall(tool["path_back"])
            first_reply = clock.to_wall(tool["first_reply"])
            assert wire.first_reply_reached_probe is not None, (
                f"{protocol}: the first reply to leave {migration['target']} never reached "
                f"the probe: {wire}")
            figures = {
                "direction": migration["direction"], "protocol": protocol,
                "client_downtime_ms": view["client_downtime_ms"],
                "switchover_ms": tool["client_downtime_ms"],
                "wire_silence_ms": round(wire.silence_ms, 3),
                "wire_switchover_ms": round((wire.switchover_end - wire.switchover_start)
                                            * 1000, 3),
                "ratio": round(view["client_downtime_ms"] / wire.silence_ms, 4),
                "path_back_vs_wire_ms": round((path_back - wire.path_back_left_probe)
                                              * 1000, 3),
                "first_request_to_path_back_ms": round(
                    (wire.path_back_left_probe - wire.first_request_left_probe) * 1000, 3),
                "unanswered_at_destination": wire.unanswered_at_destination,
                "replies_lost_on_the_way": wire.replies_lost_on_the_way,
                "request_transit_ms": round((wire.first_request_at_destination
                                             - wire.first_request_left_probe) * 1000, 3),
                "rarp_to_path_back_ms": round((wire.first_request_at_destination - wire.rarp)
                                              * 1000, 3),
                "first_reply_vs_wire_ms": round(
                    (first_reply - wire.first_reply_reached_probe) * 1000, 3),
                "reply_transit_ms": round((wire.first_reply_reached_probe
                                           - wire.first_reply_leaving_destination) * 1000, 3),
                "pause_ms": tool["pause_ms"], "resume_lag_ms": tool["resume_lag_ms"],
                "hypervisor_downtime_ms": migration["measurements"]["hypervisor"]["downtime_ms"],
            }
            record(f"capture_{mode}", figures)
            # The path is back with the first request after the last one the
            # client got no reply to; the capture finds the same request. It is
            # the first to reach the destination unless the destination dropped
            # some (the capture counts them: the probe alone cannot tell).
            assert abs(path_back - wire.path_back_left_probe) <= interval, figures
            assert wire.path_back_left_probe >= wire.first_request_left_probe, figures
            # The RARP opens the path: the first request to get through reached the
            # destination after it, and left the probe within one send gap of it (a
            # starved prober's gap exceeds the interval).
            assert wire.first_request_at_destination - wire.rarp >= -0.001, figures
            assert wire.first_request_left_probe - wire.rarp <= send_gap, figures
            # The tool dissects the switchover's silence; the capture finds it
            # around the destination's RARP (a later stall may be longer).
            assert abs(clock.to_wall(tool["silence_start"]) - wire.switchover_start) \
                <= interval, figures
            assert abs(first_reply - wire.first_reply_reached_probe) <= interval, figures
            assert 0.9 <= view["client_downtime_ms"] / wire.silence_ms <= 1.1, figures
            # The gated downtime is the longest silence; the anatomy dissects the
            # switchover's, which a stall elsewhere in the window may outlast.
            anatomy = network["anatomy"]
            assert anatomy["client_downtime_ms"] <= network["client_downtime_ms"], network
            if anatomy["client_downtime_ms"] < network["client_downtime_ms"]:
                assert network["stall_ms"] == network["client_downtime_ms"], network


#: The storage of a guest the last mode's test left running for the next one.
KEPT: dict[str, str] = {}


@pytest.fixture(scope="module", autouse=True)
def no_guest_kept_after_the_module(testbed_up):
    yield
    forget_the_kept_guest()


def forget_the_kept_guest() -> None:
    if KEPT.pop("storage", None):
        migration_check("--delete-kept")


# The modes in the order that enters each one once: the modules before this one
# leave the testbed in shared-off; the InfluxDB cell (local-off) runs between
# the local and the Ceph modes, the volume-backed cell after Ceph's. A mode
# switch restarts both nova-computes and slows the next migration. The two
# tunnelling modes of a storage migrate the same guest (a tunnelling switch
# keeps guests running; booting one takes ~30 s).
@pytest.mark.parametrize("storage, tunnelled, keep", [
    pytest.param("shared", "off", True, id="shared-off"),
    pytest.param("shared", "on", False, id="shared-on"),
    pytest.param("local", "on", True, id="local-on"),
    pytest.param("local", "off", False, id="local-off"),
])
def test_live_migration_there_and_back(testbed_up, storage, tunnelled, keep, tmp_path):
    there_and_back(storage, tunnelled, tmp_path, keep)


def there_and_back(storage: str, tunnelled: str, tmp_path: Path, keep: bool = False) -> None:
    """One guest out and back in this mode, checked against a capture on every uplink."""
    if KEPT.get("storage") not in (None, storage):
        forget_the_kept_guest()  # a storage switch needs every guest gone
    testbed.set_mode(storage, tunnelled)
    options = ["--keep"] * keep + ["--reuse"] * bool(KEPT.pop("storage", None))
    result, packets = captured_migration_check(tmp_path, *options)
    if keep and result["answering_after"] and result["server"]["host"] == "hv1":
        KEPT["storage"] = storage
    records = result["records"]
    server = result["server"]
    if (storage, tunnelled) == ("local", "on"):
        # Tunnelled block migration: libvirt refuses it. The failure is
        # recorded and the guest keeps running on its source. Nova's API gives
        # no reason (every instance-action event says Success, the migration
        # record says failed): the reason is only in nova-compute's log.
        assert [r["direction"] for r in records] == ["out", "back"]
        refused, back = records
        assert refused["outcome"] in ("error", "refused"), refused
        assert refused["nova_status"] in ("failed", "error"), refused
        # The way back is not attempted: the VM never left hv1.
        assert back["outcome"] == "skipped" and "not ACTIVE on hv2" in back["error"]
        log = hosts.log_file("hv1-nova-compute").read_text(errors="replace")
        assert "Unsafe migration: Migration without shared storage is unsafe" in log
        assert server["host"] == "hv1" and server["status"] == "ACTIVE"
        assert result["answering_after"]
        record(f"mode_{storage}_{tunnelled}", {"outcome": refused["outcome"],
                                               "error": refused["error"]})
        return
    assert [r["outcome"] for r in records] == ["completed", "completed"], records
    assert [r["final_host"] for r in records] == ["hv2", "hv1"]
    assert server["host"] == "hv1" and server["addresses"] == [result["ip"]]
    assert result["answering_after"]
    tcp = result["vms"]["rlm-check"]["tcp"]
    assert tcp["original_connection_survived"] and tcp["resets"] == 0
    assert tcp["bytes_lost"] == 0 and tcp["bytes_corrupted"] == 0
    assert tcp["bytes_verified"] == tcp["bytes_sent"] > 0
    for migration in records:
        hyper = migration["measurements"]["hypervisor"]
        network = migration["measurements"]["network"]
        assert "downtime_ms" in hyper and "total_ms" in hyper, hyper
        assert hyper["iterations"] >= 1 and hyper["memory_bytes"] > 0
        assert "mib_per_s" in migration["measurements"]["dirty_rate"]
        assert network_covers_pause(network["client_downtime_ms"],
                                    network["anatomy"]["resolution_ms"],
                                    hyper["downtime_ms"]), (network, hyper)
        names = {e["name"] for e in migration["measurements"]["timeline"]}
        assert {"api_call", "paused", "resumed", "path back", "first reply"} <= names
        record(f"mode_{storage}_{tunnelled}", {
            "direction": migration["direction"], "duration_s": round(migration["duration"], 2),
            "nova_completed_s": migration["nova_completed_after"],
            "libvirt_total_ms": hyper["total_ms"], "libvirt_downtime_ms": hyper["downtime_ms"],
            "client_downtime_ms": network["client_downtime_ms"],
            **{k: network["anatomy"][k] for k in ("pause_ms", "convergence_ms",
                                                   "resume_lag_ms", "recovery_tail_ms")},
            "network_downtime_ms": network["downtime_ms"],
            "dirty_rate_mib_s": migration["measurements"]["dirty_rate"]["mib_per_s"],
            "iterations": hyper["iterations"], "lost": network["lost"],
            "tcp_max_stall_ms": migration["measurements"]["tcp"]["max_stall_ms"]})
    check_against_the_wire(result, packets, f"{storage}_{tunnelled}")


def migrations_of(report: Path) -> list[dict]:
    from rally_lm.task.output import migrations_from_output

    data = json.loads(report.read_text())
    workload = data["tasks"][0]["subtasks"][0]["workloads"][0]
    return [{**m, "round_trip": index} for index, it in enumerate(workload["data"])
            for m in migrations_from_output(it["output"])]


def assert_passes_its_slas(run: rally_runner.TaskRun, cell: str, round_trips: int = 2,
                           vms: int = 2) -> None:
    """A healthy cell's task: SLAs pass, every migration completed and is covered."""
    assert run.exit_code == 0, run.log.read_text()[-3000:]
    assert rally_runner.sla_check(run.uuid).returncode == 0
    html = run.html.read_text()
    assert "LiveMigration.evacuate_host" in html and "Migrations" in html
    rows = migrations_of(run.json)
    assert len(rows) == round_trips * vms * 2  # round trips x VMs x directions
    assert all(r["outcome"] == "completed" for r in rows)
    uncovered = [r for r in rows if not network_covers_pause(
        r["client_downtime_ms"], r["resolution_ms"], r["hypervisor_downtime_ms"])]
    assert not uncovered, uncovered
    assert "Timelines and outage anatomy" in html and "<svg" in html
    # The contention record sees the testbed's cgroups from inside the probe
    # namespace: the control plane's CPU beside the guests' and Rally's own.
    (measured,) = cells.load([run.json], split=False)
    groups = ast.literal_eval(measured.configuration["host groups_cpu_s"])
    assert set(groups) == {"control", "bench", "guests"} and min(groups.values()) > 0, groups
    record(f"rally_{cell}", {"uuid": run.uuid, "html": str(run.html), "json": str(run.json)})


# CI runs the local-off cell through Rally with the InfluxDB export (below), and
# Ceph through Rally as the study test's cell and the volume-backed cell.
@pytest.mark.sweep
@pytest.mark.parametrize("cell", ["testbed-local-off", "testbed-ceph-off"])
def test_rally_task_passes_its_slas(testbed_up, cell):
    testbed.set_mode(cell.split("-")[1], "off")
    assert_passes_its_slas(rally_runner.run_task(TEMPLATE, ARGS / f"{cell}.yaml", RESULTS), cell)


def probe_ns_get(url: str) -> str:
    code = ("import urllib.request; "
            f"print(urllib.request.urlopen({url!r}, timeout=10).read().decode())")
    proc = subprocess.run(testbed.probe_command([sys.executable, "-c", code]),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_metrics_hook_and_migrations_reach_influxdb(testbed_up, tmp_path, monkeypatch):
    require(shutil.which("victoria-metrics") is not None, "victoria-metrics is not installed")
    # VictoriaMetrics takes any token; the task refuses to start without one.
    monkeypatch.setenv("INFLUX_TOKEN", "any")
    testbed.set_mode("local", "off")
    server = subprocess.Popen(testbed.probe_command(
        ["victoria-metrics", "-httpListenAddr=127.0.0.1:8428",
         f"-storageDataPath={tmp_path / 'vm'}", "-retentionPeriod=100y"]),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # One VM, one round trip (block migrations take 16-34 s each in CI): the
        # hook samples every 10 s on both hosts either way.
        run = rally_runner.run_task(TEMPLATE, ARGS / "testbed-local-off-influx.yaml", RESULTS,
                                    extra_args='{"round_trips": 1, "vm_count": 1}')
        assert_passes_its_slas(run, "testbed-local-off-influx", round_trips=1, vms=1)
        probe_ns_get("http://127.0.0.1:8428/internal/force_flush")
        exported = probe_ns_get(
            "http://127.0.0.1:8428/api/v1/export?match[]=%7B__name__%3D~%22lm_.*%22%7D")
    finally:
        server.terminate()
        server.wait(20)
    series = [json.loads(line) for line in exported.splitlines() if line.strip()]
    migrations = [s for s in series if s["metric"]["__name__"] == "lm_migration_duration_s"
                  and s["metric"]["task"] == run.uuid]
    assert sum(len(s["values"]) for s in migrations) == 1 * 1 * 2
    hosts_seen: dict[str, set] = {}
    for item in series:
        if item["metric"]["__name__"] == "lm_vm_cpu_time_ns":
            hosts_seen.setdefault(item["metric"]["vm"], set()).add(item["metric"]["host"])
    assert len(hosts_seen) == 1, hosts_seen
    # The VM was sampled on both hosts: the host tag follows the migrations.
    assert all(seen == {"hv1", "hv2"} for seen in hosts_seen.values()), hosts_seen
    report = json.loads(run.json.read_text())
    hooks = report["tasks"][0]["subtasks"][0]["workloads"][0]["hooks"]
    assert hooks and all(h["status"] == "success" for r in hooks for h in r["results"]), hooks
    record("influx_hook", {"series": len(series), "hosts_seen": {k: sorted(v) for k, v in
                                                                  hosts_seen.items()}})


@pytest.mark.parametrize("storage, tunnelled", [
    pytest.param("ceph", "on", marks=pytest.mark.sweep), ("ceph", "off"),
])
def test_live_migration_there_and_back_on_ceph(testbed_up, storage, tunnelled, tmp_path):
    there_and_back(storage, tunnelled, tmp_path)


# Right after the there-and-back test on Ceph: no extra storage switch.
def test_a_volume_backed_cell_passes_on_ceph(testbed_up):
    """The seed's lesson 3: VMs booted from Cinder volumes (RBD) migrate without a disk copy."""
    testbed.set_mode("ceph", "off")
    run = rally_runner.run_task(TEMPLATE, ARGS / "testbed-ceph-volume.yaml", RESULTS)
    assert run.exit_code == 0, run.log.read_text()[-3000:]
    rows = migrations_of(run.json)
    assert [(r["direction"], r["outcome"]) for r in rows] == [("out", "completed"),
                                                              ("back", "completed")]
    assert not any(r["disk_copy_seen"] for r in rows)
    assert "boot_from_volume" in run.html.read_text()
    # The context's cleanup deleted the servers, and Nova their volumes (asynchronously).
    deadline = time.monotonic() + 90
    while (leftovers := testbed.bootstrap("leftovers")).get("volumes") and \
            time.monotonic() < deadline:
        time.sleep(3)
    assert leftovers.get("volumes") is None and leftovers["servers"] == [], leftovers
    record("rally_testbed-ceph-volume", {
        "uuid": run.uuid, **{f"{r['direction']}_client_downtime_ms": r["client_downtime_ms"]
                             for r in rows}})


# The forced-completion fault test fails lm_max_downtime through `rally task sla-check` too.
@pytest.mark.sweep
def test_sla_check_fails_on_an_impossible_threshold(testbed_up):
    run = rally_runner.run_task(TEMPLATE, ARGS / "testbed-local-off.yaml", RESULTS,
                                extra_args='{"vm_count": 1, "round_trips": 1, '
                                           '"sla_max_downtime_ms": 0.001}')
    assert run.exit_code == 2, run.log.read_text()[-3000:]
    check = rally_runner.sla_check(run.uuid)
    assert check.returncode != 0
    assert "lm_max_downtime" in check.stdout and "FAIL" in check.stdout


def test_unknown_host_is_rejected_before_anything_is_created(testbed_up):
    before = testbed.guests_on(layout.COMPUTES[0]) + testbed.guests_on(layout.COMPUTES[1])
    run = rally_runner.run_task(TEMPLATE, ARGS / "testbed-local-off.yaml", RESULTS,
                                extra_args='{"target_host": "no-such-host"}')
    assert run.exit_code != 0
    assert "compute host 'no-such-host' is unknown to Nova" in run.log.read_text()
    after = testbed.guests_on(layout.COMPUTES[0]) + testbed.guests_on(layout.COMPUTES[1])
    assert after == before == []


# Last: every later module would need the testbed up again (~2.5 min). It runs
# after test_ovn's (also last, collected before it): OVN's daemons go too.
@pytest.mark.last
def test_down_leaves_nothing(testbed_up):
    testbed.down()
    assert not [ns for ns in netns.list_netns() if ns.startswith(layout.PREFIX)]
    assert not any(hosts.running_pid(d) for d in all_daemons())
    assert str(layout.STATE) not in Path("/proc/self/mountinfo").read_text()
    leftovers = subprocess.run(["pgrep", "-f", "nova-|neutron-|cinder-|ceph-|libvirtd|mariadbd|"
                                "beam.smp|ns-metadata-proxy|ovsdb-server|ovs-vswitchd|ovn-"],
                               capture_output=True, text=True).stdout.split()
    assert leftovers == [], leftovers
