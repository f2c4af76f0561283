"""Intervals against values computed by hand or published."""

import math

import pytest

from rally_lm.stats import intervals


@pytest.mark.parametrize("n, low_rank, high_rank", [
    # The median's 95 % interval by order statistics, as tabulated (e.g. Conover,
    # Practical Nonparametric Statistics, table A3): ranks l and u = n + 1 - l.
    (6, 1, 6), (8, 1, 8), (10, 2, 9), (12, 3, 10), (20, 6, 15), (24, 7, 18), (30, 10, 21),
])
def test_the_medians_interval_is_the_tabulated_pair_of_ranks(n, low_rank, high_rank):
    values = [float(v * 10) for v in range(1, n + 1)]
    got = intervals.quantile_interval(values[::-1], 0.5)
    assert (got.low, got.high) == (low_rank * 10.0, high_rank * 10.0)
    assert got.coverage >= 0.95 and got.n == n and got.method.startswith("order statistics")


def test_too_few_values_leave_the_interval_unbounded():
    got = intervals.quantile_interval([3.0, 1.0, 2.0, 5.0, 4.0], 0.5)
    assert got.estimate == 3.0 and (got.low, got.high, got.coverage) == (None, None, None)
    assert not got.bounded and got.width is None
    assert got.text() == "3.0 [?, ?]"
    # 5 values: [min, max] covers the median only 1 - 2 / 2^5 = 93.75 % of the time.
    assert intervals.values_for_interval(0.5) == 6


def test_a_p95_needs_many_values_for_an_upper_bound():
    got = intervals.quantile_interval(list(range(24)), 0.95)
    assert got.low is not None and got.high is None
    assert intervals.values_for_interval(0.95) == 72


def test_no_values_no_estimate_and_non_numbers_are_left_out():
    assert intervals.quantile_interval([], 0.5).estimate is None
    got = intervals.quantile_interval([1.0, None, math.inf, math.nan, 2.0], 0.5)
    assert got.n == 2 and got.estimate == 1.5


@pytest.mark.parametrize("k, n, low, high", [
    # Wilson score intervals as published (Newcombe 1998, table I).
    (81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718),
])
def test_wilsons_interval_matches_newcombes_table(k, n, low, high):
    got = intervals.proportion_interval(k, n)
    assert (round(got.low, 4), round(got.high, 4)) == (low, high)
    assert got.estimate == k / n


def test_the_bootstrap_ratio_is_repeatable_and_brackets_the_ratio():
    a, b = [10, 11, 12, 13, 12, 11, 12, 10], [5, 6, 5, 6, 5, 6, 5, 6]
    one, two = intervals.bootstrap_ratio(a, b), intervals.bootstrap_ratio(a, b)
    assert one == two
    assert one.estimate == pytest.approx(11.5 / 5.5)
    assert one.low < one.estimate < one.high
    assert intervals.bootstrap_ratio([], b).estimate is None


def test_the_normal_quantile():
    assert intervals._normal_quantile(0.975) == pytest.approx(1.959964, abs=1e-6)
    assert intervals._normal_quantile(0.01) == pytest.approx(-2.326348, abs=1e-6)
    assert intervals._normal_quantile(0.5) == pytest.approx(0.0, abs=1e-12)
