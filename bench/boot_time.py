"""Boot time of each testbed image under software emulation (docs/agent.md's table).

On the embedded testbed (root; `rally-lm testbed up`): boots each image on
hv1 ``--times`` times with the workload agent in its user data (the tiny
image: the C agent, shell user data; the cloud image: the Python agent,
cloud-config) and prints, per boot, seconds from the API call to ACTIVE and
to the agent's first UDP echo answer.

    ip netns exec rlm-probe .venv/bin/python bench/boot_time.py --times 3
"""

from __future__ import annotations

import argparse
import statistics
import time

from rally_lm.clients.nova import NovaAdapter, make_client
from rally_lm.probes import readiness
from rally_lm.task.contexts.nova.lm_workload import agent_user_data
from rally_lm_testbed import bootstrap, layout

IMAGES = {
    "tiny (busybox initramfs + C agent)": (layout.GUEST_IMAGE_NAME,
                                           f"lm.small.{bootstrap.SCALE_SUFFIX}", "image"),
    "cloud (Debian 12, systemd, cloud-init + Python agent)": (bootstrap.CLOUD_IMAGE_NAME,
                                                              bootstrap.CLOUD_FLAVOR[0],
                                                              "cloud-init"),
}
AGENT = {"tcp_echo_port": 7, "udp_echo_port": 7, "dirty_rate_mib": 0,
         "dirty_working_set_mib": 0, "disk_fill_percent": 0, "disk_fill_path": "/"}


def boot_once(nova: NovaAdapter, image: str, flavor: str, network: str, delivery: str,
              name: str) -> tuple[float, float]:
    user_data = agent_user_data({**AGENT, "delivery": delivery})
    began = time.monotonic()
    server_id = nova.boot(name, image, nova.find_flavor(flavor)["id"], "hv1", network,
                          user_data)
    try:
        while (server := nova.server(server_id))["status"] != "ACTIVE":
            if server["status"] == "ERROR":
                raise RuntimeError(f"{name} failed to boot: {server['fault']}")
            time.sleep(0.5)
        active = time.monotonic() - began
        if readiness.wait_until_answering([server["addresses"][0]], 7, 600):
            raise RuntimeError(f"{name}'s agent never answered")
        return active, time.monotonic() - began
    finally:
        nova.delete(server_id)
        while nova.server(server_id) is not None:
            time.sleep(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--times", type=int, default=3)
    args = parser.parse_args()
    sess = bootstrap.admin_session()
    nova = NovaAdapter(make_client(sess))
    images = {i["name"]: i["id"] for i in sess.get(
        "/v2/images", endpoint_filter={"service_type": "image"}).json()["images"]}
    network = sess.get(f"/v2.0/networks?name={layout.TENANT_NETWORK_NAME}",
                       endpoint_filter={"service_type": "network"}).json()["networks"][0]["id"]
    print(f"{'image':55} {'boots':>5} {'ACTIVE s (median, range)':>26} "
          f"{'first answer s (median, range)':>32}")
    for label, (image, flavor, delivery) in IMAGES.items():
        runs = [boot_once(nova, images[image], flavor, network, delivery, f"rlm-boot-{i}")
                for i in range(args.times)]
        active = [r[0] for r in runs]
        answer = [r[1] for r in runs]
        print(f"{label:55} {len(runs):>5} "
              f"{statistics.median(active):10.1f} ({min(active):.1f}-{max(active):.1f})"
              f"{statistics.median(answer):18.1f} ({min(answer):.1f}-{max(answer):.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
