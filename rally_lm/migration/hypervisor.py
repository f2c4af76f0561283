"""The hypervisor's own account of a migration, read from libvirt with virsh.

Nova's API says nothing about downtime. Where the benchmark host can reach
the computes' libvirtd (``qemu+ssh://`` or ``qemu+tls://``; ``qemu+tcp://``
on a closed test network), virsh gives:

* the completed job's statistics (``domjobinfo --completed --rawstats``):
  QEMU's measured downtime, total time, iterations, bytes, page sizes,
  post-copy requests, auto-converge throttle;
* the guest's memory dirty rate just before a migration
  (``domdirtyrate-calc`` + ``domstats --dirtyrate``);
* domain events as they happen (``virsh event --all --loop --timestamp``,
  one listener per host): the source's stop, the destination's resume,
  every pre-copy iteration, block copies - stamped with the benchmark host's
  clock when virsh receives them, so they share the probes' clock.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import re
import shutil
import subprocess
import threading
import time
from typing import Any

from rally_lm.clients import ssh_mux
from rally_lm.clients.stream import LineStream
from rally_lm.clients.virsh import HypervisorStatsError  # noqa: F401 - its callers'
from rally_lm.clients.virsh import run as _virsh

#: virsh domjobinfo labels -> our field names (values in ms or bytes), for
#: libvirt versions without ``--rawstats``.
_TEXT_FIELDS = {
    "Time elapsed": "time_elapsed",
    "Total downtime": "downtime",
    "Setup time": "setup_time",
    "Data processed": "data_processed",
    "Memory processed": "memory_processed",
    "File processed": "disk_processed",
    "Iteration": "memory_iteration",
    "Dirty rate": "memory_dirty_rate",
    "Postcopy requests": "memory_postcopy_requests",
    "Page size": "memory_page_size",
    "Auto converge throttle": "auto_converge_throttle",
}
_UNITS = {"ms": 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "pages/s": 1, "%": 1}

#: Raw libvirt job statistics -> the names the benchmark reports.
SUMMARY_FIELDS = {
    "downtime": "downtime_ms",
    "time_elapsed": "total_ms",
    "setup_time": "setup_ms",
    "memory_iteration": "iterations",
    "memory_processed": "memory_bytes",
    "disk_processed": "disk_bytes",
    "memory_bps": "memory_bytes_per_s",
    "memory_dirty_rate": "dirty_pages_per_s",
    "memory_page_size": "page_size",
    "memory_postcopy_requests": "postcopy_requests",
    "auto_converge_throttle": "auto_converge_throttle_percent",
}

#: ``virsh domstate --reason`` of a domain that is not where the guest runs:
#: the destination's incoming domain ("starting up" while QEMU starts, then
#: "migrating"), a source paused for the final copy, or a source left paused
#: once post-copy has moved execution to the destination. Spelled as virsh
#: prints them (virshDomainPausedReason), in the C locale.
IN_TRANSIT_STATES = frozenset({"paused (starting up)", "paused (migrating)",
                               "paused (post-copy)"})


def in_transit(state: str) -> bool:
    """Whether a domain in this state is a migration's shell rather than the guest."""
    return state in IN_TRANSIT_STATES


def runs_guest(state: str) -> bool:
    """Whether a domain in this state is the guest itself (running, or paused as such)."""
    return state.split(" ")[0] in ("running", "paused") and not in_transit(state)


def _number(text: str) -> float | int | None:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return None


def parse_rawstats(text: str) -> dict[str, float | int]:
    """``virsh domjobinfo --rawstats`` (or a job-completed event's params)."""
    stats: dict[str, float | int] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition(":")
        number = _number(value.strip()) if sep else None
        if number is not None and re.fullmatch(r"[a-z_0-9.]+", key):
            stats[key] = number
    return stats


def parse_domjobinfo(text: str) -> dict[str, float]:
    """``virsh domjobinfo`` human output, into raw statistic names."""
    stats: dict[str, float] = {}
    for line in text.splitlines():
        label, sep, value = line.partition(":")
        name = _TEXT_FIELDS.get(label.strip())
        if not sep or name is None:
            continue
        parts = value.split()
        try:
            number = float(parts[0])
        except (IndexError, ValueError):
            continue
        unit = parts[1] if len(parts) > 1 else ""
        stats[name] = number * _UNITS.get(unit, 1)
    return stats


def summarize(raw: dict[str, float | int]) -> dict[str, Any]:
    """The reported job statistics: named figures plus every raw value."""
    summary: dict[str, Any] = {name: raw[key] for key, name in SUMMARY_FIELDS.items()
                               if key in raw}
    summary["raw"] = dict(raw)
    return summary


