"""OVN's southbound view of a migration, from ovsdb-client's own output.

data/ovn-sb-port-binding-monitor.jsonl is what ``ovsdb-client --format=json
monitor ... Port_Binding logical_port,mac,chassis,additional_chassis,options,up``
(Open vSwitch 3.1) printed against an ovsdb-server holding OVN 23.03's
southbound schema while ``ovn-sbctl`` made the changes a live migration makes
(Neutron's requested-chassis and RARP activation, the destination's claim, its
activation, the move, the release), with a second port changing beside it.

data/ovn-sb-live-migration-monitor.jsonl is the same monitor (with
``external_ids``) on the testbed's ML2/OVN control plane while
``rally_lm_testbed.migration_check --floating`` booted a guest on hv1, took it
to hv2 and back, and deleted it: Neutron Zed and OVN 23.03 doing it for real.
"""

from pathlib import Path

import pytest

from rally_lm.migration import sdn

LINES = (Path(__file__).parent / "data" / "ovn-sb-port-binding-monitor.jsonl").read_text() \
    .splitlines()
CHASSIS = {"103e006e-6ab5-4ef0-b7a7-8688840499f8": "hv1",
           "0eec7faa-97d9-437b-9b57-f39838d1affc": "hv2"}
PORT = "4f1c0a52-5f0e-4d3e-9a55-2b0c1d9e7a10"


def replay(names=CHASSIS):
    table = sdn.PortTable(names)
    return [e for wall, line in enumerate(LINES, start=100) for e in table.update(line, wall)]


def test_a_migration_reads_as_its_steps_in_order():
    events = sdn.port_events(replay(), "10.231.48.12", 0, 1e9)
    assert [(e.kind, e.chassis, e.wall) for e in events] == [
        ("requested", None, 101),
        ("claimed", "hv2", 102),
        ("activated", "hv2", 104),
        ("requested", None, 105),
        ("moved", "hv2", 106),
        ("released", "hv2", 106),
        ("down", "hv2", 106),
        ("up", "hv2", 107),
    ]
    assert events[0].detail == "activation-strategy=rarp, requested-chassis=hv1,hv2"
    assert events[3].detail == "activation-strategy=(none), requested-chassis=hv2"
    assert events[4].detail == "from hv1"
    assert {e.port for e in events} == {PORT}


def test_the_initial_rows_are_state_and_other_ports_are_not_this_vms():
    events = replay()
    # The first line is the table as it was: no event. The other port went down.
    assert all(e.wall > 100 for e in events)
    assert [(e.kind, e.port) for e in events if e.port != PORT] == [("down", "other")]
    assert [e.kind for e in sdn.port_events(events, "10.231.48.13", 0, 1e9)] == ["down"]
    # The address must be one of the row's IPs, not a prefix of one.
    assert sdn.port_events(events, "10.231.48.1", 0, 1e9) == []


def test_a_window_bounds_the_events():
    inside = sdn.port_events(replay(), "10.231.48.12", 103.5, 105)
    assert [e.kind for e in inside] == ["activated", "requested"]


def test_unknown_chassis_stay_uuids_and_bad_lines_are_nothing():
    events = replay(names={})
    assert [e.chassis for e in events if e.kind == "claimed"] == [
        "0eec7faa-97d9-437b-9b57-f39838d1affc"]
    table = sdn.PortTable()
    assert table.update("not json", 1.0) == []
    assert table.update('{"no": "data"}', 1.0) == []


def test_events_round_trip_through_json():
    for event in replay():
        assert sdn.PortEvent.from_dict(event.to_dict()) == event


