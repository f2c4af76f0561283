import itertools
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from rally_lm.migration import hypervisor

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "libvirt"

# As virsh spells them (virshDomainPausedReason); the testbed printed the
# incoming domain's "starting up" and "migrating" (see the fault tests).
GUEST_STATES = ["running (booted)", "running (unpaused)", "running (migrated)",
                "running (migration canceled)", "paused (user)", "paused (I/O error)"]
SHELL_STATES = ["paused (starting up)", "paused (migrating)", "paused (post-copy)"]
NO_GUEST_STATES = ["shut off (migrated)", "in shutdown (unknown)", "crashed (unknown)"]


@pytest.mark.parametrize("state", GUEST_STATES)
def test_a_running_or_paused_guest_runs_there(state):
    assert hypervisor.runs_guest(state) and not hypervisor.in_transit(state)


@pytest.mark.parametrize("state", SHELL_STATES)
def test_a_migration_shell_is_in_transit(state):
    assert hypervisor.in_transit(state) and not hypervisor.runs_guest(state)


@pytest.mark.parametrize("state", NO_GUEST_STATES)
def test_a_stopped_domain_runs_nothing(state):
    assert not hypervisor.runs_guest(state) and not hypervisor.in_transit(state)


def test_human_domjobinfo_is_read_in_ms_and_bytes():
    # `virsh domjobinfo --completed` on hv2 after a testbed migration, verbatim.
    stats = hypervisor.parse_domjobinfo((FIXTURES / "domjobinfo-completed-incoming.txt")
                                        .read_text())
    assert stats["time_elapsed"] == 1471 and stats["downtime"] == 103
    assert stats["setup_time"] == 2 and stats["memory_iteration"] == 4
    assert stats["memory_dirty_rate"] == 0
    assert stats["data_processed"] == pytest.approx(114.451 * 1024**2)
    # "Time elapsed w/o network" and "Downtime w/o network" are other figures.
    assert "time_elapsed_net" not in stats
    summary = hypervisor.summarize(stats)
    assert summary["downtime_ms"] == 103 and summary["total_ms"] == 1471


def test_rawstats_keep_every_figure_libvirt_gave():
    # `virsh domjobinfo --completed --rawstats` on the testbed's destination.
    raw = hypervisor.parse_rawstats((FIXTURES / "domjobinfo-completed-rawstats.txt")
                                    .read_text())
    assert raw["downtime"] == 97 and raw["downtime_net"] == 94
    assert raw["memory_iteration"] == 3 and raw["memory_page_size"] == 4096
    assert "Job type" not in raw and len(raw) == 23
    summary = hypervisor.summarize(raw)
    assert summary["downtime_ms"] == 97 and summary["total_ms"] == 752
    assert summary["memory_bytes"] == 116553756 and summary["postcopy_requests"] == 0
    assert summary["raw"] == raw


def test_a_job_without_figures_gives_nothing():
    assert hypervisor.parse_domjobinfo("Job type:         None\n") == {}
    assert hypervisor.parse_rawstats("Job type: 0\n\n") == {}


def test_virsh_events_of_a_real_migration():
    source = hypervisor.parse_event_lines(
        (FIXTURES / "virsh-events-source.txt").read_text().splitlines(True), "hv1")
    target = hypervisor.parse_event_lines(
        (FIXTURES / "virsh-events-destination.txt").read_text().splitlines(True), "hv2")
    kinds = [(e.kind, e.detail) for e in source]
    assert ("lifecycle", "Suspended Migrated") in kinds
    assert [e.detail for e in source if e.kind == "migration-iteration"] == [
        "iteration: '1'", "iteration: '2'", "iteration: '3'"]
    (completed,) = [e for e in source if e.kind == "job-completed"]
    assert completed.params["downtime"] == 86 and completed.params["memory_iteration"] == 3
    paused = next(e for e in source if e.detail == "Suspended Migrated")
    resumed = next(e for e in target if e.detail == "Resumed Migrated")
    # Stamped in UTC with millisecond precision by virsh.
    assert round((resumed.wall - paused.wall) * 1000) == 85
    assert all(e.domain == "instance-00000002" for e in source + target)


