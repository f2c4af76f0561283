"""The TCP continuity probe's bookkeeping, one received record or one closed connection at a time.

The stream tests (test_tcp_continuity.py) run real connections; these drive
the same methods with chosen times, so every threshold and count is checked
exactly where it turns.
"""

import socket

import pytest

from rally_lm.probes.records import TcpStall
from rally_lm.probes.tcp_continuity import RECORD_SIZE, TcpContinuityProbe, make_record

THRESHOLD = 0.125


@pytest.fixture
def probe():
    made = TcpContinuityProbe(["127.0.0.1"], 7, stall_threshold=THRESHOLD)
    yield made
    made._selector.close()


def sent(stream, count: int, first_at: float = 10.0, every: float = 0.25) -> None:
    """``count`` records queued and written on the stream's connection."""
    for i in range(count):
        stream.send_times[stream.next_seq] = first_at + i * every
        stream.next_seq += 1
    stream.conn_sent += count * RECORD_SIZE
    stream.result.bytes_sent += count * RECORD_SIZE


def test_the_expected_record_is_verified_and_its_wait_below_the_threshold_is_no_stall(probe):
    (stream,) = probe._streams
    stream.last_progress = 9.0
    sent(stream, 2)
    probe._verify(stream, make_record(0), 10.0 + THRESHOLD - 0.001)
    result = stream.result
    assert (result.bytes_verified, result.bytes_lost, result.bytes_corrupted) == \
        (RECORD_SIZE, 0, 0)
    assert (stream.expected_seq, stream.conn_verified) == (1, RECORD_SIZE)
    assert result.stalls == [] and list(stream.send_times) == [1]
    assert stream.last_progress == 10.0 + THRESHOLD - 0.001


def test_a_wait_of_exactly_the_threshold_is_a_stall_from_the_later_of_send_and_progress(probe):
    (stream,) = probe._streams
    stream.last_progress = 10.0625
    sent(stream, 1, first_at=10.0)
    probe._verify(stream, make_record(0), 10.0625 + THRESHOLD)
    assert stream.result.stalls == [TcpStall(start=10.0625, end=10.0625 + THRESHOLD)]


def test_a_later_well_formed_record_counts_the_gap_lost(probe):
    (stream,) = probe._streams
    sent(stream, 5)
    probe._verify(stream, make_record(3), 11.0)
    result = stream.result
    assert (result.bytes_verified, result.bytes_lost, result.bytes_corrupted) == \
        (RECORD_SIZE, 3 * RECORD_SIZE, 0)
    assert (stream.expected_seq, stream.conn_verified) == (4, 4 * RECORD_SIZE)
    # Send times of the records skipped are dropped with the verified one's.
    assert list(stream.send_times) == [4]


@pytest.mark.parametrize("record", [
    make_record(5),                                  # never sent (next_seq is 5)
    make_record(2)[:-1] + bytes([make_record(2)[-1] ^ 1]),  # bad checksum
    make_record(0),                                  # an old record again
    b"\0" * RECORD_SIZE,                             # not a record at all
], ids=["never sent", "bad checksum", "old record", "garbage"])
def test_anything_else_in_the_expected_place_is_corrupted(probe, record):
    (stream,) = probe._streams
    sent(stream, 5)
    stream.expected_seq = 1
    stream.conn_verified = RECORD_SIZE
    del stream.send_times[0]
    probe._verify(stream, record, 11.0)
    result = stream.result
    assert (result.bytes_verified, result.bytes_lost, result.bytes_corrupted) == \
        (0, 0, RECORD_SIZE)
    assert (stream.expected_seq, stream.conn_verified) == (2, 2 * RECORD_SIZE)


def test_the_first_record_after_a_broken_connection_ends_a_disconnected_stall(probe):
    (stream,) = probe._streams
    stream.stalled_since = 10.0
    sent(stream, 1, first_at=12.0)
    probe._verify(stream, make_record(0), 10.0 + THRESHOLD)
    assert stream.result.stalls == [TcpStall(start=10.0, end=10.0 + THRESHOLD,
                                             disconnected=True)]
    assert stream.stalled_since is None


