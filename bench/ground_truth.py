"""The tool's figures against evidence it does not own: captures at the guests' taps and a
second prober.

For each testbed mode asked, runs a Rally task (the args file: VMs migrated
out and back) and, around it, from outside the tool:

* ``tcpdump -i any`` (Linux cooked v2: each frame with its interface) in both
  compute namespaces, so the guest's tap on the destination - made during the
  migration - is seen from its first frame: the first request to reach the
  destination guest, QEMU's RARP, the first reply to leave the guest;
* ``tcpdump`` on the client's interface: when each request left and each
  reply arrived, by the kernel's clock, not the probe's;
* bench/second_prober.py: ICMP and UDP echo at another interval (7 ms
  against the tool's 10) and a random phase, its own process, sockets and
  wall clock - at real-time priority (``chrt --fifo``, ``--second-priority``)
  so that its schedule holds on a machine the guests saturate: a reference
  starved for 100-200 ms at the start of an outage never sees that outage
  (docs/findings.md). The tool's probe keeps its normal priority, as users
  run it.

Per migration it sets the tool's client downtime (UDP and ICMP) beside the
second prober's, each by its own code, with one definition: the longest
wait, from a request's send, for a reply to it or to any later request
("a fresh reply"); the tool's pause (first request lost -> first that got
through) beside the wire's (the client departure of the first request the
source guest never answered -> that of the first request to reach the
destination's tap) and libvirt's downtime; and its resume lag beside the
tap's wait (first request at the destination tap -> first reply leaving it).
The wire's pause runs from the client departure of the first request handed to
the source guest that no guest ever answered (lost: a request the guest took in
and answered later, from the destination, was held by a guest still running)
to that of the first request to reach the destination's tap.

    .venv/bin/python bench/ground_truth.py task_templates/args/testbed-shared-off.yaml \
        --modes shared-off ceph-off local-off --out /work/truth

Root, a testbed that is up; run from the root namespace (it switches the
testbed's mode; the APIs and the second prober are reached through the probe
namespace). Prints a table per mode and writes truth.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rally_lm_testbed import capture, layout, policy, rally_runner, testbed  # noqa: E402

TEMPLATE = ROOT / "task_templates" / "evacuate_host.yaml.j2"
SECOND_INTERVAL = 0.007


# -- evidence from outside the tool -------------------------------------------------------

class LinkNames:
    """Every interface index -> name a namespace had while it ran (taps come and go)."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.names: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> LinkNames:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            out = subprocess.run(["ip", "-n", self.namespace, "-o", "link"],
                                 capture_output=True, text=True).stdout
            for line in out.splitlines():
                match = re.match(r"^(\d+): ([^:@]+)", line)
                if match:
                    self.names[int(match[1])] = match[2]

    def stop(self) -> dict[int, str]:
        self._stop.set()
        self._thread.join()
        return self.names


def servers_and_taps(prefix: str = "c_rally_") -> dict[str, dict]:
    """The workload VMs now (named by Rally for a context): id -> {"name", "ip", "tap"}."""
    from keystoneauth1 import session as ks_session
    from keystoneauth1.identity import v3
    from neutronclient.v2_0 import client as neutron_client
    from novaclient import client as nova_client

    creds = testbed.credentials()
    auth = v3.Password(auth_url=creds["OS_AUTH_URL"], username=creds["OS_USERNAME"],
                       password=creds["OS_PASSWORD"], project_name=creds["OS_PROJECT_NAME"],
                       user_domain_name="Default", project_domain_name="Default")
    sess = ks_session.Session(auth=auth)
    nova = nova_client.Client("2.80", session=sess)
    neutron = neutron_client.Client(session=sess)
    found = {}
    for server in nova.servers.list(search_opts={"all_tenants": True}):
        if not server.name.startswith(prefix) or server.status != "ACTIVE":
            continue
        ips = [a["addr"] for net in server.addresses.values() for a in net]
        ports = neutron.list_ports(device_id=server.id)["ports"]
        if ips and ports:
            found[server.id] = {"name": server.name, "ip": ips[0],
                                "tap": f"tap{ports[0]['id'][:11]}"}
    return found


