"""One migration on one clock: what Nova, libvirt and the probes saw, in order.

Every event is placed in seconds since the live-migration API call, on the
benchmark host's monotonic clock (the probes' clock; wall times are mapped
onto it once, with the probe's clock reading). How precisely each source
knows its times:

=========  ==========================================  ======================
source     events                                      known to
=========  ==========================================  ======================
tool       ``api_call``, ``nova_done`` (the first      the span since the
           look that found Nova's migration record      look before it
           final)                                       (``end_resolution``)
nova       each instance-action event's ``.start`` /    1 s: Nova stores whole
           ``.finish`` (``conductor_live_migrate_      seconds
           instance``, ``compute_pre_live_migration``,
           ``compute_live_migration``,
           ``compute_post_live_migration_at_
           destination``); the migration record's
           ``created`` / ``updated``
libvirt    ``incoming started`` (destination),         a few ms: virsh's
           ``iteration N`` and ``paused`` (source),     receipt of libvirt's
           ``resumed`` (destination), block copies,     event
           ``job completed``
probe      ``silence began``, ``first lost``,           one probe interval
           ``first through``, ``path back``,
           ``first reply``, ``recovered``
=========  ==========================================  ======================

Nova's port binding activation is not exposed by its API (no instance-action
event marks it); ``compute_post_live_migration_at_destination`` brackets it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from rally_lm.clients.nova import nova_time
from rally_lm.migration.hypervisor import DomainEvent
from rally_lm.probes.records import ProbeClock

#: libvirt lifecycle events that bound the guest's pause ("Suspended Paused":
#: Nova paused it to force the migration to complete).
PAUSED_DETAILS = ("Suspended Migrated", "Suspended Post-copy", "Suspended Paused")
RESUMED_DETAILS = ("Resumed Migrated", "Resumed Post-copy")


@dataclasses.dataclass
class PhaseEvent:
    """One point on a migration's timeline."""

    t: float
    source: str
    name: str
    host: str | None = None
    resolution_ms: float = 0.0
    detail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["t"] = round(self.t, 4)
        return data


def domain_events(events: Iterable[DomainEvent], domain: str, start_wall: float,
                  end_wall: float) -> list[DomainEvent]:
    """This domain's events between two wall times, in order."""
    return sorted((e for e in events if e.domain == domain and start_wall <= e.wall <= end_wall),
                  key=lambda e: e.wall)


def copy_over_at(events: Iterable[DomainEvent], domain: str, source: str,
                 since_wall: float) -> float | None:
    """Wall time libvirt's source said the domain's migration job was over (its
    job-completed event, or the domain stopped as migrated), if it did since then."""
    return min((e.wall for e in events if e.domain == domain and e.host == source
                and e.wall >= since_wall and (e.kind == "job-completed" or (
                    e.kind == "lifecycle" and e.detail == "Stopped Migrated"))), default=None)


def whereabouts(events: list[DomainEvent], source: str, target: str) -> dict[str, str] | None:
    """Where the guest runs after a migration, if libvirt's own events tell it all.

    They do when the source stopped the domain as migrated and the target
    resumed it, with nothing after (no crash, no stop) on the target. Else
    None: ask libvirt itself (``virsh domstate``).
    """
    stopped = [e for e in events if e.host == source and e.kind == "lifecycle"
               and e.detail == "Stopped Migrated"]
    on_target = [e for e in events if e.host == target and e.kind == "lifecycle"]
    if not stopped or not on_target or on_target[-1].detail not in RESUMED_DETAILS:
        return None
    return {source: "absent (stopped, migrated: libvirt's event)",
            target: "running (resumed, migrated: libvirt's event)"}


def hypervisor_pause(events: list[DomainEvent], source: str,
                     target: str) -> tuple[float | None, float | None]:
    """(wall time the source paused the guest, wall time the target resumed it)."""
    paused = next((e.wall for e in events if e.host == source and e.kind == "lifecycle"
                   and e.detail in PAUSED_DETAILS), None)
    resumed = next((e.wall for e in events if e.host == target and e.kind == "lifecycle"
                    and e.detail in RESUMED_DETAILS and (paused is None or e.wall >= paused)),
                   None)
    return paused, resumed


def _libvirt_name(event: DomainEvent) -> str:
    if event.kind == "lifecycle":
        if event.detail in PAUSED_DETAILS:
            return "paused"
        if event.detail in RESUMED_DETAILS:
            return "resumed"
        if event.detail == "Started Migrated":
            return "incoming started"
        return event.detail.lower()
    if event.kind == "migration-iteration":
        return f"iteration {event.detail.split(':')[-1].strip(' ' + chr(39))}"
    if event.kind == "job-completed":
        return "job completed"
    return f"{event.kind}: {event.detail}"


