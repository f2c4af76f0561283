"""Rally output of a real round trip (recorded on the testbed): tables, timeline chart."""

import json
from pathlib import Path

import pytest
from rally.task.processing import charts

from rally_lm.migration.evacuation import RoundTrip
from rally_lm.task import output, timeline_chart

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "migration" / \
    "round-trip-local-off.json"


@pytest.fixture
def trip():
    return RoundTrip.from_dict(json.loads(FIXTURE.read_text()))


def test_every_chart_is_one_rally_accepts(trip):
    for kind, chart in output.round_trip_output(trip, {"storage": "local"}):
        assert charts.validate_output(kind, chart) is None, chart["title"]


def test_the_migrations_table_carries_the_anatomy_as_measured(trip):
    rows = output.migrations_from_output(
        {"complete": [c for k, c in output.round_trip_output(trip, {}) if k == "complete"]})
    assert [r["direction"] for r in rows] == ["out", "back"]
    for row, record in zip(rows, trip.records, strict=True):
        anatomy = record.measurements["network"]["anatomy"]
        assert row["client_downtime_ms"] == round(anatomy["client_downtime_ms"], 3)
        parts = (row["pause_ms"] + row["convergence_ms"] + row["resume_lag_ms"]
                 + anatomy["rtt_ms"])
        assert parts == pytest.approx(row["client_downtime_ms"], abs=0.01)
        assert row["hypervisor_downtime_ms"] == record.measurements["hypervisor"]["downtime_ms"]
        assert row["pause_vs_hypervisor_ms"] == pytest.approx(
            row["pause_ms"] - row["hypervisor_downtime_ms"], abs=0.01)
        assert row["iterations"] >= 1 and row["memory_mib"] > 1
        # Block migration: libvirt's block-job events prove the disk was copied.
        assert row["disk_copy_seen"] is True
        assert row["dirty_rate_mib_s"] is not None
        assert row["icmp_client_downtime_ms"] is not None


def test_per_vm_downtime_follows_the_documented_rule(trip):
    (row,) = output.per_vm_rows(trip)
    table = dict(zip(output.PER_VM_COLUMNS, row, strict=True))
    values = [r.measurements["network"]["anatomy"]["client_downtime_ms"] for r in trip.records]
    assert table["downtime n"] == 2
    assert table["downtime max ms"] == round(max(values), 3)
    assert table["downtime p95 ms"] is None  # 2 values: no p95 pretending to be one


def test_a_failed_migration_shows_none_not_zero(trip):
    record = trip.records[0]
    record.outcome, record.measurements = "refused", {}
    row = dict(zip(output.MIGRATION_COLUMNS, output.migration_row(record), strict=True))
    assert row["duration_s"] is None and row["client_downtime_ms"] is None
    assert row["hypervisor_downtime_ms"] is None and row["tcp_max_stall_ms"] is None


def test_the_timeline_chart_draws_every_phase(trip):
    svg = timeline_chart.migration_svg(trip.records[0])
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    for phase in ("pause", "resume lag"):
        assert f"<title>{phase} " in svg
    assert "libvirt paused" in svg and "libvirt resumed" in svg
    assert "compute_pre_live_migration" in svg
    anatomy = trip.records[0].measurements["network"]["anatomy"]
    assert f"client downtime {anatomy['client_downtime_ms']:.0f} ms" in svg
    requests = trip.records[0].measurements["network"]["requests"]
    assert svg.count("<title>sent ") == len(requests)


def test_nothing_measured_draws_nothing(trip):
    record = trip.records[0]
    record.measurements = {}
    assert timeline_chart.migration_svg(record) == ""


def test_the_timeline_chart_renders_for_rallys_html_report(trip):
    from rally.task.processing import plot

    from rally_lm.task.timeline_chart import TimelineChart

    complete = [c for k, c in output.round_trip_output(trip, {}) if k == "complete"]
    (chart,) = [c for c in complete if c["chart_plugin"] == "lm_timeline"]
    rendered = TimelineChart.render_complete_data(chart)
    assert rendered["widget"] == "EmbedChart"
    assert rendered["data"]["embedded"].count("<svg") == len(trip.records)
    assert hasattr(plot, "_process_workload")  # the report path calls render_complete_data