@pytest.fixture
def fake_virsh(tmp_path, monkeypatch):
    """A `virsh` on PATH whose behaviour the test writes (stdout, stderr, exit code)."""
    def install(script: str) -> None:
        path = tmp_path / "virsh"
        path.write_text("#!/bin/sh\n" + script)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
        monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    return install


def test_a_hung_virsh_is_a_stats_error_not_a_crash(fake_virsh):
    fake_virsh("exec sleep 5\n")
    with pytest.raises(hypervisor.HypervisorStatsError, match="did not answer within 1s"):
        hypervisor.completed_job("qemu+ssh://hv1/system", "instance-1", timeout=1)


def test_old_libvirt_without_rawstats_falls_back_to_the_human_form(fake_virsh):
    human = (FIXTURES / "domjobinfo-completed-incoming.txt")
    fake_virsh(f'case "$*" in *--rawstats*) echo "error: command \'domjobinfo\' does not '
               f'support option --rawstats" >&2; exit 1;; esac\ncat {human}\n')
    stats = hypervisor.completed_job("qemu:///system", "instance-1")
    assert stats["downtime_ms"] == 103


def test_no_completed_migration_is_an_error(fake_virsh):
    fake_virsh('echo "Job type: 0"\n')
    with pytest.raises(hypervisor.HypervisorStatsError, match="no completed migration"):
        hypervisor.completed_job("qemu:///system", "instance-1")


def test_dirty_rate_waits_for_the_measurement(fake_virsh, tmp_path):
    calls = tmp_path / "calls"
    fake_virsh(f'echo "$*" >> {calls}\n'
               'case "$*" in *domdirtyrate-calc*) exit 0;; esac\n'
               f'n=$(grep -c domstats {calls})\n'
               'if [ "$n" -lt 2 ]; then echo "  dirtyrate.calc_status=1"; exit 0; fi\n'
               'echo "Domain: \'instance-1\'"\n'
               'echo "  dirtyrate.calc_status=2"\n'
               'echo "  dirtyrate.calc_period=1"\n'
               'echo "  dirtyrate.megabytes_per_second=12"\n')
    assert hypervisor.dirty_rate("qemu:///system", "instance-1", seconds=1) == {
        "mib_per_s": 12, "period_s": 1}
    assert calls.read_text().count("domstats") == 2


def test_a_dirty_rate_that_never_finishes_is_an_error(fake_virsh):
    fake_virsh('case "$*" in *domdirtyrate-calc*) exit 0;; esac\n'
               'echo "  dirtyrate.calc_status=1"\n')
    with pytest.raises(hypervisor.HypervisorStatsError, match="did not finish measuring"):
        hypervisor.dirty_rate("qemu:///system", "instance-1", seconds=1, timeout=0.5)


def test_event_listener_collects_what_virsh_prints(fake_virsh, tmp_path):
    events = FIXTURES / "virsh-events-source.txt"
    fake_virsh(f"cat {events}\nexec sleep 30\n")
    listener = hypervisor.DomainEventListener("qemu+ssh://hv1/system", "hv1").start()
    import time
    deadline = time.monotonic() + 5
    while len(listener.events()) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    got = listener.stop()
    assert listener.error is None
    assert any(e.detail == "Suspended Migrated" and e.host == "hv1" for e in got)


def test_an_event_listener_that_dies_says_so(fake_virsh):
    fake_virsh('echo "error: failed to connect to the hypervisor" >&2\nexit 1\n')
    listener = hypervisor.DomainEventListener("qemu+ssh://hv9/system", "hv9").start()
    import time
    time.sleep(0.3)
    assert listener.stop() == []
    assert "failed to connect to the hypervisor" in listener.error


def test_a_running_job_is_read_from_rawstats(fake_virsh):
    # Captured on the testbed's source during a migration (lm.small.scaled-16).
    fake_virsh(f"cat {FIXTURES / 'domjobinfo-running-rawstats.txt'}\n")
    raw = hypervisor.running_job("qemu:///system", "instance-1")
    sample = hypervisor.JobSample.from_raw(1.23456, raw)
    assert sample == hypervisor.JobSample(
        t=1.2346, iteration=1, memory_remaining_bytes=51421184,
        memory_bytes_per_s=42238510, expected_downtime_ms=50, throttle_percent=None)