def test_the_network_share_is_named_by_the_event_that_ended_it():
    events = sdn.port_events(replay(), "10.231.48.12", 0, 1e9)
    # The guest resumed at 103.9; the RARP activated the port at 104; the
    # first request got through at 104.05.
    found = sdn.attribute(events, resumed_wall=103.9, first_through_wall=104.05, slack=0.01)
    assert found == {"network_share_ms": pytest.approx(150.0), "ended_by": "activated hv2",
                     "ended_by_after_resume_ms": pytest.approx(100.0),
                     "first_through_after_ender_ms": pytest.approx(50.0)}
    # Through before any activation: the share stays, nothing is named.
    early = sdn.attribute(events, resumed_wall=103.0, first_through_wall=103.2)
    assert early == {"network_share_ms": pytest.approx(200.0)}
    # Through before the guest ran (the probe's resolution): no negative share.
    assert sdn.attribute(events, 104.0, 103.99)["network_share_ms"] == 0.0
    assert sdn.attribute(events, None, 104.0) is None
    assert sdn.attribute(events, 104.0, None) is None


def test_an_evacuation_puts_the_ports_steps_on_the_timeline_and_names_the_share():
    from rally_lm.migration.driver import MigrationRecord
    from rally_lm.migration.evacuation import Evacuation, ProbeSettings, WorkloadVM
    from rally_lm.probes.records import ProbeClock

    clock = ProbeClock(monotonic=1000.0, wall=100.0)  # wall 100 is monotonic 1000
    vm = WorkloadVM(id="s1", name="vm0", ip="10.231.32.150", instance_name="instance-1",
                    fixed_ip="10.231.48.12")
    evacuation = Evacuation(driver=None, vms=[vm], source="hv1", target="hv2",
                            probes=ProbeSettings())
    record = MigrationRecord(server_id="s1", vm="vm0", direction="out", source="hv1",
                             target="hv2", started_at=100.5, finished_at=108.0,
                             window=(1000.5, 1008.0))
    resumed = {"wall": 103.9, "host": "hv2", "domain": "instance-1", "kind": "lifecycle",
               "detail": "Resumed Migrated"}
    record.measurements = {
        "libvirt_events": [resumed],
        # The probe's first request through, on its monotonic clock: wall 104.05.
        "network": {"anatomy": {"first_through": 1004.05, "resolution_ms": 10.0}},
        "timeline": [{"t": 3.4, "source": "libvirt", "name": "resumed"}]}
    evacuation._network_share(record, replay(), clock)
    assert record.measurements["network"]["sdn"]["ended_by"] == "activated hv2"
    assert record.measurements["network"]["sdn"]["network_share_ms"] == pytest.approx(150.0)
    # The VM's port is found by its fixed IP (the probe reached a floating one).
    steps = [(e["source"], e["name"], e["t"]) for e in record.measurements["timeline"]]
    assert ("ovn", "activated", pytest.approx(3.5)) in steps
    assert steps == sorted(steps, key=lambda s: s[2])
    assert len(record.measurements["sdn_events"]) == 8

    # Without OVN's view the share is still the network's, unnamed.
    plain = MigrationRecord(server_id="s1", vm="vm0", direction="out", source="hv1",
                            target="hv2", started_at=100.5, finished_at=108.0,
                            window=(1000.5, 1008.0))
    plain.measurements = {"libvirt_events": [resumed],
                          "network": {"anatomy": {"first_through": 1004.05}}}
    evacuation._network_share(plain, None, clock)
    assert plain.measurements["network"]["sdn"] == {"network_share_ms": pytest.approx(150.0)}
    assert "sdn_events" not in plain.measurements


LIVE = (Path(__file__).parent / "data" / "ovn-sb-live-migration-monitor.jsonl").read_text() \
    .splitlines()
LIVE_CHASSIS = {"653f812e-7c20-4b27-9c8c-1ebfeb207e0e": "hv1",
                "376030a9-c7dd-4a98-b398-0aaed295efd4": "hv2",
                "3af1639c-8cde-414b-a159-1fd07873cead": "net"}
LIVE_SERVER = "c2a57286-c9c7-4167-be8a-e77afceba226"


