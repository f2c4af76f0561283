"""How sure a figure is: confidence intervals for what the benchmark reports.

==================  ====================================================
figure              interval, and its method
==================  ====================================================
a percentile (p50,  distribution-free, from the order statistics: the
p95) of one cell    interval [x(l), x(u)] whose coverage, from the
                    binomial distribution of how many values fall below
                    the true percentile, is at least the confidence asked
                    (Hahn & Meeker). Exact for any distribution; with too
                    few values no such interval exists, and the bound that
                    cannot be had is None (unbounded)
a ratio between     percentile bootstrap: each cell resampled on its own,
two cells' p50s     10,000 times with a fixed seed, the ratio of medians
                    each time; the central ``confidence`` share of them
a share (success    Wilson's score interval
rate)
==================  ====================================================

Every interval says its method, n and confidence, so a reader can judge it.
No Rally import: the report, the study and the SLA plugins all use it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
ORDER_STATISTICS = "order statistics (distribution-free, binomial)"
BOOTSTRAP = f"percentile bootstrap ({BOOTSTRAP_RESAMPLES:,} resamples, seed {BOOTSTRAP_SEED})"
WILSON = "Wilson score"


@dataclasses.dataclass(frozen=True)
class Interval:
    """An estimate and where the truth lies with the stated confidence.

    ``low`` / ``high`` are None where the data cannot bound that side (too
    few values for a distribution-free bound).
    """

    estimate: float | None
    low: float | None
    high: float | None
    n: int
    confidence: float
    method: str
    #: The coverage actually achieved (order statistics give at least the asked one).
    coverage: float | None = None

    @property
    def bounded(self) -> bool:
        return self.low is not None and self.high is not None

    @property
    def width(self) -> float | None:
        return self.high - self.low if self.bounded else None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def text(self, digits: int = 1) -> str:
        """``512.3 [480.0, 560.2]``; an unbounded side is shown as ``?``."""
        if self.estimate is None:
            return "–"

        def fmt(value: float | None) -> str:
            return "?" if value is None else f"{value:.{digits}f}"
        return f"{fmt(self.estimate)} [{fmt(self.low)}, {fmt(self.high)}]"


def _binomial_cdf(k: int, n: int, p: float) -> float:
    """P(B <= k) for B ~ Binomial(n, p)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    return float(sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k + 1)))


def quantile_interval(values: Sequence[float], q: float,
                      confidence: float = CONFIDENCE) -> Interval:
    """The ``q`` quantile (0..1) of the values, with a distribution-free interval.

    The estimate is numpy's linear percentile (as every table of the report).
    The interval is the narrowest pair of order statistics [x(l), x(u)]
    around rank n*q with P(l <= B < u) >= confidence, B ~ Binomial(n, q);
    where even x(1) or x(n) cannot reach it, that side is None.
    """
    data = np.sort(np.asarray([v for v in values if v is not None and math.isfinite(v)],
                              dtype=float))
    n = int(data.size)
    if n == 0:
        return Interval(None, None, None, 0, confidence, ORDER_STATISTICS)
    estimate = float(np.percentile(data, q * 100.0, method="linear"))
    tail = (1.0 - confidence) / 2.0
    # Lower bound: the largest l (1-based) with P(B <= l - 1) <= tail.
    low_rank = max((r for r in range(1, n + 1) if _binomial_cdf(r - 1, n, q) <= tail),
                   default=None)
    # Upper bound: the smallest u with P(B >= u) <= tail, i.e. P(B <= u - 1) >= 1 - tail.
    high_rank = min((r for r in range(1, n + 1) if _binomial_cdf(r - 1, n, q) >= 1 - tail),
                    default=None)
    low = float(data[low_rank - 1]) if low_rank is not None else None
    high = float(data[high_rank - 1]) if high_rank is not None else None
    coverage = None
    if low_rank is not None and high_rank is not None:
        coverage = round(_binomial_cdf(high_rank - 1, n, q)
                         - _binomial_cdf(low_rank - 1, n, q), 4)
    return Interval(estimate, low, high, n, confidence, ORDER_STATISTICS, coverage)


def _finite(values: Sequence[float]) -> np.ndarray:
    return np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)


def bootstrap_ratio(numerator: Sequence[float], denominator: Sequence[float],
                    statistic: Callable[[np.ndarray], np.ndarray] | None = None,
                    confidence: float = CONFIDENCE,
                    resamples: int = BOOTSTRAP_RESAMPLES) -> Interval:
    """statistic(numerator) / statistic(denominator) (medians by default), bootstrapped."""
    a, b = _finite(numerator), _finite(denominator)
    n = int(min(a.size, b.size))
    if a.size == 0 or b.size == 0:
        return Interval(None, None, None, n, confidence, BOOTSTRAP)
    stat = statistic or (lambda x: np.median(x, axis=-1))
    base = float(stat(b))
    estimate = float(stat(a)) / base if base else None
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    top = stat(a[rng.integers(0, a.size, (resamples, a.size))])
    bottom = stat(b[rng.integers(0, b.size, (resamples, b.size))])
    keep = bottom != 0
    ratios = top[keep] / bottom[keep]
    if ratios.size == 0:
        return Interval(estimate, None, None, n, confidence, BOOTSTRAP)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(ratios, [tail, 100.0 - tail])
    return Interval(estimate, float(low), float(high), n, confidence, BOOTSTRAP)


def proportion_interval(successes: int, trials: int,
                        confidence: float = CONFIDENCE) -> Interval:
    """A share (e.g. migrations that succeeded of those planned) with Wilson's interval."""
    if trials <= 0:
        return Interval(None, None, None, 0, confidence, WILSON)
    z = _normal_quantile(1.0 - (1.0 - confidence) / 2.0)
    share = successes / trials
    centre = (share + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials)) \
        / (1 + z * z / trials)
    return Interval(share, max(0.0, centre - half), min(1.0, centre + half), trials,
                    confidence, WILSON)


def _normal_quantile(p: float) -> float:
    """The standard normal quantile (Acklam's rational approximation, |error| < 1.2e-9)."""
    a = (-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
         1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00)
    b = (-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
         6.680131188771972e+01, -1.328068155288572e+01)
    c = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
         -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00)
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
         3.754408661907416e+00)
    if p < 0.02425:
        q = math.sqrt(-2 * math.log(p))
        return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / \
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
    if p > 1 - 0.02425:
        return -_normal_quantile(1 - p)
    q = p - 0.5
    r = q * q
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q / \
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)


def values_for_interval(q: float, confidence: float = CONFIDENCE) -> int:
    """The fewest values for which the ``q`` quantile has a two-sided interval."""
    n = 1
    while not quantile_interval(list(range(n)), q, confidence).bounded:
        n += 1
    return n
