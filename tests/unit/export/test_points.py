"""The records as InfluxDB points: what a dashboard can read, and what a server accepts."""

import math

import pytest

from rally_lm.export.influx import line
from rally_lm.export.points import migration_points
from rally_lm.migration.driver import MigrationRecord
from tests.fakes.fake_influx import LINE, NOT_A_NUMBER


def never_answered_again() -> MigrationRecord:
    """A guest that never answered after its switchover: its outage has no end."""
    record = MigrationRecord(server_id="s1", vm="vm0", direction="out", source="hv1",
                             target="hv2", started_at=1_800_000_000.0, duration=9.0,
                             finished_at=1_800_000_009.0, outcome="completed")
    record.measurements["network"] = {
        "client_downtime_ms": math.inf, "downtime_ms": math.inf,
        "anatomy": {"pause_ms": math.inf, "path_down_ms": math.inf, "source_stall_ms": 0.0,
                    "convergence_ms": 0.0, "resume_lag_ms": 0.0, "recovery_tail_ms": 0.0,
                    "ongoing": True}}
    return record


def test_a_guest_that_never_answered_again_exports_without_infinity():
    # Defect of c38f188: exported as client_downtime_ms=inf, which InfluxDB's line
    # protocol refuses (HTTP 400): the export failed and the iteration errored.
    points = list(migration_points(never_answered_again(), {"task": "t1"}))
    text = [line(*p) for p in points]
    assert not any("inf" in t.split(" ")[1] for t in text)
    assert all(LINE.match(t) and not NOT_A_NUMBER.search(t.split(" ")[1]) for t in text)
    fields = points[0][2]
    assert "client_downtime_ms" not in fields and "pause_ms" not in fields
    assert fields["unbounded"] == "client_downtime_ms,network_downtime_ms,path_down_ms,pause_ms"
    assert fields["convergence_ms"] == 0.0


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_line_protocol_refuses_a_value_that_is_not_a_number(value):
    with pytest.raises(ValueError) as caught:
        line("m", {}, {"x": value}, 1.0)
    assert str(caught.value) == f"field x of m is {value!r}: line protocol has no such number"
