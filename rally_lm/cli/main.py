"""``rally-lm``: the command line around the Rally plugins.

Subcommands import what they need lazily, so ``rally-lm --help`` works
without a cloud, without root and without the testbed's packages.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _add_probe(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "probe",
        help="measure downtime and TCP continuity of targets for a fixed time",
        description="Probe targets with echo requests at a fixed interval (ICMP by default, "
        "UDP echo with --udp) and optionally a byte-exact TCP echo stream (--tcp), "
        "then print the outages and stalls seen. Run it while migrating by hand.",
    )
    parser.add_argument("targets", nargs="+", metavar="TARGET")
    parser.add_argument("--interval", type=float, default=0.01,
                        help="seconds between echo requests per target (default 0.01, min 0.001)")
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds to probe (default 10)")
    parser.add_argument("--udp", type=int, metavar="PORT",
                        help="probe a UDP echo service on PORT instead of ICMP")
    parser.add_argument("--tcp", type=int, metavar="PORT",
                        help="also stream to a TCP echo service on PORT and verify every byte")
    parser.add_argument("--tcp-rate", type=float, default=10240.0,
                        help="TCP continuity stream rate in bytes/s (default 10240)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--raw", action="store_true",
                        help="with --json: add every request's send and reply time "
                             "(seconds since the probe started; reply null when lost)")
    parser.set_defaults(handler=_run_probe)


def _run_probe(args: argparse.Namespace) -> int:
    from rally_lm.cli import probe_cmd

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
    parser.add_argument("--storage", choices=["local", "shared"], help="mode: storage")
    parser.add_argument("--tunnelled", choices=["on", "off"], help="mode: tunnelling")
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
    parser.set_defaults(handler=_run_report)


def _run_report(args: argparse.Namespace) -> int:
    from rally_lm.cli import report_cmd

    return report_cmd.run(args)


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
    print(f"replayed {stats.replayed} point(s); {stats.spooled} still spooled"
          + (f" ({stats.last_error})" if stats.last_error else ""))
    return 0 if not stats.last_error else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rally-lm",
        description="Live-migration benchmarking for OpenStack. The benchmark itself runs "
        "as Rally plugins (rally task start task_templates/...); this command holds the "
        "tools around it.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_probe(sub)
    _add_testbed(sub)
    _add_report(sub)
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
