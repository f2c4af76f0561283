"""The outage anatomy: each phase's definition, and a real captured migration."""

import array
import json
import math
from pathlib import Path

import pytest

from rally_lm.probes.anatomy import dissect, longest_silence, reply_silences
from rally_lm.probes.records import ProbeClock, TargetTimeline
from tests.unit.probes.test_timeline import make_timeline

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "probe" / \
    "migration-local-hv1-hv2.json"


def whole(timeline):
    silence = longest_silence(reply_silences(timeline), timeline.sent[0], timeline.sent[-1])
    return silence, dissect(timeline, silence)


def test_ordinary_round_trips_are_tiny_silences_of_their_own():
    timeline = make_timeline([True] * 50, rtt=0.0007)
    silences = reply_silences(timeline)
    assert len(silences) == 49
    assert all(s.duration_ms == pytest.approx(0.7) for s in silences)
    assert reply_silences(timeline, minimum=0.001) == []


def test_pause_then_held_requests_answered_in_a_burst():
    # Requests 20-27 are lost (sent to the stopped source), 28-34 reach the
    # destination and are held until the guest answers them all at 100.35.
    replies = [True] * 20 + [None] * 8 + [0.35 - (28 + i) * 0.01 for i in range(7)] \
        + [True] * 20
    silence, anatomy = whole(make_timeline(replies))
    assert silence.start == pytest.approx(100.20) and silence.end == pytest.approx(100.35)
    assert anatomy.client_downtime_ms == pytest.approx(150.0)
    assert anatomy.pause_ms == pytest.approx(80.0)
    assert anatomy.convergence_ms == 0.0
    assert anatomy.resume_lag_ms == pytest.approx(70.0 - 1.0)  # minus the 1 ms RTT
    assert anatomy.rtt_ms == pytest.approx(1.0)
    assert anatomy.lost == 8 and anatomy.held == 7
    assert (anatomy.pause_ms + anatomy.convergence_ms + anatomy.resume_lag_ms
            + anatomy.rtt_ms) == pytest.approx(anatomy.client_downtime_ms)


def test_losses_after_a_request_got_through_are_convergence():
    # One request slipped through at 100.25, then the path dropped again
    # until 100.30: the network was still moving after the path came back.
    # Everything that got through was held until the guest answered at 100.35.
    replies = [True] * 20 + [None] * 5 + [0.10] + [None] * 4 \
        + [0.05, 0.04, 0.03, 0.02, 0.01] + [True] * 20
    _silence, anatomy = whole(make_timeline(replies))
    assert anatomy.first_through == pytest.approx(100.25)
    assert anatomy.path_back == pytest.approx(100.30)
    assert anatomy.pause_ms == pytest.approx(50.0)
    assert anatomy.convergence_ms == pytest.approx(50.0)
    assert anatomy.lost_after_path_back == 4
    assert anatomy.client_downtime_ms == pytest.approx(150.0)
    assert anatomy.resume_lag_ms == pytest.approx(49.0)


def test_a_request_already_inside_the_guest_does_not_end_the_pause():
    # Request 20 reached the guest just before it stopped: it sat in the guest's
    # receive ring, migrated with its memory and was answered after the resume
    # (held). 21-24 went to the stopped source (lost); 25 on reached the
    # destination. Seen on the testbed with the cloud image's Python agent.
    replies = [True] * 20 + [0.151] + [None] * 4 + [0.35 - (25 + i) * 0.01 for i in range(10)] \
        + [True] * 20
    _silence, anatomy = whole(make_timeline(replies))
    assert anatomy.first_through == pytest.approx(100.25)
    assert anatomy.pause_ms == pytest.approx(50.0)
    assert anatomy.convergence_ms == 0.0 and anatomy.lost_after_path_back == 0
    assert anatomy.held == 11 and anatomy.lost == 4


