"""Drive one live migration through Nova and classify how it ended.

How a migration is followed (the observer). The benchmark shares the
control plane it measures, so it asks Nova as little as the figures need:

* Nova's own migration record, ``GET /os-migrations?instance_uuid=`` (Nova's
  database only), says where the migration is; while it runs, a sparse look
  reads ``GET /servers/{id}/migrations/{id}`` instead (the same status, with
  Nova's progress fields). The server resource is read once, after the
  record is final: each read of it makes nova-api ask Neutron for the
  server's ports and security groups.
* Looks are sparse (``watch_interval``) while nothing can end soon and dense
  (``poll_interval``) where the end is near: the caller's ``end_hint`` says
  when the copy is over (libvirt's events, or the probe seeing the guest
  answer again after its switchover), asked once Nova's record says the job
  runs and taken only if later than the last look that found it not running.
  After the first migration, the dense looks start as long after the hint as
  the shortest hint-to-end span seen so far, less a margin, with a look at
  least every two seconds until then. Without a hint source every look of a
  running migration is dense. The first look waits half a second for Nova's
  conductor to record the migration.
* Nova's phases come from the migration's instance action, read once after
  it ended by the call's request id.
* ``duration`` runs from the API call to the first look that found Nova's
  record final; ``end_resolution`` is the span since the look before it (what
  the duration is known to). ``api_requests`` counts what this migration
  cost Nova, by route.

It never raises for a migration that went wrong - it records the outcome
and a failure class:

=================  ==========================================================
``completed``      Nova's record is ``completed``, the server is ACTIVE on the
                   target
``refused``        the API said no, or a pre-check failed before any data
                   moved (e.g. tunnelled + block migration)
``error``          the migration failed, the server is still on its source
``timeout_aborted``  the timeout hit and the migration was aborted: ours
                   (``migration_timeout``, ``on_timeout: abort``) or Nova's
                   (``live_migration_completion_timeout``, action ``abort``);
                   ``timeout_by`` says whose. Nova records its own abort as
                   ``cancelled`` - or as ``failed`` when the job has ended
                   before its monitor's next look; a ``failed`` job that ran
                   past Nova's deadline (``nova_completion_timeout``) while
                   nobody called the abort API is this class too
``timeout_forced``   the timeout hit and the migration was forced to complete
                   (ours: ``on_timeout: force_complete``; Nova's: action
                   ``force_complete``, seen by libvirt as a switch to
                   post-copy or a paused guest)
``stale_status``   Nova's record and the server's host/status still disagree
                   after the grace period (the seed saw this), or libvirt runs
                   the guest on another host than the one Nova names
``lost``           the server is gone or in ERROR
``skipped``        never attempted: before its turn the server was not ACTIVE
                   on the host it should leave (the reason says where it was)
``unknown``        Nova's API kept failing after the migration, so how it
                   ended could not be learnt (not a migration failure)
``tool_error``     rally_lm itself failed while driving this migration (not a
                   migration failure; the reason is the exception)
=================  ==========================================================

Only ``completed`` and ``timeout_forced`` count as success; every other
class counts against the success rate, whose denominator is every planned
migration.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import time
from collections.abc import Callable
from typing import Any

from rally_lm.clients.nova import (
    FINAL_MIGRATION_STATUSES,
    NovaAdapter,
    NovaError,
    nova_time,
)
from rally_lm.migration import hypervisor

MAX_REQUESTS_PER_SECOND = 5
#: How often a refused abort or force-complete is asked again.
ACTION_RETRY_SECONDS = 2.0
#: Nova's conductor records a migration within a fraction of a second of the
#: call (0.35 s on the testbed, under load): the first look waits this long,
#: since a look before the record exists only costs a request.
FIRST_LOOK_SECONDS = 0.5
#: Until then, looked for densely this long.
FIND_WINDOW_SECONDS = 2.0
#: Dense looks start this much before the shortest hint-to-end span seen so far.
LAG_MARGIN_SECONDS = 0.5
#: Between the hint and the dense looks, a look at least this often: the most a
#: shorter span than any before (by more than the margin) can cost the
#: duration's precision, which end_resolution then says.
HINTED_WATCH_SECONDS = 2.0
OUTCOMES = ("completed", "refused", "error", "timeout_aborted", "timeout_forced",
            "stale_status", "lost", "skipped", "unknown", "tool_error")
SUCCEEDED = ("completed", "timeout_forced")
#: Outcomes that say nothing about the cloud's migrations, only about our view.
NOT_MIGRATION_FAILURES = ("unknown", "tool_error")
#: Outcomes whose guest never left its host's hands: no downtime to speak of.
NEVER_STARTED = ("refused", "skipped")
ON_TIMEOUT = ("abort", "force_complete", "wait")
#: Statuses of a live migration Nova has not finished with.
_RUNNING = ("running", "post-migrating")


@dataclasses.dataclass(frozen=True)
class MigrationPolicy:
    block_migration: str | bool = "auto"
    timeout: float = 600.0
    on_timeout: str = "abort"
    #: Seconds between looks where the end is near: what the duration is known to.
    poll_interval: float = 0.25
    #: Seconds between looks elsewhere (Nova's progress fields change every 5 s).
    watch_interval: float = 3.0
    status_grace: float = 60.0
    #: With ``on_timeout: wait``, abort after this many timeouts after all.
    wait_limit: float = 10.0
    #: The cloud's ``[libvirt] live_migration_completion_timeout``, seconds per
    #: GiB (Nova's default 800; 0: the cloud has none). Only read to name who
    #: ended a migration Nova calls ``failed``.
    nova_completion_timeout: float = 800.0

    def __post_init__(self) -> None:
        if self.on_timeout not in ON_TIMEOUT:
            raise ValueError(f"on_timeout must be one of {', '.join(ON_TIMEOUT)}")
        if self.nova_completion_timeout < 0:
            raise ValueError("nova_completion_timeout must be >= 0 (0: none)")
        if self.timeout <= 0 or self.poll_interval <= 0 or self.status_grace < 0:
            raise ValueError("timeout and poll_interval must be positive, status_grace >= 0")
        if self.watch_interval < self.poll_interval:
            raise ValueError("watch_interval must be at least poll_interval")
        if 1.0 / self.poll_interval > MAX_REQUESTS_PER_SECOND + 1e-9:
            raise ValueError(f"poll_interval {self.poll_interval}s exceeds "
                             f"{MAX_REQUESTS_PER_SECOND} requests/s")


@dataclasses.dataclass
class MigrationRecord:
    """Everything known about one migration; plain data, JSON-ready."""

    server_id: str
    vm: str
    direction: str
    source: str
    target: str
    started_at: float = 0.0
    finished_at: float = 0.0
    duration: float = 0.0
    #: Seconds between the last look that found the migration in progress and
    #: the one that found it final: what ``duration`` is known to.
    end_resolution: float | None = None
    nova_completed_after: float | None = None
    outcome: str = ""
    error: str | None = None
    migration_id: int | None = None
    migration_uuid: str | None = None
    #: The live-migrate call's request id: its instance action's key.
    request_id: str | None = None
    nova_status: str | None = None
    nova_created_at: str | None = None
    nova_updated_at: str | None = None
    final_host: str | None = None
    final_status: str | None = None
    block_migration: str | bool = "auto"
    #: Where libvirt runs the guest after the migration (with hypervisor URIs).
    running_on: str | None = None
    libvirt_states: dict[str, str] = dataclasses.field(default_factory=dict)
    timed_out: bool = False
    timeout_action: str | None = None
    #: Whose timeout ended it: "tool" (migration_timeout) or "nova"
    #: (live_migration_completion_timeout); None when no timeout acted.
    timeout_by: str | None = None
    action_attempts: int = 0
    action_accepted_after: float | None = None
    #: Every look at Nova's record: {"t", "status"}, with Nova's progress
    #: fields (``*_bytes``) where the look read them.
    progress: list[dict] = dataclasses.field(default_factory=list)
    #: Seconds after the call of the last look that found Nova's job not yet
    #: running (0: the call itself): the job started after it.
    not_running_at: float = 0.0
    #: Seconds after the call at which the caller's end hint first said the
    #: copy was over (None: no hint).
    end_hinted_at: float | None = None
    events: list[dict] = dataclasses.field(default_factory=list)
    #: HTTP requests this migration sent Nova, by route (``GET /os-migrations``).
    api_requests: dict[str, int] = dataclasses.field(default_factory=dict)
    #: Monotonic window (for the probes), not serialized as wall time.
    window: tuple[float, float] = (0.0, 0.0)
    measurements: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return self.outcome in SUCCEEDED

    @property
    def touched_guest(self) -> bool:
        """Whether the migration reached the hypervisor (its downtime counts)."""
        return self.outcome not in NEVER_STARTED

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MigrationRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        record = cls(**{k: v for k, v in data.items() if k in known})
        record.window = tuple(record.window)
        return record


class MigrationFinished:
    """Ready condition: the server left the ``migrating`` task state (or vanished)."""

    def __init__(self, adapter: NovaAdapter, server_id: str) -> None:
        self.adapter = adapter
        self.server_id = server_id
        self.last: dict | None = None
        self.api_errors = 0

    def __call__(self) -> bool:
        try:
            self.last = self.adapter.server(self.server_id)
        except NovaError:
            # A flapping API is not the migration's end: keep polling.
            self.api_errors += 1
            return False
        if self.last is None or self.last["status"] == "ERROR":
            return True
        return self.last["task_state"] is None

    def __str__(self) -> str:
        return f"live migration of server {self.server_id} finished"


#: What a look returns when Nova's API failed: nothing learnt, keep looking.
_UNREAD = object()


@dataclasses.dataclass
class _Following:
    """The state of one migration being followed (see MigrationDriver._follow)."""

    start: float
    known: set[int]
    migration: dict | None = None
    #: When the last successful look was made (monotonic).
    looked_at: float | None = None
    #: The last look's API error, if it failed.
    api_error: NovaError | None = None
    hinted_at: float | None = None
    last_progress: float = float("-inf")
    #: Nova's progress fields as last read: what "moved" is judged against.
    last_bytes: dict | None = None
    #: With the records before the call unknown (that read failed): the earliest
    #: wall time a record of this migration can have been created at.
    created_after: float | None = None


class MigrationDriver:
    """Run single live migrations with a policy; see the module docstring."""

    def __init__(
        self,
        adapter: NovaAdapter,
        policy: MigrationPolicy,
        timer: Callable[[str], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        hint_lags: list[float] | None = None,
    ) -> None:
        self.adapter = adapter
        self.policy = policy
        self.timer = timer or (lambda _name: contextlib.nullcontext())
        self.clock = clock
        self.sleep = sleep
        #: Per server, the migration records seen so far (a new one is ours).
        self._known: dict[str, set[int]] = {}
        #: Seconds from the end hint to the end seen, per migration so far (the
        #: caller may pass a list it keeps across drivers: a task's round trips).
        self.hint_lags: list[float] = hint_lags if hint_lags is not None else []

    def migrate(self, server_id: str, vm: str, source: str, target: str, direction: str,
                end_hint: Callable[[], float | None] | None = None) -> MigrationRecord:
        """Migrate one server and follow it to its end.

        ``end_hint`` (optional) returns when the copy was over, on this
        driver's clock, once something outside Nova has seen it (None before).
        """
        record = MigrationRecord(server_id=server_id, vm=vm, direction=direction,
                                 source=source, target=target,
                                 block_migration=self.policy.block_migration)
        asked = collections.Counter(self.adapter.requests)
        try:
            known = self._known_records(server_id)
            start = self.clock()
            record.started_at = time.time()
            try:
                with self.timer("nova.live_migrate"):
                    record.request_id = self.adapter.live_migrate(
                        server_id, target, self.policy.block_migration)
            except NovaError as exc:
                end = self.clock()
                record.window = (start, end)
                record.finished_at = record.started_at + (end - start)
                record.outcome, record.error = "refused", str(exc)
                return record
            # Nova stamps whole seconds: a record made after the call is stamped
            # no earlier than the second before it.
            following = _Following(start=start, known=known or set(),
                                   created_after=None if known is not None
                                   else record.started_at - 2.0)
            with self.timer("nova.wait_for_live_migration"):
                self._follow(record, server_id, following, end_hint)
            if known is not None and record.migration_id is not None:
                known.add(record.migration_id)
            end = following.looked_at or self.clock()
            record.window = (start, end)
            record.duration = end - start
            record.finished_at = record.started_at + record.duration
            with self.timer("nova.settle_live_migration"):
                self._settle(record, following)
            return record
        finally:
            record.api_requests = dict(collections.Counter(self.adapter.requests) - asked)

    def _known_records(self, server_id: str) -> set[int] | None:
        """The server's migration records before this migration (read once per server);
        None if Nova could not say."""
        known = self._known.get(server_id)
        if known is None:
            try:
                known = self._known[server_id] = {m["id"] for m in
                                                  self.adapter.migrations(server_id)}
            except NovaError:
                return None
        return known

    # -- following the migration ---------------------------------------------------

    def _follow(self, record: MigrationRecord, server_id: str, following: _Following,
                end_hint: Callable[[], float | None] | None) -> None:
        """Look at Nova's record until it is final; never longer than one timeout after acting.

        The timeout action is retried until Nova accepts it: Nova refuses to
        force or abort a migration that is still ``preparing``. A forced
        migration may copy for long after that, so the wait goes on while
        Nova's record moves; but Nova can also leave a migration in progress
        for good (a destination compute that died), so it ends once neither
        the action nor any progress is newer than one timeout.
        """
        start = following.start
        deadline = start + self.policy.timeout
        pending: str | None = None
        acted_at: float | None = None
        moved_at = start
        next_try = 0.0
        self._wait(record, following, start + FIRST_LOOK_SECONDS, end_hint)
        while True:
            now = self.clock()
            previous = following.looked_at if following.looked_at is not None else start
            if self._look(record, server_id, following, now):
                moved_at = now
            if following.api_error is None and self._final(record, server_id, following):
                record.end_resolution = round(following.looked_at - previous, 3)
                if following.hinted_at is not None and \
                        (following.migration or {}).get("status") == "completed":
                    self.hint_lags.append(max(0.0, following.looked_at - following.hinted_at))
                return
            if now >= deadline and not record.timed_out:
                record.timed_out = True
                record.timeout_action = self.policy.on_timeout
                if self.policy.on_timeout != "wait":
                    pending, acted_at = self.policy.on_timeout, now
            elif acted_at is None and record.timed_out and \
                    now >= start + self.policy.timeout * self.policy.wait_limit:
                pending, acted_at = "abort", now
            elif acted_at is not None and now >= max(acted_at, moved_at) + self.policy.timeout:
                gave_up = (f"Nova still reports the migration in progress, without progress, "
                           f"{self.policy.timeout:.0f}s after the {record.timeout_action}")
                record.error = f"{record.error}; {gave_up}" if record.error else gave_up
                return
            if pending is not None and now >= next_try:
                if self._act(record, server_id, start, pending):
                    pending = None
                else:
                    next_try = now + ACTION_RETRY_SECONDS
            interval = self._interval(following, now, end_hint is not None)
            if pending is not None:
                interval = min(interval, max(next_try - now, self.policy.poll_interval))
            self._wait(record, following, now + interval, end_hint)

    def _wait(self, record: MigrationRecord, following: _Following, next_look: float,
              end_hint: Callable[[], float | None] | None) -> None:
        """Sleep until the next look; sooner once the end hint comes (it costs Nova nothing:
        it is asked every poll interval meanwhile)."""
        while True:
            now = self.clock()
            if end_hint is not None and following.hinted_at is None and \
                    (following.migration or {}).get("status") in _RUNNING:
                hinted = end_hint()
                # A copy cannot end before it started: a hint from before the last
                # look that found the job not running is some other silence.
                if hinted is not None and \
                        hinted >= following.start + record.not_running_at:
                    following.hinted_at = hinted
                    record.end_hinted_at = round(hinted - following.start, 3)
                    next_look = min(next_look, now + self._interval(following, now, True))
            if now >= next_look - 1e-9:
                return
            self.sleep(min(self.policy.poll_interval, next_look - now))

    def _look(self, record: MigrationRecord, server_id: str, following: _Following,
              now: float) -> bool:
        """Read this migration's record once; True if it changed since the last look.

        A running migration's sparse look reads its progress fields too.
        """
        before = following.migration
        status = (before or {}).get("status")
        try:
            found = None
            if status in _RUNNING and now - following.last_progress >= \
                    self.policy.watch_interval:
                following.last_progress = now
                found = self.adapter.migration(server_id, before["id"])
            if found is None:
                found = self._own_record(server_id, following)
        except NovaError as exc:
            following.api_error = exc
            return False
        following.api_error = None
        following.looked_at = now
        sample = {"t": round(now - following.start, 3),
                  "status": found["status"] if found else None}
        moved = sample["status"] != status
        if found is not None:
            progress = {k: v for k, v in found.items() if k.endswith("_bytes")}
            if progress:
                moved = moved or progress != following.last_bytes
                following.last_bytes = progress
            sample.update(progress)
            following.migration = {**(before or {}), **found}
            record.migration_id = found["id"]
            record.migration_uuid = found["uuid"]
        if sample["status"] not in _RUNNING + tuple(FINAL_MIGRATION_STATUSES) and \
                not any(p.get("status") in _RUNNING for p in record.progress):
            record.not_running_at = sample["t"]
        record.progress.append(sample)
        return moved

    def _own_record(self, server_id: str, following: _Following) -> dict | None:
        """This migration's record: the one that did not exist before the call.

        Raises NovaError when Nova could not be asked: an unread record is not
        a missing one.
        """
        new = [m for m in self.adapter.migrations(server_id) if m["id"] not in following.known
               and (following.created_after is None
                    or (nova_time(m.get("created_at")) or 0.0) >= following.created_after)]
        return new[-1] if new else None

    def _final(self, record: MigrationRecord, server_id: str, following: _Following) -> bool:
        """Whether the last look found the migration over.

        Nova records a live migration as soon as the API accepts it; without
        a record after a while, the server says whether anything is under way.
        """
        migration = following.migration
        if migration is not None:
            return migration["status"] in FINAL_MIGRATION_STATUSES
        if following.looked_at - following.start < 2 * self.policy.watch_interval:
            return False
        try:
            server = self.adapter.server(server_id)
        except NovaError as exc:
            following.api_error = exc
            return False
        return server is None or server["task_state"] is None

    def _interval(self, following: _Following, now: float, hinted_source: bool) -> float:
        """Seconds until the next look: dense where the end may be near, sparse elsewhere."""
        policy = self.policy
        status = (following.migration or {}).get("status")
        if following.migration is None and now - following.start < FIND_WINDOW_SECONDS:
            return policy.poll_interval
        if following.hinted_at is not None:
            dense_from = following.hinted_at + max(
                0.0, min(self.hint_lags, default=0.0) - LAG_MARGIN_SECONDS)
            if now + policy.poll_interval >= dense_from:
                return policy.poll_interval
            return min(HINTED_WATCH_SECONDS, policy.watch_interval, dense_from - now)
        if not hinted_source and status in _RUNNING:
            return policy.poll_interval
        return policy.watch_interval

    def _act(self, record: MigrationRecord, server_id: str, start: float, action: str) -> bool:
        """Ask Nova to abort or force the migration; True once it accepted."""
        record.timeout_action = action
        record.action_attempts += 1
        if record.migration_id is None:
            record.error = f"timeout: no migration record to {action} yet"
            return False
        try:
            if action == "abort":
                with self.timer("nova.abort_live_migration"):
                    self.adapter.abort_migration(server_id, record.migration_id)
            else:
                with self.timer("nova.force_complete_live_migration"):
                    self.adapter.force_complete_migration(server_id, record.migration_id)
        except NovaError as exc:
            record.error = f"timeout: {action} failed: {exc}"
            return False
        record.error = None
        record.action_accepted_after = round(self.clock() - start, 3)
        return True

    # -- after the end ---------------------------------------------------------------

    def _settle(self, record: MigrationRecord, following: _Following) -> None:
        """Read the server once Nova's record is final; classify.

        Nova clears the server's task state before it marks the record
        completed, so one read normally agrees; while they disagree the
        server is read again each second, up to the grace period. If Nova's
        API failed throughout, the outcome is ``unknown``.
        """
        migration = following.migration
        deadline = self.clock() + self.policy.status_grace
        server: dict | None = None
        seen_server = False
        api_error = following.api_error
        while True:
            try:
                server = self.adapter.server(record.server_id)
                seen_server, api_error = True, following.api_error
            except NovaError as exc:
                api_error = exc
            if (seen_server and api_error is None
                    and self._consistent(record, migration, server)) \
                    or self.clock() >= deadline:
                break
            self.sleep(1.0)
        if migration is not None:
            record.migration_id = migration["id"]
            record.migration_uuid = migration["uuid"]
            record.nova_status = migration["status"]
            record.nova_created_at = migration.get("created_at")
            record.nova_updated_at = migration.get("updated_at")
            if migration["status"] == "completed":
                record.nova_completed_after = round(record.duration, 3)
        if api_error is not None or not seen_server:
            record.outcome = "unknown"
            record.error = (f"Nova's API failed while the migration settled, so how it ended "
                            f"is unknown: {api_error}")
            return
        if (migration or {}).get("status") != "completed":
            # How it failed is in the instance action's events; a completed
            # migration's events only draw its timeline (read_events, later).
            self.read_events(record)
        if server is not None:
            record.final_host, record.final_status = server["host"], server["status"]
        record.outcome, reason = classify(record, migration, server,
                                          self.policy.nova_completion_timeout)
        if record.outcome in ("timeout_aborted", "timeout_forced"):
            record.timeout_by = "tool" if record.timed_out else "nova"
        if reason and not record.error:
            record.error = reason
        if record.outcome == "refused":
            health = self._target_health(record.target)
            if health:
                record.error = f"{record.error}; {health}" if record.error else health

    def read_events(self, record: MigrationRecord) -> None:
        """The latest live-migration action's events (Nova's phases); [] if unreadable."""
        asked = collections.Counter(self.adapter.requests)
        try:
            record.events = self.adapter.action_events(record.server_id,
                                                       request_id=record.request_id)
        except NovaError:
            record.events = []
        spent = collections.Counter(self.adapter.requests) - asked
        record.api_requests = dict(collections.Counter(record.api_requests) + spent)

    def _target_health(self, target: str) -> str | None:
        """Why the target may have refused: its nova-compute down or disabled."""
        try:
            services = self.adapter.compute_services()
        except NovaError:
            return None
        for service in services:
            if service["host"] == target and (service["state"] != "up"
                                              or service["status"] != "enabled"):
                why = f" ({service['disabled_reason']})" if service["disabled_reason"] else ""
                return f"nova-compute on {target} is {service['state']}/{service['status']}{why}"
        return None

    @staticmethod
    def _consistent(record: MigrationRecord, migration: dict | None,
                    server: dict | None) -> bool:
        if server is None:
            return True
        if migration is None:
            # Rejected before Nova recorded anything: settled once back at rest.
            return server["task_state"] is None and server["host"] == record.source
        if migration["status"] not in FINAL_MIGRATION_STATUSES:
            return False
        if server["task_state"] is not None:
            return False
        expected = record.target if migration["status"] in ("completed", "done") \
            else record.source
        return server["host"] == expected


def nova_deadline(completion_timeout: float, ram_mb: int | None) -> float | None:
    """Seconds after which Nova's monitor acts on a job: its timeout x data GiB.

    Nova multiplies ``live_migration_completion_timeout`` by the guest's RAM in
    GiB, at least 2, plus each block-migrated disk's file size (at least 2 GiB
    each). The disks are not known from the API, so this is the deadline
    without them: the earliest Nova can act.
    """
    if not completion_timeout or ram_mb is None:
        return None
    return completion_timeout * max(ram_mb / 1024.0, 2.0)


def _ran_for(record: MigrationRecord) -> float:
    """How long Nova's job ran at most: from the last look that found it not running.

    Nova marks the migration running just before its monitor starts the
    clock, so the clock started between that look and the first ``running``
    sight; polls are seconds apart when the API is slow, and the first sight
    alone would undercount the run by as much.
    """
    first_running = next((i for i, p in enumerate(record.progress)
                          if p.get("status") == "running"), len(record.progress))
    before = [p["t"] for p in record.progress[:first_running]]
    return record.duration - max([record.not_running_at, *before])


def classify(record: MigrationRecord, migration: dict | None,
             server: dict | None, nova_completion_timeout: float = 0.0,
             ) -> tuple[str, str | None]:
    """(outcome, reason) from the final view of the migration record and server.

    ``nova_completion_timeout`` (s/GiB, 0: unknown) lets a ``failed`` job that
    outlived Nova's deadline be named Nova's timeout abort.
    """
    if server is None:
        return "lost", "the server no longer exists"
    if server["status"] == "ERROR":
        return "lost", f"the server is in ERROR: {server.get('fault') or 'no fault message'}"
    if migration is None:
        if server["task_state"] is None and server["host"] == record.source:
            failed = [e["event"] for e in record.events if e.get("result") == "Error"]
            return "refused", (f"refused by {failed[0] if failed else 'Nova'} before a "
                               "migration record was made")
        return "stale_status", "Nova has no record of this live migration"
    status = migration["status"]
    on_target = server["host"] == record.target and server["status"] == "ACTIVE"
    on_source = server["host"] == record.source and server["status"] == "ACTIVE"
    if status not in FINAL_MIGRATION_STATUSES or server["task_state"] is not None:
        return "stale_status", (f"after the grace period Nova says {status!r}, the server is "
                                f"{server['status']}/{server['task_state']} on {server['host']}")
    if status in ("completed", "done"):
        if not on_target:
            return "stale_status", (f"Nova says completed but the server is "
                                    f"{server['status']} on {server['host']}")
        # Forced only if Nova accepted the force: a refused one (still preparing)
        # may be followed by a migration that completed by itself.
        forced = record.timeout_action == "force_complete" and \
            record.action_accepted_after is not None
        return ("timeout_forced", None) if forced else ("completed", None)
    if not on_source:
        return "stale_status", (f"Nova says {status} but the server is {server['status']} "
                                f"on {server['host']}")
    if record.timed_out and record.timeout_action == "abort" and \
            record.action_accepted_after is not None:
        return "timeout_aborted", None
    abort_called = any(e["event"] == "compute_live_migration_abort" for e in record.events)
    if status == "cancelled" and not record.timed_out and not abort_called:
        # Nobody called the abort API: Nova's monitor aborted the job itself.
        return "timeout_aborted", ("Nova aborted the job after its "
                                   "live_migration_completion_timeout")
    failed = [e for e in record.events if e.get("result") == "Error"]
    reason = next((f": {e['reason']}" for e in failed if e.get("reason")), "")
    if not any(e["event"] == "compute_live_migration" for e in record.events):
        where = failed[0]["event"] if failed else "a pre-check"
        return "refused", f"refused by {where} before any data moved ({status}){reason}"
    deadline = nova_deadline(nova_completion_timeout, server.get("ram_mb"))
    ran = _ran_for(record)
    if status == "failed" and deadline is not None and not record.timed_out and \
            not abort_called and ran >= deadline:
        # Nova's monitor aborted the job; when the job has gone before its next
        # look it cannot tell a cancelled job from a failed one
        # (nova.virt.libvirt.migration.find_job_type) and records "failed".
        return "timeout_aborted", (f"Nova says failed, but the job ran for up to "
                                   f"{ran:.0f} s, reaching Nova's completion timeout "
                                   f"({nova_completion_timeout:g} s/GiB: {deadline:.0f} s) "
                                   "and nobody called the abort API: Nova aborted it")
    return "error", (f"the migration ended {status}; the server is still on "
                     f"{record.source}{reason}")


def reconcile_with_hypervisor(record: MigrationRecord, states: dict[str, str]) -> None:
    """Check Nova's answer against what libvirt runs where; Nova may lag or be wrong.

    ``states`` maps host -> libvirt domain state and reason ("running (booted)",
    "paused (migrating)", "absent", "unknown: ..."). A guest that libvirt runs
    somewhere other than where Nova says is ``stale_status``; one that runs
    nowhere while every host answered is ``lost``. A domain in transit (an
    incoming domain, which an aborted migration leaves on the destination
    until libvirt tears it down) is not where the guest runs. Hosts that could
    not be asked decide nothing.
    """
    record.libvirt_states = dict(states)
    in_transit = [h for h, state in states.items() if hypervisor.in_transit(state)]
    alive = [h for h, state in states.items() if hypervisor.runs_guest(state)]
    if len(alive) == 1:
        record.running_on = alive[0]
    if record.outcome in ("refused", "lost") and not alive:
        return
    if len(alive) > 1:
        record.outcome = "stale_status"
        record.error = f"libvirt runs the guest on {' and '.join(alive)} at once"
    elif record.running_on and record.final_host and record.running_on != record.final_host:
        record.outcome = "stale_status"
        record.error = (f"Nova says the server is on {record.final_host} "
                        f"({record.nova_status or 'no record'}), libvirt runs it on "
                        f"{record.running_on}")
    elif not alive and not in_transit and states and \
            all(not s.startswith("unknown") for s in states.values()):
        record.outcome = "lost"
        record.error = ("libvirt runs the guest on none of "
                        + ", ".join(f"{h} ({s})" for h, s in states.items()))