def test_no_running_job_reads_as_nothing(fake_virsh):
    fake_virsh('echo "Job type: 0"\n')
    assert hypervisor.running_job("qemu:///system", "instance-1") == {}


def test_a_failed_job_read_is_an_error(fake_virsh):
    fake_virsh('echo "error: Domain not found" >&2; exit 1\n')
    with pytest.raises(hypervisor.HypervisorStatsError, match="Domain not found"):
        hypervisor.running_job("qemu:///system", "instance-1")


def _raw(iteration, remaining, throttle=None):
    raw = {"memory_iteration": iteration, "memory_remaining": remaining, "downtime": 50,
           "memory_bps": 1000}
    if throttle is not None:
        raw["auto_converge_throttle"] = throttle
    return raw


def test_job_sampler_keeps_the_peak_throttle_and_skips_idle_reads():
    readings = iter([{}, _raw(1, 900), _raw(2, 500, 20), _raw(3, 400, 50), _raw(4, 10, 30)])
    errors = iter([None, None, None, "ssh dropped", None, None])

    def read(uri, name):
        error = next(errors, None)
        if error:
            raise hypervisor.HypervisorStatsError(error)
        return next(readings, {})

    ticks = itertools.count()
    sampler = hypervisor.JobSampler("qemu:///system", "instance-1", interval=0.001,
                                    clock=lambda: float(next(ticks)), read=read).start()
    deadline = time.monotonic() + 5
    while len(sampler.samples) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    summary = sampler.stop()
    assert summary["count"] == 4
    assert summary["max_throttle_percent"] == 50
    assert summary["last_expected_downtime_ms"] == 50
    assert summary["read_errors"] == 1 and summary["last_error"] == "ssh dropped"
    assert [s["iteration"] for s in summary["samples"]] == [1, 2, 3, 4]


def test_a_read_as_slow_as_the_interval_is_followed_by_the_next_at_once():
    # The clock moves 20 s per reading: every read takes the whole 20 s interval,
    # so the sampler must not wait before the next one.
    ticks = itertools.count(step=20)
    sampler = hypervisor.JobSampler("qemu:///system", "instance-1", interval=20.0,
                                    clock=lambda: float(next(ticks)),
                                    read=lambda uri, name: _raw(1, 10)).start()
    assert sampler._thread.daemon and sampler._thread.name == "job-sampler-instance-1"
    deadline = time.monotonic() + 5
    while len(sampler.samples) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    summary = sampler.stop()
    assert summary["count"] >= 3
    assert [s["t"] for s in summary["samples"][:3]] == [0.0, 40.0, 80.0]


def test_a_sampler_reads_twice_a_second_unless_told():
    assert hypervisor.JobSampler("qemu:///system", "instance-1").interval == 0.5


def test_samples_without_a_throttle_mean_zero_none_mean_unknown():
    quiet = hypervisor.JobSample.from_raw(0.0, _raw(1, 10))
    assert hypervisor.summarize_samples([quiet])["max_throttle_percent"] == 0
    assert hypervisor.summarize_samples([])["max_throttle_percent"] is None
    assert "read_errors" not in hypervisor.summarize_samples([])


class VirshRecorder:
    """Stands in for hypervisor._virsh: records each call, answers from a script."""

    def __init__(self, *answers):
        self.calls = []
        self.answers = list(answers)

    def __call__(self, uri, *args, timeout):
        self.calls.append((uri, args, timeout))
        code, out, err = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return subprocess.CompletedProcess(["virsh", "-c", uri, *args], code, out, err)


@pytest.fixture
def virsh(monkeypatch):
    def install(*answers):
        recorder = VirshRecorder(*answers)
        monkeypatch.setattr(hypervisor, "_virsh", recorder)
        return recorder
    return install


