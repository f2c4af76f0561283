"""Hook: sample every workload VM's metrics and probe all of them, into InfluxDB."""

from __future__ import annotations

import os
import time
from pathlib import Path

from rally.task import hook

from rally_lm.clients.nova import MICROVERSION, NovaAdapter, NovaError
from rally_lm.export.influx import InfluxExporter, InfluxSettings
from rally_lm.export.points import diagnostics_fields
from rally_lm.probes.downtime import DowntimeProbe
from rally_lm.probes.timeline import find_disruptions
from rally_lm.task.contexts.nova.lm_workload import LiveMigrationWorkload
from rally_lm.task.output import export_stats_chart

INFLUX_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "url": {"type": "string", "pattern": "^https?://[^/\\s]+(/\\S*)?$",
                "description": "InfluxDB base URL, e.g. http://influx:8086"},
        "org": {"type": "string", "description": "InfluxDB organization."},
        "bucket": {"type": "string", "description": "Bucket to write to (default rally_lm)."},
        "token_env": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
                      "description": "Environment variable holding the token (never the "
                                     "token itself: it would end up in reports)."},
    },
}


def admin_nova(task) -> NovaAdapter:
    """Nova for the task's environment (hooks do not see the scenario's clients)."""
    from rally.env import env_mgr
    from rally_openstack.common.credential import OpenStackCredential

    platforms = env_mgr.EnvManager.get(task["env_uuid"]).data["platforms"]
    data = next(p["platform_data"] for p in platforms.values()
                if p["platform_name"] == "openstack")
    admin = dict(data["admin"])
    admin["api_info"] = {**data.get("api_info", {}), **admin.get("api_info", {})}
    return NovaAdapter(OpenStackCredential(**admin).clients().nova(version=MICROVERSION))


def owner_ids(task) -> list[str]:
    """Whose names the task's contexts generated: each of its workloads (Rally passes a
    workload's uuid to its contexts as ``owner_id``); the task's own where the database
    cannot say."""
    try:
        from rally.common import objects

        detailed = objects.Task.get(task["uuid"], detailed=True)
        found = [w["uuid"] for subtask in detailed["subtasks"] for w in subtask["workloads"]]
    except Exception:  # noqa: BLE001 - a task outside Rally's database (tests, imports)
        found = []
    return found or [task["uuid"]]