def test_a_break_shorter_than_the_threshold_is_no_stall(probe):
    (stream,) = probe._streams
    stream.stalled_since = 10.0
    sent(stream, 1, first_at=10.0)
    probe._verify(stream, make_record(0), 10.0 + THRESHOLD - 0.001)
    assert stream.result.stalls == [] and stream.stalled_since is None


def test_waiting_since_is_the_oldest_outstanding_send_or_the_last_progress(probe):
    (stream,) = probe._streams
    assert probe._waiting_since(stream, 20.0) == 20.0  # nothing outstanding
    sent(stream, 3, first_at=10.0)
    stream.last_progress = 9.0
    assert probe._waiting_since(stream, 20.0) == 10.0
    stream.last_progress = 10.5
    assert probe._waiting_since(stream, 20.0) == 10.5
    stream.conn_verified = stream.conn_sent  # all echoed: nothing to wait for
    assert probe._waiting_since(stream, 20.0) == 20.0


def test_a_connection_broken_with_bytes_in_flight_loses_them_and_stalls_from_the_wait(probe):
    (stream,) = probe._streams
    stream.sock = socket.socket()
    sent(stream, 4, first_at=10.0)
    stream.conn_verified = RECORD_SIZE
    stream.last_progress = 10.0
    stream.outbox += b"x"
    probe._close(stream, 12.0, reason="receive: reset")
    result = stream.result
    assert stream.sock is None and stream.stalled_since == 10.0
    assert result.bytes_lost == 3 * RECORD_SIZE
    assert (result.resets, result.reset_times, result.errors) == (1, [12.0], ["receive: reset"])
    assert result.original_connection_survived is False
    assert stream.retry_at == 12.1
    assert (stream.conn_sent, stream.conn_verified, bytes(stream.outbox), stream.send_times) \
        == (0, 0, b"", {})
    assert result.stalls == []  # it lasts until a new connection verifies a record


def test_a_second_break_keeps_the_first_breaks_stall_start(probe):
    (stream,) = probe._streams
    stream.stalled_since = 5.0
    stream.sock = socket.socket()
    probe._close(stream, 12.0, reason="send: broken pipe")
    assert stream.stalled_since == 5.0 and stream.result.resets == 1


def test_closing_at_the_end_with_echoes_outstanding_ends_in_a_stall_not_a_reset(probe):
    (stream,) = probe._streams
    stream.sock = socket.socket()
    sent(stream, 2, first_at=10.0)
    stream.last_progress = 10.0
    probe._close(stream, 10.0 + THRESHOLD, reason=None)
    result = stream.result
    assert result.stalls == [TcpStall(start=10.0, end=10.0 + THRESHOLD)]
    assert (result.resets, result.errors, result.bytes_lost) == (0, [], 2 * RECORD_SIZE)
    assert stream.stalled_since is None


def test_closing_at_the_end_just_under_the_threshold_is_no_stall(probe):
    (stream,) = probe._streams
    stream.sock = socket.socket()
    sent(stream, 2, first_at=10.0)
    stream.last_progress = 10.0
    probe._close(stream, 10.0 + THRESHOLD - 0.001, reason=None)
    assert stream.result.stalls == []


def test_closing_at_the_end_while_broken_adds_nothing_the_stop_does_not(probe):
    (stream,) = probe._streams
    stream.sock = socket.socket()
    stream.stalled_since = 8.0
    sent(stream, 2, first_at=10.0)
    probe._close(stream, 12.0, reason=None)
    assert stream.result.stalls == [] and stream.stalled_since == 8.0


def test_closing_a_stream_without_a_connection_changes_nothing(probe):
    (stream,) = probe._streams
    sent(stream, 2)
    probe._close(stream, 12.0, reason="receive: reset")
    assert (stream.result.resets, stream.result.bytes_lost, stream.conn_sent) == \
        (0, 0, 2 * RECORD_SIZE)
