"""Run the real ``rally`` CLI against the testbed, inside its probe namespace."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from rally_lm_testbed import cgroups, layout, testbed

RALLY_HOME = Path(os.environ.get("RALLY_LM_RALLY_HOME", "/var/lib/rally-lm/rally"))


def env_name() -> str:
    """The Rally environment for the testbed's current credentials.

    Rally keeps an environment's credentials; named after their fingerprint, a
    testbed rebuilt with other credentials gets a fresh one instead of a stale one.
    """
    creds = testbed.credentials()
    digest = hashlib.sha256(f"{creds['OS_AUTH_URL']} {creds['OS_PASSWORD']} "
                            f"{layout.RALLY_PROJECT} {layout.RALLY_USER}".encode())
    return f"rally-lm-testbed-{digest.hexdigest()[:8]}"


def env_spec() -> dict:
    """The testbed as an existing cloud: its admin, and the member user tasks run as.

    With ``users`` in the spec, rally-openstack's users context uses them instead
    of creating a project and user per task (and per validation).
    """
    creds = testbed.credentials()

    def user(name: str, project: str) -> dict:
        return {"username": name, "password": creds["OS_PASSWORD"], "project_name": project,
                "user_domain_name": creds["OS_USER_DOMAIN_NAME"],
                "project_domain_name": creds["OS_PROJECT_DOMAIN_NAME"]}

    return {"openstack": {
        "auth_url": creds["OS_AUTH_URL"], "region_name": creds["OS_REGION_NAME"],
        "endpoint_type": creds["OS_INTERFACE"], "https_insecure": False,
        "admin": user(creds["OS_USERNAME"], creds["OS_PROJECT_NAME"]),
        "users": [user(layout.RALLY_USER, layout.RALLY_PROJECT)],
        "api_info": {"keystone": {"version": 3, "service_type": "identityv3"}}}}


@dataclasses.dataclass
class TaskRun:
    uuid: str
    exit_code: int
    html: Path | None
    json: Path | None
    log: Path


def _rally_bin() -> str:
    beside = Path(sys.executable).with_name("rally")
    return str(beside) if beside.exists() else (shutil.which("rally") or "rally")


#: ``ip netns exec`` gives its command a sysfs of the namespace's own, without
#: the host's cgroup mounts: the cpuacct hierarchy is mounted again there (in
#: that command's private mount namespace only, gone when it exits) so that the
#: contention record can read each testbed group's CPU (the control plane's
#: among them). Where that fails, the record simply has no groups.
_CGROUP_VIEW = ("{ mount -t tmpfs -o size=64k,mode=755 rally-lm-cgroup /sys/fs/cgroup "
                "&& mkdir -p /sys/fs/cgroup/cpuacct "
                "&& mount -t cgroup -o cpuacct rally-lm-cpuacct /sys/fs/cgroup/cpuacct; "
                "} 2>/dev/null; exec \"$@\"")


def _rally_argv(*args: str, config: Path | None = None) -> tuple[list[str], dict]:
    """``config``: a further oslo.config file, read after the testbed's (its options win)."""
    conf = RALLY_HOME / "rally.conf"
    env = {**os.environ, "HOME": str(RALLY_HOME), **testbed.credentials()}
    view = ["sh", "-c", _CGROUP_VIEW, "sh"] if cgroups.available() else []
    more = ["--config-file", str(config)] if config else []
    return ["ip", "netns", "exec", layout.PROBE, *view, _rally_bin(), "--config-file",
            str(conf), *more, *args], env


def _in_bench_group() -> None:
    """Rally and its probes run in the testbed's ``bench`` cgroup (see cgroups)."""
    cgroups.join("bench")


def rally(*args: str, check: bool = True, timeout: float = 3600) -> subprocess.CompletedProcess:
    argv, env = _rally_argv(*args)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                          preexec_fn=_in_bench_group)
    if check and proc.returncode != 0:
        raise RuntimeError(f"rally {' '.join(args)} failed ({proc.returncode}):\n"
                           f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc


#: The environment this process has made current (each rally call costs ~3 s of start-up).
_current_env: str | None = None


def ensure_env() -> None:
    """A Rally database and an environment for the testbed's admin credentials."""
    global _current_env
    name = env_name()
    if _current_env == name and (RALLY_HOME / "rally.sqlite").exists():
        return
    RALLY_HOME.mkdir(parents=True, exist_ok=True)
    conf = RALLY_HOME / "rally.conf"
    if not conf.exists():
        conf.write_text(f"[database]\nconnection = sqlite:///{RALLY_HOME}/rally.sqlite\n")
    if not (RALLY_HOME / "rally.sqlite").exists():
        rally("db", "create")
    if name not in rally("env", "list", check=False).stdout:
        spec = RALLY_HOME / f"{name}.spec.json"  # Rally stores it; the file is not kept
        spec.write_text(json.dumps(env_spec(), indent=2))
        try:
            rally("env", "create", "--name", name, "--spec", str(spec))
        finally:
            spec.unlink()
    rally("env", "use", name)
    _current_env = name


def _task_start_argv(template: Path, args_file: Path, extra_args: str | None) -> list[str]:
    argv = ["task", "start", str(template), "--task-args-file", str(args_file)]
    return argv + ["--task-args", extra_args] if extra_args else argv


def run_task(template: Path, args_file: Path, out_dir: Path,
             extra_args: str | None = None) -> TaskRun:
    """``rally task start``; then the static HTML and JSON reports of that task."""
    ensure_env()
    proc = rally(*_task_start_argv(template, args_file, extra_args), check=False)
    return collect(proc.stdout + proc.stderr, proc.returncode, args_file, out_dir)


def start_task(template: Path, args_file: Path, extra_args: str | None = None,
               config: Path | None = None) -> subprocess.Popen:
    """``rally task start`` in the background (to abort or interrupt it); ``config``
    as in ``_rally_argv``."""
    ensure_env()
    argv, env = _rally_argv(*_task_start_argv(template, args_file, extra_args), config=config)
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, start_new_session=True, preexec_fn=_in_bench_group)