def longest_fresh_wait(rows: list[list], start: float, end: float) -> float | None:
    """ms: the longest wait from a request's send, within [start, end], to a reply to it or
    to any later request. rows: [seq, sent, replied or None], by sequence. Written here,
    not taken from rally_lm: one definition, two implementations."""
    found = fresh_wait(rows, start, end)
    return found[0] if found else None


def longest_wait_span(rows: list[list], start: float, end: float) -> tuple[float, float] | None:
    """(send, reply) of the longest fresh-reply wait of a request sent within [start, end]."""
    rows = sorted(rows, key=lambda r: r[1])
    found = _longest_wait(rows, start, end)
    return (rows[found[0]][1], found[2]) if found else None


def probe_rows(packets: list, ip: str, protocol: str) -> list[list]:
    """The tool's own requests and replies as the client's capture saw them:
    [sequence, sent, replied or None] (the kernel's clock, not the probe's)."""
    seen = capture.probe_side_timeline(packets, ip, protocol, SECOND_INTERVAL)
    return [[index, sent, None if math.isnan(replied) else replied]
            for index, (sent, replied) in enumerate(zip(seen.sent, seen.received, strict=True))]


def _longest_wait(rows: list[list], start: float, end: float) -> tuple[int, int, float] | None:
    """In rows sorted by send time: (the index of the request that waited longest
    for a fresh reply, sent within [start, end]; the index of the request whose
    reply ended that wait; when that reply came)."""
    earliest, by = math.inf, None
    best = None
    for index in range(len(rows) - 1, -1, -1):
        _seq, sent, replied = rows[index]
        if replied is not None and replied < earliest:
            earliest, by = replied, index
        if start <= sent <= end and by is not None and (
                best is None or earliest - sent > best[2] - rows[best[0]][1]):
            best = (index, by, earliest)
    return best


def fresh_wait(rows: list[list], start: float, end: float,
               interval: float = SECOND_INTERVAL) -> tuple[float, float] | None:
    """(the longest fresh-reply wait, ms; what this prober's own sampling allows, ms).

    The sampling: the send gaps before the request that waited and before the one
    whose reply ended the wait, and, when the reply that ended it came alone (the
    next one more than three intervals later, before three came in a row), the
    span to the first of a steady run - what a prober that missed it would see.
    """
    rows = sorted(rows, key=lambda r: r[1])
    sends = [r[1] for r in rows]
    found = _longest_wait(rows, start, end)
    if found is None:
        return None
    waited, ender, first_reply = found
    wait = (first_reply - sends[waited]) * 1000.0
    gaps = sum(sends[i] - sends[i - 1] for i in (waited, ender) if i > 0)
    arrivals = sorted(r[2] for r in rows if r[2] is not None and r[2] >= first_reply)
    steady, run_start = None, 0
    for i in range(1, len(arrivals)):
        if arrivals[i] - arrivals[i - 1] > 3 * interval:
            run_start = i
        elif i - run_start >= 3:
            steady = arrivals[run_start]
            break
    hidden = (steady - first_reply) if steady is not None else 0.0
    return wait, (gaps + hidden) * 1000.0


# -- one mode -------------------------------------------------------------------------------

