"""The testbed on ML2/OVN: Geneve tenant networks, OVN's gateway router, and live
migration as Neutron Zed does it with OVN (multiple port bindings, RARP activation).

These run after every other test of the session (``last``): they bring the
testbed up again with ``--network ovn``; ``test_down_leaves_nothing`` then
takes it down, OVN's daemons included. One guest goes there and back per
storage mode that matters (Ceph: the seed's shared storage; local: block
migration), probed by floating IP through OVN's router, with OVN's southbound
view of its port; then a Rally cell of the stock cloud image through the real
rally CLI.
"""

import json

import pytest

from rally_lm.task.output import GUEST_TITLE, table_rows
from rally_lm_testbed import compute, hosts, layout, ovn, rally_runner, testbed
from tests.functional.test_testbed import (
    ARGS,
    RESULTS,
    TEMPLATE,
    migration_check,
    migrations_of,
    record,
)


def records_of(report) -> list[dict]:
    """The migration records a Rally JSON report kept (its "Migration records" charts)."""
    data = json.loads(report.read_text())
    workload = data["tasks"][0]["subtasks"][0]["workloads"][0]
    return [r for it in workload["data"] for chart in it["output"]["complete"]
            if chart["title"].startswith("Migration records")
            for r in json.loads(chart["data"][0])]

pytestmark = [pytest.mark.functional, pytest.mark.testbed, pytest.mark.last]


@pytest.fixture(scope="module")
def ovn_testbed(testbed_session):
    testbed.down(quiet=True)
    seconds = testbed.up("ovn")
    record("up_ovn", {"seconds": round(seconds, 1)})
    return seconds


def test_up_with_ovn_runs_a_chassis_per_host_and_patches_nothing_of_the_machine(ovn_testbed):
    status = testbed.status()
    assert status["up"] and status["network"] == "ovn", status["services"]
    assert not any(d.endswith(("linuxbridge-agent", "l3-agent")) for d in status["services"])
    agents = testbed.bootstrap("wait-computes", "ovn")
    assert agents["agents_alive"] == ["hv1", "hv2"] and agents["network_node"] == ["net"]
    for host in layout.COMPUTES:
        datapath = hosts.host_run(host, ["ovs-vsctl", "get", "Bridge", "br-int",
                                         "datapath_type"]).stdout.strip()
        assert datapath == "netdev", (host.name, datapath)
    # Neutron's patched mechanism driver exists in the controller's namespace only.
    assert "rally_lm testbed" not in ovn.MECH_DRIVER.read_text()
    inside = hosts.host_run(layout.CONTROLLER, ["grep", "-c", "rally_lm testbed",
                                                str(ovn.MECH_DRIVER)]).stdout.strip()
    assert inside == "1"


