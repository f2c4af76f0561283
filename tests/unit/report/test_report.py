"""The comparison report, from real Rally JSON produced on the testbed."""

import json
import statistics
from pathlib import Path

import pytest

from rally_lm.cli.main import main
from rally_lm.report import cells, render

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = sorted((ROOT / "tests" / "fixtures" / "rally").glob("*.json"))
# Fault runs from the testbed, with libvirt's answer (running_on) per migration.
FAULT_SAMPLES = sorted((ROOT / "samples" / "rally-faults").glob("*.json"))


def raw_migrations(path):
    """Straight from the iterations, without rally_lm's helpers."""
    data = json.loads(path.read_text())
    rows = []
    for it in data["tasks"][0]["subtasks"][0]["workloads"][0]["data"]:
        for chart in it["output"]["complete"]:
            if chart["title"] == "Migrations":
                rows += [dict(zip(chart["data"]["cols"], r, strict=True))
                         for r in chart["data"]["rows"]]
    return data, rows


@pytest.mark.parametrize("path", FIXTURES + FAULT_SAMPLES, ids=lambda p: p.stem)
def test_every_figure_matches_the_raw_iterations(path):
    (cell,) = cells.load([path])
    data, rows = raw_migrations(path)
    workload = data["tasks"][0]["subtasks"][0]["workloads"][0]
    labels = workload["scenario"]["LiveMigration.evacuate_host"]["labels"]
    assert (cell.storage, cell.tunnelling, cell.flavor) == (
        labels["storage"], labels["tunnelling"], labels["flavor"])
    f = cells.figures(cell)
    ok = [r for r in rows if r["outcome"] == "completed"]
    assert (f["succeeded"], f["total"]) == (len(ok), len(rows))
    if ok:
        downtimes = sorted(r["network_downtime_ms"] for r in ok)
        assert f["network_downtime_ms"]["max"] == pytest.approx(downtimes[-1])
        assert f["network_downtime_ms"]["p50"] == pytest.approx(statistics.median(downtimes))
        durations = [r["duration_s"] for r in ok]
        assert f["duration_s"]["max"] == pytest.approx(max(durations))
        hyper = [r["hypervisor_downtime_ms"] for r in ok]
        assert f["hypervisor_downtime_ms"]["max"] == pytest.approx(max(hyper))
    failures = {}
    for r in rows:
        if r["outcome"] != "completed":
            failures[r["outcome"]] = failures.get(r["outcome"], 0) + 1
    assert f["failures"] == failures
    drains = [a["finished_at"] - a["started_at"] for it in workload["data"]
              for a in it["atomic_actions"] if a["name"].startswith("nova.drain_host_")]
    assert f["evacuation_s"]["mean"] == pytest.approx(statistics.mean(drains))
    for vm in {r["vm"] for r in rows}:
        assert f["per_vm"][vm]["migrations"] == sum(r["vm"] == vm for r in rows)


@pytest.mark.parametrize("path", FIXTURES + FAULT_SAMPLES, ids=lambda p: p.stem)
def test_every_failed_migration_is_listed_with_its_reason(path, tmp_path):
    (cell,) = cells.load([path])
    _data, rows = raw_migrations(path)
    failed = [r for r in rows if r["outcome"] not in ("completed", "timeout_forced")]
    listed = cells.figures(cell)["failed"]
    assert [(m["vm"], m["direction"], m["outcome"], m["reason"]) for m in listed] == [
        (r["vm"], r["direction"], r["outcome"], r["error"]) for r in failed]
    assert [m["running_on"] for m in listed] == [r.get("running_on") for r in failed]
    html, markdown = render.render([cell], tmp_path)
    for r in failed:
        assert r["error"] in markdown.read_text() and r["error"] in html.read_text()


def test_fault_samples_include_a_failure_libvirt_located():
    located = [m for path in FAULT_SAMPLES for m in cells.figures(cells.load([path])[0])["failed"]
               if m["running_on"]]
    assert {m["outcome"] for m in located} >= {"error", "stale_status"}


def test_rendered_documents_carry_the_figures(tmp_path):
    found = cells.load(FIXTURES)
    html, markdown = render.render(found, tmp_path, note="testbed flavors are scaled")
    text = markdown.read_text()
    page = html.read_text()
    for cell in found:
        f = cells.figures(cell)
        assert f"{f['succeeded']}/{f['total']}" in text
        if f["network_downtime_ms"]["max"] is not None:
            assert f"{f['network_downtime_ms']['max']:.1f}" in page
    assert "testbed flavors are scaled" in page and "<svg" in page
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")  # offline


def test_cli_rejects_missing_input(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope.json"), "--out", str(tmp_path)]) == 2
    assert "no such file" in capsys.readouterr().err


def test_cli_writes_both_documents(tmp_path, capsys):
    assert main(["report", *map(str, FIXTURES), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "comparison.html").exists() and (tmp_path / "comparison.md").exists()
