"""Is the resume lag the migration's, or any resume's? (issue 13: confirm or refute)

On the embedded testbed (root, `rally-lm testbed up`): boots one guest and,
while probing it with UDP echo (its user space) and ICMP echo (its kernel)
every 10 ms, pauses it N times on its own host with ``virsh suspend`` /
``virsh resume`` (the same QEMU process: its translated-code cache stays
warm), then live-migrates it N times (a fresh QEMU on the destination: the
cache starts empty under software emulation). For each pause it prints the
resume lag - how long the first request that reached the guest waited for an
answer, minus one round trip - and the wait between libvirt's resume event
and the first reply.

    ip netns exec rlm-probe .venv/bin/python bench/resume_lag.py --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time

from rally_lm.clients.nova import NovaAdapter, make_client
from rally_lm.migration.hypervisor import DomainEventListener
from rally_lm.probes.anatomy import dissect, longest_silence, reply_silences
from rally_lm.probes.downtime import DowntimeProbe
from rally_lm_testbed import bootstrap
from rally_lm_testbed.migration_check import boot_guest, hypervisor_uris


def lags(probes, start, end, resumed_wall):
    out = {}
    for probe, timeline in probes:
        silence = longest_silence(reply_silences(timeline), start, end)
        anatomy = dissect(timeline, silence)
        resumed = timeline.clock.to_monotonic(resumed_wall) if resumed_wall else None
        out[probe] = (anatomy.resume_lag_ms,
                      None if resumed is None else (anatomy.first_reply - resumed) * 1000.0)
    return out


def resumed_after(listener, domain, since):
    for event in listener.events():
        if event.domain == domain and event.detail.startswith("Resumed") and event.wall >= since:
            return event.wall
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pause-ms", type=float, default=100.0)
    args = parser.parse_args()
    nova = NovaAdapter(make_client(bootstrap.admin_session()))
    vm = boot_guest(nova, "rlm-resume-lag")
    uris = hypervisor_uris()
    listeners = {h: DomainEventListener(u, h).start() for h, u in uris.items()}
    udp = DowntimeProbe([vm.ip], protocol="udp", udp_port=7).start()
    icmp = DowntimeProbe([vm.ip], protocol="icmp").start()
    windows = {"suspend/resume on hv1": [], "live migration": []}
    try:
        time.sleep(2)
        for _ in range(args.rounds):
            start, wall = time.monotonic(), time.time()
            subprocess.run(["virsh", "-c", uris["hv1"], "suspend", vm.instance_name],
                           check=True, capture_output=True)
            time.sleep(args.pause_ms / 1000.0)
            subprocess.run(["virsh", "-c", uris["hv1"], "resume", vm.instance_name],
                           check=True, capture_output=True)
            time.sleep(1.0)
            windows["suspend/resume on hv1"].append((start, time.monotonic(), "hv1", wall))
        for index in range(args.rounds):
            target = "hv2" if index % 2 == 0 else "hv1"
            start, wall = time.monotonic(), time.time()
            nova.live_migrate(vm.id, target, "auto")
            while nova.server(vm.id)["task_state"]:
                time.sleep(0.25)
            time.sleep(1.0)
            windows["live migration"].append((start, time.monotonic(), target, wall))
        if nova.server(vm.id)["host"] != "hv1":
            nova.live_migrate(vm.id, "hv1", "auto")
            while nova.server(vm.id)["task_state"]:
                time.sleep(0.25)
        time.sleep(1.0)
    finally:
        timelines = {"udp": udp.stop()[0], "icmp": icmp.stop()[0]}
        for listener in listeners.values():
            listener.stop()
        nova.delete(vm.id)
    print(f"{'how the guest paused':24} {'n':>3} {'UDP resume lag ms':>22} "
          f"{'ICMP resume lag ms':>22} {'resume event -> first UDP reply ms':>36}")
    for kind, spans in windows.items():
        measured = []
        for start, end, host, wall in spans:
            resumed = resumed_after(listeners[host], vm.instance_name, wall)
            measured.append(lags(list(timelines.items()), start, end, resumed))
        udp_lag = [m["udp"][0] for m in measured]
        icmp_lag = [m["icmp"][0] for m in measured]
        after_event = [m["udp"][1] for m in measured if m["udp"][1] is not None]

        def spread(values):
            return (f"{statistics.median(values):6.1f} ({min(values):.1f}-{max(values):.1f})"
                    if values else "-")

        print(f"{kind:24} {len(measured):>3} {spread(udp_lag):>22} {spread(icmp_lag):>22} "
              f"{spread(after_event):>36}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