def run_mode(mode: str, args_file: Path, out: Path, second_priority: int) -> list[dict]:
    storage, tunnelled = mode.split("-")
    current = testbed.read_mode()
    if (current["storage"], current["tunnelled"]) != (storage, tunnelled):
        testbed.set_mode(storage, tunnelled, policy.Policy().to_dict(), reset_policy=True)
    out.mkdir(parents=True, exist_ok=True)
    bpf = f"((udp or icmp) and net {layout.TENANT_NET}) or rarp"
    captures = {host.name: capture.Capture(layout.PREFIX + host.name, "any",
                                           out / f"{host.name}.pcap", bpf)
                for host in layout.COMPUTES}
    captures["client"] = capture.Capture(layout.PROBE, "tenant0", out / "client.pcap", bpf)
    links = {host.name: LinkNames(layout.PREFIX + host.name).start() for host in layout.COMPUTES}
    cell = yaml.safe_load(args_file.read_text())
    task: dict = {}
    runner = threading.Thread(target=lambda: task.update(run=rally_runner.run_task(
        TEMPLATE, args_file, out, extra_args=json.dumps(
            {"storage": storage, "tunnelling": tunnelled, "icmp_probe": True})))
        , daemon=True)
    runner.start()
    vms: dict[str, dict] = {}
    while runner.is_alive() and len(vms) < int(cell.get("vm_count", 2)):
        time.sleep(1.0)
        listed = subprocess.run(testbed.probe_command(
            [sys.executable, str(Path(__file__).resolve()), "--list-vms"]),
            capture_output=True, text=True)
        if listed.returncode == 0:
            vms = json.loads(listed.stdout.strip().splitlines()[-1])
    prober = None
    if vms:
        realtime = ["chrt", "--fifo", str(second_priority)] if second_priority else []
        prober = subprocess.Popen(testbed.probe_command(
            [*realtime, sys.executable, str(ROOT / "bench" / "second_prober.py"),
             *[v["ip"] for v in vms.values()], "--interval", str(SECOND_INTERVAL),
             "--out", str(out / "second.json")]))
    runner.join()
    if prober is not None:
        prober.send_signal(signal.SIGTERM)
        prober.wait(timeout=30)
    for running in captures.values():
        running.stop()
    names = {host: link.stop() for host, link in links.items()}
    (out / "vms.json").write_text(json.dumps(vms))
    (out / "links.json").write_text(json.dumps(names))
    run = task.get("run")
    if run is None or run.json is None or prober is None:
        raise RuntimeError(f"{mode}: the task left no report ({run})")
    return reanalyse(out, mode)


def reanalyse(out: Path, mode: str) -> list[dict]:
    """Analyse a mode's run from what it left in ``out`` (captures, prober, report)."""
    vms = json.loads((out / "vms.json").read_text())
    names = {host: {int(k): v for k, v in links.items()}
             for host, links in json.loads((out / "links.json").read_text()).items()}
    packets = {name: capture.read_pcap(out / f"{name}.pcap")
               for name in [h.name for h in layout.COMPUTES] + ["client"]}
    second = json.loads((out / "second.json").read_text())
    report = next(out.glob("testbed-*.json"))
    return [analyse(record, vms, packets, names, second, mode)
            for record in task_records(report) if record["outcome"] != "skipped"]


def task_records(report: Path) -> list[dict]:
    data = json.loads(report.read_text())
    found = []
    for workload in data["tasks"][0]["subtasks"][0]["workloads"]:
        for iteration in workload["data"]:
            for chart in iteration["output"]["complete"]:
                if chart["title"] == "Migration records (JSON)":
                    found += json.loads(chart["data"][0])
    return found


