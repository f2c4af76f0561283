"""What an operator's cloud has and the tiny guest does not, on the real testbed.

* A stock-style cloud image (Debian 12, systemd, cloud-init; nothing of
  rally_lm inside): the seed's workload arrives as cloud-config, half fills
  the root filesystem with files and dirties memory; the guest reboots and
  still answers with its files in place (in the sweep: CI's stock-image
  boot is the Rally cell's).
* The same image and workload through the real rally CLI, migrated there and
  back, with the agents' own counters read back from the console log,
  probed through floating IPs and the network node's router, the fixed IPs
  probed beside them on the same migrations. (The tiny guest's floating-IP
  task is in the sweep.)
"""

import json
import re
import time

import pytest
import yaml

from rally_lm.clients.nova import NovaAdapter, make_client
from rally_lm.probes import readiness
from rally_lm.task.contexts.nova.lm_workload import LiveMigrationWorkload, agent_user_data
from rally_lm.task.output import GUEST_TITLE, table_rows
from rally_lm.workload import status
from rally_lm_testbed import bootstrap, layout, rally_runner, testbed
from tests.functional.test_testbed import ARGS, RESULTS, TEMPLATE, migrations_of, record

pytestmark = [pytest.mark.functional, pytest.mark.testbed]


@pytest.fixture(scope="module")
def shared_testbed(testbed_session):
    testbed.up()  # a no-op unless an earlier test left it down
    testbed.set_mode("shared", "off")