def test_completed_job_asks_for_the_completed_jobs_raw_statistics(virsh):
    raw = (FIXTURES / "domjobinfo-completed-rawstats.txt").read_text()
    recorder = virsh((0, raw, ""))
    stats = hypervisor.completed_job("qemu+ssh://hv2/system", "instance-7")
    assert recorder.calls == [("qemu+ssh://hv2/system",
                               ("domjobinfo", "instance-7", "--completed", "--rawstats"), 20.0)]
    assert stats["downtime_ms"] == hypervisor.parse_rawstats(raw)["downtime"]
    hypervisor.completed_job("qemu:///system", "instance-7", timeout=3)
    assert recorder.calls[-1][2] == 3


def test_completed_job_falls_back_with_the_same_domain_and_timeout(virsh):
    human = (FIXTURES / "domjobinfo-completed-incoming.txt").read_text()
    recorder = virsh((1, "", "error: command 'domjobinfo' doesn't support option --rawstats"),
                     (0, human, ""))
    assert hypervisor.completed_job("qemu:///system", "instance-7", timeout=5)["downtime_ms"] \
        == 103
    assert recorder.calls[1] == ("qemu:///system", ("domjobinfo", "instance-7", "--completed"),
                                 5)


def test_a_failed_completed_job_read_names_the_domain_and_the_reason(virsh):
    virsh((1, "", "error: failed to get domain 'instance-7'\n"))
    with pytest.raises(hypervisor.HypervisorStatsError) as error:
        hypervisor.completed_job("qemu:///system", "instance-7")
    assert str(error.value) == ("virsh -c qemu:///system domjobinfo instance-7: "
                                "error: failed to get domain 'instance-7'")


@pytest.mark.parametrize("answer, state", [
    ((0, "running (migrated)\n\n", ""), "running (migrated)"),
    ((0, "\n", ""), None),
    ((1, "", "error: failed to get domain 'instance-7'"), None),
    ((1, "", "error: Domain not found: no domain with matching name"), None),
])
def test_domain_state(virsh, answer, state):
    recorder = virsh(answer)
    assert hypervisor.domain_state("qemu:///hv1", "instance-7") == state
    assert recorder.calls == [("qemu:///hv1", ("domstate", "instance-7", "--reason"), 20.0)]


def test_a_domain_state_that_cannot_be_read_is_an_error(virsh):
    virsh((1, "", "error: failed to connect to the hypervisor\n"))
    with pytest.raises(hypervisor.HypervisorStatsError) as error:
        hypervisor.domain_state("qemu:///hv1", "instance-7", timeout=2)
    assert str(error.value) == ("virsh -c qemu:///hv1 domstate instance-7: "
                                "error: failed to connect to the hypervisor")


def test_hostname(monkeypatch):
    from rally_lm.clients import virsh

    recorder = VirshRecorder((0, "hv1\n", ""))
    monkeypatch.setattr(virsh, "run", recorder)
    assert virsh.hostname("qemu:///hv1") == "hv1"
    assert recorder.calls == [("qemu:///hv1", ("hostname",), 20.0)]
    monkeypatch.setattr(virsh, "run", VirshRecorder((1, "", "error: no route\n")))
    with pytest.raises(hypervisor.HypervisorStatsError,
                       match=r"^virsh -c qemu:///hv1 hostname: error: no route$"):
        virsh.hostname("qemu:///hv1", timeout=1)


def test_virsh_that_cannot_run_is_an_error_that_says_why(monkeypatch):
    from rally_lm.clients import virsh

    monkeypatch.setattr(virsh.shutil, "which", lambda name: None)
    with pytest.raises(hypervisor.HypervisorStatsError, match="virsh is not installed"):
        virsh.run("qemu:///hv1", "hostname", timeout=1)


def test_running_job_asks_for_the_current_jobs_raw_statistics(virsh):
    recorder = virsh((0, (FIXTURES / "domjobinfo-running-rawstats.txt").read_text(), ""))
    assert hypervisor.running_job("qemu:///hv1", "instance-7")["memory_iteration"] == 1
    assert recorder.calls == [("qemu:///hv1", ("domjobinfo", "instance-7", "--rawstats"), 10.0)]


