"""lm_regression: fails on a regression, passes on the same setting, never on nothing."""

import json

import pytest

from rally_lm.task.sla.regression import NoRegression
from tests.unit.report.synthetic import draw, report, rows


def iterations(path):
    data = json.loads(path.read_text())
    return data["tasks"][0]["subtasks"][0]["workloads"][0]["data"]


@pytest.fixture
def baseline(tmp_path):
    return report(tmp_path / "base.json", "11111111-aaaa-bbbb-cccc-000000000000",
                  rows(draw(400, 30, 36, 1), draw(10, 0.5, 36, 2)))


def judged(baseline, candidate, **config):
    sla = NoRegression({"baseline": str(baseline), **config})
    for iteration in iterations(candidate):
        sla.add_iteration(iteration)
    return sla


def test_a_slower_candidate_fails(baseline, tmp_path):
    cand = report(tmp_path / "c.json", "c", rows(draw(400, 30, 36, 3),
                                                 [d * 1.5 for d in draw(10, 0.5, 36, 4)]))
    sla = judged(baseline, cand)
    assert not sla.success
    assert "duration_p50 worse" in sla.details() and sla.details().endswith("Failed")


def test_the_same_setting_passes(baseline, tmp_path):
    cand = report(tmp_path / "c.json", "c", rows(draw(400, 30, 36, 3), draw(10, 0.5, 36, 4)))
    sla = judged(baseline, cand)
    assert sla.success, sla.details()
    assert sla.details().startswith("against baseline 11111111 (ceph / tunnelling off / "
                                    "lm.small), ±10% at 95%: ")


def test_merging_equals_feeding_one(baseline, tmp_path):
    cand = report(tmp_path / "c.json", "c", rows(draw(400, 30, 36, 3), draw(10, 0.5, 36, 4)))
    whole = judged(baseline, cand)
    first, second = NoRegression({"baseline": str(baseline)}), \
        NoRegression({"baseline": str(baseline)})
    parts = iterations(cand)
    first.add_iteration(parts[0])
    for iteration in parts[1:]:
        second.add_iteration(iteration)
    first.merge(second)
    assert first.success == whole.success and first.details() == whole.details()


def test_nothing_measured_fails(baseline):
    sla = NoRegression({"baseline": str(baseline)})
    assert not sla.success
    assert sla.details() == "nothing measured to compare with the baseline - Failed"


def test_an_unreadable_baseline_fails(tmp_path):
    sla = NoRegression({"baseline": str(tmp_path / "nope.json")})
    assert not sla.success and sla.details().startswith(f"baseline {tmp_path}/nope.json "
                                                        "cannot be read: FileNotFoundError")


def test_a_baseline_without_the_cell_fails(baseline, tmp_path):
    cand = report(tmp_path / "c.json", "c", rows([400.0] * 6, [10.0] * 6),
                  labels={"storage": "local", "tunnelling": "on", "flavor": "lm.small"})
    sla = judged(baseline, cand)
    assert not sla.success
    assert sla.details() == ("the baseline has no cell local / tunnelling on / lm.small (it "
                             "has: ceph / tunnelling off / lm.small) - Failed")
    # Named explicitly, the unlike cell is compared.
    named = judged(baseline, cand, baseline_cell="ceph / tunnelling off / lm.small")
    assert named.baseline is not None