def test_a_real_migration_there_and_back_is_found_by_its_server():
    table = sdn.PortTable(LIVE_CHASSIS)
    events = [e for wall, line in enumerate(LIVE) for e in table.update(line, wall)]
    mine = sdn.port_events(events, "10.231.48.167", 0, 1e9, device=LIVE_SERVER)
    one_way = [("requested", None), ("claimed", "{to}"), ("activated", "{to}"),
               ("requested", None), ("moved", "{to}"), ("released", "{to}"),
               # After the move ovn-controller lets the port go and binds it again
               # (its flows removed and installed: the probes see a short second outage).
               ("down", None), ("moved", "{to}"), ("up", "{to}")]

    def way(to: str) -> list:
        return [(kind, chassis and chassis.format(to=to)) for kind, chassis in one_way]

    boot = [("requested", None), ("moved", "hv1"), ("up", "hv1")]
    assert [(e.kind, e.chassis) for e in mine] == [*boot, *way("hv2"), *way("hv1"),
                                                  ("down", None)]
    assert all(e.device == LIVE_SERVER for e in mine)
    # No port security on that network: Neutron writes "unknown" for the row's
    # addresses, so its IP alone finds nothing, and no other port was this server's.
    assert {e.addresses for e in mine} == {"unknown"}
    assert sdn.port_events(events, "10.231.48.167", 0, 1e9) == []
    assert {e.device for e in events} == {LIVE_SERVER}


# -- the listener against a real southbound database -------------------------------------

SB_SCHEMA = Path("/usr/share/ovn/ovn-sb.ovsschema")


