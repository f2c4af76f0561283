"""Verdicts: worse, better, no change, inconclusive, each from data built to be one."""

import numpy as np
import pytest

from rally_lm.stats import change


def sample(centre, spread, n, seed):
    return list(np.random.default_rng(seed).normal(centre, spread, n))


def test_a_clear_regression_is_worse_with_its_interval_and_p():
    got = change.compare("client_downtime_ms", sample(500, 50, 24, 1), sample(650, 60, 24, 2))
    assert got.verdict == "worse" and got.worse
    assert got.change.low > 1.1 and got.p_value < 0.01
    assert got.reason.startswith("p50 x1.")


def test_a_clear_improvement_is_better():
    got = change.compare("duration_s", sample(20, 2, 24, 3), sample(10, 1, 24, 4))
    assert got.verdict == "better" and not got.worse


def test_the_same_setting_twice_is_no_change():
    # Two draws of one distribution may differ "significantly" (here p < 0.01,
    # as 1 in 100 draws do), yet by less than the tolerance: no change.
    got = change.compare("duration_s", sample(20, 1, 48, 5), sample(20, 1, 48, 6))
    assert got.verdict == "no change", got.reason
    assert got.p_value < 0.01 and got.change.high < 1.1


def test_too_few_runs_are_inconclusive_and_say_what_would_decide():
    got = change.compare("duration_s", sample(20, 4, 6, 7), sample(21, 4, 6, 8))
    assert got.verdict == "inconclusive"
    assert "migrations per side would decide it" in got.reason


def test_a_significant_change_inside_the_tolerance_is_no_regression():
    # 3 % slower, measured very precisely: real, but smaller than what matters.
    got = change.compare("duration_s", sample(100, 0.5, 200, 9), sample(103, 0.5, 200, 10))
    assert got.p_value < 0.01 and got.verdict == "no change", got.reason


def test_nothing_on_a_side_is_inconclusive():
    got = change.compare("duration_s", [], [1.0, 2.0])
    assert got.verdict == "inconclusive" and got.reason.startswith("nothing to compare")


def test_identical_samples_have_p_one():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    assert change.permutation_p(a, a.copy(), 0.5) == 1.0


@pytest.mark.parametrize("base, cand, verdict", [
    ((24, 24), (18, 24), "worse"),
    ((24, 24), (23, 24), "no change"),
    ((16, 24), (24, 24), "better"),
    ((0, 0), (3, 4), "inconclusive"),
])
def test_success_rates(base, cand, verdict):
    assert change.compare_success(base, cand).verdict == verdict


def test_fishers_tail_against_a_hand_computation():
    # Baseline 3/3, candidate 0/3: P(X <= 0) = C(3,0) C(3,3) / C(6,3) = 1/20.
    assert change._fisher_less(3, 3, 0, 3) == pytest.approx(0.05)


def test_a_change_round_trips_to_json():
    import json
    got = change.compare("duration_s", [1.0, 2.0, 3.0], [2.0, 3.0, 4.0])
    assert json.loads(json.dumps(got.to_dict()))["verdict"] == got.verdict


def test_a_baseline_quantile_of_zero_is_judged_without_a_ratio():
    # No TCP stall in most baseline migrations: a p50 of 0 has no ratio.
    none_before = [0.0] * 9 + [12.0, 30.0]
    stalls = change.compare("tcp_max_stall_ms", none_before, [40.0 + i for i in range(11)])
    assert stalls.verdict == "worse" and stalls.change.estimate is None
    assert stalls.reason.startswith("p50 0 -> 45 (no ratio from 0), p = ")
    few = change.compare("tcp_max_stall_ms", none_before, [0.0] * 5 + [5.0] * 6)
    assert few.verdict == "inconclusive" and few.reason.startswith("p50 0 -> 5 (no ratio")
    assert change.compare("tcp_max_stall_ms", none_before, [0.0] * 11).verdict == "no change"
