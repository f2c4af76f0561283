"""Every rally_lm SLA keeps Rally's own state: the criterion it was configured with."""

import pytest

from rally_lm.task.sla.downtime import MaxDowntime
from rally_lm.task.sla.durations import MaxEvacuationDuration, MaxMigrationDuration
from rally_lm.task.sla.policy import MaxPostcopy, MaxThrottle
from rally_lm.task.sla.success_rate import SuccessRate
from rally_lm.task.sla.tcp_continuity import TcpContinuity


@pytest.mark.parametrize("sla_cls, criterion", [
    (MaxDowntime, {"max_ms": 500}),
    (MaxMigrationDuration, {"max_seconds": 60}),
    (MaxEvacuationDuration, {"max_seconds": 600}),
    (MaxPostcopy, {"max_seconds": 5}),
    (MaxThrottle, {"max_percent": 50}),
    (SuccessRate, {"min_percent": 100}),
    (TcpContinuity, {"max_stall_ms": 3000}),
])
def test_the_criterion_is_kept_as_rally_keeps_it(sla_cls, criterion):
    sla = sla_cls(criterion)
    assert sla.criterion_value == criterion
    # Nothing fed yet: no SLA of ours starts as a pass.
    assert sla.success is False