def in_probe_namespace(function):
    """Run a module-level function of this file inside the probe namespace."""
    import subprocess
    import sys

    proc = subprocess.run(testbed.probe_command([
        sys.executable, "-c",
        f"import json, tests.functional.test_real_cloud_path as t; "
        f"print(json.dumps(t.{function}()))"]), capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def seed_workload_reboot_check() -> dict:
    """Boot the cloud image with the seed template's workload, let it fill the disk, reboot.

    The migrations of this image and workload are the Rally cell's below; with
    shared storage they do not touch the root filesystem, a reboot reads it all.
    """
    seed = yaml.safe_load((ARGS / "seed-shared-off-small.yaml").read_text())
    agent = {"delivery": "cloud-init", "tcp_echo_port": 7, "udp_echo_port": 7,
             "dirty_rate_mib": 8, "dirty_working_set_mib": 64,
             "disk_fill_percent": seed["disk_fill_percent"], "disk_fill_path": "/"}
    sess = bootstrap.admin_session()
    nova = NovaAdapter(make_client(sess))
    images = {i["name"]: i["id"] for i in sess.get(
        "/v2/images", endpoint_filter={"service_type": "image"}).json()["images"]}
    network = sess.get(f"/v2.0/networks?name={layout.TENANT_NETWORK_NAME}",
                       endpoint_filter={"service_type": "network"}).json()["networks"][0]["id"]
    began = time.monotonic()
    server_id = nova.boot("rlm-stock-image", images[bootstrap.CLOUD_IMAGE_NAME],
                          nova.find_flavor(bootstrap.CLOUD_FLAVOR[0])["id"], "hv1", network,
                          agent_user_data(agent))
    result: dict = {}
    try:
        while (server := nova.server(server_id))["status"] != "ACTIVE":
            assert server["status"] != "ERROR", server
            time.sleep(1)
        ip = server["addresses"][0]
        assert readiness.wait_until_answering([ip], 7, 600) == []
        result["first_answer_s"] = round(time.monotonic() - began, 1)
        LiveMigrationWorkload._wait_disk_filled(nova, [{"id": server_id, "name": "stock"}], 900)
        result["filled_s"] = round(time.monotonic() - began, 1)
        result["before"] = status.latest(nova.console_output(server_id, lines=100))
        nova.reboot(server_id)
        time.sleep(5)
        rebooted = time.monotonic()
        while nova.server(server_id)["status"] != "ACTIVE":
            time.sleep(1)
        assert readiness.wait_until_answering([ip], 7, 600) == []
        result["answer_after_reboot_s"] = round(time.monotonic() - rebooted, 1)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            latest = status.latest(nova.console_output(server_id, lines=400))
            if latest and latest.get("disk") == "done":
                break
            time.sleep(5)
        result["after"] = latest
        result["since_reboot_s"] = round(time.monotonic() - rebooted, 1)
    finally:
        nova.delete(server_id)
    return result


# The Rally cell below boots the same image with the same workload (disk half
# filled, memory dirtied) and migrates it in CI; the reboot is a sweep test's.
@pytest.mark.sweep
def test_the_seed_workload_leaves_a_stock_images_root_filesystem_intact(shared_testbed):
    result = in_probe_namespace("seed_workload_reboot_check")
    record("stock_image_seed_workload", result)
    before, after = result["before"], result["after"]
    # Applied, as measured inside the guest by its agent.
    assert before["disk"] == "done" and before["disk_used_percent"] >= 50.0
    assert before["disk_written_mib"] > 100 and before["dirtied_mib"] > 0
    # After a reboot the guest boots from its root filesystem again, a new agent
    # starts (systemd; its uptime is younger than the reboot) and finds the files
    # it wrote still there: nothing to write.
    assert after["uptime_s"] < result["since_reboot_s"]
    assert after["disk"] == "done" and after["disk_used_percent"] >= 50.0
    assert after["disk_written_mib"] == 0.0


#: Where Rally on an operator's machine usually stands: behind the router,
#: probing floating IPs - with each fixed IP probed beside it, on the same migrations.
FLOATING = {"probe_via": "floating", "floating_network": layout.EXTERNAL_NETWORK_NAME,
            "compare_fixed_ip": True}


def assert_both_views_measured(rows: list[dict]) -> None:
    for row in rows:
        assert row["client_downtime_ms"] is not None, row
        assert row["fixed_ip_client_downtime_ms"] is not None, row
    leftovers = testbed.bootstrap("leftovers")
    assert leftovers["servers"] == [] and leftovers["security_groups"] == []


def test_the_seed_cell_on_the_stock_image_through_rally_and_floating_ips(shared_testbed):
    # The real-cloud path in one task (and one stock-image boot, ~2 min under TCG).
    run = rally_runner.run_task(TEMPLATE, ARGS / "testbed-cloud-image.yaml", RESULTS,
                                extra_args=json.dumps(FLOATING))
    log = run.log.read_text()
    assert run.exit_code == 0, log[-3000:]
    rows = migrations_of(run.json)
    assert [r["outcome"] for r in rows] == ["completed", "completed"]
    data = json.loads(run.json.read_text())
    iteration = data["tasks"][0]["subtasks"][0]["workloads"][0]["data"][0]
    (guest,) = table_rows(iteration["output"], GUEST_TITLE)
    assert guest["disk fill"] == "done" and guest["disk used %"] >= 50.0, guest
    assert guest["memory dirtied MiB"] > 0 and guest["UDP echoes answered"] > 100
    # A progress line per migration.
    assert len(re.findall(r"rally_lm: \S+ (?:out|back) hv\d -> hv\d: ", log)) >= 2, log[-3000:]
    assert "could not release" not in log and "could not delete" not in log
    assert_both_views_measured(rows)
    record("rally_stock_image", {"uuid": run.uuid, "rows": [
        {k: r[k] for k in ("direction", "client_downtime_ms", "fixed_ip_client_downtime_ms",
                           "pause_ms", "resume_lag_ms", "hypervisor_downtime_ms",
                           "icmp_client_downtime_ms")}
        for r in rows], "guest": guest})


@pytest.mark.sweep  # the stock-image cell above probes floating IPs in CI
def test_probes_through_floating_ips_beside_the_fixed_ones(shared_testbed):
    run = rally_runner.run_task(TEMPLATE, ARGS / "testbed-floating.yaml", RESULTS)
    assert run.exit_code == 0, run.log.read_text()[-3000:]
    rows = migrations_of(run.json)
    assert len(rows) == 4 and all(r["outcome"] == "completed" for r in rows)
    assert_both_views_measured(rows)
    record("floating_vs_fixed", {"pairs_ms": [
        [r["client_downtime_ms"], r["fixed_ip_client_downtime_ms"]] for r in rows]})
