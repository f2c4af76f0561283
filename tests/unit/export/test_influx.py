"""The InfluxDB exporter against FakeInflux (documented write-API behaviour)."""

import multiprocessing
import os
import threading
import time

import pytest

from rally_lm.export.influx import (
    ExportConfigError,
    InfluxExporter,
    InfluxSettings,
    Spool,
    line,
    replay_spool,
)
from tests.fakes.fake_influx import FakeInflux


@pytest.fixture
def influx():
    server = FakeInflux().start()
    yield server
    server.stop()


def settings(server, token="s3cret", bucket="rally_lm"):
    return InfluxSettings(url=server.url, org="lm", bucket=bucket, token=token)


def exporter(server, spool, **kwargs):
    return InfluxExporter(settings(server, **kwargs), spool, flush_interval=0.05,
                          timeout=2.0).start()


def point(i, measurement="lm_test"):
    return (measurement, {"vm": f"vm{i % 3}"}, {"value": float(i)}, 1_800_000_000 + i)


def test_line_protocol_escapes_and_types():
    text = line("lm m", {"vm": "a b,c", "empty": ""}, {"n": 3, "x": 1.5, "ok": True, "s": 'q"'},
                1.0)
    assert text == 'lm\\ m,vm=a\\ b\\,c n=3i,x=1.5,ok=true,s="q\\"" 1000000000'
    with pytest.raises(ValueError):
        line("m", {}, {"none": None}, 1.0)


def test_settings_need_an_http_url():
    with pytest.raises(ExportConfigError, match="not an http"):
        InfluxSettings.from_config({"url": "influx:8086"}, environ={})
    got = InfluxSettings.from_config({"url": "http://i:8086/", "token_env": "T"},
                                     environ={"T": "abc"})
    assert got.url == "http://i:8086" and got.token == "abc" and "abc" not in repr(got)


def test_points_are_written(influx, tmp_path):
    ex = exporter(influx, tmp_path / "t.lp")
    for i in range(10):
        ex.write(*point(i))
    stats = ex.close()
    assert (stats.written, stats.spooled, stats.failed) == (10, 0, False)
    assert len(influx.points) == 10


def test_a_wrong_token_fails_loudly_and_keeps_the_points(influx, tmp_path):
    spool = tmp_path / "t.lp"
    ex = exporter(influx, spool, token="wrong")
    for i in range(10):
        ex.write(*point(i))
    stats = ex.close()
    assert stats.failed and stats.written == 0 and stats.spooled == 10
    assert "HTTP 401" in stats.last_error and "wrong" not in stats.last_error
    assert influx.points == []
    # With the right token, a replay sends them all.
    replayed = replay_spool(settings(influx), spool)
    assert (replayed.replayed, replayed.spooled, replayed.failed) == (10, 0, False)
    assert len(influx.points) == 10


def test_an_unknown_bucket_is_a_settings_error(influx, tmp_path):
    ex = exporter(influx, tmp_path / "t.lp", bucket="nope")
    ex.write(*point(1))
    stats = ex.close()
    assert stats.failed and "HTTP 404" in stats.last_error and stats.spooled == 1


def test_a_refused_line_is_quarantined_and_the_rest_written(influx, tmp_path):
    spool = tmp_path / "t.lp"
    ex = exporter(influx, spool)
    for i in range(7):
        ex.write(*point(i))
    ex._queue.put("this is not line protocol")
    for i in range(7, 10):
        ex.write(*point(i))
    stats = ex.close()
    assert stats.failed and stats.rejected == 1 and stats.spooled == 0
    assert stats.written == 10 and len(influx.points) == 10
    rejected = Spool(spool).rejected_path.read_text()
    assert "this is not line protocol" in rejected and "HTTP 400" in rejected


def test_a_refused_line_does_not_block_a_later_replay(influx, tmp_path):
    spool = tmp_path / "t.lp"
    Spool(spool).append([line(*point(1)), "garbage", line(*point(2))])
    stats = replay_spool(settings(influx), spool)
    assert stats.replayed == 2 and stats.rejected == 1 and stats.spooled == 0
    assert not spool.exists() or spool.read_text() == ""


