"""``rally-lm study``: the seed's whole study, one Rally task per cell, then one comparison.

On the embedded testbed (root) every cell runs: the testbed switches its
storage and tunnelling mode between cells (local / ceph, off / on) and the
flavors are the seed's scaled to one machine. Against an existing cloud
(``--cloud ARGS_FILE``: your hosts, image, network, and the storage and
tunnelling labels that describe the cloud) only the cells of the cloud's own
storage and tunnelling run - the others are listed as not run.

Resumable: ``<out>/study.json`` records each finished cell, and a rerun with
the same settings skips them and keeps their results. Each cell's Rally
reports go to ``<out>/rally/``, the comparison of all of them (with the
seed's published figures beside ours, ``--baseline``) to ``<out>/comparison/``.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from rally_lm import templates
from rally_lm.migration.driver import SUCCEEDED
from rally_lm.study import matrix
from rally_lm.study.progress import Progress, parse
from rally_lm.study.state import CellResult, StudyState

#: The testbed's own cell: its hosts, image, network and hypervisor URIs.
#: Each cell's arguments on the embedded testbed start from its network's args file:
#: on ML2/OVN the probes reach the VMs by floating IP only, the tasks carry the
#: ``network`` label, and OVN's southbound view names the network's share.
TESTBED_BASE_NAMES = {"linuxbridge": "testbed-local-off.yaml",
                      "ovn": "testbed-ovn-ceph-off.yaml"}


#: Probing scaled to the testbed like its flavors: under software emulation every
#: probe packet costs the guest CPU (6 guests: UDP echo at 100 Hz +0.6 cores, ICMP
#: +0.45, 100 kB/s TCP streams +0.4 - the 2-core machine saturates). On a real
#: cloud (--cloud) the seed's own values apply.
TESTBED_PROBING = {"probe_interval": 0.02, "icmp_probe": False, "tcp_rate_bytes": 10240}
CLOUD_PROBING = {"probe_interval": 0.01, "icmp_probe": True, "tcp_rate_bytes": 102400}


def apply_scale_defaults(args: argparse.Namespace, policies: bool) -> None:
    """VMs, round trips and passes per cell, where the user gave none: the profile's.

    The policy sweep: each policy's own VMs (one per dirty rate), 1 round trip.
    """
    profile = matrix.PROFILES[getattr(args, "profile", None) or "default"]
    if args.vms is None and not policies:
        args.vms = profile.vms
    if args.round_trips is None:
        args.round_trips = 1 if policies else profile.round_trips
    if getattr(args, "passes", None) is None:
        args.passes = 1 if policies else profile.passes


def precision_line(migrations: int) -> str:
    """What n migrations per cell buy: where the median's and the p95's intervals lie."""
    from rally_lm.stats import intervals

    median = intervals.quantile_interval(list(range(1, migrations + 1)), 0.5)
    p95 = intervals.quantile_interval(list(range(1, migrations + 1)), 0.95)
    text = f"{migrations} migrations per cell: the median's 95 % interval "
    text += (f"runs from value {median.low:.0f} to value {median.high:.0f} (sorted)"
             if median.bounded else "cannot be bounded (too few)")
    text += "; the p95's " + (f"from value {p95.low:.0f} to value {p95.high:.0f}"
                              if p95.bounded else
                              f"has no upper bound below {intervals.values_for_interval(0.95)}"
                              " values")
    return text


def cell_args(base: dict, cell: matrix.StudyCell, vms: int, round_trips: int,
              testbed: bool, flavors: dict[str, str],
              probing: dict | None = None) -> dict:
    """The task arguments of one cell (the base's hosts, image, network, probes...)."""
    if cell.policy:
        # The policy's own args file is the task: its VMs, their dirty rates.
        return {**yaml.safe_load(cell.args_file.read_text()), "round_trips": round_trips}
    args = {**base, **(probing or {}), "storage": cell.label_storage,
            "tunnelling": cell.tunnelling, "vm_count": vms, "round_trips": round_trips,
            "flavor": matrix.scaled_flavor(cell.flavor) if testbed else flavors[cell.flavor]}
    if cell.volume:
        args["boot_from_volume"] = True
    return args


#: How long an aborted task may take to clean up (delete its VMs) before it is killed.
ABORT_WAIT_S = 300.0
#: Seconds a storage switch between cells waits for a failed cell's VMs to go.
GUESTS_GONE_WITHIN = 180.0


def stop_task(proc: subprocess.Popen, output: str, abort) -> None:
    """Stop a ``rally task start`` the study started: abort its task, so Rally's
    cleanup deletes the VMs, and wait for it; kill it only if it does not end."""
    match = re.search(r"Task ([0-9a-f-]{36})", output)
    if proc.poll() is not None:
        return
    print("rally-lm study: interrupted; aborting the running Rally task "
          f"{match.group(1) if match else '(not started yet)'}", file=sys.stderr, flush=True)
    if match:
        try:
            abort(match.group(1))
        except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
            print(f"rally-lm study: rally task abort failed: {exc}", file=sys.stderr)
    try:
        proc.wait(timeout=ABORT_WAIT_S if match else 10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class TestbedCells:
    """Runs cells on the embedded testbed: its mode, its probe namespace, its Rally."""

    testbed = True

    def __init__(self, testbed=None, rally_runner=None) -> None:
        if testbed is None or rally_runner is None:
            from rally_lm_testbed import rally_runner, testbed

        self.rally_runner = rally_runner
        self.testbed = testbed
        #: The mode the study found (storage, tunnelling, policy), put back at the end.
        self.found_mode: dict | None = None

    def prepare(self, cell: matrix.StudyCell) -> None:
        from rally_lm_testbed import policy

        if not self.testbed.is_up():
            self.testbed.up()
        if self.found_mode is None:
            self.found_mode = self.testbed.read_mode()
        # The seed's cells run under Nova's default policy; a sweep cell under its own.
        wanted = policy.Policy.from_dict(
            yaml.safe_load(cell.args_file.read_text()).get("testbed_policy")
            if cell.args_file else None).to_dict()
        self._switch(cell.storage, cell.tunnelling, wanted)

    def _switch(self, storage: str, tunnelled: str, wanted_policy: dict) -> bool:
        """Set the testbed's mode unless it is in it already (a switch restarts nova-compute)."""
        mode = self.testbed.read_mode()
        if (mode["storage"], mode["tunnelled"], mode["policy"]) == (
                storage, tunnelled, wanted_policy):
            return False
        # A failed cell's VMs may still be going (Rally's cleanup deletes them).
        self.testbed.set_mode(storage, tunnelled, wanted_policy, reset_policy=True,
                              guests_gone_within=GUESTS_GONE_WITHIN)
        return True

    def restore(self) -> None:
        """Put the testbed back in the mode the study found (a sweep shapes the link)."""
        found, self.found_mode = self.found_mode, None
        if found is None or not self.testbed.is_up():
            return
        if self._switch(found["storage"], found["tunnelled"], found["policy"]):
            print(f"rally-lm study: restoring the testbed's mode (storage={found['storage']} "
                  f"tunnelled={found['tunnelled']}, the policy it had): done")

    def start(self, args_file: Path) -> subprocess.Popen:
        return self.rally_runner.start_task(templates.template(), args_file)

    def stop(self, proc: subprocess.Popen, output: str) -> None:
        stop_task(proc, output, lambda uuid: self.rally_runner.rally(
            "task", "abort", "--uuid", uuid, check=False, timeout=120))

    def collect(self, output: str, code: int, args_file: Path, out: Path):
        return self.rally_runner.collect(output, code, args_file, out)


class CloudCells:
    """Runs cells against the cloud of the user's current Rally environment."""

    testbed = False

    def __init__(self) -> None:
        self.rally = shutil.which("rally") or str(Path(sys.executable).with_name("rally"))

    def prepare(self, cell: matrix.StudyCell) -> None:
        return None

    def restore(self) -> None:
        return None  # the study changes nothing on your cloud

    def start(self, args_file: Path) -> subprocess.Popen:
        return subprocess.Popen([self.rally, "task", "start", str(templates.template()),
                                 "--task-args-file", str(args_file)], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    def stop(self, proc: subprocess.Popen, output: str) -> None:
        stop_task(proc, output, lambda uuid: subprocess.run(
            [self.rally, "task", "abort", "--uuid", uuid], capture_output=True, timeout=120))

    def collect(self, output: str, code: int, args_file: Path, out: Path):
        from types import SimpleNamespace

        out.mkdir(parents=True, exist_ok=True)
        log = out / f"{args_file.stem}.log"
        log.write_text(output)
        match = re.search(r"Task ([0-9a-f-]{36})", output)
        if not match:
            return SimpleNamespace(uuid="", exit_code=code or 1, html=None, json=None, log=log)
        uuid = match.group(1)
        html, data = out / f"{args_file.stem}-{uuid[:8]}.html", \
            out / f"{args_file.stem}-{uuid[:8]}.json"
        for flag, path in (("--html-static", html), ("--json", data)):
            subprocess.run([self.rally, "task", "report", uuid, flag, "--out", str(path)],
                           capture_output=True)
        return SimpleNamespace(uuid=uuid, exit_code=code, html=html if html.exists() else None,
                               json=data if data.exists() else None, log=log)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    cloud_base = yaml.safe_load(Path(args.cloud).read_text()) if args.cloud else None
    if cloud_base is None:
        from rally_lm_testbed import layout, netns

        netns.require_root("rally-lm study on the embedded testbed")
        base_name = TESTBED_BASE_NAMES[layout.network_backend()]
    base = cloud_base or yaml.safe_load((templates.args_dir() / base_name).read_text())
    policies = getattr(args, "matrix", "seed") == "policies"
    if policies and cloud_base:
        print("rally-lm study: --matrix policies changes Nova's configuration between cells, "
              "which only the embedded testbed lets it do; on your cloud, set the policy in "
              "nova.conf and run task_templates/args/policy-*.yaml-like tasks one by one",
              file=sys.stderr)
        return 2
    if policies and args.vms is not None:
        print("rally-lm study: --vms does not apply to --matrix policies: each policy's args "
              "file boots one VM per dirty rate (vm_count, dirty_rate_mib)", file=sys.stderr)
        return 2
    apply_scale_defaults(args, policies)
    cells = matrix.policy_matrix() if policies else \
        matrix.seed_matrix(volume_cell=not args.no_volume_cell)
    if cloud_base and str(cloud_base.get("storage")) not in matrix.STORAGES:
        # A cloud whose storage is neither of the seed's: its flavors, under its own label.
        cells = [matrix.StudyCell(str(cloud_base["storage"]), str(cloud_base.get("tunnelling")),
                                  f) for f in matrix.FLAVORS]
    cells = matrix.select(cells, args.cells)
    if not cells:
        print("rally-lm study: no cell matches --cells", file=sys.stderr)
        return 2
    probing = dict(CLOUD_PROBING if cloud_base else TESTBED_PROBING)
    if args.probe_interval is not None:
        probing["probe_interval"] = args.probe_interval
    if args.icmp is not None:
        probing["icmp_probe"] = args.icmp == "on"
    if args.tcp_rate is not None:
        probing["tcp_rate_bytes"] = args.tcp_rate
    # What makes two runs one study; which of its cells to run now (--cells) does not.
    settings = {"matrix": "policies" if policies else "seed", "vms": args.vms,
                "round_trips": args.round_trips, "passes": args.passes, "cloud": args.cloud,
                "disk_fill_percent": args.disk_fill_percent, "probing": probing}
    try:
        state = StudyState.load(out / "study.json", settings)
    except ValueError as exc:
        print(f"rally-lm study: {exc}", file=sys.stderr)
        return 2
    runner = CloudCells() if cloud_base else TestbedCells()
    flavors = dict(zip(matrix.FLAVORS, args.flavors.split(","), strict=True)) \
        if args.flavors else {f: f"lm.{f}" for f in matrix.FLAVORS}
    if args.disk_fill_percent:
        base = {**base, "disk_fill_percent": args.disk_fill_percent}
    runs = matrix.ordered(cells, args.passes)
    todo = [(n, c) for n, c in runs if not state.done(matrix.run_name(c, n))]
    progress = Progress(sum(matrix.planned_migrations(c, args.vms, args.round_trips)
                            for _n, c in todo))
    vms = "the policy's VMs" if policies else f"{args.vms} VMs"
    passes = f", {args.passes} passes interleaved" if args.passes > 1 else ""
    print(f"rally-lm study: {len(cells)} cells, {len(runs) - len(todo)} of {len(runs)} runs "
          f"already done; {vms} x {args.round_trips} round trips each{passes}; out: {out}")
    if not policies:
        print(f"rally-lm study: {precision_line(2 * args.vms * args.round_trips * args.passes)}")
    try:
        for index, (number, cell) in enumerate(runs, 1):
            name = matrix.run_name(cell, number)
            if state.done(name):
                print(f"[{index}/{len(runs)} {name}] done before: {state.cells[name].json}")
                continue
            if cloud_base and (cell.storage != str(base.get("storage")) or
                               cell.tunnelling != str(base.get("tunnelling"))):
                state.cells[name] = CellResult(
                    name, status="not run",
                    reason=f"the cloud is {base.get('storage')}/{base.get('tunnelling')}: "
                           "an existing cloud has one storage and one tunnelling setting")
                state.save(out / "study.json")
                continue
            result = run_cell(runner, cell, index, len(runs), base, args,
                              flavors, out, progress, probing, name)
            result.json = result.json and state.relative(Path(result.json))
            result.html = result.html and state.relative(Path(result.html))
            state.cells[name] = result
            state.save(out / "study.json")
    finally:
        runner.restore()
    return finish(state, out, args)


def cell_status(reported: bool, exit_code: int, migrations: int, output: str,
                log: Path | str) -> tuple[str, str]:
    """("done" | "failed", why) of a cell's Rally task.

    Exit 2 is "ran, an SLA failed" - measured, so done (a refused cell, whose
    migrations all ended in errors, shows as such) - but Rally exits 2 too
    when the workload never started (a VM that did not boot): a cell that
    ran no migration measured nothing and failed, with Rally's reason.
    """
    if reported and exit_code in (0, 2) and migrations > 0:
        return "done", ""
    found = re.findall(r"Unexpected exception during the workload execution: (.+)", output)
    why = f": {found[-1].strip()}" if found else ""
    if reported and exit_code in (0, 2):
        return "failed", f"no migration ran{why}; see {log}"
    return "failed", f"rally task start exited {exit_code}{why}; see {log}"


def run_cell(runner, cell: matrix.StudyCell, index: int, count: int, base: dict,
             args: argparse.Namespace, flavors: dict, out: Path,
             progress: Progress, probing: dict | None = None,
             name: str | None = None) -> CellResult:
    """Run one cell's task (``name``: the cell in its pass); its state entry."""
    name = name or cell.name
    began = time.monotonic()
    args_file = out / "args" / f"{name.replace('#', '-pass')}.yaml"
    args_file.parent.mkdir(parents=True, exist_ok=True)
    args_file.write_text(yaml.safe_dump(cell_args(base, cell, args.vms, args.round_trips,
                                                  runner.testbed, flavors, probing)))
    print(f"[{index}/{count} {name}] preparing")
    runner.prepare(cell)
    proc = runner.start(args_file)
    lines, seen = [], 0
    try:
        for line in proc.stdout:
            lines.append(line)
            event = parse(line)
            if event:
                seen += 1
                progress.seen()
                print(progress.line(name, index, count, event), flush=True)
        code = proc.wait()
    except BaseException:
        # Ctrl-C, or the study itself failed: Rally runs in a session of its own
        # (Ctrl-C reaches only the study), so stop its task before anything else
        # (the mode restored under a running task would change what it measures).
        runner.stop(proc, "".join(lines))
        raise
    # Migrations the cell never got to (a failed set-up) leave the estimate.
    progress.planned -= matrix.planned_migrations(cell, args.vms, args.round_trips) - seen
    run = runner.collect("".join(lines), code, args_file, out / "rally")
    result = CellResult(name, task=run.uuid or None,
                        json=str(run.json) if run.json else None,
                        html=str(run.html) if run.html else None, exit_code=run.exit_code,
                        seconds=round(time.monotonic() - began, 1), migrations=seen)
    result.status, result.reason = cell_status(bool(run.json), run.exit_code, seen,
                                               "".join(lines), run.log)
    print(f"[{index}/{count} {name}] {result.status} in {result.seconds:.0f}s "
          f"({seen} migrations){' - ' + result.reason if result.reason else ''}")
    return result


def policy_sweep_note(args_dir: Path | None = None) -> str:
    """The policy sweep's conditions, read from its args files (never restated by hand).

    Nova counts at least 2 GiB when it turns ``live_migration_completion_timeout``
    (seconds per GiB) and ``live_migration_downtime_delay`` into seconds.
    """
    from rally_lm_testbed.policy import Policy

    args_dir = args_dir or templates.args_dir()
    policies = {name: yaml.safe_load((args_dir / f"policy-{name}.yaml").read_text())
                for name in matrix.policy_names(args_dir)}

    def one(key: str) -> str:
        return ", ".join(sorted({f"{p[key]:g}" if isinstance(p[key], (int, float))
                                 else str(p[key]) for p in policies.values()}))

    timeouts = "; ".join(f"{name} {p['nova_completion_timeout']:g} s/GiB, i.e. "
                         f"{2 * p['nova_completion_timeout']:g} s"
                         for name, p in policies.items())
    # What the testbed applies, Nova's defaults where a policy does not say.
    applied = [Policy.from_dict(p["testbed_policy"]) for p in policies.values()]
    ramps = {(a.max_downtime_ms, a.downtime_steps, a.downtime_delay) for a in applied}
    ramp = "; ".join(f"up to {most:g} ms in {steps} steps {2 * delay:g} s apart"
                     for most, steps, delay in sorted(ramps))
    rates = sorted({f"{r:g}" for p in policies.values() for r in
                    (p["dirty_rate_mib"] if isinstance(p["dirty_rate_mib"], list)
                     else [p["dirty_rate_mib"]])}, key=float)
    return (f"Policy sweep on the testbed: one task per policy, one VM ({one('flavor')}) per "
            f"dirty rate ({', '.join(rates)} MiB/s over a {one('dirty_working_set_mib')} MiB "
            f"working set), migrated one at a time over "
            f"a link shaped to {one('link_mbit')} Mbit/s for migration traffic only (tc htb + "
            f"tbf). Nova's completion timeout per policy: {timeouts}; its allowed downtime "
            f"{ramp} (Nova counts at least 2 GiB). QEMU under software emulation.")


def print_task_budgets(state: StudyState) -> None:
    """Where each task's wall time went (one task per policy, several rates in it)."""
    from rally_lm.report import cells

    print("where each task's time went (task = migrations [libvirt jobs + rest of Nova] + "
          "rally_lm between migrations + the rest: mode switch, Rally, booting and deleting "
          "the VMs; ? where a part was not measured: no libvirt total is read for a job Nova "
          "aborted):")
    for name, run in state.cells.items():
        if run.status != "done" or not run.json or run.seconds is None:
            continue
        for cell in cells.load([Path(run.json)], split=False):
            t = cells.time_budget(cell)
            rest = run.seconds - t["drains_s"] if t["drains_s"] is not None else None
            parts = {k: f"{v:.0f}" if v is not None else "?" for k, v in
                     {**t, "rest": rest}.items() if k != "tool_share"}
            print(f"  {name}: {run.seconds:.0f} s = {parts['migrations_s']} "
                  f"[{parts['libvirt_s']} + {parts['nova_s']}] + {parts['tool_s']} + "
                  f"{parts['rest']} s")


def finish(state: StudyState, out: Path, args: argparse.Namespace) -> int:
    from rally_lm.report import baseline, cells, render

    reports = [state.locate(c.json) for c in state.cells.values()
               if c.status == "done" and c.json]
    # A cell's passes are one cell: their migrations pooled.
    found = cells.pool(cells.load(reports)) if reports else []
    seed = [cell for path in (args.baseline or [])
            for cell in baseline.load(Path(path), args.baseline_source)]
    not_run = {c.cell: c.reason for c in state.cells.values() if c.status != "done"}
    probing = state.settings.get("probing", {})
    if state.settings.get("matrix") == "policies":
        note = args.note or policy_sweep_note()
        html, markdown = render.render(found, out / "comparison", note=note, not_run=not_run,
                                       title="Live migration policies: dirty rate x policy")
    else:
        note = args.note or (
            "Testbed cells: the seed's flavors scaled to one machine (RAM / 16, disk / 40, "
            "vCPUs / 4), QEMU under software emulation, and probing scaled with them (UDP echo "
            f"every {probing.get('probe_interval', 0.02) * 1000:g} ms, ICMP "
            f"{'on' if probing.get('icmp_probe') else 'off'}, a "
            f"{probing.get('tcp_rate_bytes', 10240) / 1024:g} KiB/s TCP stream per VM): under "
            "emulation every probe packet costs the guest CPU." if not args.cloud else "")
        html, markdown = render.render(found, out / "comparison", note=note, baseline=seed,
                                       not_run=not_run)
    total = sum(c.seconds or 0 for c in state.cells.values())
    print(f"rally-lm study: {len(found)} cell(s) compared in {html} and {markdown}; "
          f"{sum(c.migrations for c in state.cells.values())} migrations, "
          f"{total / 60:.1f} min of cells")
    if state.settings.get("matrix") == "policies":
        print_task_budgets(state)
        found = []  # split cells share their task's drains: told per task above
    else:
        print("where the evacuation time went (drains = libvirt jobs + rest of Nova + rally_lm "
              "between migrations):")
    for cell in sorted(found, key=lambda c: c.name):
        t = cells.time_budget(cell)
        parts = [f"{t[k]:.0f}" if t[k] is not None else "?"
                 for k in ("drains_s", "libvirt_s", "nova_s", "tool_s")]
        share = f"{t['tool_share'] * 100:.0f} %" if t["tool_share"] is not None else "?"
        print(f"  {cell.name}: {parts[0]} s = {parts[1]} + {parts[2]} + {parts[3]} s "
              f"(rally_lm {share})")
    print_precision(found)
    for name, why in not_run.items():
        print(f"  not run / failed: {name}: {why}")
    return 0 if not any(c.status == "failed" for c in state.cells.values()) else 1


def print_precision(found: list) -> None:
    """What each cell's n bought: its medians with their 95 % intervals, as a share."""
    from rally_lm.report import cells
    from rally_lm.stats import intervals

    if not found:
        return
    print("precision per cell (p50 [95 % interval, order statistics], its half-width as a share "
          "of the p50; ? where n cannot bound it):")
    for cell in sorted(found, key=lambda c: c.name):
        parts = []
        for column, unit, rows in (("duration_s", "s", [m for m in cell.migrations
                                                         if m["outcome"] in SUCCEEDED]),
                                   ("client_downtime_ms", "ms", cell.migrations)):
            got = intervals.quantile_interval(cells.column(rows, column), 0.5)
            if got.estimate is None:
                parts.append(f"{column} -")
                continue
            share = f" ±{got.width / 2 / got.estimate:.0%}" if got.bounded and got.estimate \
                else ""
            parts.append(f"{column} {got.text(1 if unit == 's' else 0)} {unit} "
                         f"(n={got.n}{share})")
        print(f"  {cell.name}: " + "; ".join(parts))
