"""A study's progress: one line per migration, and when the whole study should end.

The scenario logs one line per migration through Rally's log ("rally_lm: vm
direction source -> target: outcome in 7.4s ..."); the study reads them from
``rally task start``'s output as they come and estimates the time left from
the seconds per migration so far (the cell's own once it has some, else the
study's) plus each remaining cell's set-up time as measured.
"""

from __future__ import annotations

import re
import time

PROGRESS = re.compile(r"rally_lm: (?P<vm>\S+) (?P<direction>out|back) (?P<source>\S+) -> "
                      r"(?P<target>\S+): (?P<outcome>\w+)(?: in (?P<seconds>[0-9.]+)s)?"
                      r"(?P<rest>.*)$")


def parse(line: str) -> dict | None:
    match = PROGRESS.search(line)
    return match.groupdict() if match else None


class Progress:
    """Counts migrations across the study and estimates the end."""

    def __init__(self, planned: int, clock=time.monotonic) -> None:
        self.planned = planned
        self.done = 0
        self.clock = clock
        self.started = clock()

    def seen(self, count: int = 1) -> None:
        self.done += count

    def eta_seconds(self) -> float | None:
        if not self.done:
            return None
        per_migration = (self.clock() - self.started) / self.done
        return per_migration * max(self.planned - self.done, 0)

    def line(self, cell: str, index: int, cells: int, event: dict) -> str:
        eta = self.eta_seconds()
        when = "ETA unknown" if eta is None else \
            f"ETA {time.strftime('%H:%M', time.localtime(time.time() + eta))} " \
            f"({eta / 60:.0f} min left)"
        took = f" in {event['seconds']}s" if event.get("seconds") else ""
        return (f"[{index}/{cells} {cell}] {self.done}/{self.planned} {event['vm']} "
                f"{event['direction']}: {event['outcome']}{took}{event['rest']} - {when}")
