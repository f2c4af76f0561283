"""Is a guest's workload agent answering yet? One UDP echo probe, briefly."""

from __future__ import annotations

import time

from rally_lm.probes.downtime import DowntimeProbe


def answering(targets: list[str], udp_port: int, listen_for: float = 1.0) -> set[str]:
    """The targets whose UDP echo answered within ``listen_for`` seconds."""
    probe = DowntimeProbe(list(targets), interval=0.2, protocol="udp", udp_port=udp_port,
                          reply_timeout=0.5)
    probe.start()
    time.sleep(listen_for)
    return {timeline.target for timeline in probe.stop() if timeline.replies}


def wait_until_answering(targets: list[str], udp_port: int, timeout: float) -> list[str]:
    """Probe until every target has answered once; those that never did (empty: all did)."""
    deadline = time.monotonic() + timeout
    waiting = list(targets)
    while waiting:
        answered = answering(waiting, udp_port)
        waiting = [t for t in waiting if t not in answered]
        if waiting and time.monotonic() > deadline:
            break
    return waiting
