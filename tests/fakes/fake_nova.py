"""FakeNova: an HTTP stand-in for the Nova compute API, for unit tests only.

It follows the Nova API reference for what rally_lm uses, at microversion
2.80: ``os-migrateLive`` (202, async pre-checks since 2.34), the migration
record statuses (accepted -> queued -> preparing -> running ->
post-migrating -> completed, or error/failed/cancelled), the server's host
and ``OS-EXT-STS:task_state`` (``migrating`` until the end), in-progress
migrations (``GET /servers/{id}/migrations``), abort (``DELETE``, 2.24+) and
force-complete (2.22+), ``os-migrations`` and ``os-instance-actions``. The
real novaclient talks to it. Each live migration follows a *plan* set by the
test; time comes from a clock the test controls.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

MICROVERSION = "2.80"
#: Nova's in-progress migration statuses (migration_get_in_progress_by_instance).
IN_PROGRESS = ("queued", "preparing", "running", "post-migrating")
MAX_VERSION = "2.93"


class FakeClock:
    """Monotonic time that only moves when the code under test sleeps."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@dataclasses.dataclass
class Plan:
    """How the next live migration of a server goes (seconds of fake time)."""

    #: complete|refuse_api|precheck_fail|fail|hang|deaf|stale|lost|stuck|nova_timeout.
    #: "deaf" runs for good and refuses every abort and force.
    #: "stuck" is a destination compute that died: the record completes, the
    #: server stays "migrating" on its source for good. "nova_timeout" is Nova's
    #: own live_migration_completion_timeout with action abort: after
    #: ``running`` its monitor cancels the job (no abort API call, no event).
    result: str = "complete"
    preparing: float = 0.5
    running: float = 2.0
    post: float = 0.5
    record_lag: float = 0.0  # the record reaches "completed" this much after the server
    forced_copy: float = 0.5  # the paused guest's copy lasts this long after a force
    reason: str = "libvirt.libvirtError: Unsafe migration: Migration without shared storage"


@dataclasses.dataclass
class Migration:
    id: int
    uuid: str
    server_id: str
    source: str
    dest: str
    created: float
    plan: Plan
    request_id: str
    aborted_at: float | None = None
    forced_at: float | None = None