def completed_job(uri: str, instance_name: str, timeout: float = 20.0) -> dict[str, Any]:
    """Statistics of the last completed job of a domain, as libvirt reports them."""
    proc = _virsh(uri, "domjobinfo", instance_name, "--completed", "--rawstats",
                  timeout=timeout)
    if proc.returncode != 0 and "rawstats" in proc.stderr:
        # libvirt < 7.2: only the human-readable form.
        proc = _virsh(uri, "domjobinfo", instance_name, "--completed", timeout=timeout)
        raw = parse_domjobinfo(proc.stdout) if proc.returncode == 0 else {}
    else:
        raw = parse_rawstats(proc.stdout) if proc.returncode == 0 else {}
    if proc.returncode != 0:
        raise HypervisorStatsError(f"virsh -c {uri} domjobinfo {instance_name}: "
                                   f"{proc.stderr.strip()}")
    if "downtime" not in raw:
        raise HypervisorStatsError(f"libvirt at {uri} has no completed migration of "
                                   f"{instance_name}")
    return summarize(raw)


def dirty_rate(uri: str, instance_name: str, seconds: int = 1,
               timeout: float = 20.0) -> dict[str, Any]:
    """The guest's memory dirty rate, measured by QEMU over ``seconds`` (page sampling).

    QEMU reports it in MiB/s ("megabytes_per_second" in libvirt's words).
    """
    proc = _virsh(uri, "domdirtyrate-calc", instance_name, "--seconds", str(seconds),
                  timeout=timeout)
    if proc.returncode != 0:
        raise HypervisorStatsError(f"virsh -c {uri} domdirtyrate-calc {instance_name}: "
                                   f"{proc.stderr.strip()}")
    deadline = time.monotonic() + seconds + timeout
    time.sleep(seconds)
    while True:
        proc = _virsh(uri, "domstats", instance_name, "--dirtyrate", timeout=timeout)
        stats = {k.removeprefix("dirtyrate."): v for k, v in parse_rawstats(
            proc.stdout.replace("=", ": ")).items()} if proc.returncode == 0 else {}
        # calc_status: 0 unstarted, 1 measuring, 2 measured.
        if stats.get("calc_status") == 2 and "megabytes_per_second" in stats:
            return {"mib_per_s": stats["megabytes_per_second"],
                    "period_s": stats.get("calc_period", seconds)}
        if time.monotonic() > deadline:
            raise HypervisorStatsError(f"libvirt at {uri} did not finish measuring the "
                                       f"dirty rate of {instance_name}: "
                                       f"{proc.stderr.strip() or stats}")
        time.sleep(0.2)


def domain_state(uri: str, instance_name: str, timeout: float = 20.0) -> str | None:
    """libvirt's state and reason, e.g. "running (migrated)", "paused (migrating)".

    None if the host has no such domain. A destination's incoming domain is
    in transit (see ``IN_TRANSIT_STATES``) until the guest resumes there.
    """
    proc = _virsh(uri, "domstate", instance_name, "--reason", timeout=timeout)
    if proc.returncode == 0:
        return proc.stdout.strip() or None
    if "failed to get domain" in proc.stderr or "Domain not found" in proc.stderr:
        return None
    raise HypervisorStatsError(f"virsh -c {uri} domstate {instance_name}: "
                               f"{proc.stderr.strip()}")


# -- domain events ---------------------------------------------------------------

@dataclasses.dataclass
class DomainEvent:
    """One libvirt domain event, as virsh received it."""

    wall: float
    host: str
    domain: str
    kind: str
    detail: str
    params: dict[str, float | int] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DomainEvent:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


_EVENT_LINE = re.compile(
    r"^(?P<stamp>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+[+-]\d{4}): event '(?P<kind>[^']+)' "
    r"for domain '(?P<domain>[^']+)':\s*(?P<detail>.*)$")


def parse_event_lines(lines: list[str], host: str,
                      into: list[DomainEvent] | None = None) -> list[DomainEvent]:
    """``virsh event --timestamp`` output; tab-indented lines are the last event's params.

    ``into``: events parsed from the lines before these, extended in place.
    """
    events: list[DomainEvent] = [] if into is None else into
    for line in lines:
        match = _EVENT_LINE.match(line.rstrip("\n"))
        if match:
            stamp = datetime.datetime.strptime(match["stamp"], "%Y-%m-%d %H:%M:%S.%f%z")
            events.append(DomainEvent(wall=stamp.timestamp(), host=host,
                                      domain=match["domain"], kind=match["kind"],
                                      detail=match["detail"].strip()))
        elif line.startswith(("\t", " ")) and events:
            events[-1].params.update(parse_rawstats(line))
    return events


