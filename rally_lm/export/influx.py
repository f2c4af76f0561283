"""Every measurement into InfluxDB (v2 write API), without ever blocking or losing it.

``write()`` only appends a line to a queue. A background thread sends
batches with influxdb-client. What happens when a write fails depends on why:

=====================  ======================================================
transient              the server is down, slow, overloaded (connection
                       errors, timeouts, HTTP 429 and 5xx): the batch goes to
                       a spool file (line protocol, one point per line) and is
                       replayed, oldest first, once the server answers again
permanent: settings    HTTP 401/403/404 (token, org, bucket): nothing will
                       get through until the settings change. Points are
                       spooled (``rally-lm influx-replay`` sends them later)
                       and the export *fails* (``failed``, ``last_error``)
permanent: data        HTTP 400/413/422 for a batch: it is split until the
                       lines the server refuses are found; those go to
                       ``<spool>.rejected`` with the reason, the rest is sent.
                       The export fails
=====================  ======================================================

Several exporters (the scenario's and the metrics hook's, in threads or
processes) share one spool file: appends hold an exclusive ``flock`` on
``<spool>.lock``, and a replay first *moves* the spool aside under that lock,
so a line is always in exactly one file or at the server. A replay that was
interrupted leaves its ``<spool>.replaying-*`` file, which the next replay
sends too. The token is never logged, printed or put in a report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import math
import os
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

#: HTTP statuses that will not get better by retrying the same request.
SETTINGS_ERRORS = frozenset({401, 403, 404})
DATA_ERRORS = frozenset({400, 413, 422})


class ExportConfigError(ValueError):
    """The InfluxDB settings are unusable; the message says what to fix."""


@dataclasses.dataclass(frozen=True)
class InfluxSettings:
    url: str
    org: str
    bucket: str
    token: str = dataclasses.field(repr=False)

    @classmethod
    def from_config(cls, config: dict, environ: dict | None = None) -> InfluxSettings:
        """From a task config; ``token_env`` names the variable holding the token."""
        env = os.environ if environ is None else environ
        url = config.get("url") or env.get("INFLUX_URL", "")
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ExportConfigError(f"InfluxDB URL {url!r} is not an http(s) URL with a host")
        token = env.get(config.get("token_env", "INFLUX_TOKEN"), "")
        return cls(url=url.rstrip("/"), org=config.get("org") or env.get("INFLUX_ORG", ""),
                   bucket=config.get("bucket") or env.get("INFLUX_BUCKET", "rally_lm"),
                   token=token)


def _escape_key(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def line(measurement: str, tags: dict[str, object], fields: dict[str, object],
         timestamp: float) -> str:
    """One point in line protocol (nanosecond timestamp)."""
    tag_text = "".join(f",{_escape_key(str(k))}={_escape_key(str(v))}"
                       for k, v in sorted(tags.items()) if v not in (None, ""))
    parts = []
    for key, value in fields.items():
        if value is None:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int):
            text = f"{value}i"
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise ValueError(f"field {key} of {measurement} is {value!r}: line protocol "
                                 "has no such number")
            text = repr(value)
        else:
            text = '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
        parts.append(f"{_escape_key(key)}={text}")
    if not parts:
        raise ValueError(f"point {measurement} has no fields")
    return f"{_escape_key(measurement)}{tag_text} {','.join(parts)} {int(timestamp * 1e9)}"


@dataclasses.dataclass
class ExportStats:
    written: int = 0
    spooled: int = 0
    dropped: int = 0
    replayed: int = 0
    rejected: int = 0
    #: A permanent error happened: the settings are wrong or data was refused.
    failed: bool = False
    last_error: str | None = None


class SendError(Exception):
    """A write failed; ``kind`` is "transient", "settings" or "data"."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class Spool:
    """The spool file, shared safely by every exporter of a task (see module doc)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.rejected_path = self.path.with_name(self.path.name + ".rejected")

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def append(self, lines: list[str], target: Path | None = None) -> None:
        if not lines:
            return
        with self.locked(), open(target or self.path, "a") as handle:
            handle.write("".join(ln + "\n" for ln in lines))
            handle.flush()
            os.fsync(handle.fileno())

    def take(self) -> list[Path]:
        """Move the spool aside for replay; also pick up replays that were interrupted."""
        with self.locked():
            taken = []
            stale = [f for f in self.path.parent.glob(f"{self.path.name}.replaying-*")
                     if _abandoned(f)]
            if self.path.exists() and self.path.stat().st_size:
                taken.append(self._claim(self.path))
            # Renamed and touched under the lock: no other replay takes it too.
            taken += [self._claim(f) for f in stale]
            return taken

    def _claim(self, path: Path) -> Path:
        aside = self.path.with_name(f"{self.path.name}.replaying-{uuid.uuid4().hex}")
        path.rename(aside)
        os.utime(aside)
        return aside

    def pending(self) -> int:
        """Lines waiting in the spool and in replays under way (this moment's count)."""
        count = 0
        for path in [self.path, *self.path.parent.glob(f"{self.path.name}.replaying-*")]:
            try:
                count += sum(1 for ln in path.read_text().splitlines() if ln)
            except FileNotFoundError:
                continue  # another exporter just moved or finished it
        return count


#: How old an unfinished replay file must be before another replay takes it over.
ABANDONED_AFTER_S = 120.0


def _abandoned(path: Path) -> bool:
    try:
        return time.time() - path.stat().st_mtime > ABANDONED_AFTER_S
    except OSError:
        return False


class InfluxExporter:
    def __init__(self, settings: InfluxSettings, spool: Path, batch_size: int = 500,
                 flush_interval: float = 1.0, timeout: float = 5.0) -> None:
        self.settings = settings
        self.spool = Spool(spool)
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.timeout = timeout
        self.stats = ExportStats()
        self._queue: queue.Queue[str] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="influx-export", daemon=True)
        self._client = None
        self._write_api = None
        #: Set after a settings error: every further write would fail the same way.
        self._blocked = False

    def start(self) -> InfluxExporter:
        from influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        self._client = InfluxDBClient(url=self.settings.url, token=self.settings.token,
                                      org=self.settings.org, timeout=int(self.timeout * 1000))
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        self._thread.start()
        return self

    def write(self, measurement: str, tags: dict, fields: dict,
              timestamp: float | None = None) -> None:
        """Queue a point; never blocks, never raises for the server's sake."""
        self._queue.put(line(measurement, tags, fields,
                             time.time() if timestamp is None else timestamp))

    def close(self, timeout: float = 30.0) -> ExportStats:
        self._stop.set()
        self._thread.join(timeout)
        if self._client is not None:
            self._client.close()
        self.stats.spooled = self.spool.pending()
        return self.stats

    # -- the sender -----------------------------------------------------------

    def _run(self) -> None:
        while True:
            stopping = self._stop.is_set()
            try:
                self._once()
            except Exception as exc:  # noqa: BLE001 - the sender must outlive any failure
                self.stats.failed = True
                self.stats.last_error = f"exporter: {type(exc).__name__}: {exc}"
            if stopping and self._queue.empty():
                return
            self._stop.wait(self.flush_interval)

    def _once(self) -> None:
        batch = self._drain()
        if batch:
            self._deliver(batch, replay=False)
        if not self._blocked:
            self._replay()
        # Still waiting in the spool (this exporter's and any other's).
        self.stats.spooled = self.spool.pending()

    def _drain(self) -> list[str]:
        batch: list[str] = []
        while len(batch) < self.batch_size:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _send(self, lines: list[str]) -> None:
        try:
            self._write_api.write(bucket=self.settings.bucket, org=self.settings.org,
                                  record="\n".join(lines))
        except Exception as exc:  # noqa: BLE001 - classified, never swallowed
            raise _classify(exc, self.settings.token) from exc

    def _deliver(self, lines: list[str], replay: bool) -> list[str]:
        """Send lines; returns the ones still to keep (transient failure or blocked)."""
        if self._blocked:
            self._keep(lines)
            return []
        try:
            self._send(lines)
        except SendError as exc:
            self.stats.last_error = str(exc)
            if exc.kind == "data":
                return self._split(lines, replay)
            if exc.kind == "settings":
                self.stats.failed = True
                self._blocked = True
            if not replay:
                self._keep(lines)
                return []
            return lines
        self._count(len(lines), replay)
        return []

    def _split(self, lines: list[str], replay: bool) -> list[str]:
        """Find the lines the server refuses (halving the batch); send the rest."""
        if len(lines) == 1:
            self._keep([f"# rejected: {self.stats.last_error}", lines[0]],
                       self.spool.rejected_path)
            self.stats.rejected += 1
            self.stats.failed = True
            return []
        middle = len(lines) // 2
        keep = self._deliver(lines[:middle], replay)
        keep += self._deliver(lines[middle:], replay)
        return keep

    def _keep(self, lines: list[str], target: Path | None = None,
              held_in: Path | None = None) -> bool:
        """Spool lines; if even that fails the export fails, and the lines are dropped
        unless ``held_in`` still holds them."""
        try:
            self.spool.append(lines, target)
            return True
        except OSError as exc:
            self.stats.failed = True
            self.stats.last_error = f"spool {target or self.spool.path}: {exc}"
            if held_in is None:
                self.stats.dropped += len(lines)
            return False

    def _count(self, sent: int, replay: bool) -> None:
        if replay:
            self.stats.replayed += sent
        else:
            self.stats.written += sent

    def _replay(self) -> None:
        for taken in self.spool.take():
            lines = [ln for ln in taken.read_text().splitlines() if ln]
            keep: list[str] = []
            for start in range(0, len(lines), self.batch_size):
                chunk = lines[start:start + self.batch_size]
                if keep or self._blocked:
                    keep += chunk  # the server is unreachable: keep order, stop trying
                    continue
                keep += self._deliver(chunk, replay=True)
            # Unable to put the rest back (a full disk): the file taken aside still
            # holds it and a later replay takes it over. Lines it holds that were
            # sent meanwhile are sent again: the same point overwrites itself.
            if self._keep(keep, held_in=taken):
                taken.unlink()


def _classify(exc: Exception, token: str) -> SendError:
    status = getattr(exc, "status", None)
    text = _without_token(f"{type(exc).__name__}: {exc}", token)
    if status in SETTINGS_ERRORS:
        return SendError("settings", f"HTTP {status}: the server refused the token, org or "
                                     f"bucket ({text[:300]})")
    if status in DATA_ERRORS:
        return SendError("data", f"HTTP {status}: the server refused the data ({text[:300]})")
    return SendError("transient", text[:300])


def _without_token(text: str, token: str) -> str:
    return text.replace(token, "***") if token else text


def replay_spool(settings: InfluxSettings, spool: Path) -> ExportStats:
    """Send what a spool file holds (``rally-lm influx-replay``)."""
    exporter = InfluxExporter(settings, spool)
    exporter.start()
    return exporter.close()
