"""The probe records' JSON, compared whole: its keys are what reports and pipelines read."""

from rally_lm.probes.anatomy import OutageAnatomy
from rally_lm.probes.records import Outage, TcpContinuity, TcpStall


def test_an_outage_as_json():
    outage = Outage(start=10.0, end=10.1234567, lost=9, late=3, max_late_ms=41.5, ongoing=True)
    assert outage.to_dict() == {"start": 10.0, "end": 10.1234567, "lost": 9, "late": 3,
                                "max_late_ms": 41.5, "ongoing": True, "duration_ms": 123.457}


def test_a_tcp_result_as_json():
    result = TcpContinuity(
        target="10.0.0.5", port=7, bytes_sent=1000, bytes_verified=900, bytes_lost=60,
        bytes_corrupted=40, resets=1, reconnects=1, connected=True,
        original_connection_survived=False,
        stalls=[TcpStall(start=5.0, end=5.25, disconnected=True),
                TcpStall(start=8.0, end=8.0004, ongoing=True)],
        reset_times=[5.0], errors=["connection reset"])
    assert result.to_dict() == {
        "target": "10.0.0.5", "port": 7, "bytes_sent": 1000, "bytes_verified": 900,
        "bytes_lost": 60, "bytes_corrupted": 40, "resets": 1, "reconnects": 1,
        "connected": True, "original_connection_survived": False,
        "stalls": [{"start": 5.0, "end": 5.25, "duration_ms": 250.0, "disconnected": True,
                    "ongoing": False},
                   {"start": 8.0, "end": 8.0004, "duration_ms": 0.4, "disconnected": False,
                    "ongoing": True}],
        "reset_times": [5.0], "errors": ["connection reset"], "max_stall_ms": 250.0}
    assert not result.intact


def test_stalls_and_resets_inside_a_window():
    result = TcpContinuity(target="t", port=7,
                           stalls=[TcpStall(start=1.0, end=2.0), TcpStall(start=5.0, end=6.0)],
                           reset_times=[1.5, 3.0, 6.0])
    # Overlap is strict at the edges: a stall ending as the window opens is outside.
    assert result.stalls_in(2.0, 5.0) == []
    assert result.stalls_in(1.9, 5.1) == result.stalls
    # A reset on the window's edge is inside it.
    assert result.resets_in(3.0, 6.0) == 2
    assert result.resets_in(3.01, 5.99) == 0


def test_an_anatomy_as_json_rounds_milliseconds_only():
    anatomy = OutageAnatomy(
        protocol="udp", client_downtime_ms=120.80049, source_stall_ms=0.0, pause_ms=81.91234,
        path_down_ms=81.9,
        convergence_ms=0.0, resume_lag_ms=38.51111, rtt_ms=0.30009, recovery_tail_ms=0.3,
        lost=8, held=5, lost_after_path_back=0, late_in_tail=1, resolution_ms=10.00049,
        ongoing=False, sporadic_replies=1, sustained_downtime_ms=140.00049,
        sampling_ms=40.00049, silence_start=100.6445123456, first_lost=100.6445123456,
        first_through=100.7264123456, path_back=100.7264123456, first_reply=100.7653123456,
        recovered=None)
    assert anatomy.to_dict() == {
        "protocol": "udp", "client_downtime_ms": 120.8, "source_stall_ms": 0.0, "pause_ms": 81.912,
        "path_down_ms": 81.9, "convergence_ms": 0.0, "resume_lag_ms": 38.511, "rtt_ms": 0.3,
        "recovery_tail_ms": 0.3, "lost": 8, "held": 5, "lost_after_path_back": 0,
        "late_in_tail": 1, "resolution_ms": 10.0, "ongoing": False, "sporadic_replies": 1,
        "sustained_downtime_ms": 140.0, "sampling_ms": 40.0,
        # Clock readings keep every digit: rounding them would move phase boundaries.
        "silence_start": 100.6445123456, "first_lost": 100.6445123456,
        "first_through": 100.7264123456,
        "path_back": 100.7264123456, "first_reply": 100.7653123456, "recovered": None}
