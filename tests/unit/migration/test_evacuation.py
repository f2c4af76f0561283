"""A whole round trip without root: FakeNova on real time, echo services on loopback.

The probes are the real ones (UDP echo to 127.0.0.N, a real TCP stream), so
every measurement below was made, not stubbed. What goes wrong is injected
where a cloud would fail: Nova's HTTP API (503s), a server left in ERROR, a
failure of our own code, a probe that dies half-way.
"""

import socket

import pytest
from keystoneauth1 import session as ks_session
from keystoneauth1 import token_endpoint

from rally_lm.clients.nova import NovaAdapter, make_client
from rally_lm.migration import evacuation as evacuation_module
from rally_lm.migration.driver import MigrationDriver, MigrationPolicy
from rally_lm.migration.evacuation import Evacuation, ProbeSettings, WorkloadVM
from rally_lm.probes.downtime import DowntimeProbe
from rally_lm.probes.echo_server import EchoServer
from rally_lm.task import output
from tests.fakes.fake_nova import FakeNova, Plan

QUICK = Plan(preparing=0.1, running=0.3, post=0.1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.2", 0))
        return sock.getsockname()[1]


@pytest.fixture
def cloud():
    import time

    nova = FakeNova(time.monotonic).start()
    port = free_port()
    echoes, vms = [], []
    for index in range(2):
        address = f"127.0.0.{index + 2}"
        echoes.append(EchoServer(address, tcp_port=port, udp_port=port).start())
        server_id = nova.add_server(f"vm{index}")
        nova.plan(server_id, QUICK, QUICK)
        vms.append(WorkloadVM(id=server_id, name=f"vm{index}", ip=address))
    sess = ks_session.Session(auth=token_endpoint.Token(nova.url, "fake-token"))
    adapter = NovaAdapter(make_client(sess))
    yield nova, adapter, vms, port
    for echo in echoes:
        echo.stop()
    nova.stop()


def evacuation(adapter, vms, port, **kwargs):
    driver = MigrationDriver(adapter, MigrationPolicy(status_grace=3.0, timeout=30,
                                                      watch_interval=1.0))
    probes = ProbeSettings(interval=0.01, udp_port=port, tcp_port=port,
                           tcp_rate_bytes=10240, settle=0.3)
    return Evacuation(driver, vms, "hv1", "hv2", probes, pause=0.2, **kwargs)


def rows(trip):
    return [dict(zip(output.MIGRATION_COLUMNS, output.migration_row(r), strict=True))
            for r in trip.records]


def test_a_clean_round_trip_measures_every_migration(cloud):
    _nova, adapter, vms, port = cloud
    lines = []
    trip = evacuation(adapter, vms, port,
                      progress=lambda r, p: lines.append((r.vm, p))).round_trip()
    assert [(r.vm, r.direction, r.outcome) for r in trip.records] == [
        ("vm0", "out", "completed"), ("vm1", "out", "completed"),
        ("vm0", "back", "completed"), ("vm1", "back", "completed")]
    assert [vm for vm, _p in lines] == ["vm0", "vm1", "vm0", "vm1"]
    # A provisional client downtime for each progress line.
    assert all(p["client_downtime_ms"] > 0 for _vm, p in lines)
    for row in rows(trip):
        # Nothing was lost: the longest silence is an ordinary round trip
        # (on loopback well under a second however loaded the machine is;
        # not a speed target, a sign that no outage was invented).
        assert row["lost"] == 0 and row["tcp_resets"] == 0
        assert 0 < row["client_downtime_ms"] < 1000
        # No hypervisor URIs: no hypervisor figures, and no zeros pretending to be.
        assert row["hypervisor_downtime_ms"] is None and row["dirty_rate_mib_s"] is None
    assert [(d.direction, d.planned, d.attempted, d.succeeded) for d in trip.drains] == [
        ("out", 2, 2, 2), ("back", 2, 2, 2)]
    assert all(d.seconds > 0 for d in trip.drains)
    # The evacuation, defined twice: the drain's wall time holds its migrations.
    assert all(0 < d.migrations_s <= d.seconds and d.tool_s >= 0 for d in trip.drains)
    # Where the VMs are: one server list per drain; each server read once, after
    # its migration; the in-progress record read while it ran, Nova only.
    assert trip.api_requests["GET /servers/detail"] == 2
    assert trip.api_requests["GET /servers/{id}"] == 4
    assert trip.api_requests["POST /servers/{id}/action"] == 4
    assert sum(trip.api_requests.values()) == sum(sum(r.api_requests.values())
                                                  for r in trip.records) + 2
    assert trip.host_load["samples"] >= 1 and "busy_share" in trip.host_load
    assert trip.vms["vm0"]["tcp"]["original_connection_survived"]
    timeline = trip.records[0].measurements["timeline"]
    assert [e["t"] for e in timeline] == sorted(e["t"] for e in timeline)
    tool = {e["name"]: e for e in timeline if e["source"] == "tool"}
    assert tool["api_call"]["t"] == 0.0 and tool["nova_done"]["t"] > 0
    # Nova stores whole seconds: its events say so.
    assert all(e["resolution_ms"] == 1000.0 for e in timeline if e["source"] == "nova")
    assert {e["name"] for e in timeline if e["source"] == "probe"} >= {"silence began",
                                                                      "first reply"}


def test_api_hiccups_lose_no_record(cloud):
    nova, adapter, vms, port = cloud
    # A flapping nova-api: the first two reads of vm0 fail (around its first
    # migration), and once the host is drained, every read of vm1 fails
    # three times in a row - when the return trip asks where it is.
    nova.fail("GET", rf"/servers/{vms[0].id}$", times=2)

    def progress(record, _provisional):
        if record.direction == "out" and record.vm == "vm1":
            # The list of where the VMs are fails too: each is then asked alone.
            nova.fail("GET", r"/servers/detail", times=1)
            nova.fail("GET", rf"/servers/{vms[1].id}$", times=3)

    trip = evacuation(adapter, vms, port, progress=progress).round_trip()
    outcomes = [(r.vm, r.direction, r.outcome) for r in trip.records]
    assert outcomes == [("vm0", "out", "completed"), ("vm1", "out", "completed"),
                        ("vm1", "back", "skipped"), ("vm0", "back", "completed")], outcomes
    skipped = trip.records[2]
    assert "Nova could not say where the server is" in skipped.error
    assert "503" in skipped.error
    # Success over planned: 3 of 4.
    assert sum(r.succeeded for r in trip.records) == 3


def test_a_vm_in_error_is_skipped_with_where_it_is(cloud):
    nova, adapter, vms, port = cloud
    nova.servers[vms[1].id]["status"] = "ERROR"
    trip = evacuation(adapter, vms, port).round_trip()
    vm1 = [r for r in trip.records if r.vm == "vm1"]
    assert [r.outcome for r in vm1] == ["skipped", "skipped"]
    assert "not ACTIVE on hv1: the server is ERROR on hv1" in vm1[0].error
    assert [(d.planned, d.attempted) for d in trip.drains] == [(2, 1), (2, 1)]
    # Skipped migrations have no duration and no downtime, not zeros.
    skipped_rows = [r for r in rows(trip) if r["outcome"] == "skipped"]
    assert all(r["duration_s"] is None and r["client_downtime_ms"] is None
               for r in skipped_rows)


def test_our_own_failure_is_a_tool_error_and_the_round_trip_goes_on(cloud, monkeypatch):
    _nova, adapter, vms, port = cloud
    evac = evacuation(adapter, vms, port)
    real = evac.driver.migrate

    def broken(server_id, vm, *args, **kwargs):
        if vm == "vm0" and args[-1] == "out":
            raise KeyError("a bug of ours")
        return real(server_id, vm, *args, **kwargs)

    monkeypatch.setattr(evac.driver, "migrate", broken)
    trip = evac.round_trip()
    first = trip.records[0]
    assert first.outcome == "tool_error" and "KeyError" in first.error
    assert [r.outcome for r in trip.records[1:]] == ["completed", "skipped", "completed"]
    # vm0 never left hv1 (the call raised before the API call), so its
    # return trip is skipped with the reason, not silently dropped.
    assert "not ACTIVE on hv2" in trip.records[2].error


def test_a_probe_that_dies_keeps_what_it_measured_before(cloud, monkeypatch):
    _nova, adapter, vms, port = cloud
    state = {"broken": False}
    real_send = DowntimeProbe._send

    def send(self, index):
        if state["broken"] and self.protocol == "udp":
            raise OSError("the probe's socket went away")
        return real_send(self, index)

    monkeypatch.setattr(DowntimeProbe, "_send", send)

    def progress(record, _provisional):
        if record.direction == "out" and record.vm == "vm1":
            state["broken"] = True

    trip = evacuation(adapter, vms, port, progress=progress).round_trip()
    table = rows(trip)
    assert [r["client_downtime_ms"] is not None for r in table] == [True, True, False, False]
    assert "udp probe failed: the probe's socket went away" in table[2]["error"]
    assert any("udp probe failed" in e for e in trip.errors)


def test_an_escaping_interrupt_still_leaves_the_records(cloud, monkeypatch):
    _nova, adapter, vms, port = cloud
    evac = evacuation(adapter, vms, port)
    real = evac.driver.migrate
    count = {"n": 0}

    def interrupted(*args, **kwargs):
        count["n"] += 1
        if count["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(evac.driver, "migrate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        evac.round_trip()
    assert [r.outcome for r in evac.trip.records] == ["completed", "completed"]
    # Measured in the finally: the partial trip is reportable.
    assert all("network" in r.measurements for r in evac.trip.records)


def test_requests_around_an_outage_are_the_raw_sends_and_replies():
    import array

    from rally_lm.probes.records import ProbeClock, TargetTimeline

    timeline = TargetTimeline("10.0.0.5", "udp", 0.01, ProbeClock(0.0, 0.0),
                              sent=array.array("d", [1.0, 1.01, 1.02, 1.03]),
                              received=array.array("d", [1.001, float("nan"), 1.05, 1.031]))
    rows_ = evacuation_module.requests_around(timeline, 1.01, 1.02, margin=0.005)
    assert rows_ == [[1.01, None], [1.02, 1.05]]


def test_a_round_trip_survives_json(cloud):
    import json

    from rally_lm.migration.evacuation import RoundTrip

    _nova, adapter, vms, port = cloud
    trip = evacuation(adapter, vms[:1], port).round_trip()
    again = RoundTrip.from_dict(json.loads(json.dumps(trip.to_dict())))
    assert json.loads(json.dumps(again.to_dict())) == json.loads(json.dumps(trip.to_dict()))
    assert again.records[0].window == trip.records[0].window
    assert [output.migration_row(r) for r in again.records] == \
        [output.migration_row(r) for r in trip.records]


def test_a_stall_longer_than_the_switchover_is_gated_and_reported_as_such():
    from rally_lm.probes.timeline import MigrationWindow, find_disruptions
    from tests.unit.probes.test_anatomy import stall_then_switchover

    timeline = stall_then_switchover()
    outages, spikes = find_disruptions(timeline)
    view = Evacuation._network_view(timeline, MigrationWindow("10.0.0.5", 100.0, 102.0),
                                    outages, spikes, None, None)
    assert view["client_downtime_ms"] == pytest.approx(view["stall_ms"])
    assert view["stall_ms"] > view["anatomy"]["client_downtime_ms"]
    assert view["anatomy"]["silence_start"] == pytest.approx(100.70)
    assert view["anatomy"]["lost"] == 6


def test_a_migration_that_left_the_guest_on_its_source_has_no_pause():
    from rally_lm.probes.timeline import MigrationWindow, find_disruptions
    from tests.unit.probes.test_anatomy import stall_during_an_aborted_copy

    timeline = stall_during_an_aborted_copy()
    outages, spikes = find_disruptions(timeline)
    window = MigrationWindow("10.0.0.5", 100.0, 101.0)
    moved = Evacuation._network_view(timeline, window, outages, spikes, None, None)
    stayed = Evacuation._network_view(timeline, window, outages, spikes, None, None,
                                      switched_over=False)
    assert moved["anatomy"]["resume_lag_ms"] > 90.0
    assert stayed["anatomy"]["resume_lag_ms"] == 0.0
    assert stayed["anatomy"]["source_stall_ms"] > 90.0
    assert stayed["client_downtime_ms"] == moved["client_downtime_ms"]


def test_novas_switch_to_post_copy_is_a_forced_completion(cloud, monkeypatch):
    """libvirt's events say the source switched to post-copy; nobody asked Nova to."""
    from rally_lm.migration import hypervisor

    _nova, adapter, vms, port = cloud
    vms = [WorkloadVM(id=v.id, name=v.name, ip=v.ip, instance_name=f"instance-{v.name}")
           for v in vms]
    evac = None

    class Listener:
        error = None

        def __init__(self, uri, host):
            self.host = host

        def start(self):
            return self

        def events(self):
            # While the round trip runs: what virsh has printed so far.
            if self.host != "hv1" or not migrated:
                return []
            out = migrated[0]
            return [hypervisor.DomainEvent(out.started_at + 0.2, "hv1", "instance-vm0",
                                           "lifecycle", "Suspended Post-copy"),
                    hypervisor.DomainEvent(out.started_at + 0.35, "hv1", "instance-vm0",
                                           "job-completed", "", {"downtime": 20})]

        def stop(self):
            return self.events()

    class Sampler:
        def __init__(self, uri, name, interval, clock):
            self.clock = clock

        def start(self):
            self.began = self.clock()
            return self

        def stop(self):
            sample = hypervisor.JobSample(self.began + 0.1, 1, 100, 10, 50, 25).to_dict()
            return hypervisor.summarize_samples([hypervisor.JobSample(**sample)])

    monkeypatch.setattr(hypervisor, "DomainEventListener", Listener)
    monkeypatch.setattr(hypervisor, "JobSampler", Sampler)
    def unknown_state(uri, name):
        raise hypervisor.HypervisorStatsError("not asked in this test")
    monkeypatch.setattr(hypervisor, "domain_state", unknown_state)
    monkeypatch.setattr(hypervisor, "completed_job", lambda uri, name: {"downtime_ms": 20})
    uris = {"hv1": "qemu:///hv1", "hv2": "qemu:///hv2"}
    driver = MigrationDriver(adapter, MigrationPolicy(status_grace=3.0, timeout=30,
                                                      watch_interval=1.0))
    probes = ProbeSettings(interval=0.01, udp_port=port, tcp_port=port, tcp_rate_bytes=10240,
                           settle=0.3, dirty_rate_seconds=0, icmp=False)
    migrated = []
    migrate = driver.migrate

    def remembered(*args, **kwargs):
        migrated.append(migrate(*args, **kwargs))
        return migrated[-1]

    monkeypatch.setattr(driver, "migrate", remembered)
    lines = []
    evac = Evacuation(driver, vms, "hv1", "hv2", probes, pause=0.2, hypervisor_uris=uris,
                      progress=lambda r, _p: lines.append((r.vm, r.direction, r.outcome)))
    trip = evac.round_trip()
    by_key = {(r["vm"], r["direction"]): r for r in rows(trip)}
    forced = by_key[("vm0", "out")]
    assert (forced["outcome"], forced["timeout_by"], forced["copy_mode"]) == (
        "timeout_forced", "nova", "post-copy")
    # The progress line, printed before the round trip's end, says so too.
    assert ("vm0", "out", "timeout_forced") in lines
    assert ("vm1", "out", "completed") in lines
    assert round(forced["postcopy_ms"]) == 150
    assert forced["throttle_max_pct"] == 25
    assert by_key[("vm1", "out")]["copy_mode"] == "pre-copy"
    assert by_key[("vm1", "out")]["outcome"] == "completed"
    # Samples sit on the migration's own timeline: seconds since its API call.
    sample_t = trip.records[0].measurements["job"]["samples"][0]["t"]
    assert 0 < sample_t < 0.2
