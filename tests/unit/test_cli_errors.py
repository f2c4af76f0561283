"""Every usage error of rally-lm: one line on stderr, exit 2, never a traceback."""

import json
import os
import subprocess
import sys

import pytest

RALLY_LM = [sys.executable, "-m", "rally_lm.cli.main"]


def run(*args, tmp_path=None):
    env = {**os.environ, "HOME": str(tmp_path) if tmp_path else os.environ.get("HOME", "/")}
    return subprocess.run([*RALLY_LM, *args], capture_output=True, text=True, env=env,
                          timeout=120)


@pytest.mark.parametrize("args, said", [
    (["probe", "127.0.0.1", "--udp", "70000"], "argument --udp: port 70000 is outside 1-65535"),
    (["probe", "127.0.0.1", "--udp", "-5"], "argument --udp: port -5 is outside 1-65535"),
    (["probe", "127.0.0.1", "--udp", "seven"], "argument --udp: not a port number: 'seven'"),
    (["probe", "not..an..ip"], "argument TARGET: 'not..an..ip' is neither an IPv4 address "
                               "nor a host name"),
    (["probe", "::1"], "argument TARGET: ::1: the probes speak IPv4 only"),
    (["probe", "127.0.0.1", "--duration", "0"], "argument --duration: 0 is not positive"),
    (["probe", "127.0.0.1", "--raw"], "--raw adds to the JSON output: give --json too"),
    (["compare", "--baseline", "a.json"], "the following arguments are required: --candidate"),
    (["nonsense"], "argument COMMAND: invalid choice: 'nonsense'"),
])
def test_a_usage_error_is_one_line_and_exit_2(args, said):
    proc = run(*args)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert said in lines[0] and "Traceback" not in proc.stderr


@pytest.mark.parametrize("content, said", [
    ("[]", "not a Rally JSON report (TypeError"),
    ('{"not": "rally"}', "not a Rally JSON report (KeyError: 'tasks')"),
    ('{"tasks": []}', "no LiveMigration.evacuate_host workload in the input"),
])
def test_report_on_what_is_no_rally_report(tmp_path, content, said):
    path = tmp_path / "in.json"
    path.write_text(content)
    proc = run("report", str(path), "--out", str(tmp_path / "out"))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and said in lines[0], proc.stderr


def test_report_into_a_place_it_cannot_write(tmp_path):
    from tests.unit.report.synthetic import report, rows

    good = report(tmp_path / "g.json", "11111111-1111-1111-1111-111111111111",
                  rows([100.0] * 3, [5.0] * 3))
    proc = run("report", str(good), "--out", "/proc/rally-lm-cannot")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("rally-lm report: cannot write to /proc/rally-lm-cannot: ")


def test_report_of_a_task_rally_does_not_know_says_rallys_reason(tmp_path):
    proc = run("report", "0f1e2d3c-aaaa-bbbb-cccc-123456789abc", "--out", str(tmp_path),
               tmp_path=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    prefix = "rally-lm report: rally has no report of task 0f1e2d3c-aaaa-bbbb-cccc-123456789abc: "
    assert lines[0].startswith(prefix) and len(lines[0]) > len(prefix) + 5


def test_version():
    import rally_lm

    proc = run("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"rally-lm {rally_lm.__version__}"
    assert json.loads(json.dumps(rally_lm.__version__)) != "0.0.0"