class DomainEventListener:
    """Every domain event of one host while it runs (``virsh event --all --loop``).

    virsh stamps each event when it receives it, with this machine's clock;
    over a local network that is within a few milliseconds of the moment
    libvirt saw it.
    """

    def __init__(self, uri: str, host: str) -> None:
        self.uri = uri
        self.host = host
        self._lines: list[str] = []
        #: Events parsed so far and how many lines they came from (events() is
        #: asked several times a second while a migration ends).
        self._parsed: list[DomainEvent] = []
        self._parsed_lines = 0
        self._lock = threading.Lock()
        self._stream: LineStream | None = None
        self.error: str | None = None

    @property
    def _proc(self) -> subprocess.Popen | None:
        return self._stream.proc if self._stream is not None else None

    def start(self) -> DomainEventListener:
        virsh = shutil.which("virsh")
        if virsh is None:
            self.error = "virsh is not installed (libvirt-clients)"
            return self
        self._stream = LineStream(
            [virsh, "-c", ssh_mux.shared(self.uri), "event", "--all", "--loop", "--timestamp"],
            f"virsh-events-{self.host}", self._keep, env={**os.environ, "LC_ALL": "C"}).start()
        return self

    def _keep(self, line: str, _wall: float) -> None:
        with self._lock:
            self._lines.append(line)

    def events(self) -> list[DomainEvent]:
        with self._lock:
            new = self._lines[self._parsed_lines:]
            self._parsed_lines += len(new)
            parse_event_lines(new, self.host, into=self._parsed)
            return list(self._parsed)

    def stop(self) -> list[DomainEvent]:
        if self._stream is not None:
            died = self._stream.stop()
            if died is not None:
                # The listener died while the migrations ran: events are missing.
                self.error = f"virsh -c {self.uri} event stopped early: {died}"
        return self.events()


@dataclasses.dataclass
class JobSample:
    """One reading of a running migration job on its source (``domjobinfo --rawstats``)."""

    t: float
    iteration: int | None
    memory_remaining_bytes: int | None
    memory_bytes_per_s: int | None
    expected_downtime_ms: int | None
    throttle_percent: int | None

    @classmethod
    def from_raw(cls, t: float, raw: dict[str, float | int]) -> JobSample:
        def whole(key: str) -> int | None:
            return int(raw[key]) if key in raw else None
        return cls(t=round(t, 4), iteration=whole("memory_iteration"),
                   memory_remaining_bytes=whole("memory_remaining"),
                   memory_bytes_per_s=whole("memory_bps"),
                   # While the job runs, "downtime" is the limit QEMU aims for.
                   expected_downtime_ms=whole("downtime"),
                   throttle_percent=whole("auto_converge_throttle"))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def running_job(uri: str, instance_name: str, timeout: float = 10.0) -> dict[str, float | int]:
    """The raw statistics of the domain's running job ({} when none runs)."""
    proc = _virsh(uri, "domjobinfo", instance_name, "--rawstats", timeout=timeout)
    if proc.returncode != 0:
        raise HypervisorStatsError(f"virsh -c {uri} domjobinfo {instance_name}: "
                                   f"{proc.stderr.strip()}")
    header, _, body = proc.stdout.partition("\n")
    # "Job type: 2" is VIR_DOMAIN_JOB_UNBOUNDED: a migration in progress.
    return parse_rawstats(body) if header.strip() == "Job type: 2" else {}


class JobSampler:
    """Reads a migration's progress on its source every ``interval`` seconds.

    What events do not carry: memory still to copy, throughput, the downtime
    QEMU currently aims for (Nova raises it in steps), and auto-converge's
    CPU throttle, which QEMU reports only while the job runs. ``clock`` is the
    probes' monotonic clock, so samples sit on the migration's timeline.
    """

    def __init__(self, uri: str, instance_name: str, interval: float = 0.5,
                 clock=time.monotonic, read=running_job) -> None:
        self.uri = uri
        self.instance_name = instance_name
        self.interval = interval
        self._clock = clock
        self._read = read
        self.samples: list[JobSample] = []
        self.errors = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> JobSampler:
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"job-sampler-{self.instance_name}")
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            began = self._clock()
            try:
                raw = self._read(self.uri, self.instance_name)
            except Exception as exc:  # noqa: BLE001 - a failed read is counted, not fatal
                self.errors += 1
                self.last_error = str(exc)
            else:
                if raw:
                    self.samples.append(JobSample.from_raw(began, raw))
            self._stop.wait(max(0.0, self.interval - (self._clock() - began)))

    def stop(self) -> dict[str, Any]:
        """Stop sampling; the samples (times as given by ``clock``) and their summary."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
        return summarize_samples(self.samples, self.errors, self.last_error)


def summarize_samples(samples: list[JobSample], errors: int = 0,
                      last_error: str | None = None) -> dict[str, Any]:
    """What the samples say: peak throttle, last expected downtime, the series itself."""
    throttles = [s.throttle_percent for s in samples if s.throttle_percent is not None]
    expected = [s.expected_downtime_ms for s in samples if s.expected_downtime_ms is not None]
    summary: dict[str, Any] = {
        "count": len(samples),
        "max_throttle_percent": max(throttles) if throttles else (0 if samples else None),
        "last_expected_downtime_ms": expected[-1] if expected else None,
        "samples": [s.to_dict() for s in samples],
    }
    if errors:
        summary["read_errors"] = errors
        summary["last_error"] = last_error
    return summary
