"""The study's matrix, its resumable state and its progress lines."""

import argparse
import json
from pathlib import Path

import pytest
import yaml

from rally_lm.cli import study_cmd
from rally_lm.study import matrix
from rally_lm.study.progress import Progress, parse
from rally_lm.study.state import CellResult, StudyState
from rally_lm.task.scenarios.nova.live_migration import progress_line


def test_the_seed_matrix_has_twelve_cells_and_a_volume_backed_one():
    cells = matrix.seed_matrix()
    assert len(cells) == 13 and len({c.name for c in cells}) == 13
    assert cells[-1].name == "ceph-off-small-volume" and cells[-1].label_storage == "ceph-volume"
    assert len(matrix.seed_matrix(volume_cell=False)) == 12


@pytest.mark.parametrize("patterns, expected", [
    (["ceph-off"], {"ceph-off-small", "ceph-off-medium", "ceph-off-large",
                    "ceph-off-small-volume"}),
    (["large"], {"local-off-large", "local-on-large", "ceph-off-large", "ceph-on-large"}),
    (["local-on-small", "volume"], {"local-on-small", "ceph-off-small-volume"}),
    (None, {c.name for c in matrix.seed_matrix()}),
])
def test_cells_are_selected_by_name_parts(patterns, expected):
    assert {c.name for c in matrix.select(matrix.seed_matrix(), patterns)} == expected


def test_a_cells_arguments_keep_the_base_and_set_the_matrix():
    base = {"source_host": "hv1", "target_host": "hv2", "image": "img", "storage": "x"}
    cell = matrix.StudyCell("ceph", "on", "large", volume=True)
    args = study_cmd.cell_args(base, cell, vms=6, round_trips=2, testbed=True, flavors={})
    assert args == {"source_host": "hv1", "target_host": "hv2", "image": "img",
                    "storage": "ceph-volume", "tunnelling": "on", "vm_count": 6,
                    "round_trips": 2, "flavor": "lm.large.scaled-16", "boot_from_volume": True}
    cloud = study_cmd.cell_args(base, matrix.StudyCell("local", "off", "medium"), 6, 20,
                                testbed=False, flavors={"medium": "m1.medium"},
                                probing=study_cmd.CLOUD_PROBING)
    assert cloud["flavor"] == "m1.medium" and "boot_from_volume" not in cloud
    assert cloud["tcp_rate_bytes"] == 102400 and cloud["icmp_probe"] is True


def test_state_survives_a_rerun_with_the_same_settings_only(tmp_path):
    path = tmp_path / "study.json"
    report = tmp_path / "cell.json"
    report.write_text("{}")
    settings = {"vms": 6, "round_trips": 2}
    state = StudyState.load(path, settings)
    state.cells["ceph-off-small"] = CellResult("ceph-off-small", status="done",
                                               json=str(report), migrations=24)
    state.cells["local-on-small"] = CellResult("local-on-small", status="failed")
    state.save(path)
    again = StudyState.load(path, settings)
    assert again.done("ceph-off-small") and not again.done("local-on-small")
    assert again.cells["ceph-off-small"].migrations == 24
    # Other settings: another study, refused rather than overwritten.
    with pytest.raises(ValueError) as caught:
        StudyState.load(path, {"vms": 1, "round_trips": 1})
    assert str(caught.value) == (f"{path} holds a study with other settings (round_trips, "
                                 "vms differ); choose another --out, or remove it to start over")
    # A report that went away: the cell is run again.
    report.unlink()
    assert not StudyState.load(path, settings).done("ceph-off-small")
    assert json.loads(path.read_text())["settings"] == settings


def test_reports_are_found_from_the_studys_directory_wherever_it_is_read(
        tmp_path, monkeypatch):
    # A study run with --out st from one directory, read again from inside st (or
    # after moving it): the state stores its reports from the study's directory.
    study_dir = tmp_path / "st"
    report = study_dir / "rally" / "cell.json"
    report.parent.mkdir(parents=True)
    report.write_text("{}")
    settings = {"vms": 1}
    monkeypatch.chdir(tmp_path)
    state = StudyState.load(Path("st") / "study.json", settings)
    state.cells["c"] = CellResult("c", status="done",
                                  json=state.relative(Path("st/rally/cell.json")))
    state.save(Path("st") / "study.json")
    assert json.loads((study_dir / "study.json").read_text())["cells"]["c"]["json"] == \
        "rally/cell.json"
    monkeypatch.chdir(study_dir)
    assert StudyState.load(Path("study.json"), settings).done("c")
    moved = tmp_path / "elsewhere"
    study_dir.rename(moved)
    again = StudyState.load(moved / "study.json", settings)
    assert again.done("c") and again.locate("rally/cell.json") == moved / "rally" / "cell.json"


