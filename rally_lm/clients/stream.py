"""A long-running command's output, line by line, as it comes.

The listeners that follow a migration from outside (libvirt's events through
``virsh event``, OVN's southbound database through ``ovsdb-client monitor``)
run a command for the whole round trip and read what it prints in a thread.
What they share: the command's life (started, stopped with TERM then KILL)
and telling a command that died on its own - its events are missing from
then on - from one that was stopped.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Callable

#: Seconds a command holding its stdin gets to end by itself once that closes.
STDIN_GRACE_S = 3.0


class LineStream:
    """``argv``'s stdout, each line handed to ``on_line(line, wall)`` as it arrives."""

    def __init__(self, argv: list[str], name: str, on_line: Callable[[str, float], None],
                 env: dict[str, str] | None = None, hold_stdin: bool = False) -> None:
        self.argv = argv
        self.name = name
        self.on_line = on_line
        self.env = env
        # A command run over ssh outlives a killed ssh client until it next
        # writes; one that waits for its stdin to close (see sdn.HELD) does not.
        self.hold_stdin = hold_stdin
        self.proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> LineStream:
        self.proc = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env,
            stdin=subprocess.PIPE if self.hold_stdin else None)
        self._thread = threading.Thread(target=self._read, name=self.name, daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.on_line(line, time.time())

    def stop(self) -> str | None:
        """Stop the command; what it said on stderr if it had exited on its own, else None."""
        if self.proc is None:
            return None
        exited_early = self.proc.poll() is not None
        if self.proc.stdin is not None:
            # EOF first: over ssh it reaches the remote command, which then ends
            # itself (and ssh with it); a terminated ssh client may not pass it on.
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=STDIN_GRACE_S)
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self._thread is not None:
            self._thread.join(timeout=5)
        err = self.proc.stderr.read() if self.proc.stderr else ""
        return (err.strip()[-300:] or "no reason given") if exited_early else None
