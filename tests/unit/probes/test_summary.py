"""The probe summaries the CLI and the hook print: wall times, counts, nothing invented."""

import array
import math

from rally_lm.probes.records import ProbeClock, TargetTimeline, TcpContinuity, TcpStall
from rally_lm.probes.summary import raw_timeline, tcp_summary, timeline_summary

CLOCK = ProbeClock(monotonic=100.0, wall=1_800_000_000.0)
NAN = math.nan


def timeline(received):
    sent = [100.0 + 0.01 * i for i in range(len(received))]
    return TargetTimeline("10.0.0.5", "udp", 0.01, CLOCK, array.array("d", sent),
                          array.array("d", received), duplicates=2, errors=1)


def test_an_outage_is_summarised_in_wall_time():
    replies = [100.0 + 0.01 * i + 0.001 for i in range(40)]
    for i in range(10, 20):  # 10 requests lost
        replies[i] = NAN
    summary = timeline_summary(timeline(replies), transport="udp/raw")
    assert summary["target"] == "10.0.0.5" and summary["protocol"] == "udp"
    assert summary["transport"] == "udp/raw" and summary["interval_ms"] == 10.0
    assert (summary["requests"], summary["replies"]) == (40, 30)
    assert (summary["duplicates"], summary["send_errors"]) == (2, 1)
    assert summary["max_send_gap_ms"] == 10.0
    assert summary["measured"] is True
    (outage,) = summary["outages"]
    assert outage["lost"] == 10 and outage["ongoing"] is False
    assert outage["start"] == round(CLOCK.wall + 0.10, 6)
    assert summary["longest_outage_ms"] == outage["duration_ms"] > 0


def test_no_reply_at_all_is_not_measured():
    summary = timeline_summary(timeline([NAN] * 5))
    assert summary["measured"] is False and summary["transport"] == "udp"
    assert summary["replies"] == 0


def test_a_clean_timeline_has_no_outage():
    summary = timeline_summary(timeline([100.0 + 0.01 * i + 0.001 for i in range(20)]))
    assert summary["outages"] == [] and summary["longest_outage_ms"] == 0.0


def test_raw_timeline_is_relative_to_the_probe_start():
    assert raw_timeline(timeline([100.0015, NAN])) == [[0.0, 0.0015], [0.01, None]]


def test_tcp_summary_keeps_how_each_stall_ended():
    result = TcpContinuity("10.0.0.5", 7, bytes_sent=10, bytes_verified=10, connected=True,
                           stalls=[TcpStall(101.0, 101.5), TcpStall(102.0, 105.0, True, True)])
    summary = tcp_summary(result, CLOCK)
    assert summary["stalls"] == [
        {"start": CLOCK.wall + 1.0, "end": CLOCK.wall + 1.5, "duration_ms": 500.0,
         "disconnected": False, "ongoing": False},
        {"start": CLOCK.wall + 2.0, "end": CLOCK.wall + 5.0, "duration_ms": 3000.0,
         "disconnected": True, "ongoing": True}]
    assert summary["bytes_verified"] == 10 and summary["max_stall_ms"] == 3000.0