def build(record: Any, clock: ProbeClock, libvirt: list[DomainEvent],
          anatomy: dict[str, Any] | None, poll_interval: float = 0.25) -> list[PhaseEvent]:
    """The migration's events from every source, sorted by time since the API call."""
    origin = record.window[0]

    def since_call(wall: float) -> float:
        return clock.to_monotonic(wall) - origin

    resolution = record.end_resolution if getattr(record, "end_resolution", None) \
        is not None else poll_interval
    events = [PhaseEvent(0.0, "tool", "api_call"),
              PhaseEvent(record.window[1] - origin, "tool", "nova_done",
                         resolution_ms=resolution * 1000.0)]
    for action in record.events:
        for edge in ("start", "finish"):
            wall = nova_time(action.get(f"{edge}_time"))
            if wall is not None:
                events.append(PhaseEvent(since_call(wall), "nova",
                                         f"{action['event']}.{edge}", action.get("host"),
                                         resolution_ms=1000.0, detail=action.get("result")))
    for edge, stamp in (("created", record.nova_created_at), ("updated", record.nova_updated_at)):
        wall = nova_time(stamp)
        if wall is not None:
            events.append(PhaseEvent(since_call(wall), "nova", f"migration record {edge}",
                                     resolution_ms=1000.0))
    for event in libvirt:
        if event.kind == "job-completed" and event.host != record.source:
            continue  # both ends report it; the source's is the migration's
        events.append(PhaseEvent(since_call(event.wall), "libvirt", _libvirt_name(event),
                                 event.host, resolution_ms=1.0))
    if anatomy and not anatomy.get("ongoing"):
        resolution = anatomy.get("resolution_ms", 0.0)
        for key, name in (("silence_start", "silence began"), ("first_lost", "first lost"),
                          ("first_through", "first through"), ("path_back", "path back"),
                          ("first_reply", "first reply"), ("recovered", "recovered")):
            if anatomy.get(key) is not None:
                events.append(PhaseEvent(anatomy[key] - origin, "probe", name,
                                         resolution_ms=resolution))
    return sorted(events, key=lambda e: e.t)


#: How a migration's copy reached its end (``copy_outcome()["mode"]``).
COPY_MODES = ("pre-copy", "post-copy", "paused")


def _forcing(libvirt: list[DomainEvent],
             source: str) -> tuple[DomainEvent | None, DomainEvent | None]:
    """The source's switch to post-copy and its forced pause, where libvirt reported them."""
    def first(detail: str) -> DomainEvent | None:
        return next((e for e in libvirt if e.host == source and e.kind == "lifecycle"
                     and e.detail == detail), None)
    return first("Suspended Post-copy"), first("Suspended Paused")


def copy_mode(libvirt: list[DomainEvent], source: str) -> str:
    """``post-copy``, ``paused`` (forced without post-copy) or ``pre-copy``: see copy_outcome."""
    return _mode(*_forcing(libvirt, source))


def _mode(switch: DomainEvent | None, forced_pause: DomainEvent | None) -> str:
    return "post-copy" if switch else "paused" if forced_pause else "pre-copy"


def copy_outcome(libvirt: list[DomainEvent], source: str, target: str,
                job: dict[str, Any] | None, hyper: dict[str, Any] | None,
                to_call: Any) -> dict[str, Any]:
    """How the migration's copy ended, from the hypervisor's own account.

    ``mode`` is ``post-copy`` when the source switched to post-copy (libvirt's
    "Suspended Post-copy"), ``paused`` when the guest was paused before the
    copy finished (Nova's force-complete without post-copy: "Suspended
    Paused"), else ``pre-copy``. ``postcopy_ms`` runs from the switch to the
    source's job completion (or its "Stopped Migrated"): the time the guest
    ran on the destination while pages were still fetched from the source.
    ``max_throttle_percent`` is auto-converge's peak CPU throttle seen while
    sampling the running job or in the completed job's statistics (None when
    neither was read).
    ``to_call`` maps a wall time to seconds since the API call.
    """
    on_source = [e for e in libvirt if e.host == source]
    switch, forced_pause = _forcing(libvirt, source)
    result: dict[str, Any] = {
        "mode": _mode(switch, forced_pause),
        "events_seen": bool(libvirt),
        "max_throttle_percent": _peak_throttle(job, hyper),
        "postcopy_requests": (hyper or {}).get("postcopy_requests"),
    }
    if switch is not None:
        ended = next((e for e in on_source if e.wall >= switch.wall and (
            e.kind == "job-completed" or (e.kind == "lifecycle"
                                           and e.detail == "Stopped Migrated"))), None)
        result["postcopy_started_s"] = round(to_call(switch.wall), 4)
        result["postcopy_ms"] = round((ended.wall - switch.wall) * 1000.0, 3) \
            if ended is not None else None
    if forced_pause is not None:
        result["forced_pause_started_s"] = round(to_call(forced_pause.wall), 4)
    return result


def _peak_throttle(job: dict[str, Any] | None, hyper: dict[str, Any] | None) -> int | None:
    readings = [value for value in ((job or {}).get("max_throttle_percent"),
                                    (hyper or {}).get("auto_converge_throttle_percent"))
                if value is not None]
    return max(readings) if readings else None