def test_progress_lines_are_read_from_rallys_log():
    from rally_lm.migration.driver import MigrationRecord

    record = MigrationRecord("id", "rally-lm-1234-vm0", "out", "hv1", "hv2", duration=6.4,
                             outcome="completed",
                             measurements={"hypervisor": {"downtime_ms": 37.0}})
    line = ("2026-12-01 02:45:01.123 4242 INFO rally_lm.task.scenarios.nova.live_migration "
            "[-] " + progress_line(record, {"client_downtime_ms": 139.0}))
    event = parse(line)
    assert event["vm"] == "rally-lm-1234-vm0" and event["direction"] == "out"
    assert event["outcome"] == "completed" and event["seconds"] == "6.4"
    assert "client downtime 139 ms" in event["rest"]
    assert "hypervisor downtime 37 ms" in event["rest"]
    assert parse("2026-12-01 INFO rally.task.runner ITERATION 1 START") is None
    skipped = parse(progress_line(MigrationRecord("id", "vm1", "back", "hv2", "hv1",
                                                  outcome="skipped", error="not ACTIVE")))
    assert skipped["outcome"] == "skipped" and skipped["seconds"] is None
    throttled = MigrationRecord("id", "vm2", "out", "hv1", "hv2", duration=40.0,
                                outcome="timeout_aborted", timeout_by="nova",
                                measurements={"job": {"max_throttle_percent": 60}})
    event = parse(progress_line(throttled))
    assert event["outcome"] == "timeout_aborted"
    assert event["rest"] == ", CPU throttled up to 60 %, timeout by nova"


def test_the_estimate_uses_the_pace_so_far():
    now = [100.0]
    progress = Progress(planned=10, clock=lambda: now[0])
    assert progress.eta_seconds() is None
    now[0] = 140.0
    progress.seen(4)  # 10 s a migration
    assert progress.eta_seconds() == pytest.approx(60.0)
    line = progress.line("ceph-off-small", 1, 13, {"vm": "vm0", "direction": "out",
                                                   "outcome": "completed", "seconds": "9.8",
                                                   "rest": ""})
    assert line.startswith("[1/13 ceph-off-small] 4/10 vm0 out: completed in 9.8s - ETA ")
    assert "(1 min left)" in line


def test_a_cloud_study_runs_only_the_clouds_own_cells(tmp_path, monkeypatch):
    args_file = tmp_path / "cloud.yaml"
    args_file.write_text("source_host: c1\ntarget_host: c2\nstorage: ceph\ntunnelling: 'off'\n")
    ran = []

    def fake_cell(runner, cell, *rest):
        ran.append(cell.name)
        return CellResult(cell.name, status="failed", reason="no cloud in a unit test")

    monkeypatch.setattr(study_cmd, "run_cell", fake_cell)
    monkeypatch.setattr(study_cmd, "finish", lambda state, out, args: 0)
    args = argparse.Namespace(out=str(tmp_path / "out"), cloud=str(args_file), vms=6,
                              round_trips=20, cells=None, no_volume_cell=False,
                              disk_fill_percent=0, flavors="m1.small,m1.medium,m1.large",
                              baseline=None, baseline_source=None, note="",
                              probe_interval=None, icmp=None, tcp_rate=None)
    study_cmd.run(args)
    assert ran == ["ceph-off-small", "ceph-off-medium", "ceph-off-large",
                   "ceph-off-small-volume"]
    state = json.loads((tmp_path / "out" / "study.json").read_text())["cells"]
    assert state["local-on-large"]["status"] == "not run"
    assert "one storage and one tunnelling setting" in state["local-on-large"]["reason"]
    # The cloud keeps the seed's probing.
    written = yaml.safe_load((tmp_path / "out" / "args" / "ceph-off-small.yaml").read_text()) \
        if (tmp_path / "out" / "args" / "ceph-off-small.yaml").exists() else None
    assert written is None  # run_cell was replaced: nothing written by the fake