class FakeNova:
    def __init__(self, clock: Callable[[], float], hosts=("hv1", "hv2")) -> None:
        self.clock = clock
        self.hosts = {h: {"state": "up", "status": "enabled", "disabled_reason": None}
                      for h in hosts}
        self.servers: dict[str, dict] = {}
        self.flavors = [{"id": "1", "name": "lm.small", "ram": 4096, "vcpus": 2, "disk": 40,
                         "OS-FLV-EXT-DATA:ephemeral": 0, "swap": "", "rxtx_factor": 1.0,
                         "os-flavor-access:is_public": True, "description": None,
                         "extra_specs": {}, "links": []}]
        self.migrations: list[Migration] = []
        self.plans: dict[str, list[Plan]] = {}
        self.requests: list[tuple[float, str, str]] = []
        #: Injected API failures: [method, path regex, HTTP status, how many times].
        self.faults: list[list] = []
        self.max_version = MAX_VERSION
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v2.1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> FakeNova:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- test set-up ------------------------------------------------------------

    def add_server(self, name: str, host: str = "hv1") -> str:
        server_id = str(uuid.uuid4())
        self.servers[server_id] = {"id": server_id, "name": name, "host": host,
                                   "status": "ACTIVE", "deleted": False, "actions": []}
        return server_id

    def plan(self, server_id: str, *plans: Plan) -> None:
        self.plans.setdefault(server_id, []).extend(plans)

    def fail(self, method: str, path: str, status: int = 503, times: int = 1,
             after: float | None = None) -> None:
        """Answer the next ``times`` requests matching ``path`` with ``status`` (a flapping
        nova-api behind a load balancer answers 503 with a plain error body); with
        ``after``, only requests made from that (fake) time on."""
        self.faults.append([method, re.compile(path), status, times, after])

    def _injected(self, method: str, path: str) -> int | None:
        for fault in self.faults:
            if fault[0] == method and fault[3] > 0 and fault[1].search(path) and \
                    (fault[4] is None or self.clock() >= fault[4]):
                fault[3] -= 1
                return fault[2]
        return None

    # -- the simulation ----------------------------------------------------------

    def _phase(self, m: Migration) -> tuple[str, bool]:
        """(record status, migration over for the server) at the current time."""
        p, t = m.plan, self.clock() - m.created
        if p.result == "precheck_fail":
            return ("preparing", False) if t < p.preparing else ("error", True)
        if t < p.preparing:
            return ("accepted" if t < p.preparing / 2 else "preparing"), False
        if m.aborted_at is not None and self.clock() - m.aborted_at >= 0.5:
            return "cancelled", True
        end_running = p.preparing + p.running
        if p.result == "nova_timeout" and m.forced_at is None and t >= end_running:
            return "cancelled", True
        if m.forced_at is not None:
            end_running = min(end_running, m.forced_at - m.created + p.forced_copy)
        if p.result == "hang" and m.forced_at is None or p.result == "deaf":
            return "running", False
        if p.result == "stuck" and t >= end_running:
            return "completed", False
        if t < end_running:
            return "running", False
        if p.result == "fail":
            return "failed", True
        if t < end_running + p.post:
            return "post-migrating", False
        if p.result == "lost":
            return "error", True
        if t < end_running + p.post + p.record_lag:
            return "post-migrating", True
        return "completed", True

    def _server_view(self, server_id: str) -> dict | None:
        server = self.servers.get(server_id)
        if server is None or server["deleted"]:
            return None
        host, task_state, status = server["host"], None, server["status"]
        active = [m for m in self.migrations if m.server_id == server_id]
        if active:
            m = active[-1]
            phase, over = self._phase(m)
            if not over:
                task_state = "migrating"
            moved = phase in ("post-migrating", "completed") or (over and phase == "completed")
            if m.plan.result in ("stale", "stuck"):
                moved = False
            if moved:
                host = m.dest
            if m.plan.result == "lost" and over:
                status = "ERROR"
        return {"id": server_id, "name": server["name"], "status": status,
                "OS-EXT-SRV-ATTR:host": host, "OS-EXT-SRV-ATTR:instance_name": "instance-1",
                "OS-EXT-STS:task_state": task_state, "OS-EXT-STS:vm_state": "active",
                "addresses": {"net": [{"addr": "10.0.0.5", "version": 4}]}}

    def _migration_view(self, m: Migration) -> dict:
        phase, _over = self._phase(m)
        total = 256 << 20
        done = 0.0
        if phase == "running":
            elapsed = self.clock() - m.created - m.plan.preparing
            done = min(1.0, elapsed / max(m.plan.running, 1e-9))
        return {"id": m.id, "uuid": m.uuid, "status": phase, "server_uuid": m.server_id,
                "instance_uuid": m.server_id, "source_compute": m.source,
                "dest_compute": m.dest, "migration_type": "live-migration",
                "created_at": "2026-11-25T10:00:00.000000", "updated_at": None,
                "memory_total_bytes": total, "memory_processed_bytes": int(total * done),
                "memory_remaining_bytes": int(total * (1 - done)), "disk_total_bytes": 0,
                "disk_processed_bytes": 0, "disk_remaining_bytes": 0}

    def _events(self, m: Migration) -> list[dict]:
        phase, over = self._phase(m)
        ok = {"result": "Success", "traceback": None}
        events = [{"event": "conductor_live_migrate_instance", **ok},
                  {"event": "compute_check_can_live_migrate_destination", **ok}]
        if m.plan.result == "precheck_fail":
            events.append({"event": "compute_check_can_live_migrate_source", "result": "Error",
                           "traceback": f"Traceback...\n{m.plan.reason}"})
            return events
        events.append({"event": "compute_check_can_live_migrate_source", **ok})
        if phase in ("running", "post-migrating", "completed", "failed", "cancelled", "error"):
            failed = m.plan.result == "fail" and over
            events.append({"event": "compute_live_migration",
                           "result": "Error" if failed else "Success",
                           "traceback": f"Traceback...\n{m.plan.reason}" if failed else None})
        if m.aborted_at is not None:
            # The abort API runs ComputeManager.live_migration_abort (an instance event).
            events.append({"event": "compute_live_migration_abort", **ok})
        return [{**e, "start_time": "2026-11-25T10:00:00.000000", "finish_time": None,
                 "host": m.source} for e in events]

    # -- HTTP ---------------------------------------------------------------------

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                return

            def _send(self, code: int, body: dict | None = None,
                      request_id: str | None = None) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(code)
                # Nova names every request; an instance action carries its id.
                self.send_header("x-openstack-request-id", request_id or f"req-{uuid.uuid4()}")
                self.send_header("Content-Type", "application/json")
                self.send_header("OpenStack-API-Version", f"compute {MICROVERSION}")
                self.send_header("X-OpenStack-Nova-API-Version", MICROVERSION)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _version_ok(self) -> bool:
                asked = self.headers.get("X-OpenStack-Nova-API-Version", "2.1")
                major, minor = (int(x) for x in asked.split("."))
                if (major, minor) > (2, 93):
                    self._send(406, {"computeFault": {"message": f"Version {asked} is not "
                                                      "supported by the API"}})
                    return False
                return True

            def _faulted(self, method: str) -> bool:
                status = fake._injected(method, self.path)
                if status is None:
                    return False
                self._send(status, {"computeFault": {"code": status,
                                                     "message": "Service Unavailable"}})
                return True

            def do_GET(self):  # noqa: N802
                fake.requests.append((fake.clock(), "GET", self.path))
                if self._faulted("GET"):
                    return None
                path, _, query = self.path.partition("?")
                if path in ("/v2.1", "/v2.1/"):
                    return self._send(200, {"version": {
                        "id": "v2.1", "status": "CURRENT", "version": fake.max_version,
                        "min_version": "2.1", "links": []}})
                if not self._version_ok():
                    return None
                if path == "/v2.1/os-services":
                    return self._send(200, {"services": [
                        {"id": i, "binary": "nova-compute", "host": h, "zone": "nova",
                         **{k: v for k, v in s.items() if k != "free_ram_mb"}}
                        for i, (h, s) in enumerate(fake.hosts.items())]})
                if path == "/v2.1/os-hypervisors/detail":
                    return self._send(200, {"hypervisors": [
                        {"id": i, "hypervisor_hostname": h, "free_ram_mb": s.get("free_ram_mb",
                                                                                 8192),
                         "hypervisor_type": "QEMU", "hypervisor_version": 10000002,
                         "service": {"host": h, "id": i}, "state": s["state"],
                         "status": s["status"]}
                        for i, (h, s) in enumerate(fake.hosts.items())]})
                if path == "/v2.1/flavors/detail":
                    return self._send(200, {"flavors": fake.flavors})
                if path == "/v2.1/servers/detail":
                    wanted = re.search(r"(?:^|&)name=([^&]+)", query)
                    pattern = re.compile(unquote(wanted.group(1))) if wanted else None
                    views = [fake._server_view(sid) for sid in fake.servers]
                    return self._send(200, {"servers": [
                        v for v in views if v and (not pattern or pattern.search(v["name"]))]})
                if m := re.fullmatch(r"/v2.1/servers/([^/]+)", path):
                    view = fake._server_view(m.group(1))
                    return self._send(200, {"server": view}) if view else self._send(
                        404, {"itemNotFound": {"message": "Instance could not be found."}})
                if m := re.fullmatch(r"/v2.1/servers/([^/]+)/migrations/(\d+)", path):
                    # Only in-progress migrations are shown (MigrationNotFoundForInstance).
                    found = [fake._migration_view(x) for x in fake.migrations
                             if x.server_id == m.group(1) and x.id == int(m.group(2))
                             and fake._phase(x)[0] in IN_PROGRESS]
                    return self._send(200, {"migration": found[0]}) if found else self._send(
                        404, {"itemNotFound": {"message": f"migration {m.group(2)} of "
                                               f"instance {m.group(1)} is not in progress"}})
                if m := re.fullmatch(r"/v2.1/servers/([^/]+)/migrations", path):
                    running = [fake._migration_view(x) for x in fake.migrations
                               if x.server_id == m.group(1) and fake._phase(x)[0] in
                               IN_PROGRESS]
                    return self._send(200, {"migrations": running})
                if path == "/v2.1/os-migrations":
                    wanted = re.search(r"instance_uuid=([^&]+)", query)
                    found = [fake._migration_view(x) for x in fake.migrations
                             if not wanted or x.server_id == wanted.group(1)]
                    return self._send(200, {"migrations": found})
                if m := re.fullmatch(r"/v2.1/servers/([^/]+)/os-instance-actions", path):
                    actions = [{"action": "live-migration", "request_id": x.request_id,
                                "instance_uuid": x.server_id,
                                "start_time": f"2026-11-25T10:00:{x.id:02d}.000000"}
                               for x in fake.migrations if x.server_id == m.group(1)]
                    return self._send(200, {"instanceActions": actions})
                if m := re.fullmatch(r"/v2.1/servers/([^/]+)/os-instance-actions/([^/]+)",
                                     path):
                    mig = next((x for x in fake.migrations if x.request_id == m.group(2)
                                and x.server_id == m.group(1)), None)
                    if mig is None:
                        return self._send(404, {"itemNotFound": {
                            "message": f"Action {m.group(2)} could not be found."}})
                    return self._send(200, {"instanceAction": {
                        "action": "live-migration", "request_id": mig.request_id,
                        "events": fake._events(mig)}})
                return self._send(404, {"itemNotFound": {"message": f"no route {path}"}})

            def do_POST(self):  # noqa: N802
                fake.requests.append((fake.clock(), "POST", self.path))
                if self._faulted("POST") or not self._version_ok():
                    return None
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                if m := re.fullmatch(r"/v2.1/servers/([^/]+)/action", self.path):
                    return self._live_migrate(m.group(1), body)
                if m := re.fullmatch(r"/v2.1/servers/([^/]+)/migrations/(\d+)/action",
                                     self.path):
                    mig = next(x for x in fake.migrations if x.id == int(m.group(2)))
                    state = fake._phase(mig)[0]
                    if state != "running":
                        # nova.exception.InvalidMigrationState, as HTTP 400
                        return self._send(400, {"badRequest": {"message": (
                            f"Migration {mig.id} state of instance {mig.server_id} is "
                            f"{state}. Cannot force complete while the migration is in "
                            "this state.")}})
                    mig.forced_at = fake.clock()
                    return self._send(202)
                return self._send(404, {"itemNotFound": {"message": "no route"}})

            def do_DELETE(self):  # noqa: N802
                fake.requests.append((fake.clock(), "DELETE", self.path))
                if m := re.fullmatch(r"/v2.1/servers/([^/]+)/migrations/(\d+)", self.path):
                    mig = next(x for x in fake.migrations if x.id == int(m.group(2)))
                    state = fake._phase(mig)[0]
                    if state not in ("running", "queued", "preparing") or \
                            mig.plan.result == "deaf":
                        # nova.exception.InvalidMigrationState, as HTTP 400
                        return self._send(400, {"badRequest": {"message": (
                            f"Migration {mig.id} state of instance {mig.server_id} is "
                            f"{state}. Cannot abort live migration while the migration "
                            "is in this state.")}})
                    mig.aborted_at = fake.clock()
                    return self._send(202)
                if m := re.fullmatch(r"/v2.1/servers/([^/]+)", self.path):
                    fake.servers[m.group(1)]["deleted"] = True
                    return self._send(204)
                return self._send(404, {"itemNotFound": {"message": "no route"}})

            def _live_migrate(self, server_id: str, body: dict):
                args = body.get("os-migrateLive")
                if args is None:
                    return self._send(400, {"badRequest": {"message": "unknown action"}})
                if "disk_over_commit" in args or "force" in args:
                    return self._send(400, {"badRequest": {"message": "Additional properties "
                                                           "are not allowed"}})
                view = fake._server_view(server_id)
                if view is None:
                    return self._send(404, {"itemNotFound": {"message": "not found"}})
                if view["OS-EXT-STS:task_state"] is not None:
                    return self._send(409, {"conflictingRequest": {
                        "message": "Cannot 'os-migrateLive' instance while it is in "
                                   "task_state migrating"}})
                plans = fake.plans.get(server_id) or [Plan()]
                plan = plans.pop(0) if fake.plans.get(server_id) else plans[0]
                host = args["host"]
                if plan.result == "refuse_api" or host not in fake.hosts:
                    return self._send(400, {"badRequest": {
                        "message": f"Compute host {host} could not be found."}})
                fake.servers[server_id]["host"] = view["OS-EXT-SRV-ATTR:host"]
                migration = Migration(id=len(fake.migrations) + 1, uuid=str(uuid.uuid4()),
                                      server_id=server_id,
                                      source=view["OS-EXT-SRV-ATTR:host"], dest=host,
                                      created=fake.clock(), plan=plan,
                                      request_id=f"req-{uuid.uuid4()}")
                fake.migrations.append(migration)
                return self._send(202, request_id=migration.request_id)

        return Handler
