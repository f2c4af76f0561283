"""InfluxDB export against a real time-series server on loopback, behind a real token check.

Debian's victoria-metrics accepts influxdb-client's /api/v2/write as is;
fields become ``<measurement>_<field>`` series, read back via /api/v1/export.
It ignores tokens, so ``TokenGate`` puts nginx in front of it, answering
401 as InfluxDB does unless the request carries ``Authorization: Token <t>``.
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


class TokenGate:
    """nginx on loopback: proxies to ``upstream`` only with the right token, else 401."""

    def __init__(self, upstream: str, token: str, workdir, port: int) -> None:
        self.workdir, self.port = workdir, port
        self.url = f"http://127.0.0.1:{port}"
        workdir.mkdir(parents=True, exist_ok=True)
        temp = "".join(f"{kind}_temp_path {workdir}/{kind};\n"
                       for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (workdir / "nginx.conf").write_text(f"""
user root;
daemon off;
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log;
events {{ }}
http {{
    access_log off;
    {temp}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            if ($http_authorization != "Token {token}") {{
                add_header Content-Type application/json always;
                return 401 '{{"code":"unauthorized","message":"unauthorized access"}}';
            }}
            proxy_pass {upstream};
        }}
    }}
}}
""")
        self.proc = None

    def start(self) -> "TokenGate":
        self.proc = subprocess.Popen(["nginx", "-c", str(self.workdir / "nginx.conf"),
                                      "-p", str(self.workdir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nginx did not start: {(self.workdir / 'error.log').read_text()}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def victoria(tmp_path):
    require(shutil.which("victoria-metrics") is not None,
            "victoria-metrics is not installed (tools/install-system-deps.sh)")
    server = VictoriaMetrics(tmp_path / "vm-data", free_port()).start()
    yield server
    if server.proc.poll() is None:
        server.stop()


TOKEN = "s3cr3t-t0ken"


@pytest.fixture
def gate(victoria, tmp_path):
    require(shutil.which("nginx") is not None, "nginx is not installed (nginx-light)")
    proxy = TokenGate(victoria.url, TOKEN, tmp_path / "nginx", free_port()).start()
    yield proxy
    proxy.stop()


def settings(server, token=TOKEN):
    return InfluxSettings(url=server.url, org="ops", bucket="rally_lm", token=token)


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
    assert (stats.written, stats.spooled, stats.dropped, stats.failed) == (50, 0, 0, False)
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
    assert not spool.exists() or spool.read_text() == ""


def test_through_the_token_check(victoria, gate, tmp_path):
    exporter = InfluxExporter(settings(gate), tmp_path / "spool.lp", flush_interval=0.2).start()
    start = time.time() - 3600
    write_points(exporter, start, 20)
    stats = exporter.close()
    assert (stats.written, stats.spooled, stats.failed) == (20, 0, False)
    assert victoria.points() == expected(start, 20)


def test_a_refused_token_fails_loudly_and_nothing_is_lost(victoria, gate, tmp_path):
    spool = tmp_path / "spool.lp"
    exporter = InfluxExporter(settings(gate, token="not-the-token"), spool,
                              flush_interval=0.2).start()
    start = time.time() - 3600
    write_points(exporter, start, 20)
    stats = exporter.close()
    assert stats.failed and stats.written == 0 and stats.spooled == 20
    assert "HTTP 401" in stats.last_error and "not-the-token" not in stats.last_error
    assert victoria.points() == {}
    # Fixed settings: the replay command sends every point, once.
    from rally_lm.export.influx import replay_spool

    replayed = replay_spool(settings(gate), spool)
    assert (replayed.replayed, replayed.spooled, replayed.failed) == (20, 0, False)
    assert victoria.points() == expected(start, 20)
