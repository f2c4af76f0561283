"""InfluxDB export against a real time-series server on loopback.

Debian's victoria-metrics accepts influxdb-client's /api/v2/write as is;
fields become ``<measurement>_<field>`` series, read back via /api/v1/export.
"""

import json
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest

from rally_lm.export.influx import InfluxExporter, InfluxSettings
from tests.functional.conftest import require

pytestmark = pytest.mark.functional


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class VictoriaMetrics:
    def __init__(self, data_dir, port):
        self.data_dir, self.port, self.proc = data_dir, port, None
        self.url = f"http://127.0.0.1:{port}"

    def start(self):
        self.proc = subprocess.Popen(
            ["victoria-metrics", f"-httpListenAddr=127.0.0.1:{self.port}",
             f"-storageDataPath={self.data_dir}", "-retentionPeriod=100y"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.url}/health", timeout=1)
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("victoria-metrics did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(20)

    def points(self, series_regex="lm_.*"):
        urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=10)
        query = urllib.parse.quote(f'{{__name__=~"{series_regex}"}}')
        with urllib.request.urlopen(f"{self.url}/api/v1/export?match[]={query}",
                                    timeout=10) as resp:
            series = [json.loads(line) for line in resp.read().decode().splitlines() if line]
        found = {}
        for item in series:
            metric = dict(item["metric"])
            name = metric.pop("__name__")
            for value, stamp in zip(item["values"], item["timestamps"], strict=True):
                found[(name, tuple(sorted(metric.items())), stamp)] = value
        return found


@pytest.fixture
def victoria(tmp_path):
    require(shutil.which("victoria-metrics") is not None,
            "victoria-metrics is not installed (tools/install-system-deps.sh)")
    server = VictoriaMetrics(tmp_path / "vm-data", free_port()).start()
    yield server
    if server.proc.poll() is None:
        server.stop()


def settings(server):
    return InfluxSettings(url=server.url, org="ops", bucket="rally_lm", token="s3cr3t-t0ken")


def write_points(exporter, start, count, vm="vm0", first=0):
    for i in range(first, first + count):
        exporter.write("lm_probe", {"vm": vm, "host": "hv1", "task": "t1"},
                       {"lost": i, "downtime_ms": float(i) / 2}, timestamp=start + i)


def expected(start, count, vm="vm0"):
    tags = (("host", "hv1"), ("task", "t1"), ("vm", vm))
    out = {}
    for i in range(count):
        stamp = int((start + i) * 1000)
        out[("lm_probe_lost", tags, stamp)] = i
        out[("lm_probe_downtime_ms", tags, stamp)] = float(i) / 2
    return out


def test_points_read_back_exactly(victoria, tmp_path):
    exporter = InfluxExporter(settings(victoria), tmp_path / "spool.lp",
                              flush_interval=0.2).start()
    start = time.time() - 3600
    write_points(exporter, start, 50)
    stats = exporter.close()
    assert (stats.written, stats.spooled, stats.dropped) == (50, 0, 0)
    assert victoria.points() == expected(start, 50)


def test_server_down_mid_run_loses_nothing(victoria, tmp_path):
    exporter = InfluxExporter(settings(victoria), tmp_path / "spool.lp",
                              flush_interval=0.2, timeout=1.0).start()
    start = time.time() - 3600
    write_points(exporter, start, 20)
    time.sleep(1.0)
    victoria.stop()
    write_points(exporter, start, 30, first=20)
    time.sleep(2.0)
    assert exporter.stats.spooled > 0, exporter.stats
    assert "s3cr3t-t0ken" not in (exporter.stats.last_error or "")
    victoria.start()
    stats = exporter.close()
    assert stats.dropped == 0 and stats.spooled == 0
    assert stats.written + stats.replayed == 50
    assert victoria.points() == expected(start, 50)


def test_malformed_url_is_rejected_before_anything_runs():
    from rally_lm.export.influx import ExportConfigError

    for url in ("localhost:8086", "ftp://x", "http://", ""):
        with pytest.raises(ExportConfigError, match="URL"):
            InfluxSettings.from_config({"url": url}, environ={})


def test_token_never_in_repr():
    settings_ = InfluxSettings.from_config({"url": "http://127.0.0.1:1"},
                                           environ={"INFLUX_TOKEN": "s3cr3t"})
    assert settings_.token == "s3cr3t" and "s3cr3t" not in repr(settings_)


def test_replay_command_sends_a_spool_later(victoria, tmp_path):
    from rally_lm.cli.main import main
    from rally_lm.export.influx import line

    start = time.time() - 7200
    spool = tmp_path / "left.lp"
    spool.write_text("".join(
        line("lm_probe", {"vm": "vm0", "host": "hv1", "task": "t1"},
             {"lost": i, "downtime_ms": float(i) / 2}, start + i) + "\n" for i in range(10)))
    assert main(["influx-replay", str(spool), "--url", victoria.url]) == 0
    assert victoria.points() == expected(start, 10)
    assert spool.read_text() == ""
