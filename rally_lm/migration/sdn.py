"""The network's own account of a migration: OVN's southbound database.

With ML2/OVN a live migration moves the VM's port between chassis in steps
the southbound database records on the port's ``Port_Binding`` row:

=============  =========================================================  ==============
event          what happened                                              who writes it
=============  =========================================================  ==============
``claimed``    the destination chassis bound the port as an additional    ovn-controller
               chassis (the tap was plugged there, before the copy)       (destination)
``requested``  ``requested-chassis`` / ``activation-strategy`` set (or    Neutron
               cleared): the port may live on both chassis, blocked at
               the destination until the guest announces itself there
``activated``  ``additional-chassis-activated``: the guest's RARP reached  ovn-controller
               the destination and unblocked the port there               (destination)
``moved``      the port's main chassis changed (Neutron activated the     ovn-controller
               destination's binding after the migration)
``released``   the additional chassis cleared                             ovn-controller
``up``         ``up`` turned true / false (flows installed / removed)     ovn-controller
=============  =========================================================  ==============

With ``ovn_chassis_watch``, each compute's own view joins them, read over the
ssh login of its ``qemu+ssh://`` hypervisor URI (:class:`ChassisListener`):

===============  =======================================================  ==============
``rarp``         a RARP frame from the port's MAC arrived on a device of  QEMU (the guest
                 that compute (``tcpdump``): QEMU announcing the guest    announced)
                 once the destination holds its state (just before
                 libvirt resumes it), the frame OVN activates the port by
``installed``    ``ovn-installed`` set on the port's OVS interface there: ovn-controller
                 ovn-controller has installed the port's flows on that
                 chassis (also for an additional chassis, before the copy)
``uninstalled``  ``ovn-installed`` cleared (the port released there)      ovn-controller
===============  =======================================================  ==============

:class:`SouthboundListener` follows those rows while a round trip runs, with
``ovsdb-client monitor`` (Open vSwitch's own client: ``openvswitch-common``
on the Rally host, and read access to the southbound database, e.g.
``tcp:ovn-central:6642`` or ``ssl:...`` with ``ovsdb-client``'s certificate
options in ``OVN_SB_CLIENT_ARGS``). Each update is stamped when it arrives, on
this machine's clock: within a few milliseconds of the database's commit on
a local network, like libvirt's events through virsh. Ports are matched to a
VM by its server's ID, which Neutron writes into the port's ``external_ids``
(``neutron:device_id``, copied by ovn-northd), or else by its fixed IP in the
row's ``mac`` column (Neutron writes only ``unknown`` there when the network
has no port security).

No Rally imports: the measurement core.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from rally_lm.clients.stream import LineStream

EVENT_KINDS = ("claimed", "requested", "activated", "moved", "released", "up", "down",
               "rarp", "installed", "uninstalled")
#: What the listener asks of each Port_Binding row.
COLUMNS = ("logical_port", "mac", "chassis", "additional_chassis", "options", "up",
           "external_ids")
#: Options whose changes are events.
_WATCHED_OPTIONS = ("requested-chassis", "activation-strategy", "additional-chassis-activated")


@dataclasses.dataclass
class PortEvent:
    """One change of a port's binding, as the southbound database recorded it."""

    #: When the update reached this machine (its wall clock).
    wall: float
    port: str
    #: The row's ``mac`` column: "MAC IP...", how a VM's port is found.
    addresses: str
    kind: str
    #: The chassis concerned (claimed, activated, moved to), if any.
    chassis: str | None = None
    detail: str = ""
    #: The port's device (``neutron:device_id``: a VM's server ID), if Neutron set it.
    device: str = ""
    #: The compute's own stamp (its wall clock), for events a compute saw: the
    #: capture's kernel time of a RARP, ovn-controller's ``ovn-installed-ts``.
    host_wall: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PortEvent:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})

    def addresses_ip(self, ip: str) -> bool:
        return ip in self.addresses.split()[1:]

    def of(self, device: str | None, ip: str) -> bool:
        """Whether this is the port of that server (or, unnamed, of that IP)."""
        return (bool(device) and self.device == device) or self.addresses_ip(ip)


def _atom(value: Any) -> Any:
    """OVSDB JSON: ["uuid", u], ["set", [...]], ["map", [[k, v], ...]] or a scalar."""
    if isinstance(value, list) and len(value) == 2:
        kind, body = value
        if kind == "uuid":
            return body
        if kind == "set":
            return [_atom(v) for v in body]
        if kind == "map":
            return {k: _atom(v) for k, v in body}
    return value


