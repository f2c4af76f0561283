"""The workload agent's own account of itself, read back from a guest's console log.

Both agents print ``rally-lm-agent: status {json}`` lines to the console
(docs/agent.md); Nova's console log API returns them on any cloud. This is
how a run proves, from inside the guest, that the disk was filled and the
memory dirtied as asked.
"""

from __future__ import annotations

import json
from typing import Any

PREFIX = "rally-lm-agent: status "
#: Printed once every service of the agent listens (both agents, docs/agent.md).
READY = "rally-lm-agent: ready "


def statuses(console: str) -> list[dict[str, Any]]:
    """Every status line of a console log, oldest first (garbled lines skipped)."""
    found = []
    for line in console.splitlines():
        _before, sep, payload = line.partition(PREFIX)
        if not sep:
            continue
        try:
            found.append(json.loads(payload.strip()))
        except ValueError:
            continue  # a line cut by the console's ring buffer or interleaved output
    return found


def latest(console: str) -> dict[str, Any] | None:
    found = statuses(console)
    return found[-1] if found else None


def ready(console: str) -> bool:
    """Whether the agent said, in this console log, that its services listen."""
    return READY in console


def refused(console: str) -> str | None:
    """The agent's reason for refusing to write a disk, if it printed one."""
    for line in console.splitlines():
        if "rally-lm-agent: refusing to write" in line or "rally-lm-agent: cannot fill" in line:
            return line.split("rally-lm-agent: ", 1)[1].strip()
    return None