def collect(output: str, returncode: int, args_file: Path, out_dir: Path) -> TaskRun:
    """Keep a finished ``rally task start``'s output and export its reports."""
    out_dir.mkdir(parents=True, exist_ok=True)
    log = out_dir / f"{args_file.stem}.log"
    log.write_text(output)
    match = re.search(r"Task ([0-9a-f-]{36})", output)
    if not match or returncode not in (0, 1, 2):
        # Rejected before a run (bad input, unreachable cloud): nothing to report.
        return TaskRun(uuid=match.group(1) if match else "", exit_code=returncode or 1,
                       html=None, json=None, log=log)
    uuid = match.group(1)
    html = out_dir / f"{args_file.stem}-{uuid[:8]}.html"
    data = out_dir / f"{args_file.stem}-{uuid[:8]}.json"
    # Reports from the task UUID: reports built from JSON files break on hooks.
    written = export_reports(uuid, {"html-static": html, "json": data})
    return TaskRun(uuid=uuid, exit_code=returncode,
                   html=html if written.get("html-static") else None,
                   json=data if written.get("json") else None, log=log)


def export_reports(uuid: str, outputs: dict[str, Path]) -> dict[str, bool]:
    """Rally's reports of a task (exporter type -> path), in one process; which were written."""
    _argv, env = _rally_argv()
    proc = subprocess.run(
        ["ip", "netns", "exec", layout.PROBE, sys.executable, "-m", "rally_lm_testbed.rally_report",
         str(RALLY_HOME / "rally.conf"), uuid,
         *(part for kind, path in outputs.items() for part in (kind, str(path)))],
        capture_output=True, text=True, timeout=600, env=env)
    answers = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    for failed in (a for a in answers if a["error"]):
        print(f"rally task report {uuid} ({failed['type']}): {failed['error']}", file=sys.stderr)
    if proc.returncode != 0:
        print(f"rally task report {uuid}: exit {proc.returncode}: {proc.stderr.strip()[-2000:]}",
              file=sys.stderr)
    return {a["type"]: not a["error"] and Path(a["path"]).exists() for a in answers}


def running_tasks() -> list[str]:
    proc = rally("task", "list", "--status", "running", "--uuids-only", check=False)
    return [line.strip() for line in proc.stdout.splitlines() if line.strip()]


def sla_check(uuid: str) -> subprocess.CompletedProcess:
    return rally("task", "sla-check", "--uuid", uuid, check=False)


def validate_many(template: Path, args_file: Path, variants: list[tuple[str, dict]],
                  workers: int = 3) -> dict[str, str]:
    """Rally's validation of each variant (name -> error, "" when valid), in ``workers`` processes.

    A variant that passes the schema costs Rally's semantic validation: an
    environment health check and the plugins' validators, ~10 s of API calls
    each here, mostly waiting on the services; side by side they overlap.
    """
    import tempfile

    ensure_env()
    env = {**os.environ, "HOME": str(RALLY_HOME), **testbed.credentials()}
    shares = [variants[i::workers] for i in range(min(workers, len(variants)))]
    running = []
    for share in shares:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
            json.dump(share, handle)
        running.append((handle.name, subprocess.Popen(
            ["ip", "netns", "exec", layout.PROBE, sys.executable, "-m",
             "rally_lm_testbed.rally_validate", str(RALLY_HOME / "rally.conf"), env_name(),
             str(template), str(args_file), handle.name],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)))
    answers, failures = [], []
    for variants_file, proc in running:
        try:
            out, err = proc.communicate(timeout=1800)
        finally:
            if proc.poll() is None:
                proc.kill()
            Path(variants_file).unlink()
        if proc.returncode != 0:
            failures.append(err[-3000:])
        answers += [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    if failures:
        raise RuntimeError(f"validation run failed: {failures[0]}")
    return {a["name"]: a["error"] for a in answers}
