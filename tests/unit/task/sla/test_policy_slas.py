"""lm_max_postcopy and lm_max_throttle: judged per migration, unobserved never passes."""

import pytest

from rally_lm.task.output import MIGRATION_COLUMNS
from rally_lm.task.sla.policy import MaxPostcopy, MaxThrottle
from tests.unit.task.sla.test_slas import iteration, migration


def row(outcome="completed", copy_mode="pre-copy", postcopy_ms=None, throttle=0):
    values = migration(outcome=outcome)
    named = dict(zip(MIGRATION_COLUMNS, values, strict=True))
    named.update(copy_mode=copy_mode, postcopy_ms=postcopy_ms, throttle_max_pct=throttle)
    return [named[c] for c in MIGRATION_COLUMNS]


def judge(sla_cls, config, *iterations):
    sla = sla_cls(config)
    for it in iterations:
        sla.add_iteration(it)
    return sla


def test_postcopy_within_limit_passes_and_pre_copy_counts_as_zero():
    sla = judge(MaxPostcopy, {"max_seconds": 2},
                iteration([row(), row(copy_mode="post-copy", postcopy_ms=1500.0)]))
    assert sla.success
    assert sla.details() == ("largest post-copy phase 1.5 s <= 2 s over 2 migration(s) - "
                             "Passed")


def test_postcopy_over_limit_fails():
    sla = judge(MaxPostcopy, {"max_seconds": 1},
                iteration([row(copy_mode="post-copy", postcopy_ms=1500.0)]))
    assert not sla.success


def test_zero_forbids_post_copy_but_allows_pre_copy():
    assert judge(MaxPostcopy, {"max_seconds": 0}, iteration([row(), row()])).success
    assert not judge(MaxPostcopy, {"max_seconds": 0},
                     iteration([row(copy_mode="post-copy", postcopy_ms=10.0)])).success


def test_postcopy_without_its_end_is_not_observed():
    sla = judge(MaxPostcopy, {"max_seconds": 100},
                iteration([row(), row(copy_mode="post-copy", postcopy_ms=None)]))
    assert not sla.success
    assert "1 migration(s) not observed by the hypervisor" in sla.details()


def test_without_the_hypervisor_view_nothing_passes():
    sla = judge(MaxPostcopy, {"max_seconds": 100}, iteration([row(copy_mode=None)]))
    assert not sla.success
    assert sla.details().startswith("post-copy phase: no migration observed")


def test_never_fed_fails():
    assert not MaxPostcopy({"max_seconds": 1}).success
    assert not MaxThrottle({"max_percent": 50}).success


def test_refused_and_skipped_migrations_are_not_judged():
    sla = judge(MaxThrottle, {"max_percent": 10},
                iteration([row(throttle=5), row(outcome="refused", copy_mode=None,
                                                throttle=None),
                           row(outcome="skipped", copy_mode=None, throttle=None)]))
    assert sla.success and sla.observed == 1


@pytest.mark.parametrize("throttles, limit, passed", [
    ([0, 20, 35], 40, True), ([0, 20, 45], 40, False), ([40], 40, True)])
def test_throttle_limit(throttles, limit, passed):
    sla = judge(MaxThrottle, {"max_percent": limit},
                iteration([row(throttle=t) for t in throttles]))
    assert sla.success is passed
    assert sla.largest == max(throttles)


def test_unsampled_throttle_fails():
    sla = judge(MaxThrottle, {"max_percent": 99}, iteration([row(), row(throttle=None)]))
    assert not sla.success


def test_merge_keeps_the_worst_and_the_unobserved():
    left = judge(MaxThrottle, {"max_percent": 50}, iteration([row(throttle=10)]))
    right = judge(MaxThrottle, {"max_percent": 50}, iteration([row(throttle=60)]))
    assert not left.merge(right)
    assert left.largest == 60 and left.observed == 2
    unseen = judge(MaxThrottle, {"max_percent": 50}, iteration([row(throttle=None)]))
    assert not judge(MaxThrottle, {"max_percent": 50},
                     iteration([row(throttle=1)])).merge(unseen)


def test_every_migration_is_judged_whatever_comes_before_it():
    # A refused and an unobserved row ahead of observed ones must not end the count.
    sla = judge(MaxThrottle, {"max_percent": 50},
                iteration([row(outcome="refused", copy_mode=None, throttle=None),
                           row(throttle=30), row(throttle=None), row(throttle=20)]),
                iteration([row(throttle=None)]))
    assert (sla.observed, sla.unobserved, sla.largest) == (2, 2, 30)
    assert sla.details() == (
        "largest auto-converge throttle 30 % <= 50 % over 2 migration(s); 2 migration(s) not "
        "observed by the hypervisor (set hypervisor_uris) - Failed")


def test_an_iteration_without_output_adds_nothing():
    sla = judge(MaxThrottle, {"max_percent": 50}, {"error": ["boom"]})
    assert (sla.observed, sla.unobserved, sla.success) == (0, 0, False)


def test_merge_adds_the_counts_and_keeps_the_largest_either_way():
    def limit(*throttles):
        return judge(MaxThrottle, {"max_percent": 50},
                     iteration([row(throttle=t) for t in throttles]))
    left, right = limit(40, None), limit(None, None, 10)
    left.merge(right)
    assert (left.observed, left.unobserved, left.largest) == (2, 3, 40)
    empty = limit(None)
    assert empty.merge(limit(10)) is False
    assert (empty.largest, empty.observed, empty.unobserved) == (10, 1, 1)
    assert limit().merge(limit(45)) is True