@pytest.mark.parametrize("storage", ["ceph", "local"])
def test_a_guest_there_and_back_on_ovn_with_its_ports_steps(ovn_testbed, storage):
    testbed.set_mode(storage, "off")
    result = migration_check("--floating", "--ovn-sb", ovn.SB_REMOTE, "--chassis-watch",
                             "--probe-interval", "0.02")
    records = result["records"]
    assert [r["outcome"] for r in records] == ["completed", "completed"], records
    assert [r["final_host"] for r in records] == ["hv2", "hv1"]
    assert result["answering_after"] and result["server"]["host"] == "hv1"
    # libvirt ran the tap guard for the boot on hv1 and the incoming migration on
    # hv2 (and back): it watches every new tap of an OVN compute.
    guard = {h.name: compute.tap_guard_lines(h) for h in layout.COMPUTES}
    assert all(any(": watching tap" in line for line in lines)
               for lines in guard.values()), guard
    tcp = result["vms"]["rlm-check"]["tcp"]
    assert tcp["bytes_lost"] == 0 and tcp["resets"] == 0, tcp
    figures = []
    for migration, target in zip(records, ("hv2", "hv1"), strict=True):
        steps = [(e["kind"], e["chassis"]) for e in migration["measurements"]["sdn_events"]]
        kinds = [k for k, _ in steps]
        # Neutron's multiple bindings, OVN's RARP activation, then the move.
        assert ("claimed", target) in steps and ("activated", target) in steps, steps
        assert ("moved", target) in steps, steps
        assert kinds.index("claimed") < kinds.index("activated") < kinds.index("moved"), steps
        # The computes' own view (ssh): ovn-controller's flows for the port installed on
        # the destination before the guest moved, QEMU's RARP received there.
        assert ("installed", target) in steps and ("rarp", target) in steps, steps
        assert kinds.index("installed") < kinds.index("activated"), steps
        network = migration["measurements"]["network"]
        assert 0 < network["client_downtime_ms"] < 10_000, network
        share = network["sdn"]
        assert share["network_share_ms"] >= 0 and share["ended_by"].split()[0] in (
            "activated", "moved"), share
        timeline = [e["source"] for e in migration["measurements"]["timeline"]]
        assert "ovn" in timeline and "probe" in timeline and "libvirt" in timeline
        figures.append({"direction": migration["direction"],
                        "client_downtime_ms": network["client_downtime_ms"],
                        "pause_ms": network["anatomy"]["pause_ms"],
                        "hypervisor_downtime_ms":
                            migration["measurements"]["hypervisor"]["downtime_ms"],
                        **share, "steps": steps})
    record(f"ovn_{storage}_off", {"migrations": figures, "taps_set_up_by_the_guard": sum(
        "set up" in line for lines in guard.values() for line in lines)})


def test_a_rally_cell_of_the_stock_image_on_ovn_names_what_ended_each_outage(ovn_testbed):
    # The real rally CLI on ML2/OVN with the stock-style cloud image (cloud-init,
    # the Python agent), its args file as shipped, one VM there and back. Its
    # agent turns TX checksum offload off: the testbed's userspace Open vSwitch
    # forwards a virtio guest's offloaded checksums unfilled (the tiny image boots
    # with virtio_net.csum=0 instead; see rally_lm_testbed.bootstrap).
    testbed.set_mode("ceph", "off")
    # Lean for CI: the disk left as the image made it (the fill is the
    # linuxbridge stock cell's, tests/functional/test_real_cloud_path.py).
    run = rally_runner.run_task(TEMPLATE, ARGS / "testbed-ovn-cloud-image.yaml", RESULTS,
                                extra_args=json.dumps({"disk_fill_percent": 0}))
    assert run.exit_code == 0, run.log.read_text()[-3000:]
    assert rally_runner.sla_check(run.uuid).returncode == 0
    data = json.loads(run.json.read_text())
    iteration = data["tasks"][0]["subtasks"][0]["workloads"][0]["data"][0]
    (guest,) = table_rows(iteration["output"], GUEST_TITLE)
    # UDP answered through OVN's router: the guest's own checksums.
    assert guest["UDP echoes answered"] > 100 and guest["memory dirtied MiB"] > 0, guest
    rows = migrations_of(run.json)
    assert [r["outcome"] for r in rows] == ["completed", "completed"], rows
    assert [r["network_ended_by"] for r in rows] == ["activated hv2", "activated hv1"], rows
    assert all(r["network_share_ms"] is not None for r in rows), rows
    # The args file watches both computes: each migration's RARP, received where it went.
    kept = records_of(run.json)
    assert [sorted({e["chassis"] for e in r["measurements"]["sdn_events"]
                    if e["kind"] == "rarp"}) for r in kept] == [["hv2"], ["hv1"]], kept
    leftovers = testbed.bootstrap("leftovers")
    assert leftovers["servers"] == [] and "floating_ips" not in leftovers, leftovers
    record("rally_ovn_stock_image", {"uuid": run.uuid, "guest": guest, "rows": [
        {k: r[k] for k in ("direction", "client_downtime_ms", "pause_ms", "network_share_ms",
                           "network_ended_by", "hypervisor_downtime_ms")} for r in rows]})
