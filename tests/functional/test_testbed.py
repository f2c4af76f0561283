"""The embedded testbed, end to end: real Nova, libvirt, QEMU; the real rally CLI.

One module, in order: up from nothing, up again, a live migration in each
storage x tunnelling mode, Rally tasks with their SLAs, then down and up
again. The session (see conftest) ends with the testbed down.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rally_lm_testbed import compute, controller, hosts, layout, netns, rally_runner, testbed
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
    return controller.DAEMONS + [d for h in layout.COMPUTES for d in compute.daemons(h)]


def test_up_from_nothing_answers_and_registers_both_computes(testbed_up):
    status = testbed.status()
    assert status["up"], status["services"]
    assert sorted(status["guests"]) == ["hv1", "hv2"]
    out = testbed.bootstrap("wait-computes")
    assert out["computes_up"] == ["hv1", "hv2"] and out["agents_alive"] == ["hv1", "hv2"]


def test_up_again_changes_nothing(testbed_up):
    before = {d: hosts.running_pid(d) for d in all_daemons()}
    assert testbed.up() == 0.0
    assert {d: hosts.running_pid(d) for d in all_daemons()} == before


def network_covers_pause(network_ms: float, resolution_ms: float, libvirt_ms: float) -> bool:
    """The network cannot be back before the guest runs again.

    The outage may start up to one probe interval after the vCPUs stopped
    (the last request before the stop can still be answered), and libvirt
    counts whole milliseconds up to after its resume bookkeeping.
    """
    return network_ms + resolution_ms + 1.0 >= libvirt_ms


def migration_check() -> dict:
    proc = subprocess.run(testbed.probe_command([sys.executable, "-m",
                                                 "rally_lm_testbed.migration_check"]),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("storage, tunnelled", [
    ("local", "off"), ("shared", "off"), ("shared", "on"), ("local", "on"),
])
def test_live_migration_there_and_back(testbed_up, storage, tunnelled):
    testbed.set_mode(storage, tunnelled)
    result = migration_check()
    records = result["records"]
    server = result["server"]
    if (storage, tunnelled) == ("local", "on"):
        # Tunnelled block migration: libvirt refuses it. The failure is
        # recorded and the guest keeps running on its source. Nova's API gives
        # no reason (every instance-action event says Success, the migration
        # record says failed): the reason is only in nova-compute's log.
        assert len(records) == 1
        refused = records[0]
        assert refused["outcome"] in ("error", "refused"), refused
        assert refused["nova_status"] in ("failed", "error"), refused
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
        assert network_covers_pause(network["downtime_ms"], network["resolution_ms"],
                                    hyper["downtime_ms"]), (network, hyper)
        record(f"mode_{storage}_{tunnelled}", {
            "direction": migration["direction"], "duration_s": round(migration["duration"], 2),
            "nova_completed_s": migration["nova_completed_after"],
            "libvirt_total_ms": hyper["total_ms"], "libvirt_downtime_ms": hyper["downtime_ms"],
            "network_downtime_ms": network["downtime_ms"],
            "convergence_ms": network["convergence_ms"], "lost": network["lost"],
            "late": network["late"], "tcp_max_stall_ms":
            migration["measurements"]["tcp"]["max_stall_ms"]})


def migrations_of(report: Path) -> list[dict]:
    from rally_lm.task.output import migrations_from_output

    data = json.loads(report.read_text())
    workload = data["tasks"][0]["subtasks"][0]["workloads"][0]
    return [{**m, "round_trip": index} for index, it in enumerate(workload["data"])
            for m in migrations_from_output(it["output"])]


@pytest.mark.parametrize("cell", ["testbed-local-off", "testbed-shared-off"])
def test_rally_task_passes_its_slas(testbed_up, cell, tmp_path):
    cell_args = ARGS / f"{cell}.yaml"
    storage = "local" if "local" in cell else "shared"
    testbed.set_mode(storage, "off")
    run = rally_runner.run_task(TEMPLATE, cell_args, RESULTS)
    assert run.exit_code == 0, run.log.read_text()[-3000:]
    assert rally_runner.sla_check(run.uuid).returncode == 0
    html = run.html.read_text()
    assert "LiveMigration.evacuate_host" in html and "Migrations" in html
    rows = migrations_of(run.json)
    assert len(rows) == 2 * 2 * 2  # round trips x VMs x directions
    assert all(r["outcome"] == "completed" for r in rows)
    uncovered = [r for r in rows if not network_covers_pause(
        r["network_downtime_ms"], r["resolution_ms"], r["hypervisor_downtime_ms"])]
    assert not uncovered, uncovered
    record(f"rally_{cell}", {"uuid": run.uuid, "html": str(run.html), "json": str(run.json)})


def probe_ns_get(url: str) -> str:
    code = ("import urllib.request; "
            f"print(urllib.request.urlopen({url!r}, timeout=10).read().decode())")
    proc = subprocess.run(testbed.probe_command([sys.executable, "-c", code]),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_metrics_hook_and_migrations_reach_influxdb(testbed_up, tmp_path):
    require(shutil.which("victoria-metrics") is not None, "victoria-metrics is not installed")
    testbed.set_mode("local", "off")
    server = subprocess.Popen(testbed.probe_command(
        ["victoria-metrics", "-httpListenAddr=127.0.0.1:8428",
         f"-storageDataPath={tmp_path / 'vm'}", "-retentionPeriod=100y"]),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        run = rally_runner.run_task(TEMPLATE, ARGS / "testbed-local-off-influx.yaml", RESULTS)
        assert run.exit_code == 0, run.log.read_text()[-3000:]
        probe_ns_get("http://127.0.0.1:8428/internal/force_flush")
        exported = probe_ns_get(
            "http://127.0.0.1:8428/api/v1/export?match[]=%7B__name__%3D~%22lm_.*%22%7D")
    finally:
        server.terminate()
        server.wait(20)
    series = [json.loads(line) for line in exported.splitlines() if line.strip()]
    migrations = [s for s in series if s["metric"]["__name__"] == "lm_migration_duration_s"
                  and s["metric"]["task"] == run.uuid]
    assert sum(len(s["values"]) for s in migrations) == 2 * 2 * 2
    hosts_seen: dict[str, set] = {}
    for item in series:
        if item["metric"]["__name__"] == "lm_vm_cpu_time_ns":
            hosts_seen.setdefault(item["metric"]["vm"], set()).add(item["metric"]["host"])
    assert len(hosts_seen) == 2, hosts_seen
    # Every VM was sampled on both hosts: the host tag follows the migrations.
    assert all(seen == {"hv1", "hv2"} for seen in hosts_seen.values()), hosts_seen
    report = json.loads(run.json.read_text())
    hooks = report["tasks"][0]["subtasks"][0]["workloads"][0]["hooks"]
    assert hooks and all(h["status"] == "success" for r in hooks for h in r["results"]), hooks
    record("influx_hook", {"series": len(series), "hosts_seen": {k: sorted(v) for k, v in
                                                                  hosts_seen.items()}})


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


def test_down_leaves_nothing_and_up_works_again(testbed_up):
    testbed.down()
    assert not [ns for ns in netns.list_netns() if ns.startswith(layout.PREFIX)]
    assert not any(hosts.running_pid(d) for d in all_daemons())
    assert str(layout.STATE) not in Path("/proc/self/mountinfo").read_text()
    leftovers = subprocess.run(["pgrep", "-f", "nova-|neutron-|libvirtd|mariadbd|beam.smp"],
                               capture_output=True, text=True).stdout.split()
    assert leftovers == [], leftovers
    elapsed = testbed.up()
    record("up_after_down", {"seconds": round(elapsed, 1)})
    assert testbed.status()["up"]