def test_the_pause_runs_from_the_first_loss_to_the_first_request_through():
    # All lost until 100.40, answered at once from there: a 200 ms pause, from
    # the probe's own records; libvirt's resume is no boundary of it (its
    # downtime is compared with the pause, pause_vs_hypervisor_ms).
    replies = [True] * 20 + [None] * 20 + [True] * 20
    timeline = make_timeline(replies)
    silence = longest_silence(reply_silences(timeline), 100.0, 101.0)
    anatomy = dissect(timeline, silence)
    assert anatomy.first_lost == pytest.approx(100.20)
    assert anatomy.first_through == pytest.approx(100.40)
    assert anatomy.pause_ms == pytest.approx(200.0) == anatomy.path_down_ms
    assert anatomy.convergence_ms == 0.0


def test_requests_waiting_at_a_destination_end_the_pause_and_wait_as_resume_lag():
    # Seen in the ceph mode: the destination announced the guest at 100.26,
    # before it ran it; requests sent from 100.26 on reached it, waited there
    # and were answered together at 100.35. They got through: the pause ends
    # at the first of them, their wait is the resume lag.
    replies = [True] * 20 + [None] * 6 + [0.35 - (26 + i) * 0.01 for i in range(9)] \
        + [True] * 20
    timeline = make_timeline(replies)
    silence = longest_silence(reply_silences(timeline), 100.0, 101.0)
    anatomy = dissect(timeline, silence)
    assert anatomy.pause_ms == pytest.approx(60.0)
    assert anatomy.resume_lag_ms == pytest.approx(89.0)
    assert (anatomy.pause_ms + anatomy.convergence_ms + anatomy.resume_lag_ms
            + anatomy.rtt_ms) == pytest.approx(anatomy.client_downtime_ms)


def test_recovery_tail_runs_from_the_first_reply_to_the_first_on_time_one():
    # Held requests 25-26 come back at 100.27, then the guest answers, but
    # slowly (40 ms), until request 32 is answered on time again.
    replies = [True] * 20 + [None] * 5 + [0.02, 0.01] + [0.04] * 5 + [True] * 20
    _silence, anatomy = whole(make_timeline(replies))
    assert anatomy.client_downtime_ms == pytest.approx(70.0)
    assert anatomy.pause_ms == pytest.approx(50.0)
    assert anatomy.resume_lag_ms == pytest.approx(19.0)
    assert anatomy.recovery_tail_ms == pytest.approx(50.0)
    assert anatomy.late_in_tail == 5


def test_a_silence_that_never_ends_is_ongoing_not_a_number():
    timeline = make_timeline([True] * 10 + [None] * 10)
    silence = longest_silence(reply_silences(timeline), 100.0, 101.0)
    assert silence.ongoing
    anatomy = dissect(timeline, silence)
    assert anatomy.ongoing and math.isinf(anatomy.client_downtime_ms)


def test_loss_before_the_first_reply_is_a_silence():
    silences = reply_silences(make_timeline([None] * 3 + [True] * 5))
    assert silences[0].start == pytest.approx(100.0)
    assert silences[0].duration_ms == pytest.approx(31.0)


def test_resolution_is_the_send_gap_opening_the_silence():
    sent = [100.0 + i * 0.01 for i in range(10)] + [100.4 + i * 0.01 for i in range(10)]
    replies = [True] * 10 + [None] * 2 + [True] * 8
    _silence, anatomy = whole(make_timeline(replies, sent=sent))
    assert anatomy.resolution_ms == pytest.approx(310.0)


def test_a_silence_ends_at_any_reply_not_only_the_awaited_one():
    # Request 5's reply (15 ms) arrives after request 6's (at 100.061): the
    # client waited from 100.05 and heard from the guest 11 ms later.
    timeline = make_timeline([True] * 12)
    timeline.received[5] = timeline.sent[5] + 0.015
    longest = max(reply_silences(timeline), key=lambda s: s.duration_ms)
    assert longest.start == pytest.approx(100.05)
    assert longest.duration_ms == pytest.approx(11.0)


def load_fixture(protocol):
    data = json.loads(FIXTURE.read_text())
    raw = data[protocol]
    timeline = TargetTimeline(
        target=data["ip"], protocol=protocol, interval=0.01, clock=ProbeClock(*raw["clock"]),
        sent=array.array("d", raw["sent"]),
        received=array.array("d", [math.nan if r is None else r for r in raw["received"]]))
    return data, timeline


