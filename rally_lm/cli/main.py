"""``rally-lm``: the command line around the Rally plugins.

Subcommands import what they need lazily, so ``rally-lm --help`` works
without a cloud, without root and without the testbed's packages.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from collections.abc import Sequence


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line and exit 2: a pipeline's log shows what went wrong."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _port(text: str) -> int:
    """A TCP/UDP port, 1-65535 (argparse says what is wrong, exit 2)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is outside 1-65535")
    return port


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value:g} is not positive")
    return value


def _target(text: str) -> str:
    """An IPv4 address or a host name (the probes speak IPv4)."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        labels = text.rstrip(".").split(".")
        if not text or len(text) > 253 or not all(0 < len(label) <= 63 and all(
                c.isalnum() or c == "-" for c in label) for label in labels):
            raise argparse.ArgumentTypeError(f"{text!r} is neither an IPv4 address nor a "
                                             "host name") from None
        return text
    if address.version != 4:
        raise argparse.ArgumentTypeError(f"{text}: the probes speak IPv4 only")
    return text


def _add_probe(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "probe",
        help="measure downtime and TCP continuity of targets for a fixed time",
        description="Probe targets with echo requests at a fixed interval (ICMP by default, "
        "UDP echo with --udp) and optionally a byte-exact TCP echo stream (--tcp), "
        "then print the outages and stalls seen. Run it while migrating by hand.",
    )
    parser.add_argument("targets", nargs="+", metavar="TARGET", type=_target,
                        help="IPv4 addresses or host names")
    parser.add_argument("--interval", type=_positive, default=0.01,
                        help="seconds between echo requests per target (default 0.01, min 0.001)")
    parser.add_argument("--duration", type=_positive, default=10.0,
                        help="seconds to probe (default 10)")
    parser.add_argument("--udp", type=_port, metavar="PORT",
                        help="probe a UDP echo service on PORT instead of ICMP")
    parser.add_argument("--tcp", type=_port, metavar="PORT",
                        help="also stream to a TCP echo service on PORT and verify every byte")
    parser.add_argument("--tcp-rate", type=_positive, default=10240.0,
                        help="TCP continuity stream rate in bytes/s (default 10240)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--raw", action="store_true",
                        help="with --json: add every request's send and reply time "
                             "(seconds since the probe started; reply null when lost)")
    parser.set_defaults(handler=_run_probe)


def _run_probe(args: argparse.Namespace) -> int:
    from rally_lm.cli import probe_cmd

    if args.raw and not args.json:
        print("rally-lm probe: --raw adds to the JSON output: give --json too",
              file=sys.stderr)
        return 2
    return probe_cmd.run(args)


def _add_testbed(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "testbed",
        help="the embedded two-compute OpenStack testbed (root, Debian 12)",
        description="Build, start, stop and inspect the embedded testbed.",
    )
    parser.add_argument("action", choices=["up", "down", "status", "env", "mode", "run-task"])
    parser.add_argument("args_file", nargs="?", metavar="ARGS_FILE",
                        help="run-task: a task args file (task_templates/args/testbed-*.yaml)")
    parser.add_argument("--network", choices=["linuxbridge", "ovn"],
                        help="up: Neutron's mechanism driver (default linuxbridge, or the "
                             "last one; another needs `down` first)")
    parser.add_argument("--storage", choices=["local", "shared", "ceph"], help="mode: storage")
    parser.add_argument("--tunnelled", choices=["on", "off"], help="mode: tunnelling")
    policy = parser.add_argument_group(
        "migration policy (mode; Nova's [libvirt] options on both computes, shown by status)")
    policy.add_argument("--post-copy", choices=["on", "off"],
                        help="live_migration_permit_post_copy")
    policy.add_argument("--auto-converge", choices=["on", "off"],
                        help="live_migration_permit_auto_converge")
    policy.add_argument("--timeout-action", choices=["abort", "force_complete"],
                        help="live_migration_timeout_action")
    policy.add_argument("--completion-timeout", type=int, metavar="S",
                        help="live_migration_completion_timeout, seconds per GiB (min 2 GiB)")
    policy.add_argument("--max-downtime", type=int, metavar="MS",
                        help="live_migration_downtime (Nova's minimum: 100)")
    policy.add_argument("--downtime-steps", type=int, metavar="N",
                        help="live_migration_downtime_steps")
    policy.add_argument("--downtime-delay", type=int, metavar="S",
                        help="live_migration_downtime_delay, seconds per GiB")
    policy.add_argument("--bandwidth", type=int, metavar="MIB_S",
                        help="live_migration_bandwidth (0: unlimited)")
    policy.add_argument("--native-tls", choices=["on", "off"],
                        help="live_migration_with_native_tls (certificates made by the testbed)")
    policy.add_argument("--link-rate", metavar="MBIT|off",
                        help="shape migration traffic between the computes (tc tbf)")
    policy.add_argument("--reset-policy", action="store_true",
                        help="back to Nova's defaults (before the options given)")
    parser.add_argument("--template", help="run-task: task template (default: evacuate_host)")
    parser.add_argument("--out", default="results", help="run-task: where reports go")
    parser.set_defaults(handler=_run_testbed)


def _run_testbed(args: argparse.Namespace) -> int:
    try:
        from rally_lm_testbed import cli as testbed_cli
    except ImportError as exc:
        print(f"rally-lm testbed: the testbed is not available: {exc}", file=sys.stderr)
        return 2
    return testbed_cli.run(args)


def _add_report(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "report",
        help="compare matrix cells (storage x tunnelling x flavor) from Rally results",
        description="Build the comparison document (HTML, offline, and Markdown) from Rally "
        "task UUIDs (read from Rally's database) or Rally JSON reports, one per cell.",
    )
    parser.add_argument("tasks", nargs="+", metavar="TASK",
                        help="a Rally task UUID or a `rally task report --json` file")
    parser.add_argument("--out", default="comparison", help="output directory")
    parser.add_argument("--note", default="", help="a sentence shown at the top")
    parser.add_argument("--baseline", action="append", metavar="SEED_JSON",
                        help="a result file of the seed (osic/benchmarking_live-migration "
                             "benchmarker_results/lvm_tun_*_storage_*.json), shown beside "
                             "ours as ratios between cells; repeat for each file")
    parser.add_argument("--baseline-source", metavar="OWNER/REPO@COMMIT",
                        help="where the baseline files come from, recorded as provenance")
    parser.add_argument("--title", default=None,
                        help="the document's title (default: the seed matrix's; a policy "
                             "sweep's cells get a policy column whatever the title)")
    parser.add_argument("--pair-across-sessions", action="store_true",
                        help="set ratios between our cells of different sessions (or of "
                             "unknown ones) beside the seed's anyway, each said to be so; by "
                             "default they are left out (the same cell varies more between "
                             "sessions than many ratios do)")
    parser.set_defaults(handler=_run_report)


def _run_report(args: argparse.Namespace) -> int:
    from rally_lm.cli import report_cmd

    return report_cmd.run(args)


def _profile_help() -> dict[str, str]:
    from rally_lm.study.matrix import PROFILES

    return {p.name: f"{p.vms} VMs x {p.round_trips} round trips"
            + (f" x {p.passes} passes" if p.passes > 1 else "")
            + f" = {p.migrations()} migrations per cell ({p.what})" for p in PROFILES.values()}


PROFILE_HELP = _profile_help()


def _add_templates(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "templates", help="copy the task templates (and the sample dashboard) to edit",
        description="Copy rally_lm's task templates - evacuate_host.yaml.j2 and its args "
        "files - and the sample Grafana dashboard into a directory, from the checkout or "
        "from where the wheel installed them.")
    parser.add_argument("--out", required=True, help="the directory to copy them into")
    parser.set_defaults(handler=_run_templates)


def _run_templates(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rally_lm import templates

    try:
        copied = templates.copy(Path(args.out))
    except OSError as exc:
        print(f"rally-lm templates: {exc}", file=sys.stderr)
        return 2
    for path in copied:
        print(path)
    return 0


def _add_compare(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "compare",
        help="candidate against baseline: better / worse / no change, with intervals; "
             "exits 1 when something got worse",
        description="Compare Rally results of a candidate (after an upgrade, a new setting) "
        "with a baseline's, cell by cell: client downtime and duration (p50, p95), "
        "hypervisor downtime, TCP stall, success rate. Each change comes with its interval "
        "and a significance test; the verdict is worse / better / no change / inconclusive "
        "against a tolerance. Exit 0: nothing got worse; 1: something did; 2: bad input.")
    parser.add_argument("--baseline", nargs="+", required=True, metavar="TASK",
                        help="task UUIDs or `rally task report --json` files (a cell's "
                             "tasks are pooled)")
    parser.add_argument("--candidate", nargs="+", required=True, metavar="TASK",
                        help="the same, for the candidate")
    parser.add_argument("--tolerance", type=float, default=0.10,
                        help="the relative change that matters (default 0.10: 10 %%)")
    parser.add_argument("--confidence", type=float, default=0.95,
                        help="of the intervals and the tests (default 0.95)")
    parser.add_argument("--across", choices=("storage", "tunnelling", "flavor", "policy",
                                             "dirty_rate_mib", "network"),
                        help="pair cells that differ only in this label (e.g. network: "
                             "linuxbridge before, ovn after); each pair says so")
    parser.add_argument("--out", default="compare", help="where compare.{md,html,json} go")
    parser.set_defaults(handler=_run_compare)


def _run_compare(args: argparse.Namespace) -> int:
    from rally_lm.cli import compare_cmd

    return compare_cmd.run(args)


def _add_study(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "study",
        help="the seed's whole study: every matrix cell as a Rally task, then one comparison",
        description="Run storage (local, ceph) x tunnelling (off, on) x flavor (small, medium, "
        "large), and one volume-backed cell, each as a Rally task (VMs and round trips from "
        "the profile), switching the embedded testbed's mode between cells (root), or "
        "against your cloud with --cloud. Resumable: a rerun skips the cells already done. "
        "It prints what its n buys (the median's interval) before and after.")
    parser.add_argument("--out", default="study", help="output directory (default ./study)")
    parser.add_argument("--matrix", choices=["seed", "policies"], default="seed",
                        help="seed: storage x tunnelling x flavor; policies: each "
                             "task_templates/args/policy-*.yaml as one task, its VMs "
                             "dirtying memory below, near and above the shaped migration "
                             "link (testbed only)")
    parser.add_argument("--profile", choices=sorted(PROFILE_HELP), default="default",
                        help="how much of each cell: "
                             + "; ".join(f"{k}: {v}" for k, v in sorted(PROFILE_HELP.items())))
    parser.add_argument("--vms", type=int,
                        help="VMs per cell, instead of the profile's (a policy's are its "
                             "args file's, one per dirty rate)")
    parser.add_argument("--round-trips", type=int,
                        help="round trips per cell, instead of the profile's (1 for the "
                             "policy sweep)")
    parser.add_argument("--passes", type=int,
                        help="run the whole matrix this many times, interleaved (A B C A B "
                             "C), pooling each cell's passes; instead of the profile's")
    parser.add_argument("--cells", nargs="*", metavar="PATTERN",
                        help="only cells matching, e.g. ceph-off or large")
    parser.add_argument("--no-volume-cell", action="store_true",
                        help="leave out the volume-backed cell")
    parser.add_argument("--disk-fill-percent", type=int, default=0,
                        help="fill each VM's disk to this share (the seed: 50)")
    parser.add_argument("--probe-interval", type=float,
                        help="seconds between echo requests (testbed 0.02, cloud 0.01)")
    parser.add_argument("--icmp", choices=["on", "off"],
                        help="ICMP beside UDP echo (testbed off, cloud on)")
    parser.add_argument("--tcp-rate", type=int, metavar="BYTES_S",
                        help="TCP stream per VM (testbed 10240, cloud 102400 as the seed)")
    parser.add_argument("--cloud", metavar="ARGS_FILE",
                        help="run against the current Rally environment's cloud, with this "
                             "task args file (hosts, image, network, storage and tunnelling "
                             "labels); only its own storage/tunnelling cells run")
    parser.add_argument("--flavors", metavar="SMALL,MEDIUM,LARGE",
                        help="with --cloud: your flavors for the seed's three sizes")
    parser.add_argument("--baseline", action="append", metavar="SEED_JSON",
                        help="a seed result file to compare shapes with (repeatable)")
    parser.add_argument("--baseline-source", metavar="OWNER/REPO@COMMIT",
                        help="provenance of the baseline files")
    parser.add_argument("--note", default="", help="a sentence shown at the top")
    parser.set_defaults(handler=_run_study)


def _run_study(args: argparse.Namespace) -> int:
    from rally_lm.cli import study_cmd

    try:
        return study_cmd.run(args)
    except (RuntimeError, PermissionError, FileNotFoundError, ValueError) as exc:
        print(f"rally-lm study: {exc}", file=sys.stderr)
        return 2


def _add_influx_replay(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "influx-replay",
        help="send points spooled while InfluxDB was unreachable",
        description="Replay a spool file (~/.rally/rally-lm-spool/<task>.lp) into InfluxDB. "
        "The token is read from $INFLUX_TOKEN; points that still fail stay spooled.",
    )
    parser.add_argument("spool", help="spool file (line protocol)")
    parser.add_argument("--url", required=True)
    parser.add_argument("--org", default="")
    parser.add_argument("--bucket", default="rally_lm")
    parser.set_defaults(handler=_run_influx_replay)


def _run_influx_replay(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rally_lm.export.influx import ExportConfigError, InfluxSettings, replay_spool

    spool = Path(args.spool)
    if not spool.exists():
        print(f"rally-lm influx-replay: no such spool file {spool}", file=sys.stderr)
        return 2
    try:
        settings = InfluxSettings.from_config({"url": args.url, "org": args.org,
                                               "bucket": args.bucket})
    except ExportConfigError as exc:
        print(f"rally-lm influx-replay: {exc}", file=sys.stderr)
        return 2
    stats = replay_spool(settings, spool)
    print(f"replayed {stats.replayed} point(s); {stats.spooled} still spooled; "
          f"{stats.rejected} rejected (kept in {spool}.rejected)"
          + (f" ({stats.last_error})" if stats.last_error else ""))
    return 0 if not (stats.failed or stats.spooled) else 1


def build_parser() -> argparse.ArgumentParser:
    import rally_lm

    parser = _Parser(
        prog="rally-lm",
        description="Live-migration benchmarking for OpenStack. The benchmark itself runs "
        "as Rally plugins (rally task start task_templates/...); this command holds the "
        "tools around it.",
    )
    parser.add_argument("--version", action="version",
                        version=f"rally-lm {rally_lm.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_probe(sub)
    _add_testbed(sub)
    _add_report(sub)
    _add_compare(sub)
    _add_study(sub)
    _add_templates(sub)
    _add_influx_replay(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    return args.handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
