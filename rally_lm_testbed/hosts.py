"""Testbed hosts (net + mount + UTS namespaces) and the daemons inside them.

A host's mount and UTS namespaces are kept as bind-mounted files, so daemons
can be started and restarted inside them at any time with ``nsenter``.
Daemons run in the foreground under ``setsid``; their PIDs are recorded in
``PID_DIR`` and their output goes to ``LOG_DIR/<name>.log``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from rally_lm_testbed import cgroups, layout, netns
from rally_lm_testbed.layout import Host

# Debian's OpenStack services need Debian's python3, not a pyenv or venv one.
# They write no bytecode into the machine's packages: a file the testbed
# bind-mounts over one of them (ovn.patch_neutron) would otherwise leave its
# compiled form in the machine's own __pycache__.
CLEAN_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "HOME": "/root",
    "PYTHONDONTWRITEBYTECODE": "1",
}


STICKY_DIRS = ("/tmp", "/run/lock")


def nsenter_prefix(host: Host) -> list[str]:
    return ["nsenter", f"--net=/run/netns/{host.netns}", f"--mount={host.mount_ns}",
            f"--uts={host.uts_ns}", "--"]


def host_run(host: Host, argv: Sequence[str], check: bool = True, timeout: float = 300.0,
             env: dict | None = None) -> subprocess.CompletedProcess:
    return netns.run([*nsenter_prefix(host), *argv], check=check, timeout=timeout,
                     env={**CLEAN_ENV, **(env or {})})


def _ensure_ns_dir() -> None:
    """NS_DIR must be a private mount for namespace files to be bind-mounted on it."""
    layout.NS_DIR.mkdir(parents=True, exist_ok=True)
    mounts = Path("/proc/self/mountinfo").read_text()
    if f" {layout.NS_DIR} " not in mounts:
        netns.run(["mount", "--bind", str(layout.NS_DIR), str(layout.NS_DIR)])
        netns.run(["mount", "--make-private", str(layout.NS_DIR)])


def _is_mountpoint(path: Path) -> bool:
    return f" {path} " in Path("/proc/self/mountinfo").read_text()


def create_host(host: Host) -> None:
    """Namespaces, hostname, private directories and /etc/hosts of a host."""
    netns.add_netns(host.netns)
    _ensure_ns_dir()
    if _is_mountpoint(host.mount_ns) and _is_mountpoint(host.uts_ns):
        return
    host.mount_ns.touch()
    host.uts_ns.touch()
    binds = []
    for path in host.private_dirs:
        private = host.state / "root" / path.lstrip("/")
        if path == "/etc/hosts":
            private.parent.mkdir(parents=True, exist_ok=True)
            private.write_text(hosts_file())
        elif not private.exists():
            if Path(path).is_dir() and path.startswith("/etc/"):
                shutil.copytree(path, private, symlinks=True)
            else:
                private.mkdir(parents=True, exist_ok=True)
            if path in STICKY_DIRS:
                os.chmod(private, 0o1777)
        binds.append(f"mount --bind {private} {path}")
    script = "\n".join([
        "set -e",
        # Mounts made here stay here.
        "mount --make-rprivate /",
        "mount -t sysfs sysfs /sys",
        *(f"mkdir -p {p}" for p in host.private_dirs if p != "/etc/hosts"),
        *binds,
        f"hostname {host.name}",
    ])
    netns.run(["nsenter", f"--net=/run/netns/{host.netns}", "unshare",
               f"--mount={host.mount_ns}", f"--uts={host.uts_ns}", "--propagation", "private",
               "sh", "-c", script])


def hosts_file() -> str:
    lines = ["127.0.0.1 localhost"]
    lines += [f"{h.ip} {h.name}" for h in layout.HOSTS]
    lines.append(f"{layout.PROBE_MGMT_IP} probe")
    return "\n".join(lines) + "\n"


def kill_leftovers() -> list[int]:
    """SIGKILL every process still inside a testbed host's namespaces; their PIDs.

    What the daemons we stop spawn on their own - neutron's metadata proxies
    (haproxy, re-parented to init) among them - is not in our PID files, and
    would keep running in namespaces no one can reach any more.
    """
    if not layout.NS_DIR.exists():
        return []
    ours = set()
    for path in layout.NS_DIR.glob("*"):
        if _is_mountpoint(path):
            ours.add(os.stat(path).st_ino)
    killed = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            # Network namespaces are ip netns's: deleting one kills what is inside.
            inodes = {os.stat(proc / "ns" / kind).st_ino for kind in ("mnt", "uts")}
        except OSError:
            continue  # gone meanwhile, or a kernel thread
        if inodes & ours:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)
                killed.append(int(proc.name))
    return killed


def destroy_host_namespaces() -> None:
    """Unmount every namespace file; the namespaces die with their last process."""
    if not layout.NS_DIR.exists():
        return
    for path in sorted(layout.NS_DIR.glob("*")):
        while _is_mountpoint(path):
            netns.run(["umount", "-l", str(path)], check=False)
            if _is_mountpoint(path):
                time.sleep(0.1)
    while _is_mountpoint(layout.NS_DIR):
        netns.run(["umount", "-l", str(layout.NS_DIR)], check=False)


# -- daemons ----------------------------------------------------------------


def pid_file(name: str) -> Path:
    return layout.PID_DIR / f"{name}.pid"


def log_file(name: str) -> Path:
    return layout.LOG_DIR / f"{name}.log"


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def running_pid(name: str) -> int | None:
    """The daemon's PID if it still runs (a recycled PID has another start time)."""
    try:
        pid_text, started = pid_file(name).read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    return pid if _start_time(pid) == started else None


def spawn(host: Host, name: str, argv: Sequence[str], user: str | None = None,
          env: dict | None = None) -> int:
    """Start a foreground daemon inside a host unless it already runs."""
    pid = running_pid(name)
    if pid:
        return pid
    layout.LOG_DIR.mkdir(parents=True, exist_ok=True)
    layout.PID_DIR.mkdir(parents=True, exist_ok=True)
    command = list(argv)
    if user:
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", *command]
    log = open(log_file(name), "ab")  # noqa: SIM115 - handed to the child
    group = cgroups.group_of(name)
    proc = subprocess.Popen(
        [*nsenter_prefix(host), *command],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True, env={**CLEAN_ENV, **(env or {})},
        cwd="/", preexec_fn=lambda: cgroups.join(group),
    )
    log.close()
    pid_file(name).write_text(f"{proc.pid} {_start_time(proc.pid)}")
    return proc.pid


def stop(name: str, timeout: float = 15.0) -> None:
    """Stop a daemon and everything in its session (TERM, then KILL)."""
    pid = running_pid(name)
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    pid_file(name).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    return _start_time(pid) is not None


def wait_for_port(host: Host, port: int, timeout: float, name: str) -> None:
    """Wait until something listens on host.ip:port (checked from inside the host)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc = host_run(host, ["sh", "-c", f"ss -ltnH 'sport = :{port}' | grep -q ."],
                        check=False)
        if proc.returncode == 0:
            return
        if not running_pid(name):
            raise RuntimeError(f"{name} exited during start-up; see {log_file(name)}:\n"
                               + tail(log_file(name)))
        time.sleep(0.5)
    raise TimeoutError(f"{name} did not listen on port {port} within {timeout:.0f}s; "
                       f"see {log_file(name)}:\n" + tail(log_file(name)))


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