def test_the_policy_sweep_is_one_task_per_policy_file_with_a_vm_per_dirty_rate():
    cells = matrix.policy_matrix()
    policies = matrix.policy_names()
    assert {"pre-copy", "auto-converge", "post-copy", "pause-to-complete",
            "pre-copy-tls"} <= set(policies)
    assert [c.name for c in cells] == policies
    for cell in cells:
        own = yaml.safe_load(cell.args_file.read_text())
        # Below, near and above the link, one VM each: the same for every policy.
        assert own["dirty_rate_mib"] == [4, 24, 48] and own["vm_count"] == 3, cell
        assert matrix.planned_migrations(cell, None, 1) == 6


@pytest.mark.parametrize("policies, profile, given, expected", [
    (True, None, (None, None, None), (None, 1, 1)),
    (False, None, (None, None, None), (3, 2, 1)),
    (False, "quick", (None, None, None), (2, 1, 1)),
    (False, "seed", (None, None, None), (6, 20, 1)),
    (False, "seed", (3, 4, 2), (3, 4, 2)),
    (True, "seed", (None, 4, None), (None, 4, 1)),
])
def test_scale_defaults_are_the_profiles_unless_given(policies, profile, given, expected):
    args = argparse.Namespace(vms=given[0], round_trips=given[1], passes=given[2],
                              profile=profile)
    study_cmd.apply_scale_defaults(args, policies)
    assert (args.vms, args.round_trips, args.passes) == expected


def test_passes_interleave_the_matrix_and_name_their_runs():
    cells = matrix.seed_matrix(volume_cell=False)[:3]
    runs = matrix.ordered(cells, 2)
    assert [matrix.run_name(c, n) for n, c in runs] == [
        "local-off-small", "local-off-medium", "local-off-large",
        "local-off-small#2", "local-off-medium#2", "local-off-large#2"]
    assert matrix.PROFILES["default"].migrations() == 12
    assert matrix.PROFILES["default"].migrations(passes=3) == 36


def test_the_precision_a_study_buys_is_said_before_it_runs():
    assert study_cmd.precision_line(12) == (
        "12 migrations per cell: the median's 95 % interval runs from value 3 to value 10 "
        "(sorted); the p95's has no upper bound below 72 values")
    assert study_cmd.precision_line(4).startswith(
        "4 migrations per cell: the median's 95 % interval cannot be bounded (too few)")


def test_a_policy_cell_is_its_policy_file_with_the_studys_round_trips():
    cell = matrix.StudyCell("ceph", "off", "small", policy="auto-converge")
    args = study_cmd.cell_args({"ignored": True}, cell, vms=None, round_trips=2, testbed=True,
                               flavors={})
    own = yaml.safe_load(cell.args_file.read_text())
    assert args == {**own, "round_trips": 2}
    assert args["testbed_policy"]["auto_converge"] is True
    assert args["policy"] == "auto-converge" and "ignored" not in args


def test_the_policy_sweep_refuses_vms_before_anything_runs(tmp_path, capsys, monkeypatch):
    from rally_lm_testbed import netns

    monkeypatch.setattr(netns, "require_root", lambda _why: None)
    args = argparse.Namespace(out=str(tmp_path / "out"), cloud=None, vms=2,
                              matrix="policies", round_trips=1, cells=None)
    assert study_cmd.run(args) == 2
    assert "one VM per dirty rate" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_cloud_cannot_run_the_policy_sweep(tmp_path, capsys):
    args_file = tmp_path / "cloud.yaml"
    args_file.write_text("source_host: c1\ntarget_host: c2\nstorage: ceph\n")
    args = argparse.Namespace(out=str(tmp_path / "out"), cloud=str(args_file), vms=None,
                              matrix="policies", round_trips=2, cells=None)
    assert study_cmd.run(args) == 2
    assert "only the embedded testbed" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


BOOT_FAILED = ("2026-12-01 07:50:14.201 24808 ERROR rally.task.engine [-] Unexpected exception "
               "during the workload execution: RuntimeError: workload VM rally-lm-x-vm5 failed "
               "to boot: No valid host was found.\n")