def test_dirty_rate_asks_qemu_to_sample_then_reads_the_result(virsh, monkeypatch):
    monkeypatch.setattr(hypervisor.time, "sleep", lambda s: None)
    recorder = virsh((0, "", ""), (0, "  dirtyrate.calc_status=2\n  dirtyrate.calc_period=3\n"
                                      "  dirtyrate.megabytes_per_second=9\n", ""))
    assert hypervisor.dirty_rate("qemu:///hv1", "instance-7", seconds=3, timeout=4) == {
        "mib_per_s": 9, "period_s": 3}
    assert recorder.calls == [
        ("qemu:///hv1", ("domdirtyrate-calc", "instance-7", "--seconds", "3"), 4),
        ("qemu:///hv1", ("domstats", "instance-7", "--dirtyrate"), 4)]


def test_a_refused_dirty_rate_is_an_error(virsh):
    virsh((1, "", "error: Operation not supported\n"))
    with pytest.raises(hypervisor.HypervisorStatsError) as error:
        hypervisor.dirty_rate("qemu:///hv1", "instance-7")
    assert str(error.value) == ("virsh -c qemu:///hv1 domdirtyrate-calc instance-7: "
                                "error: Operation not supported")


def test_event_listener_runs_virsh_event_in_the_c_locale(fake_virsh, tmp_path, monkeypatch):
    seen = tmp_path / "seen"
    fake_virsh(f'echo "$LC_ALL $*" > {seen}\nexec sleep 30\n')
    monkeypatch.setenv("LC_ALL", "de_DE.UTF-8")
    listener = hypervisor.DomainEventListener("qemu:///hv1", "hv1").start()
    deadline = time.monotonic() + 5
    while not seen.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    # Killed by stop() while it ran: not an early death.
    assert listener.stop() == [] and listener.error is None
    assert seen.read_text().split() == ["C", "-c", "qemu:///hv1", "event", "--all", "--loop",
                                        "--timestamp"]


def test_an_event_listener_that_ignores_sigterm_is_killed(fake_virsh):
    fake_virsh("trap '' TERM\nwhile :; do sleep 0.1; done\n")
    listener = hypervisor.DomainEventListener("qemu:///hv1", "hv1").start()
    time.sleep(0.3)
    began = time.monotonic()
    assert listener.stop() == []
    assert time.monotonic() - began < 8 and listener._proc.returncode is not None
    assert listener.error is None


def test_the_early_death_message_keeps_the_end_of_virshs_complaint(fake_virsh):
    fake_virsh('printf "x%.0s" $(seq 400) >&2\necho " the end" >&2\nexit 1\n')
    listener = hypervisor.DomainEventListener("qemu:///hv9", "hv9").start()
    time.sleep(0.3)
    listener.stop()
    assert listener.error.startswith("virsh -c qemu:///hv9 event stopped early: x")
    assert listener.error.endswith("x the end") and len(listener.error) < 360


def test_a_listener_without_virsh_says_so(monkeypatch):
    monkeypatch.setattr(hypervisor.shutil, "which", lambda name: None)
    listener = hypervisor.DomainEventListener("qemu:///hv1", "hv1").start()
    assert listener.error == "virsh is not installed (libvirt-clients)"
    assert listener.stop() == []


def test_no_running_job_reads_as_nothing_whatever_follows(virsh):
    virsh((0, "Job type: 0\nmemory_total: 5\n", ""))
    assert hypervisor.running_job("qemu:///system", "instance-1") == {}


def test_a_failed_completed_job_read_is_not_retried_without_rawstats(virsh):
    recorder = virsh((1, "", "error: failed to get domain 'instance-7'\n"))
    with pytest.raises(hypervisor.HypervisorStatsError):
        hypervisor.completed_job("qemu:///system", "instance-7")
    assert len(recorder.calls) == 1