@pytest.mark.parametrize("protocol", ["udp", "icmp"])
def test_a_real_migration_matches_its_packet_capture(protocol):
    data, timeline = load_fixture(protocol)
    clock = timeline.clock
    silence = longest_silence(reply_silences(timeline), timeline.sent[0], timeline.sent[-1])
    anatomy = dissect(timeline, silence, clock.to_monotonic(data["libvirt"]["resumed"]))
    capture = data["capture"]
    arrived = capture[f"first_{protocol}_request_at_destination"]
    left = capture[f"first_{protocol}_reply_leaving_destination"]
    # Path back = the first request that reached the destination (RARP before it).
    assert clock.to_wall(anatomy.path_back) == pytest.approx(arrived, abs=0.001)
    assert 0 <= clock.to_wall(anatomy.path_back) - capture["rarp"] <= 0.010
    # First reply = the guest's first answer leaving the destination.
    assert clock.to_wall(anatomy.first_reply) == pytest.approx(left, abs=0.001)
    # Pause within one interval + 5 ms of libvirt's downtime.
    assert abs(anatomy.pause_ms - data["libvirt"]["downtime_ms"]) <= 15.0
    # Requests sent after the source stopped were lost; the burst came after the resume.
    assert clock.to_wall(anatomy.silence_start) >= data["libvirt"]["paused"]
    assert clock.to_wall(anatomy.first_reply) > data["libvirt"]["resumed"]


def test_the_guest_kernel_answered_before_its_user_space():
    _data, udp = load_fixture("udp")
    _data, icmp = load_fixture("icmp")
    lag = {}
    for name, timeline in (("udp", udp), ("icmp", icmp)):
        silence = longest_silence(reply_silences(timeline), timeline.sent[0], timeline.sent[-1])
        lag[name] = dissect(timeline, silence).resume_lag_ms
    assert lag["icmp"] < lag["udp"]
    assert lag == {"udp": pytest.approx(38.5, abs=0.5), "icmp": pytest.approx(23.3, abs=0.5)}


def stall_then_switchover():
    # A 150 ms stall during the copy (all answered late, nothing lost), then
    # the switchover: 6 lost, 4 held requests answered at 100.80 (100 ms silence).
    replies = [True] * 20 + [0.16 - i * 0.01 for i in range(15)] + [True] * 35 \
        + [None] * 6 + [0.80 - (76 + i) * 0.01 for i in range(4)] + [True] * 20
    return make_timeline(replies)


def test_the_switchover_is_the_silence_around_the_hypervisors_pause():
    from rally_lm.probes.anatomy import switchover_silence

    timeline = stall_then_switchover()
    silences = reply_silences(timeline)
    longest = longest_silence(silences, 100.0, 102.0)
    assert longest.start == pytest.approx(100.20)  # the stall is the longest silence
    chosen = switchover_silence(timeline, silences, 100.0, 102.0, paused_at=100.705,
                                resumed_at=100.79)
    assert chosen.start == pytest.approx(100.70)
    # Without the hypervisor's times: the silence that lost requests.
    assert switchover_silence(timeline, silences, 100.0, 102.0).start == pytest.approx(100.70)


def test_without_any_loss_the_longest_silence_is_taken():
    from rally_lm.probes.anatomy import switchover_silence

    timeline = make_timeline([True] * 20 + [0.16 - i * 0.01 for i in range(15)] + [True] * 20)
    silences = reply_silences(timeline)
    assert switchover_silence(timeline, silences, 100.0, 101.0) is longest_silence(
        silences, 100.0, 101.0)
    assert switchover_silence(timeline, silences, 200.0, 201.0) is None


THROTTLED = FIXTURE.with_name("migration-auto-converge-throttled.json")


def throttled_timeline(fixture=THROTTLED):
    data = json.loads(fixture.read_text())
    sent = [s for s, _ in data["requests"]]
    received = [math.nan if r is None else r for _, r in data["requests"]]
    timeline = TargetTimeline(target="10.231.16.149", protocol="udp", interval=data["interval"],
                              clock=ProbeClock(monotonic=sent[0], wall=0.0),
                              sent=array.array("d", sent), received=array.array("d", received))
    return data, timeline