def analyse(record: dict, vms: dict, packets: dict, names: dict, second: dict,
            mode: str) -> dict:
    vm = vms.get(record["server_id"], {})
    ip, tap = vm.get("ip"), vm.get("tap")
    start, end = record["started_at"], record["finished_at"]

    def wall(mono: float | None) -> float | None:
        return None if mono is None else record["started_at"] + (mono - record["window"][0])

    network = record["measurements"].get("network", {})
    anatomy = network.get("anatomy", {})
    icmp = record["measurements"].get("icmp", {})
    hyper = record["measurements"].get("hypervisor", {})
    rows = second["targets"].get(ip, {"udp": [], "icmp": []})
    result = {"mode": mode, "vm": record["vm"], "direction": record["direction"],
              "outcome": record["outcome"],
              "tool_udp_ms": network.get("client_downtime_ms"),
              "tool_udp_sampling_ms": anatomy.get("sampling_ms"),
              "tool_icmp_ms": icmp.get("client_downtime_ms"),
              "tool_icmp_sampling_ms": icmp.get("anatomy", {}).get("sampling_ms"),
              "second_udp_ms": longest_fresh_wait(rows["udp"], start, end),
              "second_udp_sampling_ms": (fresh_wait(rows["udp"], start, end) or (0, None))[1],
              "second_icmp_ms": longest_fresh_wait(rows["icmp"], start, end),
              "second_icmp_sampling_ms": (fresh_wait(rows["icmp"], start, end)
                                          or (0, None))[1],
              "tool_pause_ms": anatomy.get("pause_ms"),
              "tool_resume_lag_ms": anatomy.get("resume_lag_ms"),
              "libvirt_downtime_ms": hyper.get("downtime_ms"),
              "sporadic_replies": anatomy.get("sporadic_replies")}
    destination = [p for p in packets.get(record["target"], [])
                   if names.get(record["target"], {}).get(p.ifindex) == tap
                   and start <= p.ts <= end + 5]
    source = [p for p in packets.get(record["source"], [])
              if names.get(record["source"], {}).get(p.ifindex) == tap
              and start - 5 <= p.ts <= end]
    client = [p for p in packets.get("client", []) if start - 5 <= p.ts <= end + 5]
    to_guest = [p for p in destination if p.kind == "udp" and p.dst == ip and p.probe
                and p.outgoing]
    from_guest = [p for p in destination if p.kind == "udp" and p.src == ip and p.probe
                  and not p.outgoing]
    rarp = next((p.ts for p in destination if p.kind == "rarp" and not p.outgoing), None)
    left = {p.probe: p.ts for p in client if p.kind == "udp" and p.dst == ip and p.probe}
    # A reply that left the guest on either host: an answered request, if late.
    answered = {p.probe for p in source + destination if p.kind == "udp" and p.src == ip
                and p.probe and not p.outgoing}
    reached_source = [p for p in source if p.kind == "udp" and p.dst == ip and p.probe
                      and p.outgoing]
    # The first request handed to the source guest that no guest ever answered: lost,
    # the guest had stopped (one it took in and answered later, from the destination,
    # was held by a guest still running: a source stall, not the pause).
    unanswered = next((p for p in reached_source if p.probe not in answered
                       and (wall(anatomy.get("silence_start")) or 0) - 1 <= p.ts), None)
    first_in = to_guest[0] if to_guest else None
    first_out = next((p for p in from_guest if first_in is None or p.ts >= first_in.ts), None)
    # The same outage through both probers' eyes: the second prober's longest wait
    # among its requests sent while the tool's longest wait lasted (its sampling
    # there includes a send gap of its own that hid the outage's start). A second
    # prober's longest wait may be another outage of the same migration.
    for proto in ("udp", "icmp"):
        span = longest_wait_span(probe_rows(client, ip, proto), start, end)
        same = fresh_wait(rows[proto], span[0] - SECOND_INTERVAL, span[1]) if span else None
        result[f"tool_{proto}_capture_ms"] = (span[1] - span[0]) * 1000.0 if span else None
        result[f"second_{proto}_same_outage_ms"] = same[0] if same else None
        result[f"second_{proto}_same_outage_sampling_ms"] = same[1] if same else None
    if first_in is not None and unanswered is not None and first_in.probe in left \
            and unanswered.probe in left:
        result["wire_pause_ms"] = (left[first_in.probe] - left[unanswered.probe]) * 1000.0
    if first_in is not None and first_out is not None:
        result["tap_wait_ms"] = (first_out.ts - first_in.ts) * 1000.0
    result["rarp_after_first_request_ms"] = (rarp - first_in.ts) * 1000.0 \
        if rarp is not None and first_in is not None else None
    if first_in is not None and first_in.probe in left and anatomy.get("first_through"):
        # The tool's "first through" against the first request the destination got.
        result["first_through_vs_wire_ms"] = (wall(anatomy["first_through"])
                                              - left[first_in.probe]) * 1000.0
    return result


# -- the table ---------------------------------------------------------------------------------

def agree(a: float | None, b: float | None, interval_ms: float) -> bool | None:
    if a is None or b is None:
        return None
    return abs(a - b) <= max(0.10 * max(a, b), 2 * interval_ms)