@hook.configure(name="lm_vm_metrics", platform="openstack")
class VmMetrics(hook.HookAction):
    """Sample the workload VMs' CPU, memory, network and disk and probe them all.

    Trigger it periodically (``periodic``, unit ``time``): each run reads
    Nova's server diagnostics (microversion 2.48+) and host of every
    workload VM of this task, probes all of them for ``probe_seconds`` (so
    disruption of VMs that are not migrating is seen too) and writes both to
    InfluxDB when ``influx`` is set. Points that cannot be written because
    the server is unreachable are spooled to ``~/.rally/rally-lm-spool`` and
    replayed later; a refused token, org, bucket or point fails the hook.
    """

    CONFIG_SCHEMA = {
        "type": "object",
        "$schema": "http://json-schema.org/draft-07/schema#",
        "additionalProperties": False,
        "properties": {
            "probe_seconds": {"type": "number", "minimum": 0.5, "maximum": 600,
                              "description": "How long each run probes the VMs (default 5)."},
            "probe_interval": {"type": "number", "minimum": 0.001, "maximum": 1,
                               "description": "Seconds between echo requests (default 0.01)."},
            "udp_port": {"type": "integer", "minimum": 1, "maximum": 65535,
                         "description": "The agent's UDP echo port (default 7)."},
            "influx": {**INFLUX_SCHEMA, "description": "Where to write the samples."},
            "labels": {"type": "object", "additionalProperties": {"type": "string"},
                       "description": "Tags added to every point, e.g. storage, tunnelling."},
        },
    }

    def run(self) -> None:
        cfg = self.config or {}
        nova = admin_nova(self.task)
        # Named by Rally's name generator for this task's workloads (lm_workload's VMs).
        owners = owner_ids(self.task)
        servers = [s for s in nova.list_servers()
                   if any(LiveMigrationWorkload.name_matches_object(s["name"], task_id=owner)
                          for owner in owners)]
        tags = {"task": self.task["uuid"], **cfg.get("labels", {})}
        exporter = None
        if cfg.get("influx"):
            spool = Path(os.path.expanduser("~/.rally/rally-lm-spool")) / f"{tags['task']}.lp"
            exporter = InfluxExporter(InfluxSettings.from_config(cfg["influx"]), spool).start()
        rows: list[list] = []
        errors: list[str] = []
        now = time.time()
        for server in servers:
            try:
                fields = diagnostics_fields(nova.diagnostics(server["id"]))
            except NovaError as exc:
                fields = {"error": str(exc)}
            if exporter:
                exporter.write("lm_vm", {**tags, "vm": server["name"], "host": server["host"]},
                               {k: v for k, v in fields.items() if v is not None}, now)
            rows.append([server["name"], server["host"], fields.get("cpu_time_ns"),
                         fields.get("memory_used_mb"), fields.get("rx_bytes"),
                         fields.get("tx_bytes"), fields.get("disk_write_bytes")])
            errors.append(fields.get("error", ""))
        probe_rows = self._probe(servers, cfg, exporter, tags)
        stats = exporter.close() if exporter else None
        self.add_output(complete={
            "title": "Workload VMs", "chart_plugin": "Table",
            "description": "Empty cells were not measured; the error column says why.",
            "data": {"cols": ["vm", "host", "cpu time ns", "memory used MB", "rx bytes",
                              "tx bytes", "disk write bytes", "probe sent", "probe lost",
                              "longest outage ms", "error"],
                     # Rally's hook results take strings and numbers only (rally task
                     # import refuses null): an unknown figure is an empty cell.
                     "rows": [[("" if v is None else v) for v in r + p] + [e]
                              for r, p, e in zip(rows, probe_rows, errors, strict=True)]}})
        if stats is not None:
            self.add_output(complete=export_stats_chart("InfluxDB export", stats))
            if stats.failed:
                self.set_error("InfluxExportError",
                               f"InfluxDB export failed ({stats.rejected} point(s) rejected, "
                               f"{stats.dropped} dropped, {stats.spooled} spooled)",
                               stats.last_error or "")
        if not servers:
            # Periodic runs can fall before the VMs boot or after their cleanup.
            self.add_output(complete={"title": "Workload VMs", "chart_plugin": "TextArea",
                                      "data": ["no workload VM of this task at this time"]})

    def _probe(self, servers, cfg, exporter, tags) -> list[list]:
        ips = [s["addresses"][0] for s in servers if s["addresses"]]
        if not ips:
            return [[None, None, None] for _ in servers]
        probe = DowntimeProbe(ips, interval=cfg.get("probe_interval", 0.01), protocol="udp",
                              udp_port=cfg.get("udp_port", 7)).start()
        time.sleep(cfg.get("probe_seconds", 5))
        by_ip = {t.target: t for t in probe.stop()}
        rows = []
        for server in servers:
            timeline = by_ip.get(server["addresses"][0] if server["addresses"] else None)
            if timeline is None:
                rows.append([None, None, None])
                continue
            outages, _ = find_disruptions(timeline)
            longest = max((o.duration_ms for o in outages), default=0.0)
            lost = timeline.requests_sent - timeline.replies
            if exporter:
                exporter.write("lm_probe", {**tags, "vm": server["name"], "host": server["host"]},
                               {"sent": timeline.requests_sent, "lost": lost,
                                "outages": len(outages), "longest_outage_ms": longest},
                               timeline.clock.to_wall(timeline.sent[-1]))
            rows.append([timeline.requests_sent, lost, round(longest, 1)])
        return rows