def test_a_throttled_guest_that_stopped_answering_before_the_pause_is_a_source_stall():
    # Real: auto-converge throttled the guest to 99 %; its echo held requests
    # for 3.3 s while it still ran on the source, then libvirt paused it for
    # 278 ms. Losses went on after the first replies came back.
    data, timeline = throttled_timeline()
    silence = longest_silence(reply_silences(timeline), timeline.sent[0], timeline.sent[-1])
    anatomy = dissect(timeline, silence)
    assert not anatomy.ongoing
    assert anatomy.client_downtime_ms == pytest.approx(3731.455, abs=0.01)
    # Held, not lost, until the first loss: the stall, from the probe alone. The
    # first loss came 7.7 ms after libvirt's stop (one send gap).
    assert anatomy.source_stall_ms == pytest.approx((anatomy.first_lost - silence.start) * 1000)
    assert anatomy.first_lost - data["paused_at"] == pytest.approx(0.0077, abs=0.0005)
    # First loss to first request through: 263.6 ms against libvirt's 278.
    assert anatomy.pause_ms == pytest.approx(263.6, abs=0.1)
    assert anatomy.pause_ms == pytest.approx(data["libvirt_downtime_ms"],
                                             abs=data["interval"] * 1000.0 + 5.0)
    # The path came back for good only after the first reply: those losses are
    # convergence up to that reply, and nothing is left for a resume lag.
    assert anatomy.path_back > anatomy.first_reply
    assert anatomy.resume_lag_ms == 0.0 and anatomy.convergence_ms > 100.0
    assert (anatomy.source_stall_ms + anatomy.pause_ms + anatomy.convergence_ms
            + anatomy.resume_lag_ms + anatomy.rtt_ms) == pytest.approx(anatomy.client_downtime_ms)


def test_held_requests_all_sent_before_the_first_loss_still_end_the_silence():
    # Real (sweep of 2026-12-04): the throttled guest held every request it got
    # and answered them only on the destination; requests sent from 0.66 s
    # before libvirt's pause on were lost (the guest, still on its source,
    # dropped them), and the first one answered after a loss was sent after
    # that first reply. The anatomy is finite; the probe cannot tell a guest
    # that drops requests from one that is paused, so its pause is 1012 ms
    # against libvirt's 226: pause_vs_hypervisor_ms says so.
    data, timeline = throttled_timeline(THROTTLED.with_name(
        "migration-auto-converge-held-before-loss.json"))
    silence = longest_silence(reply_silences(timeline), timeline.sent[0], timeline.sent[-1])
    anatomy = dissect(timeline, silence)
    assert not anatomy.ongoing
    assert anatomy.client_downtime_ms == pytest.approx(3792.089, abs=0.01)
    assert anatomy.first_lost == pytest.approx(data["paused_at"] - 0.6589, abs=0.001)
    assert anatomy.source_stall_ms == pytest.approx(2779.6, abs=0.1)
    assert anatomy.pause_ms == pytest.approx(1012.5, abs=0.1)
    assert anatomy.path_back > anatomy.first_reply and anatomy.resume_lag_ms == 0.0
    assert (anatomy.source_stall_ms + anatomy.pause_ms + anatomy.convergence_ms
            + anatomy.resume_lag_ms + anatomy.rtt_ms) == pytest.approx(anatomy.client_downtime_ms)


def stall_during_an_aborted_copy():
    # As the sweep's pre-copy job at 48 MiB/s, aborted by Nova: 18 s into the
    # copy the guest held ten requests for up to 100 ms, lost none, and stayed put.
    return make_timeline([True] * 20 + [0.10 - i * 0.01 for i in range(10)] + [True] * 20)


