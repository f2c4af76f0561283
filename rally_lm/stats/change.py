"""Did it get worse? A candidate's figure against a baseline's, with how sure we are.

For a figure where more is worse (downtime, duration), at a percentile:

* the change is the ratio candidate / baseline of that percentile, with its
  percentile-bootstrap interval (rally_lm.stats.intervals);
* its significance, a two-sided permutation test of the percentile's
  difference (10,000 relabellings of the pooled migrations, fixed seed);
* the verdict, against a relative ``tolerance`` (the change that matters):

================  =========================================================
``worse``         significant, and the whole interval above 1 + tolerance
``better``        significant, and the whole interval below 1 / (1 + tol.)
``no change``     the whole interval within [1 / (1 + tol.), 1 + tol.]
``inconclusive``  neither: the interval reaches past the tolerance. ``n``
                  estimates the migrations per side that would decide it
                  (an interval narrows as 1 / sqrt(n))
================  =========================================================

For the success rate (succeeded / planned): Fisher's exact test on the two
2x2 counts, one-sided each way; worse when the candidate's share is lower
by more than ``tolerance`` points and the test says so.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from rally_lm.stats.intervals import (
    BOOTSTRAP_SEED,
    CONFIDENCE,
    Interval,
    bootstrap_ratio,
    proportion_interval,
    quantile_interval,
)

PERMUTATIONS = 10_000
PERMUTATION_TEST = f"two-sided permutation test ({PERMUTATIONS:,} relabellings, seed " \
                   f"{BOOTSTRAP_SEED})"
FISHER = "Fisher's exact test (one-sided)"
VERDICTS = ("worse", "better", "no change", "inconclusive")


@dataclasses.dataclass(frozen=True)
class Change:
    """One figure, baseline against candidate."""

    figure: str
    statistic: str
    baseline: Interval
    candidate: Interval
    #: candidate / baseline (a share's difference in points for success rates).
    change: Interval
    p_value: float | None
    tolerance: float
    verdict: str
    #: Why, in one sentence, with the n that would decide an inconclusive one.
    reason: str
    test: str

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key in ("baseline", "candidate", "change"):
            data[key] = getattr(self, key).to_dict()
        return data

    @property
    def worse(self) -> bool:
        return self.verdict == "worse"


def _clean(values: Sequence[float]) -> np.ndarray:
    return np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)


def permutation_p(a: np.ndarray, b: np.ndarray, q: float,
                  permutations: int = PERMUTATIONS) -> float | None:
    """Two-sided p of the q quantile's difference between a and b, by relabelling."""
    if a.size == 0 or b.size == 0:
        return None
    pooled = np.concatenate([a, b])
    observed = abs(np.percentile(b, q * 100) - np.percentile(a, q * 100))
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    shuffled = rng.permuted(np.tile(pooled, (permutations, 1)), axis=1)
    diffs = np.abs(np.percentile(shuffled[:, a.size:], q * 100, axis=1)
                   - np.percentile(shuffled[:, :a.size], q * 100, axis=1))
    # The observed labelling counts as one of them (never p = 0).
    return float((np.sum(diffs >= observed - 1e-12) + 1) / (permutations + 1))


def _n_to_decide(ratio: Interval, tolerance: float, n: int) -> int | None:
    """Migrations per side for the interval to clear the tolerance it now straddles."""
    if not ratio.bounded or ratio.estimate is None or ratio.estimate <= 0 or \
            ratio.low <= 0:
        return None
    est = math.log(ratio.estimate)
    half = (math.log(ratio.high) - math.log(ratio.low)) / 2.0
    bound = math.log(1.0 + tolerance)
    # Nearest decision: beyond the tolerance on the estimate's side, or inside it.
    needed = abs(est) - bound if abs(est) > bound else bound - abs(est)
    if needed <= 1e-9 or half <= 0:
        return None
    return max(n + 1, math.ceil(n * (half / needed) ** 2))


