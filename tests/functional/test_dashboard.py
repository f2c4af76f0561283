"""Every query of the sample Grafana dashboard, run on a real InfluxDB over what the
exporter writes for a real run.

Which server answers what: the dashboard speaks InfluxQL, which InfluxDB 1.x
answers (Debian's influxdb 1.6, started here on loopback) and InfluxDB 2 through
its v1 compatibility API; VictoriaMetrics, which takes our v2 writes in the
export test, answers PromQL, not InfluxQL. InfluxDB 1.6 has no /api/v2/write,
so the exporter's own lines (rally_lm.export.influx.line over migration_points)
are posted to its v1 /write: the same points the exporter sends.
"""

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from rally_lm.export.influx import line
from rally_lm.export.points import diagnostics_fields, migration_points
from rally_lm.migration.driver import MigrationRecord
from tests.functional.conftest import require

pytestmark = pytest.mark.functional
ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "samples" / "grafana-dashboard.json"
#: A real run recorded on the testbed (its Migration records, as Rally stored them),
#: with failures in it (pre-copy above the link: aborted by Nova's timeout).
RUN = sorted((ROOT / "samples" / "policies" / "rally").glob("pre-copy-[0-9a-f]*.json"))[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def influxdb(tmp_path_factory):
    require(shutil.which("influxd") is not None, "influxdb is not installed "
                                                 "(tools/install-system-deps.sh)")
    work = tmp_path_factory.mktemp("influxdb")
    http, rpc = free_port(), free_port()
    (work / "influxdb.conf").write_text(f"""
reporting-disabled = true
bind-address = "127.0.0.1:{rpc}"
[meta]
  dir = "{work}/meta"
[data]
  dir = "{work}/data"
  wal-dir = "{work}/wal"
[http]
  bind-address = "127.0.0.1:{http}"
  log-enabled = false
""")
    proc = subprocess.Popen(["influxd", "-config", str(work / "influxdb.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{http}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/ping", timeout=1)
            break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("influxd did not answer on loopback")
    query(url, "CREATE DATABASE rally_lm")
    yield url
    proc.terminate()
    proc.wait(20)


def query(url: str, text: str) -> dict:
    body = urllib.parse.urlencode({"db": "rally_lm", "q": text, "epoch": "ms"}).encode()
    try:
        with urllib.request.urlopen(f"{url}/query", data=body, timeout=30) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:  # a query InfluxDB cannot parse: say which
        return {"results": [{"error": f"{exc.code}: {exc.read()[:300]!r} for {text}"}]}


def write(url: str, lines: list[str]) -> None:
    request = urllib.request.Request(f"{url}/write?db=rally_lm&precision=ns",
                                     data="\n".join(lines).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=30) as resp:
        assert resp.status == 204


def recorded_points() -> tuple[list[str], str, tuple[float, float]]:
    data = json.loads(RUN.read_text())
    task = data["tasks"][0]
    records = []
    for iteration in task["subtasks"][0]["workloads"][0]["data"]:
        for chart in iteration["output"]["complete"]:
            if chart["title"] == "Migration records (JSON)":
                records += [MigrationRecord.from_dict(r) for r in json.loads(chart["data"][0])]
    tags = {"task": task["uuid"], "iteration": 0, "flavor": "lm.small.scaled-16",
            "storage": "ceph", "tunnelling": "off", "policy": "pre-copy", "network": "linuxbridge"}
    lines = [line(*point) for r in records for point in migration_points(r, tags)]
    start = min(r.started_at for r in records)
    for step in range(5):
        for vm in {r.vm for r in records}:
            diag = {"cpu_details": [{"time": 10**9 * step}], "memory_details": {"used": 200},
                    "nic_details": [{"rx_octets": 1000 * step, "tx_octets": 500 * step}],
                    "disk_details": [{"read_bytes": 10 * step, "write_bytes": 20 * step}],
                    "uptime": 60 + step}
            fields = {k: v for k, v in diagnostics_fields(diag).items() if v is not None}
            lines.append(line("lm_vm", {"task": task["uuid"], "vm": vm, "host": "hv1"}, fields,
                              start + 20 * step))
            lines.append(line("lm_probe", {"task": task["uuid"], "vm": vm, "host": "hv1"},
                              {"sent": 500, "lost": step, "outages": 1,
                               "longest_outage_ms": 10.0 * step}, start + 20 * step))
    return lines, task["uuid"], (start - 60, max(r.finished_at for r in records) + 120)


def as_grafana_would(query_text: str, task: str, window: tuple[float, float]) -> str:
    """The panel's query with Grafana's variables filled in ("All" is .*)."""
    text = query_text.replace("$timeFilter", f"time >= {int(window[0] * 1000)}ms and "
                                             f"time <= {int(window[1] * 1000)}ms")
    # A task's uuid has no regex character to escape (InfluxQL knows only \\/).
    text = text.replace("$__interval", "10s").replace("/^$task$/", f"/^{task}$/")
    return re.sub(r"/\^\$\w+\$/", "/^.*$/", text)


def test_every_panel_query_runs_over_what_the_exporter_writes(influxdb):
    lines, task, window = recorded_points()
    write(influxdb, lines)
    dashboard = json.loads(DASHBOARD.read_text())
    answered = {}
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            result = query(influxdb, as_grafana_would(target["query"], task, window))
            statement = result["results"][0]
            assert "error" not in statement, (panel["title"], statement)
            answered[panel["title"]] = sum(len(s["values"]) for s in statement.get("series", []))
    # Every panel shows something of a real run (failures: the run had some), but
    # the requests panel where the run predates their counting.
    fields = " ".join(lines)
    empty = [t for t, count in answered.items() if count == 0]
    assert empty == ([] if "nova_requests=" in fields else
                     ["What observing cost Nova: requests per migration"])
    # The gated figure and the anatomy are on the dashboard.
    titles = " ".join(answered)
    assert "Client downtime" in titles and "anatomy" in titles
    for variable in ("storage", "tunnelling", "policy", "network"):
        found = query(influxdb, next(v["query"] for v in dashboard["templating"]["list"]
                                     if v["name"] == variable))
        assert found["results"][0]["series"][0]["values"], variable