def test_a_server_that_is_down_gets_everything_later(influx, tmp_path):
    spool = tmp_path / "t.lp"
    influx.down = True
    ex = exporter(influx, spool)
    for i in range(5):
        ex.write(*point(i))
    time.sleep(0.3)
    influx.down = False
    for i in range(5, 8):
        ex.write(*point(i))
    stats = ex.close()
    assert not stats.failed
    assert stats.written + stats.replayed == 8 and stats.spooled == 0
    assert sorted(influx.points) == sorted(line(*point(i)) for i in range(8))


def _writer_process(url, spool, start, count):
    ex = InfluxExporter(InfluxSettings(url=url, org="lm", bucket="rally_lm", token="s3cret"),
                        spool, batch_size=7, flush_interval=0.01, timeout=2.0).start()
    for i in range(start, start + count):
        ex.write(*point(i))
        time.sleep(0.001)
    ex.close()


def test_two_writers_sharing_a_spool_lose_no_line_while_the_server_flaps(influx, tmp_path):
    # The scenario's exporter and the metrics hook's write to the same spool
    # (threads of one process; a replay command may be another process).
    spool = tmp_path / "task.lp"
    influx.flap_every = 2
    threads = [threading.Thread(target=_writer_process,
                                args=(influx.url, spool, start, 300))
               for start in (0, 1000)]
    other = multiprocessing.get_context("fork").Process(
        target=_writer_process, args=(influx.url, spool, 2000, 300))
    other.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    other.join(60)
    influx.flap_every = 0
    leftover = replay_spool(settings(influx), spool)
    assert leftover.spooled == 0
    expected = {line(*point(i)) for start in (0, 1000, 2000) for i in range(start, start + 300)}
    assert set(influx.points) == expected
    assert influx.requests > 20  # it really flapped through many batches


def abandoned_replay(spool, count):
    import os

    left = spool.path.with_name(spool.path.name + ".replaying-crashed")
    left.write_text("".join(line(*point(i)) + "\n" for i in range(count)))
    old = time.time() - 3600
    os.utime(left, (old, old))  # its replayer died an hour ago
    return left


def test_an_interrupted_replay_is_claimed_by_one_replay_only(tmp_path):
    spool = Spool(tmp_path / "t.lp")
    abandoned_replay(spool, 5)
    first, second = spool.take(), spool.take()
    assert len(first) == 1 and second == []
    assert first[0].read_text().count("\n") == 5


def test_the_next_replay_sends_what_an_interrupted_one_left(influx, tmp_path):
    spool = Spool(tmp_path / "t.lp")
    abandoned_replay(spool, 5)
    stats = replay_spool(settings(influx), spool.path)
    assert (stats.replayed, stats.spooled) == (5, 0)
    assert len(influx.points) == 5


def test_a_replay_that_cannot_spool_again_keeps_every_line(influx, tmp_path, monkeypatch):
    # Defect of c38f188: with the server down and the disk full, the replay counted
    # the lines it could not put back as dropped, then deleted the file holding them.
    spool = tmp_path / "t.lp"
    Spool(spool).append([line(*point(i)) for i in range(10)])
    influx.down = True

    def disk_full(self, lines, target=None):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Spool, "append", disk_full)
    stats = replay_spool(settings(influx), spool)
    monkeypatch.undo()
    held = [ln for f in tmp_path.glob("t.lp*") if not f.name.endswith((".lock", ".rejected"))
            for ln in f.read_text().splitlines() if ln]
    assert sorted(held) == sorted(line(*point(i)) for i in range(10))
    assert stats.dropped == 0 and stats.spooled == 10
    assert "No space left on device" in stats.last_error
    # Once the server is back, the next replay sends them (the file was kept aside).
    influx.down = False
    for kept in tmp_path.glob("t.lp.replaying-*"):
        os.utime(kept, (0, 0))  # as if abandoned long ago
    again = replay_spool(settings(influx), spool)
    assert again.replayed == 10 and sorted(influx.points) == sorted(held)
