"""The metrics hook without root: echo services on loopback, FakeInflux enforcing a token."""

import pytest

from rally_lm.probes.echo_server import EchoServer
from rally_lm.task.hooks import vm_metrics
from tests.fakes.fake_influx import FakeInflux

TASK = {"uuid": "abcdef12-3456-7890-abcd-ef1234567890", "env_uuid": "e"}


class StubNova:
    def __init__(self, servers):
        self.servers = servers

    def list_servers(self):
        return self.servers

    def diagnostics(self, server_id):
        return {"cpu_details": [{"time": 1_000_000}], "memory_details": {"used": 120,
                                                                        "maximum": 256},
                "nic_details": [{"rx_octets": 10, "tx_octets": 20}], "disk_details": [],
                "uptime": 42}


@pytest.fixture
def workload(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))  # the spool lives under ~/.rally
    echoes = [EchoServer(f"127.0.0.{i}").start() for i in (2, 3)]
    # The probe uses one port for all VMs: give both servers the first's.
    port = echoes[0].udp_port
    echoes[1].stop()
    echoes[1] = EchoServer("127.0.0.3", udp_port=port).start()
    servers = [{"id": f"id-{i}", "name": rally_name(TASK["uuid"]), "status": "ACTIVE",
                "host": "hv1", "addresses": [f"127.0.0.{i + 2}"]} for i in range(2)]
    # Named by Rally for another task: not this one's.
    servers.append({"id": "other-task", "name": rally_name("99999999-0000-0000-0000-0000"),
                    "status": "ACTIVE", "host": "hv1", "addresses": ["127.0.0.8"]})
    servers.append({"id": "other", "name": "someone-else", "status": "ACTIVE", "host": "hv1",
                    "addresses": ["127.0.0.9"]})
    monkeypatch.setattr(vm_metrics, "admin_nova", lambda task: StubNova(servers))
    yield port
    for echo in echoes:
        echo.stop()


def rally_name(owner):
    """A name lm_workload would give a VM of that owner (Rally's name generator)."""
    from rally_lm.task.contexts.nova.lm_workload import LiveMigrationWorkload

    context = LiveMigrationWorkload.__new__(LiveMigrationWorkload)
    context.context = {"owner_id": owner}
    context.task = {"uuid": owner}
    return context.generate_random_name()


def run(config):
    hook = vm_metrics.VmMetrics(TASK, config, {"event_type": "time", "value": 1})
    hook.run_sync()
    return hook.result()


def test_samples_and_probes_only_this_tasks_vms(workload):
    result = run({"probe_seconds": 0.5, "udp_port": workload})
    assert result["status"] == "success"
    (table,) = [c for c in result["output"]["complete"] if c["title"] == "Workload VMs"]
    rows = table["data"]["rows"]
    assert len(rows) == 2 and all(r[0].startswith("c_rally_") for r in rows)
    for row in rows:
        sent, lost, longest = row[-4:-1]
        assert sent >= 20 and lost == 0 and longest == 0.0
        assert row[2] == 1_000_000  # cpu time from the diagnostics


def test_writes_to_influx_with_the_token(workload, monkeypatch):
    server = FakeInflux().start()
    monkeypatch.setenv("LM_TOKEN", "s3cret")
    try:
        result = run({"probe_seconds": 0.5, "udp_port": workload, "influx": {
            "url": server.url, "org": "lm", "bucket": "rally_lm", "token_env": "LM_TOKEN"}})
    finally:
        server.stop()
    assert result["status"] == "success"
    assert sum(p.startswith("lm_vm,") for p in server.points) == 2
    assert sum(p.startswith("lm_probe,") for p in server.points) == 2


def test_a_refused_token_fails_the_hook_loudly(workload, monkeypatch):
    server = FakeInflux().start()
    monkeypatch.setenv("LM_TOKEN", "wrong")
    try:
        result = run({"probe_seconds": 0.5, "udp_port": workload, "influx": {
            "url": server.url, "org": "lm", "bucket": "rally_lm", "token_env": "LM_TOKEN"}})
    finally:
        server.stop()
    assert result["status"] == "failed"
    assert result["error"]["etype"] == "InfluxExportError"
    assert "HTTP 401" in result["error"]["details"]
