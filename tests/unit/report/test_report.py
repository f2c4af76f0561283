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


SUCCEEDED = ("completed", "timeout_forced")
NEVER_STARTED = ("refused", "skipped")


@pytest.mark.parametrize("path", FIXTURES + FAULT_SAMPLES, ids=lambda p: p.stem)
def test_every_figure_matches_the_raw_iterations(path):
    (cell,) = cells.load([path])
    data, rows = raw_migrations(path)
    workload = data["tasks"][0]["subtasks"][0]["workloads"][0]
    labels = workload["scenario"]["LiveMigration.evacuate_host"]["labels"]
    assert (cell.storage, cell.tunnelling, cell.flavor) == (
        labels["storage"], labels["tunnelling"], labels["flavor"])
    f = cells.figures(cell)
    ok = [r for r in rows if r["outcome"] in SUCCEEDED]
    # Out of every planned migration (VMs x both ways x round trips), whether or
    # not the task recorded a row for it (older tasks left a skipped one out).
    contexts = workload["contexts"]
    vms = (contexts.get("lm_workload") or contexts["lm_workload@openstack"])["count"]
    planned = 2 * vms * workload["total_iteration_count"]
    assert (f["succeeded"], f["total"]) == (len(ok), planned) and planned >= len(rows)
    # Downtime: every migration that switched hosts and was measured; the silences
    # of those that reached the hypervisor but failed, apart.
    column = "client_downtime_ms" if "client_downtime_ms" in rows[0] else "network_downtime_ms"
    moved = sorted(r[column] for r in rows if r["outcome"] in SUCCEEDED
                   and r[column] is not None)
    failed = sorted(r[column] for r in rows if r["outcome"] not in SUCCEEDED
                    and r["outcome"] not in NEVER_STARTED and r[column] is not None)
    assert f["client_downtime_ms"]["count"] == len(moved)
    assert f["failed_silence_ms"]["count"] == len(failed)
    if moved:
        assert f["client_downtime_ms"]["max"] == pytest.approx(moved[-1])
        assert f["client_downtime_ms"]["p50"] == pytest.approx(statistics.median(moved))
        # Fewer than 20 values: no p95 pretending to be measured.
        assert (f["client_downtime_ms"]["p95"] is None) == (len(moved) < 20)
    if ok:
        assert f["duration_s"]["max"] == pytest.approx(max(r["duration_s"] for r in ok))
        hyper = [r["hypervisor_downtime_ms"] for r in ok]
        assert f["hypervisor_downtime_ms"]["max"] == pytest.approx(max(hyper))
    failures = {}
    for r in rows:
        if r["outcome"] not in SUCCEEDED:
            failures[r["outcome"]] = failures.get(r["outcome"], 0) + 1
    assert f["failures"] == failures
    for direction in ("out", "back"):
        drains = [a["finished_at"] - a["started_at"] for it in workload["data"]
                  for a in it["atomic_actions"]
                  if a["name"] == f"nova.drain_host_{direction}"]
        assert f[f"evacuation_{direction}_s"]["mean"] == pytest.approx(
            statistics.mean(drains))
    for vm in {r["vm"] for r in rows}:
        assert f["per_vm"][vm]["migrations"] == sum(r["vm"] == vm for r in rows)


@pytest.mark.parametrize("path", FIXTURES + FAULT_SAMPLES, ids=lambda p: p.stem)
def test_every_failed_migration_is_listed_with_its_reason(path, tmp_path):
    (cell,) = cells.load([path])
    _data, rows = raw_migrations(path)
    failed = [r for r in rows if r["outcome"] not in SUCCEEDED]
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
        if f["client_downtime_ms"]["max"] is not None:
            assert f"{f['client_downtime_ms']['max']:.1f}" in page
        for sla in cell.sla:
            assert sla["detail"] in text  # the verdicts, in Markdown too
    assert "testbed flavors are scaled" in page and "<svg" in page
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")  # offline