@pytest.mark.parametrize("reported, code, migrations, output, expected", [
    (True, 0, 24, "", ("done", "")),
    # Every migration refused by libvirt: measured, the SLA failed.
    (True, 2, 24, "", ("done", "")),
    # Rally exits 2 as well when no VM booted: nothing was measured.
    (True, 2, 0, BOOT_FAILED,
     ("failed", "no migration ran: RuntimeError: workload VM rally-lm-x-vm5 failed to boot: "
                "No valid host was found.; see cell.log")),
    (True, 0, 0, "", ("failed", "no migration ran; see cell.log")),
    (False, 1, 0, "", ("failed", "rally task start exited 1; see cell.log")),
    (True, 1, 3, BOOT_FAILED,
     ("failed", "rally task start exited 1: RuntimeError: workload VM rally-lm-x-vm5 failed "
                "to boot: No valid host was found.; see cell.log")),
])
def test_a_cell_is_done_only_when_it_measured_something(reported, code, migrations, output,
                                                         expected):
    assert study_cmd.cell_status(reported, code, migrations, output, "cell.log") == expected


class FakeTestbed:
    """The testbed module's mode calls, recorded (the real ones restart the computes)."""

    def __init__(self, mode):
        self.mode = mode
        self.calls = []

    def is_up(self):
        return True

    def read_mode(self):
        return json.loads(json.dumps(self.mode))

    def set_mode(self, storage, tunnelled, policy_changes=None, reset_policy=False,
                 guests_gone_within=0.0):
        assert guests_gone_within == study_cmd.GUESTS_GONE_WITHIN
        self.calls.append((storage, tunnelled, policy_changes, reset_policy))
        self.mode = {"storage": storage, "tunnelled": tunnelled, "policy": policy_changes}


def test_the_study_puts_the_testbed_back_in_the_mode_it_found():
    from rally_lm_testbed import policy

    nova_default = policy.Policy().to_dict()
    testbed = FakeTestbed({"storage": "local", "tunnelled": "off", "policy": nova_default})
    runner = study_cmd.TestbedCells(testbed=testbed, rally_runner=object())
    sweep_cell = matrix.policy_matrix()[0]
    runner.prepare(sweep_cell)
    assert testbed.mode["storage"] == "ceph" and testbed.mode["policy"] != nova_default
    runner.restore()
    assert testbed.calls[-1] == ("local", "off", nova_default, True)
    assert testbed.mode == {"storage": "local", "tunnelled": "off", "policy": nova_default}
    runner.restore()  # nothing found, nothing to do
    assert len(testbed.calls) == 2


def test_a_study_that_changed_nothing_restarts_nothing():
    from rally_lm_testbed import policy

    testbed = FakeTestbed({"storage": "ceph", "tunnelled": "off",
                           "policy": policy.Policy().to_dict()})
    runner = study_cmd.TestbedCells(testbed=testbed, rally_runner=object())
    runner.prepare(matrix.StudyCell("ceph", "off", "small"))
    runner.restore()
    assert testbed.calls == []


def test_the_policy_sweeps_note_is_read_from_its_args_files(tmp_path):
    def policy(name, timeout, rates=(4, 16, 48), **testbed):
        (tmp_path / f"policy-{name}.yaml").write_text(yaml.safe_dump({
            "flavor": "lm.small.scaled-16", "dirty_working_set_mib": 64, "link_mbit": 160,
            "dirty_rate_mib": list(rates), "nova_completion_timeout": timeout,
            "testbed_policy": testbed}))
    policy("slow", 64, downtime_delay=3)
    policy("fast", 32, rates=(2, 16), downtime_delay=3)
    assert study_cmd.policy_sweep_note(tmp_path) == (
        "Policy sweep on the testbed: one task per policy, one VM (lm.small.scaled-16) per "
        "dirty rate (2, 4, 16, 48 MiB/s over a 64 MiB working set), migrated one at a time "
        "over a link shaped to 160 Mbit/s for migration traffic only (tc htb + tbf). Nova's "
        "completion timeout per policy: fast 32 s/GiB, i.e. 64 s; slow 64 s/GiB, i.e. 128 s; "
        "its allowed downtime up to 500 ms in 10 steps 6 s apart (Nova counts at least "
        "2 GiB). QEMU under software emulation.")
    # Nova's own defaults where the testbed policy does not set them.
    policy("fast", 32)
    assert "its allowed downtime up to 500 ms in 10 steps 6 s apart; up to 500 ms in 10 " \
        "steps 150 s apart" in study_cmd.policy_sweep_note(tmp_path)


# -- defects of c38f188 ---------------------------------------------------------------------

def study_args(tmp_path, cells=None, **extra):
    return argparse.Namespace(out=str(tmp_path / "out"), cloud=None, vms=6, round_trips=2,
                              cells=cells, no_volume_cell=False, disk_fill_percent=0,
                              flavors=None, baseline=None, baseline_source=None, note="",
                              probe_interval=None, icmp=None, tcp_rate=None, matrix="seed",
                              **extra)


