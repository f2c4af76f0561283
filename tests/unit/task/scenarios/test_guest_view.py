"""The scenario's view from inside the guests waits for the agents' status lines."""

from __future__ import annotations

import json

import pytest

from rally_lm.task.scenarios.nova import live_migration

STATUS = "rally-lm-agent: status " + json.dumps(
    {"disk": "done", "disk_used_percent": 50.3, "memory": "dirtying", "dirtied_mib": 79.1,
     "udp_echoes": 321})


class ConsoleSequence:
    """Nova's console log of each server, one more answer per call."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.calls: dict[str, int] = {}

    def __call__(self, *_args, **_kwargs) -> ConsoleSequence:
        return self

    def console_output(self, server_id: str, lines: int) -> str:
        seen = self.calls.get(server_id, 0)
        self.calls[server_id] = seen + 1
        answers = self.answers[server_id]
        answer = answers[min(seen, len(answers) - 1)]
        if isinstance(answer, Exception):
            raise answer
        return answer


def guest_table(monkeypatch: pytest.MonkeyPatch, answers: dict, wait: float = 30.0) -> tuple:
    console = ConsoleSequence(answers)
    clock = [0.0]
    monkeypatch.setattr(live_migration, "NovaAdapter", console)
    monkeypatch.setattr(live_migration, "GUEST_STATUS_WAIT_S", wait)
    monkeypatch.setattr(live_migration.time, "monotonic", lambda: clock[0])

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    monkeypatch.setattr(live_migration.time, "sleep", sleep)
    scenario = live_migration._LiveMigrationBase.__new__(live_migration._LiveMigrationBase)
    scenario.context = {"lm_workload": {"servers": [
        {"id": sid, "name": f"vm-{sid}", "ip": "10.0.0.1"} for sid in answers]}}
    scenario.admin_clients = lambda *_a, **_k: None
    charts = []
    scenario.add_output = lambda complete: charts.append(complete)
    scenario._guest_view(None)
    (chart,) = charts
    return chart["data"]["rows"], console.calls, clock[0]


def test_a_console_that_starts_after_the_return_is_read_again_until_a_status_appears(
        monkeypatch):
    rows, calls, _ = guest_table(monkeypatch, {"a": ["booted\n", "booted\n", STATUS]})
    assert rows == [["vm-a", "done", 50.3, "dirtying", 79.1, 321, ""]]
    assert calls == {"a": 3}


def test_no_status_within_the_wait_is_an_error_in_the_row_not_a_blank_pass(monkeypatch):
    rows, calls, elapsed = guest_table(monkeypatch, {"a": ["booted\n"], "b": [STATUS]},
                                       wait=10.0)
    assert rows[0] == ["vm-a", None, None, None, None, None,
                       "no status line on the console within 10 s"]
    assert rows[1] == ["vm-b", "done", 50.3, "dirtying", 79.1, 321, ""]
    assert calls["b"] == 1 and elapsed >= 10.0


def test_a_console_log_api_error_is_reported_at_once(monkeypatch):
    error = live_migration.NovaError("console log unavailable (501)")
    rows, calls, elapsed = guest_table(monkeypatch, {"a": [error]})
    assert rows == [["vm-a", None, None, None, None, None,
                     "console log: console log unavailable (501)"]]
    assert calls == {"a": 1} and elapsed == 0.0


def test_a_dirtier_that_died_is_an_error_in_the_row(monkeypatch):
    # Seen on the testbed: 128 MiB guests asked for a 64 MiB working set answered
    # every probe, read 0 MiB dirtied, and nothing said why (the dirtier, most
    # likely ended by the OOM killer, was gone).
    failed = STATUS.replace('"memory": "dirtying", "dirtied_mib": 79.1',
                            '"memory": "failed: the dirtier was killed (out of memory?)", '
                            '"dirtied_mib": 0.0')
    rows, _calls, _ = guest_table(monkeypatch, {"a": [failed]})
    assert rows == [["vm-a", "done", 50.3, "failed: the dirtier was killed (out of memory?)",
                     0.0, 321, "memory dirtying failed: the dirtier was killed (out of memory?)"]]