def test_cli_rejects_missing_input(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope.json"), "--out", str(tmp_path)]) == 2
    assert "no such file" in capsys.readouterr().err


def test_cli_writes_both_documents(tmp_path, capsys):
    assert main(["report", *map(str, FIXTURES), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "comparison.html").exists() and (tmp_path / "comparison.md").exists()
    assert (tmp_path / "comparison.md").read_text().startswith(
        "# Live migration: storage x tunnelling x flavor\n")


def test_cli_takes_a_title(tmp_path):
    assert main(["report", *map(str, FIXTURES), "--out", str(tmp_path),
                 "--title", "Live migration policies: dirty rate x policy"]) == 0
    markdown = (tmp_path / "comparison.md").read_text()
    assert markdown.startswith("# Live migration policies: dirty rate x policy\n")
    assert "Live migration policies: dirty rate x policy" in \
        (tmp_path / "comparison.html").read_text()


def policy_cell(policy, rate, rows):
    """A sweep cell as cells.load makes it, from hand-written Migrations rows."""
    from rally_lm.task.output import MIGRATION_COLUMNS

    migrations = []
    for number, (outcome, dirty, downtime, duration, mode, postcopy, throttle) in \
            enumerate(rows):
        row = dict.fromkeys(MIGRATION_COLUMNS)
        row.update(vm="vm0", direction="out" if number % 2 == 0 else "back", source="hv1",
                   target="hv2", outcome=outcome, dirty_rate_mib_s=dirty,
                   client_downtime_ms=downtime, pause_ms=downtime, duration_s=duration,
                   copy_mode=mode, postcopy_ms=postcopy, throttle_max_pct=throttle,
                   iteration=number // 2)
        migrations.append(row)
    return cells.Cell(task=f"{policy}-{rate}", storage="ceph", tunnelling="off",
                      flavor="lm.small.scaled-16", config={}, migrations=migrations,
                      drains=[], per_vm_tcp=[], iterations=1, failed_iterations=0, sla=[],
                      labels={"policy": policy, "link_mbit": "80",
                              "dirty_rate_mib": str(rate)})


def test_policy_cells_get_their_own_section_and_charts(tmp_path):
    sweep = [
        policy_cell("pre-copy", 24, [("timeout_aborted", 23.5, 180.0, 31.0, "pre-copy",
                                      None, 0)] * 2),
        policy_cell("post-copy", 24, [("timeout_forced", 24.1, 230.0, 36.0, "post-copy",
                                       2400.0, 0)] * 2),
        policy_cell("auto-converge", 24, [("completed", 22.0, 150.0, 20.0, "pre-copy", None,
                                           60), ("completed", 21.0, 140.0, 19.0, "pre-copy",
                                                 None, 70)]),
    ]
    assert sweep[0].link_mib_s == pytest.approx(80e6 / 8 / 2**20)
    assert sweep[0].name == "ceph / tunnelling off / lm.small.scaled-16 / pre-copy / " \
                            "dirtying 24 MiB/s"
    f = cells.figures(sweep[2])
    assert f["throttle_max_pct"]["max"] == 70 and f["copy_modes"] == {"pre-copy": 2}
    assert cells.figures(sweep[1])["postcopy_ms"]["max"] == 2400.0
    points = render.policy_points(sweep, "client_downtime_ms")
    assert sorted(points) == ["auto-converge", "post-copy", "pre-copy"]
    x, y, ok = points["pre-copy"][0]
    assert x == pytest.approx(23.5 / (80e6 / 8 / 2**20)) and y == 180.0 and ok is False
    html, markdown = render.render(sweep, tmp_path, title="Live migration policies")
    text = markdown.read_text()
    assert "## Migration policies" in text
    assert "timeout_aborted: 2" in text and "post-copy: 2" in text
    page = html.read_text()
    assert "dirty rate ÷ link bandwidth" in page and "hollow: did not succeed" in page


def test_the_storage_study_has_no_policy_section(tmp_path):
    _html, markdown = render.render(cells.load(FIXTURES), tmp_path)
    assert "Migration policies" not in markdown.read_text()
    assert render.policy_points(cells.load(FIXTURES), "duration_s") == {}


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_the_time_budget_adds_up_from_the_raw_rows(path):
    data, rows = raw_migrations(path)
    (cell,) = cells.load([path])
    budget = cells.time_budget(cell)
    timed = [r for r in rows if r["duration_s"] is not None]
    assert budget["migrations_s"] == pytest.approx(sum(r["duration_s"] for r in timed))
    if all(r.get("hypervisor_total_ms") is not None for r in timed):
        libvirt = sum(r["hypervisor_total_ms"] for r in timed) / 1000.0
        assert budget["libvirt_s"] == pytest.approx(libvirt)
        assert budget["nova_s"] == pytest.approx(budget["migrations_s"] - libvirt)
    else:
        assert budget["libvirt_s"] is None and budget["nova_s"] is None
    assert budget["tool_s"] == pytest.approx(budget["drains_s"] - budget["migrations_s"])
    assert 0 <= budget["tool_share"] < 1


def test_a_cell_without_timed_migrations_has_no_budget():
    empty = cells.Cell(task="t", storage="ceph", tunnelling="off", flavor="f", config={},
                       migrations=[], drains=[], per_vm_tcp=[], iterations=0,
                       failed_iterations=0, sla=[])
    assert cells.time_budget(empty) == dict.fromkeys(
        ("drains_s", "migrations_s", "libvirt_s", "nova_s", "tool_s", "tool_share"))


def with_rates(path: Path, rates, tmp_path: Path) -> Path:
    """The fixture as if lm_workload had given its VMs these dirty rates."""
    data = json.loads(path.read_text())
    workload = data["tasks"][0]["subtasks"][0]["workloads"][0]
    workload["contexts"]["lm_workload"]["agent"]["dirty_rate_mib"] = rates
    out = tmp_path / path.name
    out.write_text(json.dumps(data))
    return out


def test_a_task_whose_vms_dirty_at_different_rates_is_one_cell_per_rate(tmp_path):
    path = FIXTURES[0]
    (whole,) = cells.load([path])
    low, high = cells.load([with_rates(path, [16, 4], tmp_path)])
    assert (low.labels["dirty_rate_mib"], high.labels["dirty_rate_mib"]) == ("4", "16")
    assert low.name.endswith("dirtying 4 MiB/s") and high.labels["storage"] == whole.storage
    # vm1 was given 4 MiB/s, vm0 16: every migration lands in its VM's cell, once.
    assert {m["vm"][-3:] for m in low.migrations} == {"vm1"}
    assert {m["vm"][-3:] for m in high.migrations} == {"vm0"}
    assert len(low.migrations) + len(high.migrations) == len(whole.migrations)
    assert {r["vm"][-3:] for r in low.per_vm_tcp} == {"vm1"}
    # A drain moved both VMs: its time belongs to neither rate.
    assert whole.drains and low.drains == [] == high.drains
    assert cells.figures(low)["evacuation_out_s"]["count"] == 0
    assert cells.time_budget(low)["tool_s"] is None


@pytest.mark.parametrize("rates", [[8, 8], 8])
def test_one_rate_for_every_vm_keeps_the_task_one_cell(tmp_path, rates):
    (cell,) = cells.load([with_rates(FIXTURES[0], rates, tmp_path)])
    assert cell.drains


def test_vms_not_named_by_lm_workload_keep_the_task_whole():
    (cell,) = cells.load([FIXTURES[0]])
    renamed = [{**m, "vm": "my-own-vm"} for m in cell.migrations]
    kept = cells.split_by_dirty_rate(cells.dataclasses.replace(cell, migrations=renamed),
                                     [4, 16])
    assert len(kept) == 1 and kept[0].drains == cell.drains


def test_the_comparison_html_escapes_reasons_labels_and_notes(tmp_path):
    # Defect of c38f188: select_autoescape(["html"]) does not match comparison.html.j2,
    # so a failure reason, a label or --note went into the page as markup.
    import dataclasses

    evil = "<script>alert(1)</script>"
    cell = cells.load(FIXTURES)[0]
    migrations = [dict(cell.migrations[0], outcome="error", error=f"libvirt said {evil}")]
    hostile = dataclasses.replace(cell, storage=evil, migrations=migrations,
                                  labels={**cell.labels, "storage": evil})
    html, _markdown = render.render([hostile], tmp_path, note=f"note {evil}")
    page = html.read_text()
    assert evil not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_cell_whose_migrations_never_switched_hosts_has_no_client_downtime(tmp_path):
    # Defect of c38f188: local + tunnelled (0/24 succeeded, refused by libvirt after the
    # call) showed the lowest client downtime of all, from guests that never moved.
    local_on = ROOT / "tests" / "fixtures" / "rally" / "testbed-local-on.json"
    (cell,) = cells.load([local_on])
    f = cells.figures(cell)
    assert f["succeeded"] == 0 and f["client_downtime_ms"]["count"] == 0
    assert f["failed_silence_ms"]["count"] > 0
    html, markdown = render.render(cells.load(FIXTURES), tmp_path)
    chart = html.read_text().split("Client-perceived downtime per migration")[1]
    assert "local / tunnelling on" not in chart.split("</svg>")[0]
    assert "never switched hosts" in markdown.read_text()


def test_the_stacked_anatomy_leaves_out_the_tail_and_says_medians_do_not_add_up():
    # Defect of c38f188: the bars stacked the phases' medians with the recovery tail
    # (513 ms drawn beside a client downtime p50 of 497.7) without a word.
    found = [c for c in cells.load(sorted((ROOT / "samples" / "study" / "rally").glob("*.json")))
             if cells.figures(c)["anatomy"]]
    rows = [(c.name, cells.figures(c)["anatomy"]) for c in found]
    assert len(rows) >= 10
    svg = render.anatomy_chart(rows)
    assert "recovery tail" not in svg.split("Medians do not add up")[0]
    assert "Medians do not add up" in svg
    for _name, anatomy in rows:
        if not anatomy["client_downtime_ms"]["count"]:
            continue
        phases = sum(anatomy[k]["p50"] or 0.0 for k in render.ANATOMY_COLORS)
        assert f"phases {phases:.0f} | client {anatomy['client_downtime_ms']['p50']:.0f}" in svg


def test_a_task_split_by_rate_keeps_its_slas_whole_and_its_vms_longest_tcp_stall(tmp_path):
    # Defects of c38f188 in samples/policies: each rate's row repeated the whole task's
    # SLA verdicts ("2/2" beside "lm_success_rate FAIL"), and the longest TCP stall came
    # from the migration rows only (173.2 ms where the Per VM table says 195.6).
    sweep = sorted((ROOT / "samples" / "policies" / "rally").glob("*.json"))
    split = [c for c in cells.load(sweep) if c.split_from]
    assert split and all(c.sla == [] for c in split)
    for cell in split:
        per_vm = [r["TCP longest stall ms"] for r in cell.per_vm_tcp
                  if r.get("TCP longest stall ms") is not None]
        if per_vm:
            assert cells.figures(cell)["tcp_longest_stall_ms"] >= max(per_vm)
    _html, markdown = render.render(split, tmp_path)
    assert "the task's, over every rate: see task" in markdown.read_text()