def compare(figure: str, baseline: Sequence[float], candidate: Sequence[float],
            q: float = 0.5, tolerance: float = 0.10, confidence: float = CONFIDENCE) -> Change:
    """A figure where more is worse, at quantile ``q``; see the module docstring."""
    a, b = _clean(baseline), _clean(candidate)
    base, cand = quantile_interval(a, q, confidence), quantile_interval(b, q, confidence)
    statistic = f"p{round(q * 100)}"
    ratio = bootstrap_ratio(b, a, statistic=lambda x: np.percentile(x, q * 100, axis=-1),
                            confidence=confidence)
    p = permutation_p(a, b, q)
    alpha = 1.0 - confidence
    up, down = 1.0 + tolerance, 1.0 / (1.0 + tolerance)
    n = int(min(a.size, b.size))
    if a.size and b.size and ratio.estimate is None:
        # The baseline's quantile is 0 (no TCP stall at all, say): no ratio from
        # it, so the verdict rests on the permutation test alone.
        now = cand.estimate
        moved = f"{statistic} 0 -> {now:.3g} (no ratio from 0)"
        if now == 0.0:
            verdict, reason = "no change", f"{statistic} 0 on both sides"
        elif p is not None and p < alpha:
            verdict, reason = "worse", f"{moved}, p = {p:.3g}"
        else:
            verdict, reason = "inconclusive", (f"{moved}, p = {p:.3g}" if p is not None
                                               else moved)
    elif not ratio.bounded or p is None:
        verdict, reason = "inconclusive", (f"nothing to compare: {a.size} baseline and "
                                           f"{b.size} candidate values")
    elif ratio.low > up and p < alpha:
        verdict, reason = "worse", (f"{statistic} x{ratio.estimate:.2f} "
                                    f"[{ratio.low:.2f}, {ratio.high:.2f}], p = {p:.3g}")
    elif ratio.high < down and p < alpha:
        verdict, reason = "better", (f"{statistic} x{ratio.estimate:.2f} "
                                     f"[{ratio.low:.2f}, {ratio.high:.2f}], p = {p:.3g}")
    elif down <= ratio.low and ratio.high <= up:
        verdict, reason = "no change", (f"{statistic} x{ratio.estimate:.2f} "
                                        f"[{ratio.low:.2f}, {ratio.high:.2f}] within "
                                        f"±{tolerance:.0%}")
    else:
        more = _n_to_decide(ratio, tolerance, n)
        verdict = "inconclusive"
        reason = (f"{statistic} x{ratio.estimate:.2f} [{ratio.low:.2f}, {ratio.high:.2f}] "
                  f"reaches past ±{tolerance:.0%} (p = {p:.3g}, n = {a.size}/{b.size})"
                  + (f"; about {more} migrations per side would decide it" if more else ""))
    return Change(figure, statistic, base, cand, ratio, p, tolerance, verdict, reason,
                  PERMUTATION_TEST)


def _fisher_less(k1: int, n1: int, k2: int, n2: int) -> float:
    """P(X <= k2) for the candidate's successes X given the margins (hypergeometric)."""
    total, successes = n1 + n2, k1 + k2
    low = max(0, successes - n1)

    def pmf(x: int) -> float:
        return math.comb(n2, x) * math.comb(n1, successes - x) / math.comb(total, successes)
    return float(sum(pmf(x) for x in range(low, k2 + 1)))


def compare_success(baseline: tuple[int, int], candidate: tuple[int, int],
                    tolerance: float = 0.0, confidence: float = CONFIDENCE) -> Change:
    """Succeeded / planned, baseline against candidate (tolerance in points, 0..1)."""
    (k1, n1), (k2, n2) = baseline, candidate
    base, cand = proportion_interval(k1, n1, confidence), proportion_interval(k2, n2, confidence)
    alpha = 1.0 - confidence
    if not n1 or not n2:
        diff = Interval(None, None, None, min(n1, n2), confidence, FISHER)
        return Change("success_rate", "share", base, cand, diff, None, tolerance,
                      "inconclusive", "nothing to compare: no migration planned on a side",
                      FISHER)
    less = _fisher_less(k1, n1, k2, n2)
    more = _fisher_less(n1 - k1, n1, n2 - k2, n2)
    delta = k2 / n2 - k1 / n1
    diff = Interval(delta, None, None, min(n1, n2), confidence, FISHER)
    text = f"{k1}/{n1} -> {k2}/{n2}"
    if less < alpha and delta < -tolerance:
        return Change("success_rate", "share", base, cand, diff, less, tolerance, "worse",
                      f"{text}, p = {less:.3g}", FISHER)
    if more < alpha and delta > tolerance:
        return Change("success_rate", "share", base, cand, diff, more, tolerance, "better",
                      f"{text}, p = {more:.3g}", FISHER)
    return Change("success_rate", "share", base, cand, diff, min(less, more), tolerance,
                  "no change", f"{text}, p = {min(less, more):.3g}", FISHER)
