"""Every measurement into InfluxDB (v2 write API), without ever blocking or losing it.

``write()`` only appends a line to a queue. A background thread sends
batches with influxdb-client; when the server is down or slow the batch goes
to a spool file (line protocol, one point per line) and is replayed, oldest
first, once the server answers again. ``close()`` reports points written,
spooled (still on disk) and dropped (only if the spool itself failed).
The token is never logged, printed or put in a report.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import threading
import time
from pathlib import Path
from urllib.parse import urlparse


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
    last_error: str | None = None


class InfluxExporter:
    def __init__(self, settings: InfluxSettings, spool: Path, batch_size: int = 500,
                 flush_interval: float = 1.0, timeout: float = 5.0) -> None:
        self.settings = settings
        self.spool = Path(spool)
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.timeout = timeout
        self.stats = ExportStats()
        self._queue: queue.Queue[str] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="influx-export", daemon=True)
        self._client = None
        self._write_api = None

    def start(self) -> InfluxExporter:
        from influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        self._client = InfluxDBClient(url=self.settings.url, token=self.settings.token,
                                      org=self.settings.org, timeout=int(self.timeout * 1000))
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        self.spool.parent.mkdir(parents=True, exist_ok=True)
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
        return self.stats

    # -- the sender -----------------------------------------------------------

    def _run(self) -> None:
        while True:
            stopping = self._stop.is_set()
            batch = self._drain()
            if batch and not self._send(batch):
                self._to_spool(batch)
            if self.spool.exists() and self.spool.stat().st_size:
                self._replay()
            if stopping and self._queue.empty():
                return
            self._stop.wait(self.flush_interval)

    def _drain(self) -> list[str]:
        batch: list[str] = []
        while len(batch) < self.batch_size:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _send(self, lines: list[str]) -> bool:
        try:
            self._write_api.write(bucket=self.settings.bucket, org=self.settings.org,
                                  record="\n".join(lines))
        except Exception as exc:  # noqa: BLE001 - any failure means: spool and retry
            self.stats.last_error = type(exc).__name__ + ": " + _without_token(
                str(exc), self.settings.token)
            return False
        self.stats.written += len(lines)
        return True

    def _to_spool(self, lines: list[str]) -> None:
        try:
            with open(self.spool, "a") as handle:
                handle.write("\n".join(lines) + "\n")
            self.stats.spooled += len(lines)
        except OSError as exc:
            self.stats.dropped += len(lines)
            self.stats.last_error = f"spool {self.spool}: {exc}"

    def _replay(self) -> None:
        lines = [ln for ln in self.spool.read_text().splitlines() if ln]
        sent = 0
        for start in range(0, len(lines), self.batch_size):
            chunk = lines[start:start + self.batch_size]
            if not self._send(chunk):
                break
            sent += len(chunk)
        self.stats.written -= sent  # counted once, as replayed
        self.stats.replayed += sent
        self.stats.spooled -= sent
        self.spool.write_text("".join(ln + "\n" for ln in lines[sent:]))


def _without_token(text: str, token: str) -> str:
    return text.replace(token, "***") if token else text


def replay_spool(settings: InfluxSettings, spool: Path) -> ExportStats:
    """Send what a spool file holds (``rally-lm influx-replay``)."""
    exporter = InfluxExporter(settings, spool)
    exporter.stats.spooled = sum(1 for ln in spool.read_text().splitlines() if ln)
    exporter.start()
    return exporter.close()
