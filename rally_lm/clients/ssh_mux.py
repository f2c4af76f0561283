"""One ssh connection per compute host for all of a run's virsh calls.

Each ``virsh -c qemu+ssh://...`` call opens its own ssh session: a key
exchange and a login per call, 0.3 s on an idle host and over a second on
a loaded one, five or six times per migration. OpenSSH's connection sharing
(ControlMaster) makes every call after the first reuse one session. libvirt
runs whatever its URI's ``command`` parameter names instead of ``ssh``, so a
URI without one is pointed at a small wrapper that adds the sharing options
to the user's own ssh (their ``~/.ssh/config``, keys and known hosts still
apply; options given on the command line only add to them). The wrapper and
its sockets live in a private directory removed, masters closed, at exit.
A process killed outright cannot do that; its directory names its pid, and
the next run removes directories whose process is gone (their masters have
exited on their own, ``PERSIST_SECONDS`` after their last use).

``RALLY_LM_SSH_MULTIPLEX=0`` turns this off; a URI that names its own
``command`` is used as given.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
import threading
import urllib.parse

#: Seconds an idle shared connection outlives its last use.
PERSIST_SECONDS = 60
#: The private directories' prefix; the owner's pid follows it.
PREFIX = "rally-lm-ssh-"

_lock = threading.Lock()
_directory: str | None = None


def _wrapper() -> str:
    """The wrapper script's path, created on first use."""
    global _directory
    with _lock:
        if _directory is None:
            sweep_orphans()
            _directory = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-")
            script = os.path.join(_directory, "ssh")
            with open(script, "w") as out:
                out.write("#!/bin/sh\n"
                          f"exec ssh -o ControlMaster=auto -o ControlPath={_directory}/%C "
                          f"-o ControlPersist={PERSIST_SECONDS} \"$@\"\n")
            os.chmod(script, 0o700)
            atexit.register(close_all)
        return os.path.join(_directory, "ssh")


def sweep_orphans(parent: str | None = None) -> list[str]:
    """Remove wrapper directories of ours whose process no longer exists; their paths."""
    parent = parent or tempfile.gettempdir()
    removed = []
    for name in os.listdir(parent):
        pid_text = name[len(PREFIX):].split("-", 1)[0] if name.startswith(PREFIX) else ""
        path = os.path.join(parent, name)
        if not pid_text.isdigit() or os.stat(path).st_uid != os.getuid():
            continue  # not ours, or from a version that did not name its pid
        if not os.path.exists(f"/proc/{pid_text}"):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def close_all() -> None:
    """Close every shared connection and remove the wrapper's directory."""
    global _directory
    with _lock:
        directory, _directory = _directory, None
    if directory is None:
        return
    for name in os.listdir(directory):
        if name != "ssh":
            # The master needs a destination argument, not a real one.
            subprocess.run(["ssh", "-o", f"ControlPath={os.path.join(directory, name)}",
                            "-O", "exit", "rally-lm-mux"], capture_output=True, timeout=10,
                           check=False)
    shutil.rmtree(directory, ignore_errors=True)


def shared(uri: str) -> str:
    """The URI virsh should use: ``uri`` with the sharing wrapper where it applies."""
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme != "qemu+ssh" or os.environ.get("RALLY_LM_SSH_MULTIPLEX") == "0":
        return uri
    params = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    if any(key == "command" for key, _ in params):
        return uri
    query = urllib.parse.urlencode([*params, ("command", _wrapper())], safe="/")
    return urllib.parse.urlunsplit(parts._replace(query=query))
