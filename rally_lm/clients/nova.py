"""The one narrow adapter between rally_lm and Nova.

Everything the benchmark asks of Nova goes through :class:`NovaAdapter`, at
one pinned microversion, and comes back as plain dicts. Why 2.80:

* >= 2.25: ``block_migration: "auto"`` (Nova decides from the storage) and no
  ``disk_over_commit`` - rally-openstack's own helper still sends it;
* >= 2.34: the live-migration pre-checks run asynchronously, so the API call
  returns at once instead of holding an RPC that can time out (HTTP 500
  ``MessagingTimeout`` although the migration completed);
* >= 2.48: standardized server diagnostics (the metrics hook);
* >= 2.65: a migration can be aborted while still queued or preparing;
* >= 2.68: no ``force`` flag: an explicit host is always checked by the
  scheduler, as operators expect;
* 2.80: ``os-migrations`` entries carry uuid, user and project.
"""

from __future__ import annotations

import collections
import datetime
import re
from typing import Any

MICROVERSION = "2.80"
MIN_MICROVERSION = MICROVERSION

#: Migration record statuses after which nothing changes any more.
FINAL_MIGRATION_STATUSES = frozenset({"completed", "error", "failed", "cancelled", "done"})


class NovaError(Exception):
    """Nova refused or failed a request; ``status`` is the HTTP code if any."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _field(obj: Any, name: str, default: Any = None) -> Any:
    return getattr(obj, name, default) if not isinstance(obj, dict) else obj.get(name, default)


#: Path segments that name one resource: counted as one route.
_RESOURCE_ID = re.compile(r"/(?:[0-9a-f]{8}-[0-9a-f-]{27}|[0-9a-f]{32}|req-[0-9a-f-]{36}|\d+)"
                          r"(?=/|$|\?)")


def route(method: str, url: str) -> str:
    """``GET /servers/{id}/migrations/{id}``: a request's route, ids and query left out."""
    path = url.split("?", 1)[0]
    path = re.sub(r"^https?://[^/]+", "", path)
    path = re.sub(r"^/v2(\.\d+)?(?=/|$)", "", path)
    return f"{method.upper()} {_RESOURCE_ID.sub('/{id}', path)}"