def report(rows: list[dict], tool_interval_ms: float) -> None:
    interval = max(tool_interval_ms, SECOND_INTERVAL * 1000.0)
    for mode in sorted({r["mode"] for r in rows}):
        own = [r for r in rows if r["mode"] == mode and r["outcome"] in ("completed",
                                                                        "timeout_forced")]
        print(f"\n{mode}: {len(own)} migrations that switched hosts")
        print(f"{'vm/dir':<14}{'udp tool':>9}{'2nd':>7}{'icmp tool':>10}{'2nd':>7}{'±samp':>7}"
              f"{'pause':>7}{'wire':>7}{'libvirt':>8}{'lag':>6}{'tap':>6}{'spor':>5}")
        for r in own:
            def f(key: str, r: dict = r) -> str:
                value = r.get(key)
                return "-" if value is None else f"{value:.0f}"
            print(f"{r['vm'][-3:] + ' ' + r['direction']:<14}{f('tool_udp_ms'):>9}"
                  f"{f('second_udp_ms'):>7}{f('tool_icmp_ms'):>10}{f('second_icmp_ms'):>7}"
                  f"{f('tool_udp_sampling_ms'):>7}{f('tool_pause_ms'):>7}"
                  f"{f('wire_pause_ms'):>7}{f('libvirt_downtime_ms'):>8}"
                  f"{f('tool_resume_lag_ms'):>6}{f('tap_wait_ms'):>6}{f('sporadic_replies'):>5}")
        for proto in ("udp", "icmp"):
            verdicts = [agree(r[f"tool_{proto}_ms"], r[f"second_{proto}_ms"], interval)
                        for r in own]
            within = [r for r in own if r[f"tool_{proto}_ms"] is not None
                      and r[f"second_{proto}_ms"] is not None
                      and abs(r[f"tool_{proto}_ms"] - r[f"second_{proto}_ms"])
                      <= (r.get(f"tool_{proto}_sampling_ms") or 0)
                      + (r.get(f"second_{proto}_sampling_ms") or 0)]
            print(f"  {proto}: tool and second prober within max(10 %, 2 x {interval:.0f} ms): "
                  f"{sum(v is True for v in verdicts)}/{sum(v is not None for v in verdicts)}; "
                  f"within the sum of both probers' sampling: "
                  f"{len(within)}/{sum(v is not None for v in verdicts)}")
            same = [(r[f"tool_{proto}_ms"], r.get(f"second_{proto}_same_outage_ms"),
                     (r.get(f"tool_{proto}_sampling_ms") or 0)
                     + (r.get(f"second_{proto}_same_outage_sampling_ms") or 0))
                    for r in own if r[f"tool_{proto}_ms"] is not None]
            same = [x for x in same if x[1] is not None]
            print(f"    the same outage (the tool's longest): within max(10 %, 2 x "
                  f"{interval:.0f} ms) {sum(bool(agree(t, o, interval)) for t, o, _ in same)}"
                  f"/{len(same)}; within both probers' sampling "
                  f"{sum(abs(t - o) <= e for t, o, e in same)}/{len(same)}")
            for t, o, e in same:
                if abs(t - o) > e:
                    print(f"      beyond: tool {t:.0f} ms, second {o:.0f} ms, sampling {e:.0f} ms")
        pauses = [(r["tool_pause_ms"], r.get("wire_pause_ms"), r.get("libvirt_downtime_ms"))
                  for r in own if r.get("tool_pause_ms") is not None]
        wire = [p for p in pauses if p[1] is not None]
        print(f"  pause: tool against wire within {2 * tool_interval_ms:.0f} ms: "
              f"{sum(abs(t - w) <= 2 * tool_interval_ms for t, w, _ in wire)}/{len(wire)}; "
              f"tool / libvirt median "
              f"{_median([t / lv for t, _w, lv in pauses if lv]):.2f}")


def _median(values: list[float]) -> float:
    values = sorted(values)
    return values[len(values) // 2] if values else float("nan")


def main() -> int:
    if sys.argv[1:] == ["--list-vms"]:  # inside the probe namespace: the APIs are there
        print(json.dumps(servers_and_taps()))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("args_file", type=Path)
    parser.add_argument("--modes", nargs="+", default=["shared-off"])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--second-priority", type=int, default=20,
                        help="SCHED_FIFO priority of the second prober (0: normal)")
    parser.add_argument("--reanalyse", action="store_true",
                        help="analyse the runs already in --out again, running nothing")
    args = parser.parse_args()
    if args.reanalyse:
        rows = [row for mode in args.modes for row in reanalyse(args.out / mode, mode)]
        (args.out / "truth.json").write_text(json.dumps(rows, indent=1))
        interval = float(yaml.safe_load(args.args_file.read_text()).get("probe_interval", 0.01))
        report(rows, interval * 1000.0)
        return 0
    if not testbed.is_up():
        print("ground_truth: the testbed is not up", file=sys.stderr)
        return 2
    rows = []
    for mode in args.modes:
        rows += run_mode(mode, args.args_file, args.out / mode, args.second_priority)
        (args.out / "truth.json").write_text(json.dumps(rows, indent=1))
    interval = float(yaml.safe_load(args.args_file.read_text()).get("probe_interval", 0.01))
    report(rows, interval * 1000.0)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
