"""``rally-lm testbed up|down|status|env|mode``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rally_lm_testbed import testbed


def run(args: argparse.Namespace) -> int:
    try:
        if args.action == "up":
            testbed.up()
        elif args.action == "down":
            testbed.down()
        elif args.action == "status":
            print(json.dumps(testbed.status(), indent=2))
        elif args.action == "env":
            for key, value in testbed.credentials().items():
                print(f"export {key}={value}")
            print("# Run Rally and the probes inside the testbed's probe namespace:")
            print(f"#   {' '.join(testbed.probe_command(['rally', '...']))}")
            print("# clouds.yaml:")
            print("\n".join(f"# {line}" for line in testbed.clouds_yaml().splitlines()))
        elif args.action == "run-task":
            return _run_task(args)
        elif args.action == "mode":
            if not (args.storage or args.tunnelled):
                print(json.dumps(testbed.read_mode()))
            else:
                print(json.dumps(testbed.set_mode(args.storage, args.tunnelled)))
    except (RuntimeError, PermissionError, TimeoutError, FileNotFoundError) as exc:
        print(f"rally-lm testbed {args.action}: {exc}", file=sys.stderr)
        return 1
    return 0


TEMPLATE = Path(__file__).resolve().parent.parent / "task_templates" / "evacuate_host.yaml.j2"


def _run_task(args: argparse.Namespace) -> int:
    """Switch the testbed to the cell's mode, run the task, print where the reports are."""
    import yaml

    from rally_lm_testbed import rally_runner

    if not args.args_file:
        raise FileNotFoundError("run-task needs a task args file, e.g. "
                                "task_templates/args/testbed-local-off.yaml")
    args_file = Path(args.args_file)
    cell = yaml.safe_load(args_file.read_text())
    mode = testbed.read_mode()
    wanted = {"storage": cell.get("storage"), "tunnelled": str(cell.get("tunnelling"))}
    if wanted["storage"] not in ("local", "shared") or wanted["tunnelled"] not in ("on", "off"):
        raise RuntimeError(f"{args_file} must set storage (local|shared) and tunnelling (on|off)")
    if wanted != mode:
        testbed.set_mode(wanted["storage"], wanted["tunnelled"])
    template = Path(args.template) if args.template else TEMPLATE
    run = rally_runner.run_task(template, args_file, Path(args.out))
    print(f"task {run.uuid}: rally task start exited {run.exit_code}")
    print(f"HTML report: {run.html}")
    print(f"JSON report: {run.json}")
    print(f"log: {run.log}")
    return run.exit_code