class RecordingRunner:
    """Stands in for TestbedCells: records what the study asked of it."""

    testbed = True

    def __init__(self, calls):
        self.calls = calls

    def prepare(self, cell):
        self.calls.append(("prepare", cell.name))

    def restore(self):
        self.calls.append(("restore",))


def test_a_selection_after_a_whole_study_keeps_the_other_cells(tmp_path, monkeypatch):
    # `--cells X` after a full study made a new study (the selection was part of its
    # settings) and overwrote study.json: the other cells left the state and the comparison.
    from rally_lm_testbed import netns

    monkeypatch.setattr(netns, "require_root", lambda why: None)
    monkeypatch.setattr(study_cmd, "TestbedCells", lambda: RecordingRunner([]))
    compared = []
    monkeypatch.setattr(study_cmd, "finish",
                        lambda state, out, args: compared.append(sorted(state.cells)) or 0)

    def measured(runner, cell, index, count, base, args, flavors, out, *rest):
        report = out / f"{cell.name}.json"
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text("{}")
        return CellResult(cell.name, status="done", json=str(report), migrations=24)

    monkeypatch.setattr(study_cmd, "run_cell", measured)
    assert study_cmd.run(study_args(tmp_path)) == 0
    everything = sorted(c.name for c in matrix.seed_matrix())
    assert compared[-1] == everything
    assert study_cmd.run(study_args(tmp_path, cells=["ceph-off-large"])) == 0
    state = json.loads((tmp_path / "out" / "study.json").read_text())
    assert sorted(state["cells"]) == everything
    assert compared[-1] == everything


def test_ctrl_c_stops_the_rally_task_before_the_mode_is_restored(tmp_path, monkeypatch):
    # Rally runs in its own session (so Ctrl-C reaches the study only): the study
    # must stop that task itself before it switches the testbed's mode back.
    from rally_lm_testbed import netns

    calls = []

    class Interrupted:
        def __iter__(self):
            yield "Task 0f1e2d3c-aaaa-bbbb-cccc-123456789abc: started\n"
            raise KeyboardInterrupt

    class Proc:
        stdout = Interrupted()

        def poll(self):
            return None

        def wait(self, timeout=None):
            return 0

    class Runner(RecordingRunner):
        def start(self, args_file):
            self.calls.append(("start", args_file.stem))
            return Proc()

        def stop(self, proc, output):
            self.calls.append(("stop", output))

    monkeypatch.setattr(netns, "require_root", lambda why: None)
    monkeypatch.setattr(study_cmd, "TestbedCells", lambda: Runner(calls))
    with pytest.raises(KeyboardInterrupt):
        study_cmd.run(study_args(tmp_path, cells=["ceph-off-small"]))
    assert calls == [("prepare", "ceph-off-small"), ("start", "ceph-off-small"),
                     ("stop", "Task 0f1e2d3c-aaaa-bbbb-cccc-123456789abc: started\n"),
                     ("restore",)]


@pytest.mark.parametrize("network", ["linuxbridge", "ovn"])
def test_on_the_testbed_each_cell_starts_from_its_networks_args(tmp_path, monkeypatch, network):
    # On ML2/OVN the probes reach the VMs only by floating IP, and the tasks carry the
    # network label (another cell than linuxbridge's) and OVN's southbound view.
    from rally_lm_testbed import layout, netns

    monkeypatch.setattr(netns, "require_root", lambda why: None)
    monkeypatch.setattr(layout, "network_backend", lambda: network)
    monkeypatch.setattr(study_cmd, "TestbedCells", lambda: RecordingRunner([]))
    monkeypatch.setattr(study_cmd, "finish", lambda state, out, args: 0)
    bases = []

    def measured(runner, cell, index, count, base, *rest):
        bases.append(base)
        return CellResult(cell.name, status="failed", reason="no testbed in a unit test")

    monkeypatch.setattr(study_cmd, "run_cell", measured)
    assert study_cmd.run(study_args(tmp_path, cells=["ceph-off-small"])) == 0
    base = bases[0]
    if network == "ovn":
        assert base["network_backend"] == "ovn" and base["probe_via"] == "floating"
        assert base["ovn_sb_connection"].startswith("tcp:")
    else:
        assert "network_backend" not in base and base.get("probe_via", "fixed") == "fixed"