def _single(value: Any) -> Any:
    """An optional column's value (OVSDB sends an unset one as an empty set)."""
    if isinstance(value, list):
        return value[0] if len(value) == 1 else None
    return value


def _chassis_list(value: Any) -> list[str]:
    value = _atom(value)
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _addresses(mac: Any) -> str:
    """A Port_Binding's ``mac`` column as one string: "MAC IP..." (a set is joined)."""
    return " ".join(mac) if isinstance(mac, list) else mac or ""


def _device(row: dict[str, Any]) -> str:
    """The server a port belongs to (``neutron:device_id``), if Neutron set it."""
    return (row["external_ids"] or {}).get("neutron:device_id", "")


def monitor_rows(line: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """The rows of one ``ovsdb-client --format=json monitor`` line that carry a
    row's state: (row UUID, action, column -> raw value).

    A modified row comes as an "old" entry (only the changed columns, its UUID)
    and a "new" one (every column, its UUID left out); a deleted row is gone and
    carries nothing; "initial" rows are state at the start, not events. A line
    that is not a table (the monitor's other output) has none.
    """
    try:
        table = json.loads(line)
    except ValueError:
        return
    if not isinstance(table, dict) or "data" not in table:
        return
    headings = table.get("headings", [])
    current_uuid = ""
    for raw in table["data"]:
        entry = dict(zip(headings, raw, strict=False))
        action = entry.get("action")
        uuid = entry.get("row") or current_uuid
        current_uuid = uuid
        if action not in ("old", "delete"):
            yield uuid, action, entry


class PortTable:
    """The rows seen so far, and the events their updates make (``update()``).

    ``chassis_names`` maps a Chassis row's UUID to its name (a Port_Binding
    names its chassis by reference); unknown UUIDs stay UUIDs.
    """

    def __init__(self, chassis_names: dict[str, str] | None = None) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.chassis_names = dict(chassis_names or {})

    def _name(self, uuid: str | None) -> str | None:
        return None if uuid is None else self.chassis_names.get(uuid, uuid)

    def update(self, line: str, wall: float) -> list[PortEvent]:
        """One ``ovsdb-client --format=json monitor`` line: the events it holds."""
        events: list[PortEvent] = []
        for uuid, action, entry in monitor_rows(line):
            new = {column: _atom(entry.get(column)) for column in COLUMNS}
            old = self.rows.get(uuid)
            self.rows[uuid] = new
            if action == "initial" or old is None:
                continue
            events += self._diff(old, new, wall)
        return events

    def identify(self, events: Iterable[PortEvent]) -> list[PortEvent]:
        """Computes' events (named by logical port, or by MAC only) with their ports'
        addresses and devices from the rows seen; an event no row matches unchanged.

        One pass over the rows for all the events: a cloud's southbound database
        holds every port of every network, and this runs between round trips.
        """
        by_port: dict[str, tuple[str, str, str]] = {}
        by_mac: dict[str, tuple[str, str, str]] = {}
        for row in self.rows.values():
            port, addresses = row["logical_port"] or "", _addresses(row["mac"])
            named = (port, addresses, _device(row))
            by_port.setdefault(port, named)
            if addresses.split()[:1]:
                by_mac.setdefault(addresses.split()[0], named)
        found: list[PortEvent] = []
        for event in events:
            named = by_port.get(event.port) if event.port else by_mac.get(event.addresses)
            found.append(event if named is None else dataclasses.replace(
                event, port=named[0], addresses=named[1], device=named[2]))
        return found

    def _diff(self, old: dict, new: dict, wall: float) -> list[PortEvent]:
        port = new["logical_port"] or ""
        addresses = _addresses(new["mac"])
        device = _device(new)
        found: list[PortEvent] = []

        def add(kind: str, chassis: str | None = None, detail: str = "") -> None:
            found.append(PortEvent(wall, port, addresses, kind, chassis, detail, device))

        old_extra = {self._name(c) for c in _chassis_list(old["additional_chassis"])}
        new_extra = {self._name(c) for c in _chassis_list(new["additional_chassis"])}
        for chassis in sorted(new_extra - old_extra):
            add("claimed", chassis)
        old_options, new_options = old["options"] or {}, new["options"] or {}
        changed = {k for k in _WATCHED_OPTIONS if old_options.get(k) != new_options.get(k)}
        if "additional-chassis-activated" in changed and \
                new_options.get("additional-chassis-activated"):
            activated = new_options["additional-chassis-activated"].split(",")[-1]
            add("activated", activated, f"additional-chassis-activated={activated}")
        requested = sorted(changed - {"additional-chassis-activated"})
        if requested:
            add("requested", None, ", ".join(
                f"{k}={new_options.get(k, '(none)')}" for k in requested))
        old_main = self._name(_single(old["chassis"]))
        new_main = self._name(_single(new["chassis"]))
        if old_main != new_main and new_main is not None:
            add("moved", new_main, f"from {old_main or '(none)'}")
        for chassis in sorted(old_extra - new_extra):
            add("released", chassis)
        old_up, new_up = _single(old["up"]), _single(new["up"])
        if bool(old_up) != bool(new_up) and new_up is not None:
            add("up" if new_up else "down", new_main)
        return found


def port_events(events: Iterable[PortEvent], ip: str, start_wall: float,
                end_wall: float, device: str | None = None) -> list[PortEvent]:
    """The events of server ``device``'s port (or the port holding ``ip``) between
    two wall times, in order."""
    return sorted((e for e in events if e.of(device, ip) and start_wall <= e.wall <= end_wall),
                  key=lambda e: e.wall)


class SouthboundListener:
    """Every Port_Binding change while it runs (``ovsdb-client monitor``, JSON lines)."""

    def __init__(self, remote: str) -> None:
        self.remote = remote
        self.table = PortTable()
        self._events: list[PortEvent] = []
        self._lock = threading.Lock()
        self._stream: LineStream | None = None
        self.error: str | None = None

    def _client(self) -> list[str] | None:
        client = shutil.which("ovsdb-client")
        if client is None:
            self.error = "ovsdb-client is not installed (openvswitch-common)"
            return None
        # stdbuf: ovsdb-client writes through stdio, fully buffered into a pipe.
        stdbuf = shutil.which("stdbuf")
        extra = shlex.split(os.environ.get("OVN_SB_CLIENT_ARGS", ""))
        return [*([stdbuf, "-oL"] if stdbuf else []), client, *extra]

    def chassis_names(self, timeout: float = 10.0) -> dict[str, str]:
        """Chassis UUID -> name, read once (``ovsdb-client transact``, a select)."""
        client = self._client()
        if client is None:
            return {}
        query = json.dumps(["OVN_Southbound", {"op": "select", "table": "Chassis",
                                                "where": [], "columns": ["_uuid", "name"]}])
        proc = subprocess.run([*client, "transact", self.remote, query], capture_output=True,
                              text=True, timeout=timeout)
        if proc.returncode != 0:
            raise OSError(f"ovsdb-client transact {self.remote}: "
                          f"{proc.stderr.strip()[-300:] or proc.returncode}")
        rows = json.loads(proc.stdout)[0].get("rows", [])
        return {_atom(r["_uuid"]): r["name"] for r in rows}

    def start(self) -> SouthboundListener:
        client = self._client()
        if client is None:
            return self
        try:
            self.table.chassis_names = self.chassis_names()
        except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
            self.error = f"OVN southbound database not readable: {exc}"
            return self
        self._stream = LineStream(
            [*client, "--format=json", "monitor", self.remote, "OVN_Southbound",
             "Port_Binding", ",".join(COLUMNS)], "ovn-sb-monitor", self._update).start()
        return self

    def _update(self, line: str, wall: float) -> None:
        found = self.table.update(line, wall)
        if found:
            with self._lock:
                self._events += found

    def events(self) -> list[PortEvent]:
        with self._lock:
            return list(self._events)

    def stop(self) -> list[PortEvent]:
        if self._stream is not None:
            died = self._stream.stop()
            if died is not None:
                self.error = f"ovsdb-client monitor {self.remote} stopped early: {died}"
        return self.events()


#: A remote command that ends when its ssh client's stdin closes (LineStream's
#: ``hold_stdin``) or when it ends itself - then its stream sees it gone. (A
#: background job's stdin is /dev/null unless redirected: hence fd 3.)
HELD = ("PATH=$PATH:/usr/sbin:/sbin; exec 3<&0; {command} </dev/null & c=$!; "
        "(cat <&3 >/dev/null; kill $c 2>/dev/null) & exec 3<&-; wait $c")
#: The compute's Open vSwitch database: its interfaces' ``external_ids``.
OVS_MONITOR = ("stdbuf -oL ovsdb-client --format=json monitor Open_vSwitch Interface "
               "name,external_ids")
#: RARP frames on any device of the compute, each line as it is captured.
RARP_CAPTURE = "tcpdump -i any -nn -e -tt -l --immediate-mode rarp"
#: What the watch needs on a compute: both tools, the database, the right to capture
#: (a capture that starts and is stopped by ``timeout`` exits 124).
CHASSIS_CHECK = ("PATH=$PATH:/usr/sbin:/sbin; command -v tcpdump >/dev/null || "
                 "{ echo 'tcpdump is not installed'; exit 1; }; "
                 "command -v ovsdb-client >/dev/null || "
                 "{ echo 'ovsdb-client is not installed (openvswitch-common)'; exit 1; }; "
                 "ovsdb-client list-dbs 2>&1 | grep -q Open_vSwitch || "
                 "{ echo 'no Open_vSwitch database at ovsdb-client default socket'; exit 1; }; "
                 "err=$(timeout 1 tcpdump -i any -nn -c 1 rarp 2>&1 >/dev/null); rc=$?; "
                 "[ $rc = 124 ] || [ $rc = 0 ] || "
                 "{ echo \"tcpdump cannot capture: $err\" | tail -c 300; exit 1; }")

# tcpdump -e on "any" (Linux cooked v2): time, device, direction, ifindex, source MAC.
_RARP_LINE = re.compile(
    r"^(?P<stamp>\d+\.\d+)\s+(?P<device>\S+)\s+(?P<direction>In|Out|B|M|P)\s+ifindex \d+ "
    r"(?P<mac>[0-9a-f]{2}(?::[0-9a-f]{2}){5}) ethertype Reverse ARP")


def rarp_event(line: str, wall: float, chassis: str) -> PortEvent | None:
    """A captured RARP frame the compute received (not one it sent on): the
    announcing MAC; None for any other line."""
    match = _RARP_LINE.match(line)
    if match is None or match["direction"] == "Out":
        return None
    return PortEvent(wall, "", match["mac"], "rarp", chassis, f"on {match['device']}",
                     host_wall=float(match["stamp"]))


class InterfaceTable:
    """A compute's OVS interfaces: ``installed`` / ``uninstalled`` when ovn-controller
    sets or clears ``ovn-installed`` on a port's interface (``iface-id``)."""

    def __init__(self, chassis: str) -> None:
        self.chassis = chassis
        self.rows: dict[str, dict[str, Any]] = {}

    def update(self, line: str, wall: float) -> list[PortEvent]:
        """One ``ovsdb-client --format=json monitor`` line: the events it holds."""
        events: list[PortEvent] = []
        for uuid, action, entry in monitor_rows(line):
            ids = _atom(entry.get("external_ids")) or {}
            old = self.rows.get(uuid)
            self.rows[uuid] = ids
            if action == "initial":
                continue
            was = (old or {}).get("ovn-installed") == "true"
            now = ids.get("ovn-installed") == "true"
            if was == now or not ids.get("iface-id"):
                continue
            stamp = ids.get("ovn-installed-ts")
            events.append(PortEvent(
                wall, ids["iface-id"], "", "installed" if now else "uninstalled",
                self.chassis, f"on {_atom(entry.get('name')) or '?'}",
                host_wall=int(stamp) / 1000.0 if now and stamp and stamp.isdigit() else None))
        return events


class ChassisListener:
    """One compute's own view while a round trip runs: its OVS interfaces'
    ``ovn-installed`` marks and the RARP frames it receives, each through a
    command run over ``shell`` (the ssh command line of its hypervisor URI)."""

    def __init__(self, chassis: str, shell: list[str]) -> None:
        self.chassis = chassis
        self.shell = shell
        self.interfaces = InterfaceTable(chassis)
        self._events: list[PortEvent] = []
        self._lock = threading.Lock()
        self._streams: list[LineStream] = []
        self.error: str | None = None

    def start(self) -> ChassisListener:
        for name, command, on_line in (("ovs", OVS_MONITOR, self._interface_line),
                                       ("rarp", RARP_CAPTURE, self._rarp_line)):
            stream = LineStream([*self.shell, HELD.format(command=command)],
                                f"{self.chassis}-{name}", on_line, hold_stdin=True)
            try:
                self._streams.append(stream.start())
            except OSError as exc:  # no ssh client (the validator checks it first)
                self.error = f"{self.chassis}: {name} watch not started: {exc}"
                break
        return self

    def _add(self, found: list[PortEvent]) -> None:
        if found:
            with self._lock:
                self._events += found

    def _interface_line(self, line: str, wall: float) -> None:
        self._add(self.interfaces.update(line, wall))

    def _rarp_line(self, line: str, wall: float) -> None:
        event = rarp_event(line, wall, self.chassis)
        self._add([event] if event else [])

    def stop(self) -> list[PortEvent]:
        for stream in self._streams:
            died = stream.stop()
            if died is not None and self.error is None:
                self.error = f"{self.chassis}: {stream.name} watch stopped early: {died}"
        with self._lock:
            return sorted(self._events, key=lambda e: e.wall)


def check_chassis(shell: list[str], timeout: float = 30.0) -> str | None:
    """Why the chassis watch cannot run through ``shell``, or None when it can."""
    try:
        done = subprocess.run([*shell, CHASSIS_CHECK], capture_output=True, text=True,
                              timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"no shell: {exc}"
    if done.returncode != 0:
        return (done.stdout.strip() or done.stderr.strip()[-300:]
                or f"exit {done.returncode}")
    return None


def attribute(events: list[PortEvent], resumed_wall: float | None,
              first_through_wall: float | None, slack: float = 0.0,
              destination: str | None = None) -> dict[str, Any] | None:
    """The network's share of an outage, joined to the event that ended it.

    From the guest's resume on the destination (libvirt's event) to the first
    request that got through (the probe): requests lost meanwhile were lost
    by the network. The event named is the last ``activated`` or ``moved``
    before that first request (within ``slack``, the probe's resolution):
    what let the traffic through. Where none came before it but the
    destination's RARP did, it is the activation that RARP caused, received
    after the traffic it let through (a negative
    ``first_through_after_ender_ms``). None when either end is unknown. With
    the computes' own view, the first RARP the destination received (QEMU's
    announcement of the resumed guest) is placed against the resume and the
    activation it caused (the RARP at the compute's capture time where it
    has one: the compute's clock).
    """
    if resumed_wall is None or first_through_wall is None:
        return None
    at_destination = [e for e in events if destination is None or e.chassis == destination]
    rarps = [e for e in at_destination if e.kind == "rarp"]
    # When the compute captured it (its clock), else when its line reached us:
    # the line can come later than the activation it caused (ssh, a busy
    # compute), the capture cannot.
    rarp_sent = min((e.wall if e.host_wall is None else e.host_wall for e in rarps),
                    default=None)
    activations = [] if rarp_sent is None else [
        e for e in at_destination if e.kind == "activated" and e.wall >= rarp_sent]
    enders = [e for e in events if e.kind in ("activated", "moved")
              and e.wall <= first_through_wall + slack]
    if not enders and rarp_sent is not None and rarp_sent <= first_through_wall + slack:
        # ovn-controller opens the port in its own flows when pinctrl sees the RARP
        # and writes the binding's activation to the southbound database after
        # (pinctrl tags the port activated for its engine; the row follows in a later
        # transaction): on a busy control plane the row can reach the tool after the
        # first request it let through. With the RARP seen at the destination before
        # that request, the activation it caused is named all the same, a negative
        # first_through_after_ender_ms saying it was seen late.
        enders = activations[:1]
    share = max(0.0, first_through_wall - resumed_wall)
    found: dict[str, Any] = {"network_share_ms": round(share * 1000.0, 3)}
    if enders:
        ender = enders[-1]
        found.update({"ended_by": f"{ender.kind} {ender.chassis or ''}".strip(),
                      "ended_by_after_resume_ms": round((ender.wall - resumed_wall) * 1000.0, 3),
                      "first_through_after_ender_ms": round(
                          (first_through_wall - ender.wall) * 1000.0, 3)})
    if rarp_sent is not None:
        found["rarp_after_resume_ms"] = round((rarp_sent - resumed_wall) * 1000.0, 3)
        if activations:
            found["activated_after_rarp_ms"] = round(
                (activations[0].wall - rarp_sent) * 1000.0, 3)
    return found