@pytest.fixture
def southbound(tmp_path):
    """A private ovsdb-server holding OVN's southbound schema, on a unix socket."""
    import shutil
    import subprocess
    import time

    tools = ("ovsdb-server", "ovsdb-tool", "ovsdb-client", "ovn-sbctl")
    if not SB_SCHEMA.exists() or not all(shutil.which(t) for t in tools):
        pytest.skip("Open vSwitch's ovsdb tools and OVN's southbound schema are not installed")
    db, sock = tmp_path / "sb.db", tmp_path / "sb.sock"
    subprocess.run(["ovsdb-tool", "create", str(db), str(SB_SCHEMA)], check=True)
    server = subprocess.Popen(["ovsdb-server", str(db), f"--remote=punix:{sock}",
                               f"--unixctl={tmp_path / 'ctl'}", "--no-chdir"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not sock.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    remote = f"unix:{sock}"

    def sbctl(*args: str) -> str:
        return subprocess.run(["ovn-sbctl", f"--db={remote}", *args], check=True,
                              capture_output=True, text=True).stdout.strip()

    yield remote, sbctl, server
    server.terminate()
    server.wait(10)


def _wait_for(condition, timeout: float = 10.0) -> None:
    import time
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_the_listener_follows_a_migrations_steps_in_a_real_southbound_database(southbound):
    remote, sbctl, _server = southbound
    sbctl("chassis-add", "hv1", "geneve", "10.99.0.1")
    sbctl("chassis-add", "hv2", "geneve", "10.99.0.2")
    hv1 = sbctl("--bare", "--columns=_uuid", "find", "Chassis", "name=hv1")
    hv2 = sbctl("--bare", "--columns=_uuid", "find", "Chassis", "name=hv2")
    datapath = sbctl("create", "Datapath_Binding", "tunnel_key=1")
    port = sbctl("create", "Port_Binding", "logical_port=port-1", f"datapath={datapath}",
                 "tunnel_key=1", 'mac="fa:16:3e:00:00:01 10.0.0.5"', f"chassis={hv1}",
                 'external_ids:"neutron:device_id"=server-1', "up=true")
    listener = sdn.SouthboundListener(remote).start()
    assert listener.error is None
    assert listener.table.chassis_names == {hv1: "hv1", hv2: "hv2"}
    _wait_for(lambda: listener.table.rows)  # the monitor's initial rows: state, no events
    assert listener.events() == []
    # The steps Neutron and the two ovn-controllers write, one transaction each.
    sbctl("set", "Port_Binding", port, 'options:requested-chassis="hv1,hv2"',
          "options:activation-strategy=rarp")
    sbctl("set", "Port_Binding", port, f"additional_chassis={hv2}")
    sbctl("set", "Port_Binding", port, 'options:additional-chassis-activated="hv1,hv2"')
    sbctl("set", "Port_Binding", port, f"chassis={hv2}", "additional_chassis=[]")
    sbctl("set", "Port_Binding", port, "up=false")
    # Another VM's port, booting: no chassis yet, then bound; two addresses.
    other = sbctl("create", "Port_Binding", "logical_port=port-2", f"datapath={datapath}",
                  "tunnel_key=2", 'mac=["fa:16:3e:00:00:02 10.0.0.6",unknown]')
    sbctl("set", "Port_Binding", other, f"chassis={hv1}")
    _wait_for(lambda: len(listener.events()) >= 7)
    events = listener.stop()
    assert listener.error is None
    assert [(e.kind, e.chassis) for e in events] == [
        ("requested", None), ("claimed", "hv2"), ("activated", "hv2"), ("moved", "hv2"),
        ("released", "hv2"), ("down", "hv2"), ("moved", "hv1")]
    assert [e.detail for e in events] == [
        "activation-strategy=rarp, requested-chassis=hv1,hv2", "",
        "additional-chassis-activated=hv2", "from hv1", "", "", "from (none)"]
    booted = events.pop()
    assert (booted.port, booted.device) == ("port-2", "")
    assert booted.addresses == "fa:16:3e:00:00:02 10.0.0.6 unknown"
    assert sdn.port_events([booted], "10.0.0.6", 0, 2e9) == [booted]
    assert [e.wall for e in events] == sorted(e.wall for e in events)
    assert {(e.port, e.device, e.addresses) for e in events} == {
        ("port-1", "server-1", "fa:16:3e:00:00:01 10.0.0.5")}
    assert sdn.port_events(events, "10.0.0.9", 0, 2e9, device="server-1") == events
    assert sdn.port_events(events, "10.0.0.5", 0, 2e9) == events
    assert sdn.port_events(events, "10.0.0.9", 0, 2e9, device="server-2") == []


def test_the_listener_says_when_the_database_went_away(southbound):
    remote, _sbctl, server = southbound
    listener = sdn.SouthboundListener(remote).start()
    _wait_for(lambda: listener._stream is not None)
    server.terminate()
    server.wait(10)
    _wait_for(lambda: listener._stream.proc.poll() is not None)
    assert listener.stop() == []
    assert listener.error.startswith(f"ovsdb-client monitor {remote} stopped early: ")


def test_the_listener_reports_an_unreachable_database_or_a_missing_client(tmp_path,
                                                                          monkeypatch):
    import shutil
    if not shutil.which("ovsdb-client"):
        pytest.skip("ovsdb-client is not installed")
    listener = sdn.SouthboundListener(f"unix:{tmp_path / 'nothing.sock'}").start()
    assert listener.error.startswith("OVN southbound database not readable: ")
    assert listener.stop() == []
    monkeypatch.setattr(sdn.shutil, "which", lambda name: None)
    missing = sdn.SouthboundListener("tcp:127.0.0.1:1").start()
    assert missing.error == "ovsdb-client is not installed (openvswitch-common)"
    assert missing.chassis_names() == {} and missing.stop() == []


def _event(kind: str, wall: float, chassis: str = "hv2") -> sdn.PortEvent:
    return sdn.PortEvent(wall, "port-1", "fa:16:3e:00:00:01 10.0.0.5", kind, chassis)


def test_the_share_is_ended_by_the_last_activation_or_move_before_the_first_request_through():
    events = [_event("claimed", 9.0), _event("activated", 10.0), _event("moved", 10.2),
              _event("up", 10.25), _event("moved", 10.5, "hv1")]
    share = sdn.attribute(events, resumed_wall=10.1, first_through_wall=10.3)
    assert share == {"network_share_ms": 200.0, "ended_by": "moved hv2",
                     "ended_by_after_resume_ms": 100.0, "first_through_after_ender_ms": 100.0}
    # Within the probe's resolution (slack) an event just after still counts;
    # exactly at the first request through counts without it.
    assert sdn.attribute(events, 10.1, 10.45, slack=0.05)["ended_by"] == "moved hv1"
    assert sdn.attribute(events, 10.1, 10.45)["ended_by"] == "moved hv2"
    assert sdn.attribute(events, 10.1, 10.5)["ended_by"] == "moved hv1"
    assert sdn.attribute(events, 10.1, 10.2004)["network_share_ms"] == 100.4
    unnamed = sdn.attribute([_event("activated", 10.0, None)], 10.0, 10.0001234)
    assert unnamed == {"network_share_ms": 0.123, "ended_by": "activated",
                       "ended_by_after_resume_ms": 0.0, "first_through_after_ender_ms": 0.123}
    assert sdn.attribute(events, None, 10.3) is None and sdn.attribute(events, 10.1, None) is None


def test_an_activation_seen_after_the_first_request_through_still_ended_the_share():
    # ovn-controller opened the port on the RARP; its southbound row reached the
    # tool 40 ms after the first request got through (CI, a busy control plane).
    events = [_event("claimed", 9.0), _event("rarp", 10.0), _event("activated", 10.09),
              _event("activated", 10.3), _event("moved", 10.4), _event("activated", 10.2, "hv1")]
    share = sdn.attribute(events, resumed_wall=10.01, first_through_wall=10.05, slack=0.02,
                          destination="hv2")
    assert share["ended_by"] == "activated hv2"
    assert share["first_through_after_ender_ms"] == pytest.approx(-40.0)
    assert share["ended_by_after_resume_ms"] == pytest.approx(80.0)
    # Only the destination's own activation: the source's is not what opened it.
    elsewhere = sdn.attribute(events[:2] + events[-1:], 10.01, 10.05, 0.02, "hv2")
    assert "ended_by" not in elsewhere
    # No RARP at the destination before the first request through (or none seen,
    # no chassis watch): a later activation is not what let it through.
    unseen = [e for e in events if e.kind != "rarp"]
    assert "ended_by" not in sdn.attribute(unseen, 10.01, 10.05, 0.02, "hv2")
    after = [_event("rarp", 10.08)] + events[2:]
    assert "ended_by" not in sdn.attribute(after, 10.01, 10.05, 0.02, "hv2")
    assert sdn.attribute(after, 10.01, 10.05, 0.03, "hv2")["ended_by"] == "activated hv2"
    # Without an activation nothing is named: a move after the first request through
    # did not let it through.
    moved_late = sdn.attribute([_event("moved", 10.09)], 10.01, 10.05, 0.02, "hv2")
    assert moved_late == {"network_share_ms": 40.0}


def test_the_destinations_first_rarp_is_placed_against_the_resume_and_the_activation():
    # QEMU announces the guest a few times; a RARP elsewhere (the source) is not it.
    events = [_event("claimed", 9.0), _event("rarp", 9.98, "hv1"), _event("rarp", 10.004),
              _event("activated", 10.0), _event("rarp", 10.06), _event("activated", 10.02),
              _event("activated", 10.5, "hv1")]
    share = sdn.attribute(events, resumed_wall=10.01, first_through_wall=10.03,
                          destination="hv2")
    assert share["ended_by"] == "activated hv2"
    assert share["rarp_after_resume_ms"] == pytest.approx(-6.0)
    assert share["activated_after_rarp_ms"] == pytest.approx(16.0)
    # Without a destination named, any compute's first RARP and activation after it.
    anywhere = sdn.attribute(events, 10.01, 10.03)
    assert anywhere["rarp_after_resume_ms"] == pytest.approx(-30.0)
    assert anywhere["activated_after_rarp_ms"] == pytest.approx(20.0)
    # No RARP seen (no chassis watch): nothing said about it.
    plain = sdn.attribute([e for e in events if e.kind != "rarp"], 10.01, 10.03, 0.0, "hv2")
    assert "rarp_after_resume_ms" not in plain and "activated_after_rarp_ms" not in plain
    late = sdn.attribute([_event("rarp", 10.2), _event("activated", 10.0)], 10.01, 10.03,
                         destination="hv2")
    assert late["rarp_after_resume_ms"] == pytest.approx(190.0)
    assert "activated_after_rarp_ms" not in late
    # The capture's own time, where the compute stamped it: its line reached the
    # tool after the activation it caused, the frame itself was on the wire before.
    captured = sdn.PortEvent(10.05, "", "fa:16:3e:00:00:01", "rarp", "hv2", host_wall=10.004)
    stamped = sdn.attribute([captured, _event("activated", 10.02)], 10.01, 10.03,
                            destination="hv2")
    assert stamped["rarp_after_resume_ms"] == pytest.approx(-6.0)
    assert stamped["activated_after_rarp_ms"] == pytest.approx(16.0)


# -- a compute's own view: its OVS interfaces and the RARPs it receives -------------------

VSWITCH_SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
# A compute of its own: a private /run (its ovsdb-server on the default socket, where
# ovsdb-client looks), a private network with a veth pair standing for a guest's tap.
COMPUTE_SETUP = (
    "mount -t tmpfs rally-lm-test /run && mkdir -p /run/openvswitch && "
    f"ovsdb-tool create /run/openvswitch/conf.db {VSWITCH_SCHEMA} && "
    "ovsdb-server /run/openvswitch/conf.db --remote=punix:/run/openvswitch/db.sock "
    "--pidfile=/run/openvswitch/ovsdb-server.pid --detach --no-chdir && "
    "ovs-vsctl --no-wait init && "
    "ip link add tapguest type veth peer name tapwire && "
    "ip link set tapguest up && ip link set tapwire up && echo ready && exec sleep 600")
# QEMU's self-announcement: a broadcast RARP request naming the guest's MAC twice.
SEND_RARP = (
    "import socket, struct, sys\n"
    "mac = bytes.fromhex(sys.argv[1].replace(':', ''))\n"
    "s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n"
    "s.bind(('tapguest', 0))\n"
    "s.send(b'\\xff' * 6 + mac + struct.pack('!HHHBBH', 0x8035, 1, 0x0800, 6, 4, 3)\n"
    "       + mac + bytes(4) + mac + bytes(4) + bytes(18))\n")


@pytest.fixture
def compute():
    """(shell, run): a private mount and network namespace with its own ovsdb-server."""
    import os
    import shutil
    import subprocess

    tools = ("ovsdb-server", "ovsdb-tool", "ovsdb-client", "ovs-vsctl", "tcpdump",
             "unshare", "nsenter")
    if os.geteuid() != 0 or not VSWITCH_SCHEMA.exists() or \
            not all(shutil.which(t) for t in tools):
        pytest.skip("needs root, Open vSwitch's ovsdb tools and tcpdump")
    holder = subprocess.Popen(["unshare", "--mount", "--net", "--fork", "--kill-child", "sh", "-c",
                               COMPUTE_SETUP], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "ready"
    # unshare --fork: the namespaces are its child's.
    child = subprocess.run(["pgrep", "-P", str(holder.pid)], capture_output=True,
                           text=True).stdout.split()[0]
    shell = ["nsenter", "-t", child, "-m", "-n", "sh", "-c"]

    def run(script: str) -> str:
        return subprocess.run([*shell, script], check=True, capture_output=True,
                              text=True).stdout

    yield shell, run
    subprocess.run([*shell, "kill $(cat /run/openvswitch/ovsdb-server.pid)"])
    holder.kill()  # --kill-child: its child goes with it
    holder.wait(10)


def _remote_watches_running(shell: list[str]) -> str:
    import subprocess
    return subprocess.run([*shell, "ps -eo pid,args | grep -E 'tcpdump -i any|ovsdb-client "
                           "--format=json monitor Open_vSwitch' | grep -v grep || true"],
                          capture_output=True, text=True).stdout


def test_the_chassis_watch_sees_flows_installed_and_the_guests_rarp(compute):
    shell, run = compute
    assert sdn.check_chassis(shell) is None
    run("ovs-vsctl --no-wait add-br br-int")
    listener = sdn.ChassisListener("hv2", shell).start()
    _wait_for(lambda: listener.interfaces.rows)  # the monitor's initial rows
    # os-vif plugs the port; ovn-controller claims it, installs its flows, marks it.
    run("ovs-vsctl --no-wait add-port br-int tapguest -- set Interface "
        "tapguest external_ids:iface-id=port-1")
    run("ovs-vsctl --no-wait set Interface tapguest external_ids:ovn-installed=true "
        "external_ids:ovn-installed-ts=1796636874377")
    import time
    time.sleep(1.0)  # tcpdump is capturing by now (it prints nothing when it starts)
    run(f"python3 -c \"{SEND_RARP}\" fa:16:3e:00:00:01")
    run("ovs-vsctl --no-wait remove Interface tapguest external_ids ovn-installed")
    _wait_for(lambda: len(listener._events) >= 3)
    events = listener.stop()
    assert listener.error is None
    kinds = [(e.kind, e.chassis, e.port, e.addresses, e.detail) for e in events]
    # The frame is seen where the guest sent it (Out, not counted) and where it
    # arrived (the other end of the pair): one RARP received.
    assert kinds == [("installed", "hv2", "port-1", "", "on tapguest"),
                     ("rarp", "hv2", "", "fa:16:3e:00:00:01", "on tapwire"),
                     ("uninstalled", "hv2", "port-1", "", "on tapguest")]
    assert events[0].host_wall == pytest.approx(1796636874.377)
    assert abs(events[1].host_wall - events[1].wall) < 5.0  # the capture's own clock
    assert events[2].host_wall is None
    # Nothing left running on the compute once the listener stopped.
    assert _remote_watches_running(shell) == ""
    # The southbound rows name the port's server: by logical port, or by MAC.
    table = sdn.PortTable()
    table.rows["r1"] = {"logical_port": "port-1", "mac": ["fa:16:3e:00:00:01 10.0.0.5"],
                        "external_ids": {"neutron:device_id": "server-1"}}
    named = table.identify(events)
    assert {(e.port, e.addresses, e.device) for e in named} == {
        ("port-1", "fa:16:3e:00:00:01 10.0.0.5", "server-1")}
    assert table.identify([sdn.PortEvent(1.0, "", "fa:16:3e:00:00:09", "rarp")])[0].device == ""


def test_the_chassis_watch_says_what_a_compute_lacks_and_when_a_watch_died(compute):
    shell, run = compute
    run("kill $(cat /run/openvswitch/ovsdb-server.pid)")
    assert sdn.check_chassis(shell) == "no Open_vSwitch database at ovsdb-client default socket"
    listener = sdn.ChassisListener("hv1", shell).start()
    _wait_for(lambda: listener._streams[0].proc.poll() is not None)
    assert listener.stop() == []
    assert listener.error.startswith("hv1: hv1-ovs watch stopped early: ")
    assert sdn.check_chassis(["false"]) == "exit 1"
    assert sdn.check_chassis(["/nonexistent/ssh"]).startswith("no shell: ")


def test_a_chassis_watch_without_its_shell_is_an_error_not_a_crash():
    listener = sdn.ChassisListener("hv2", ["/nonexistent/ssh"]).start()
    assert listener.error.startswith("hv2: ovs watch not started: "), listener.error
    assert listener.stop() == []


def test_only_received_rarps_are_events():
    line = ("1796636874.377699 tap1c2f0a B   ifindex 2 fa:16:3e:11:22:33 ethertype Reverse "
            "ARP (0x8035), length 66: Reverse Request who-is fa:16:3e:11:22:33 tell "
            "fa:16:3e:11:22:33, length 46")
    event = sdn.rarp_event(line, 10.0, "hv2")
    assert (event.kind, event.chassis, event.addresses, event.detail, event.host_wall) == (
        "rarp", "hv2", "fa:16:3e:11:22:33", "on tap1c2f0a", 1796636874.377699)
    assert sdn.rarp_event(line.replace(" B   ", " Out "), 10.0, "hv2") is None
    assert sdn.rarp_event("listening on any, link-type LINUX_SLL2", 10.0, "hv2") is None
    assert sdn.PortEvent.from_dict(event.to_dict()) == event


def test_a_computes_events_join_the_timeline_by_the_ports_server(monkeypatch):
    from rally_lm.migration.driver import MigrationRecord
    from rally_lm.migration.evacuation import Evacuation, ProbeSettings, WorkloadVM
    from rally_lm.probes.records import ProbeClock

    clock = ProbeClock(monotonic=1000.0, wall=100.0)
    vm = WorkloadVM(id="s1", name="vm0", ip="10.231.32.150", instance_name="instance-1",
                    fixed_ip="10.0.0.5")
    uris = {"hv1": "qemu+ssh://root@hv1/system", "hv2": "qemu+tls://hv2/system"}
    evacuation = Evacuation(driver=None, vms=[vm], source="hv1", target="hv2",
                            probes=ProbeSettings(), hypervisor_uris=uris,
                            ovn_chassis_watch=True)
    started: list = []
    monkeypatch.setattr(sdn.ChassisListener, "start", lambda self: started.append(self) or self)
    watches = evacuation._chassis_listeners()
    # hv2 gives no shell: said in the round trip's errors, hv1 still watched.
    assert [(w.chassis, w.shell[-2]) for w in watches] == [("hv1", "root@hv1")]
    assert started == watches
    assert evacuation.trip.errors == [
        "ovn_chassis_watch: no qemu+ssh:// hypervisor URI for hv2"]
    assert Evacuation(driver=None, vms=[vm], source="hv1", target="hv2",
                      probes=ProbeSettings(), hypervisor_uris=uris)._chassis_listeners() == []

    table = sdn.PortTable()
    table.rows["r1"] = {"logical_port": "port-1", "mac": ["fa:16:3e:00:00:01 10.0.0.5"],
                        "external_ids": {"neutron:device_id": "s1"}}
    seen = [sdn.PortEvent(103.2, "port-1", "", "installed", "hv2", "on tap1"),
            sdn.PortEvent(103.95, "", "fa:16:3e:00:00:01", "rarp", "hv2", "on tap1"),
            sdn.PortEvent(103.96, "", "fa:16:3e:00:00:09", "rarp", "hv2", "on tap9")]
    events = table.identify(seen) + [
        sdn.PortEvent(103.97, "port-1", "fa:16:3e:00:00:01 10.0.0.5", "activated", "hv2",
                      device="s1")]
    record = MigrationRecord(server_id="s1", vm="vm0", direction="out", source="hv1",
                             target="hv2", started_at=100.5, finished_at=108.0,
                             window=(1000.5, 1008.0))
    record.measurements = {
        "libvirt_events": [{"wall": 103.9, "host": "hv2", "domain": "instance-1",
                            "kind": "lifecycle", "detail": "Resumed Migrated"}],
        "network": {"anatomy": {"first_through": 1004.0, "resolution_ms": 10.0}}}
    evacuation._network_share(record, events, clock)
    steps = [(e["name"], e["t"], e.get("detail")) for e in record.measurements["timeline"]]
    assert steps == [("installed", pytest.approx(2.7), "on tap1"),
                     ("rarp", pytest.approx(3.45), "on tap1"),
                     ("activated", pytest.approx(3.47), None)]
    share = record.measurements["network"]["sdn"]
    assert share["rarp_after_resume_ms"] == pytest.approx(50.0)
    assert share["activated_after_rarp_ms"] == pytest.approx(20.0)