def test_the_dirty_rate_period_is_qemus_and_a_stale_rate_is_not_taken(virsh, monkeypatch):
    monkeypatch.setattr(hypervisor.time, "sleep", lambda s: None)
    recorder = virsh((0, "", ""),
                     # Still measuring: the rate shown is the previous measurement's.
                     (0, "  dirtyrate.calc_status=1\n  dirtyrate.megabytes_per_second=99\n", ""),
                     (0, "  dirtyrate.calc_status=2\n  dirtyrate.calc_period=2\n"
                         "  dirtyrate.megabytes_per_second=9\n", ""))
    assert hypervisor.dirty_rate("qemu:///hv1", "instance-7", seconds=1) == {
        "mib_per_s": 9, "period_s": 2}
    assert len(recorder.calls) == 3
    virsh((0, "", ""), (0, "  dirtyrate.calc_status=2\n  dirtyrate.megabytes_per_second=4\n",
                        ""))
    assert hypervisor.dirty_rate("qemu:///hv1", "instance-7", seconds=1) == {
        "mib_per_s": 4, "period_s": 1}


def test_a_human_domjobinfo_line_without_a_number_is_skipped_not_the_rest():
    text = "Job type:         Completed\nTotal downtime:   n/a\nData processed:   2.000 MiB\n"
    assert hypervisor.parse_domjobinfo(text) == {"data_processed": 2.0 * 1024 * 1024}


def test_virsh_runs_untranslated_with_the_shared_ssh_uri(monkeypatch):
    seen = {}

    def run(command, **options):
        seen.update(command=command, **options)
        return subprocess.CompletedProcess(command, 0, "ok\n", "")

    monkeypatch.setattr(hypervisor.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(hypervisor.subprocess, "run", run)
    monkeypatch.setattr(hypervisor.ssh_mux, "shared", lambda uri: f"{uri}?shared")
    assert hypervisor._virsh("qemu+ssh://hv1/system", "domstate", "i-1", timeout=7).stdout == "ok\n"
    env = seen.pop("env")
    assert seen == {"command": ["/usr/bin/virsh", "-c", "qemu+ssh://hv1/system?shared",
                                "domstate", "i-1"],
                    "capture_output": True, "text": True, "timeout": 7}
    assert env["LC_ALL"] == "C" and env["PATH"] == os.environ["PATH"]


@pytest.mark.parametrize("failure, message", [
    (subprocess.TimeoutExpired(["virsh"], 7),
     "virsh -c qemu:///system domstate did not answer within 7s"),
    (FileNotFoundError(2, "No such file or directory"),
     "virsh -c qemu:///system domstate: [Errno 2] No such file or directory"),
])
def test_virsh_that_hangs_or_cannot_start_is_a_stats_error(monkeypatch, failure, message):
    def run(command, **options):
        raise failure

    monkeypatch.setattr(hypervisor.shutil, "which", lambda name: "/usr/bin/virsh")
    monkeypatch.setattr(hypervisor.subprocess, "run", run)
    with pytest.raises(hypervisor.HypervisorStatsError) as caught:
        hypervisor._virsh("qemu:///system", "domstate", "i-1", timeout=7)
    assert str(caught.value) == message


def test_without_virsh_the_error_names_the_package(monkeypatch):
    monkeypatch.setattr(hypervisor.shutil, "which", lambda name: None)
    with pytest.raises(hypervisor.HypervisorStatsError) as caught:
        hypervisor._virsh("qemu:///system", "domstate", timeout=7)
    assert str(caught.value) == "virsh is not installed (libvirt-clients)"


def test_events_read_in_pieces_are_the_events_read_at_once():
    # The listener parses only the lines that came since it was last asked; an
    # event's parameters may arrive in a later piece than the event itself.
    lines = (FIXTURES / "virsh-events-source.txt").read_text().splitlines(True)
    whole = hypervisor.parse_event_lines(lines, "hv1")
    listener = hypervisor.DomainEventListener("qemu:///hv1", "hv1")
    seen = []
    for cut in range(0, len(lines), 3):
        listener._lines += lines[cut:cut + 3]
        seen = listener.events()
    assert [e.to_dict() for e in seen] == [e.to_dict() for e in whole]
    params = next(i for i, ln in enumerate(lines) if ln.startswith(("\t", " ")))
    split = hypervisor.DomainEventListener("qemu:///hv1", "hv1")
    split._lines += lines[:params + 1]
    split.events()
    split._lines += lines[params + 1:]
    assert [e.to_dict() for e in split.events()] == [e.to_dict() for e in whole]
