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
