"""The migration package's records as JSON, compared whole.

A key is the contract the report, the InfluxDB export and an operator's
pipeline read; a renamed or dropped key must fail here, not downstream.
"""

from rally_lm.migration.hypervisor import DomainEvent, JobSample, summarize_samples
from rally_lm.migration.phases import PhaseEvent


def test_a_phase_event_keeps_every_key_and_rounds_its_time_to_a_tenth_of_a_ms():
    event = PhaseEvent(t=1.234567, source="libvirt", name="paused", host="hv1",
                       resolution_ms=0.5, detail="Suspended Migrated")
    assert event.to_dict() == {"t": 1.2346, "source": "libvirt", "name": "paused",
                               "host": "hv1", "resolution_ms": 0.5,
                               "detail": "Suspended Migrated"}
    assert PhaseEvent(t=2.0, source="nova", name="completed").to_dict() == {
        "t": 2.0, "source": "nova", "name": "completed", "host": None,
        "resolution_ms": 0.0, "detail": None}


def test_a_domain_event_keeps_every_key_and_round_trips():
    event = DomainEvent(wall=1_700_000_000.125, host="hv2", domain="instance-1",
                        kind="job-completed", detail="",
                        params={"downtime": 48, "time_elapsed": 1057})
    data = event.to_dict()
    assert data == {"wall": 1_700_000_000.125, "host": "hv2", "domain": "instance-1",
                    "kind": "job-completed", "detail": "",
                    "params": {"downtime": 48, "time_elapsed": 1057}}
    assert DomainEvent(**data) == event


def test_a_job_sample_reads_libvirts_names_into_ours():
    raw = {"memory_iteration": 3, "memory_remaining": 1048576.0, "memory_bps": 5000000,
           "downtime": 500, "auto_converge_throttle": 30, "time_elapsed": 999}
    sample = JobSample.from_raw(1.23456, raw)
    assert sample.to_dict() == {"t": 1.2346, "iteration": 3,
                                "memory_remaining_bytes": 1048576,
                                "memory_bytes_per_s": 5000000, "expected_downtime_ms": 500,
                                "throttle_percent": 30}
    assert JobSample.from_raw(0.5, {}).to_dict() == {
        "t": 0.5, "iteration": None, "memory_remaining_bytes": None,
        "memory_bytes_per_s": None, "expected_downtime_ms": None, "throttle_percent": None}


def test_the_job_summary_names_the_peak_throttle_and_the_last_expected_downtime():
    samples = [JobSample(0.5, 1, 10, 100, 300, None), JobSample(1.0, 2, 5, 100, 400, 20),
               JobSample(1.5, 3, 1, 100, None, 30), JobSample(2.0, 3, 0, 100, None, 10)]
    assert summarize_samples(samples) == {
        "count": 4, "max_throttle_percent": 30, "last_expected_downtime_ms": 400,
        "samples": [s.to_dict() for s in samples]}
    # Samples without a throttle reading: the throttle was 0, not unknown.
    assert summarize_samples(samples[:1])["max_throttle_percent"] == 0
    assert summarize_samples([]) == {"count": 0, "max_throttle_percent": None,
                                     "last_expected_downtime_ms": None, "samples": []}
    assert summarize_samples(samples[:1], errors=2, last_error="virsh: timeout") == {
        "count": 1, "max_throttle_percent": 0, "last_expected_downtime_ms": 300,
        "samples": [samples[0].to_dict()], "read_errors": 2, "last_error": "virsh: timeout"}