class NovaAdapter:
    """Nova, as the benchmark sees it. ``client`` is a novaclient Client at MICROVERSION.

    ``requests`` counts the HTTP requests sent to Nova through this adapter, by
    route: the benchmark's own load on the control plane it measures.
    """

    def __init__(self, client: Any) -> None:
        self._nova = client
        self.requests: collections.Counter[str] = collections.Counter()
        http = getattr(client, "client", None)
        send = getattr(http, "request", None)
        if send is not None:
            def counted(url: str, method: str, **kwargs: Any) -> Any:
                self.requests[route(method, url)] += 1
                return send(url, method, **kwargs)

            http.request = counted

    @staticmethod
    def _wrap(call, *args, **kwargs):
        from keystoneauth1 import exceptions as ks_exc
        from novaclient import exceptions as nova_exc

        try:
            return call(*args, **kwargs)
        except nova_exc.ClientException as exc:
            raise NovaError(f"{exc}", getattr(exc, "code", None)) from exc
        except ks_exc.ConnectionError as exc:
            raise NovaError(f"Nova is unreachable: {exc}") from exc
        except ks_exc.ClientException as exc:
            # Authentication, catalog and timeout failures of keystoneauth.
            raise NovaError(f"{type(exc).__name__}: {exc}",
                            getattr(exc, "http_status", None)) from exc

    # -- the cloud ----------------------------------------------------------

    def max_microversion(self) -> str:
        version = self._wrap(self._nova.versions.get_current)
        return _field(version, "version") or "2.1"

    def compute_services(self) -> list[dict]:
        services = self._wrap(self._nova.services.list, binary="nova-compute")
        return [
            {"host": s.host, "state": s.state, "status": s.status,
             "zone": _field(s, "zone"), "disabled_reason": _field(s, "disabled_reason")}
            for s in services
        ]

    def cloud_facts(self) -> dict[str, str]:
        """Nova's max microversion, compute service versions, hypervisor types/versions."""
        facts = {"nova max microversion": self.max_microversion()}
        services = self._wrap(self._nova.services.list, binary="nova-compute")
        versions = sorted({str(_field(s, "version")) for s in services
                           if _field(s, "version") is not None})
        if versions:
            facts["nova-compute service versions"] = ", ".join(versions)
        hypervisors = self._wrap(self._nova.hypervisors.list, detailed=True)
        kinds = sorted({f"{_field(h, 'hypervisor_type')} {_field(h, 'hypervisor_version')}"
                        for h in hypervisors})
        if kinds:
            facts["hypervisors"] = ", ".join(kinds)
        return facts

    def pick_hosts(self, ram_mb: int, count: int) -> tuple[str, str, str]:
        """Two enabled, up compute hosts of one availability zone with room for ``count``
        VMs of ``ram_mb`` each: (source, target, why them). Raises NovaError when there are
        none. The most free memory goes first: the VMs boot there."""
        services = [s for s in self.compute_services()
                    if s["state"] == "up" and s["status"] == "enabled"]
        hypervisors = self._wrap(self._nova.hypervisors.list, detailed=True)
        free = {}
        for hypervisor in hypervisors:
            host = _field(hypervisor, "service", {}).get("host") or \
                _field(hypervisor, "hypervisor_hostname")
            free[host] = _field(hypervisor, "free_ram_mb")
        need = ram_mb * count
        zones: dict[str, list[str]] = {}
        for service in services:
            room = free.get(service["host"])
            if room is None or room >= need:
                zones.setdefault(service["zone"] or "", []).append(service["host"])
        pairs = [sorted(hosts, key=lambda h: (-(free.get(h) or 0), h))
                 for hosts in zones.values() if len(hosts) >= 2]
        if not pairs:
            raise NovaError(f"no two enabled, up compute hosts of one availability zone have "
                            f"room for {count} VM(s) of {ram_mb} MiB (hosts: "
                            + ", ".join(f"{s['host']} ({s['zone']}, free "
                                        f"{free.get(s['host'])} MiB)" for s in services)
                            + "): name source_host and target_host")
        source, target = max(pairs, key=lambda hosts: free.get(hosts[1]) or 0)[:2]
        zone = next(s["zone"] for s in services if s["host"] == source)
        return source, target, (f"picked {source} -> {target}: enabled and up, zone {zone}, "
                                f"the most free memory ({free.get(source)} and "
                                f"{free.get(target)} MiB)")

    def find_flavor(self, name_or_id: str) -> dict | None:
        for flavor in self._wrap(self._nova.flavors.list, is_public=None):
            if name_or_id in (flavor.id, flavor.name):
                return {"id": flavor.id, "name": flavor.name, "vcpus": flavor.vcpus,
                        "ram": flavor.ram, "disk": flavor.disk}
        return None

    # -- servers ------------------------------------------------------------

    def boot(self, name: str, image_id: str, flavor_id: str, host: str, network_id: str,
             userdata: str | None = None, security_groups: list[str] | None = None,
             volume_size_gb: int | None = None) -> str:
        """Boot pinned to ``host``; from a new volume of ``volume_size_gb`` if given."""
        extra = {"security_groups": security_groups} if security_groups else {}
        if volume_size_gb:
            extra["block_device_mapping_v2"] = [{
                "uuid": image_id, "source_type": "image", "destination_type": "volume",
                "volume_size": volume_size_gb, "boot_index": 0,
                "delete_on_termination": True}]
            image_id = None
        server = self._wrap(self._nova.servers.create, name=name, image=image_id,
                            flavor=flavor_id, nics=[{"net-id": network_id}], host=host,
                            userdata=userdata, config_drive=True, **extra)
        return server.id

    def server(self, server_id: str) -> dict | None:
        """The server's state, or None if Nova no longer knows it."""
        from novaclient import exceptions as nova_exc

        try:
            server = self._wrap(self._nova.servers.get, server_id)
        except NovaError as exc:
            if isinstance(exc.__cause__, nova_exc.NotFound):
                return None
            raise
        addresses = [a["addr"] for net in (server.addresses or {}).values() for a in net]
        return {
            "id": server.id,
            "name": server.name,
            "status": server.status,
            "host": _field(server, "OS-EXT-SRV-ATTR:host"),
            "instance_name": _field(server, "OS-EXT-SRV-ATTR:instance_name"),
            "task_state": _field(server, "OS-EXT-STS:task_state"),
            "vm_state": _field(server, "OS-EXT-STS:vm_state"),
            "addresses": addresses,
            "fault": (_field(server, "fault") or {}).get("message"),
            # Microversion 2.47+ embeds the flavor; Nova's timeouts scale with its RAM.
            "ram_mb": (_field(server, "flavor") or {}).get("ram"),
        }

    def list_servers(self, name: str | None = None) -> list[dict]:
        """Every server of every project (admin), with its host, status and addresses;
        ``name``: only those whose name matches this regular expression (Nova's filter)."""
        opts = {"all_tenants": True, **({"name": name} if name else {})}
        servers = self._wrap(self._nova.servers.list, search_opts=opts)
        return [
            {"id": s.id, "name": s.name, "status": s.status,
             "host": _field(s, "OS-EXT-SRV-ATTR:host"),
             "task_state": _field(s, "OS-EXT-STS:task_state"),
             "addresses": [a["addr"] for net in (s.addresses or {}).values() for a in net]}
            for s in servers
        ]

    def delete(self, server_id: str) -> None:
        """Delete a server; one already gone is no error."""
        from novaclient import exceptions as nova_exc

        try:
            self._wrap(self._nova.servers.delete, server_id)
        except NovaError as exc:
            if not isinstance(exc.__cause__, nova_exc.NotFound):
                raise

    def console_output(self, server_id: str, lines: int | None = None) -> str:
        """The server's console log (what the agent printed, among others)."""
        return self._wrap(self._nova.servers.get_console_output, server_id, length=lines)

    def reboot(self, server_id: str, hard: bool = False) -> None:
        self._wrap(self._nova.servers.reboot, server_id, "HARD" if hard else "SOFT")

    def diagnostics(self, server_id: str) -> dict:
        _resp, body = self._wrap(self._nova.servers.diagnostics, server_id)
        return body if isinstance(body, dict) else _field(body, "_info", {})

    # -- live migration -------------------------------------------------------

    def live_migrate(self, server_id: str, host: str, block_migration: str | bool) -> str | None:
        """Ask for the migration; the request's id, which Nova's instance action
        carries (None if Nova did not say)."""
        answer = self._wrap(self._nova.servers.live_migrate, server_id, host, block_migration)
        ids = getattr(answer, "request_ids", None) or []
        return ids[0] if ids else None

    def migration_progress(self, server_id: str) -> list[dict]:
        """In-progress live migrations of a server (GET /servers/{id}/migrations)."""
        migrations = self._wrap(self._nova.server_migrations.list, server_id)
        return [{k: _field(m, k) for k in _PROGRESS_KEYS} for m in migrations]

    def migration(self, server_id: str, migration_id: int) -> dict | None:
        """One in-progress live migration with its progress fields; None once it is not
        in progress any more (GET /servers/{id}/migrations/{id} answers 404 then)."""
        from novaclient import exceptions as nova_exc

        try:
            found = self._wrap(self._nova.server_migrations.get, server_id, migration_id)
        except NovaError as exc:
            if isinstance(exc.__cause__, nova_exc.NotFound):
                return None
            raise
        return {k: _field(found, k) for k in _PROGRESS_KEYS}

    def migrations(self, server_id: str) -> list[dict]:
        """Every live-migration record of a server, oldest first (GET /os-migrations)."""
        records = self._wrap(self._nova.migrations.list, instance_uuid=server_id,
                             migration_type="live-migration")
        keys = ("id", "uuid", "status", "source_compute", "dest_compute", "created_at",
                "updated_at")
        return sorted(({k: _field(m, k) for k in keys} for m in records), key=lambda m: m["id"])

    def abort_migration(self, server_id: str, migration_id: int) -> None:
        self._wrap(self._nova.server_migrations.live_migration_abort, server_id, migration_id)

    def force_complete_migration(self, server_id: str, migration_id: int) -> None:
        self._wrap(self._nova.server_migrations.live_migrate_force_complete, server_id,
                   migration_id)

    def action_events(self, server_id: str, action: str = "live-migration",
                      request_id: str | None = None) -> list[dict]:
        """Events of the instance action of this request, else of the latest of this
        kind (os-instance-actions: one request with the id, two without)."""
        from novaclient import exceptions as nova_exc

        detail = None
        if request_id is not None:
            try:
                detail = self._wrap(self._nova.instance_action.get, server_id, request_id)
            except NovaError as exc:
                if not isinstance(exc.__cause__, nova_exc.NotFound):
                    raise
        if detail is None:
            actions = [a for a in self._wrap(self._nova.instance_action.list, server_id)
                       if _field(a, "action") == action]
            if not actions:
                return []
            latest = max(actions, key=lambda a: _field(a, "start_time") or "")
            detail = self._wrap(self._nova.instance_action.get, server_id,
                                _field(latest, "request_id"))
        events = []
        for event in _field(detail, "events") or []:
            entry = {k: event.get(k) for k in ("event", "start_time", "finish_time", "result",
                                                "host")}
            entry["reason"] = exception_line(event.get("traceback"))
            events.append(entry)
        return events


#: What Nova tells of an in-progress live migration (GET /servers/{id}/migrations).
_PROGRESS_KEYS = ("id", "uuid", "status", "source_compute", "dest_compute",
                  "memory_total_bytes", "memory_processed_bytes", "memory_remaining_bytes",
                  "disk_total_bytes", "disk_processed_bytes", "disk_remaining_bytes",
                  "created_at", "updated_at")

_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*: \S")


def exception_line(traceback: str | None) -> str | None:
    """The last "module.Exception: message" line of an event's traceback (admins see it).

    Before microversion 2.84 there is no ``details`` field, and a remote
    exception's traceback may end in a code line ("raise result") instead.
    """
    lines = (traceback or "").splitlines()
    return next((line.strip() for line in reversed(lines) if _EXCEPTION_LINE.match(line)), None)


def nova_time(stamp: str | None) -> float | None:
    """Nova's naive-UTC ISO timestamp as epoch seconds."""
    if not stamp:
        return None
    parsed = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed.timestamp()



def make_client(session: Any, region: str | None = None) -> Any:
    """A novaclient Client at MICROVERSION over a keystoneauth session."""
    from novaclient import client as nova_client

    return nova_client.Client(MICROVERSION, session=session, region_name=region)