def test_a_silence_of_a_migration_that_never_switched_over_is_a_source_stall():
    timeline = stall_during_an_aborted_copy()
    silence = longest_silence(reply_silences(timeline), 100.0, 101.0)
    assumed = dissect(timeline, silence)
    assert assumed.resume_lag_ms > 90.0  # read as a switchover, the wait is a resume lag
    stayed = dissect(timeline, silence, switched_over=False)
    assert not stayed.ongoing and stayed.held == 10 and stayed.lost == 0
    assert stayed.client_downtime_ms == pytest.approx(assumed.client_downtime_ms)
    assert stayed.source_stall_ms == pytest.approx(stayed.client_downtime_ms - stayed.rtt_ms)
    assert stayed.rtt_ms == pytest.approx(1.0)
    assert stayed.pause_ms == stayed.convergence_ms == stayed.resume_lag_ms == 0.0


def test_losses_of_a_migration_that_never_switched_over_are_no_pause():
    # Even requests lost while the guest stayed on the source: it never stopped.
    timeline = make_timeline([True] * 20 + [None] * 5 + [0.03 - i * 0.01 for i in range(3)]
                             + [True] * 20)
    silence = longest_silence(reply_silences(timeline), 100.0, 101.0)
    stayed = dissect(timeline, silence, switched_over=False)
    assert stayed.pause_ms == 0.0
    assert stayed.source_stall_ms + stayed.rtt_ms == pytest.approx(stayed.client_downtime_ms)
    assert stayed.client_downtime_ms == pytest.approx(
        dissect(timeline, silence).client_downtime_ms)


def test_a_loss_soon_after_the_silence_began_leaves_no_source_stall():
    # Lost from 100.20, within one interval and one round trip of the silence's
    # start: requests in the guest's receive ring, an ordinary pause.
    replies = [True] * 20 + [None] * 8 + [0.35 - (28 + i) * 0.01 for i in range(7)] \
        + [True] * 20
    timeline = make_timeline(replies)
    silence = longest_silence(reply_silences(timeline), timeline.sent[0], timeline.sent[-1])
    anatomy = dissect(timeline, silence)
    assert anatomy.source_stall_ms == 0.0
    assert anatomy.pause_ms == pytest.approx(80.0)


def test_one_early_reply_then_silence_again_is_sporadic_and_widens_the_sampling():
    # As in the ground truth's local-storage run: the resuming guest answered
    # request 30 at 100.32, then nothing for 40 ms, then the requests it held
    # (31-35) in a burst at 100.36 and steadily on. A prober whose requests
    # missed the early answer sees the silence end at the burst. The silence
    # still ends at the first reply (the definition).
    replies = [True] * 20 + [None] * 10 + [0.02] + [0.36 - (31 + i) * 0.01 for i in range(5)] \
        + [True] * 20
    timeline = make_timeline(replies)
    silence = longest_silence(reply_silences(timeline), 100.0, 101.0)
    anatomy = dissect(timeline, silence)
    assert anatomy.client_downtime_ms == pytest.approx(120.0)
    assert anatomy.sporadic_replies == 1
    assert anatomy.sustained_downtime_ms == pytest.approx(160.0)
    # Send gaps at both ends (10 ms each) and the 40 ms the sporadic reply hid.
    assert anatomy.sampling_ms == pytest.approx(60.0)


def test_steady_answers_have_only_the_send_gaps_as_sampling():
    _silence, anatomy = whole(make_timeline([True] * 20 + [None] * 10 + [True] * 20))
    assert anatomy.sporadic_replies == 0
    assert anatomy.sustained_downtime_ms == pytest.approx(anatomy.client_downtime_ms)
    assert anatomy.sampling_ms == pytest.approx(20.0)


def test_resolution_covers_the_send_gap_before_the_first_request_through():
    # Defect of c38f188: requests 10-12 lost, the probe thread starved for 300 ms,
    # request 13 got through (the pause ends there), 14-15 lost (convergence),
    # 16 on answered. The pause's end is known to 300 ms, not to one interval.
    sent = [100.0 + i * 0.01 for i in range(13)] + [100.42 + i * 0.01 for i in range(20)]
    replies = [True] * 10 + [None] * 3 + [0.06] + [None] * 2 + [True] * 17
    _silence, anatomy = whole(make_timeline(replies, sent=sent))
    assert anatomy.first_through == pytest.approx(100.42)
    assert anatomy.path_back == pytest.approx(100.45)
    assert anatomy.resolution_ms == pytest.approx(300.0)
