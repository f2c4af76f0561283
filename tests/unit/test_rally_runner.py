"""The testbed's Rally environment is set up once per process, and again when it is gone."""

import pytest

from rally_lm_testbed import rally_runner


@pytest.fixture
def calls(monkeypatch, tmp_path):
    made: list[tuple[str, ...]] = []
    envs: list[str] = []

    class Done:
        def __init__(self, stdout: str = "") -> None:
            self.stdout = stdout

    def fake_rally(*args: str, check: bool = True, timeout: float = 3600):
        made.append(args)
        if args[:2] == ("db", "create"):
            (tmp_path / "rally.sqlite").write_text("")
            envs.clear()  # a new database knows no environment
        if args[:2] == ("env", "create"):
            envs.append(args[3])
        return Done("\n".join(envs))

    monkeypatch.setattr(rally_runner, "RALLY_HOME", tmp_path)
    monkeypatch.setattr(rally_runner, "rally", fake_rally)
    monkeypatch.setattr(rally_runner, "env_name", lambda: "rally-lm-testbed-0123abcd")
    monkeypatch.setattr(rally_runner, "env_spec", lambda: {"openstack": {}})
    monkeypatch.setattr(rally_runner, "_current_env", None)
    return made


def test_the_first_call_creates_the_database_and_the_environment_and_uses_it(calls, tmp_path):
    rally_runner.ensure_env()
    assert [c[:2] for c in calls] == [("db", "create"), ("env", "list"), ("env", "create"),
                                      ("env", "use")]
    assert calls[-1] == ("env", "use", "rally-lm-testbed-0123abcd")
    assert (tmp_path / "rally.conf").read_text() == \
        f"[database]\nconnection = sqlite:///{tmp_path}/rally.sqlite\n"
    assert not list(tmp_path.glob("*.spec.json"))


def test_later_calls_in_the_same_process_run_no_rally_command(calls):
    rally_runner.ensure_env()
    count = len(calls)
    rally_runner.ensure_env()
    assert len(calls) == count


def test_a_database_removed_meanwhile_is_made_again(calls, tmp_path):
    rally_runner.ensure_env()
    (tmp_path / "rally.sqlite").unlink()
    calls.clear()
    rally_runner.ensure_env()
    assert [c[:2] for c in calls] == [("db", "create"), ("env", "list"), ("env", "create"),
                                      ("env", "use")]


def test_other_credentials_get_their_own_environment(calls, monkeypatch):
    rally_runner.ensure_env()
    monkeypatch.setattr(rally_runner, "env_name", lambda: "rally-lm-testbed-ffffffff")
    calls.clear()
    rally_runner.ensure_env()
    assert calls[-1] == ("env", "use", "rally-lm-testbed-ffffffff")
    assert ("env", "list") in [c[:2] for c in calls]
