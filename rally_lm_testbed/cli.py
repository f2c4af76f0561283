"""``rally-lm testbed up|down|status|env|mode``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rally_lm import templates
from rally_lm_testbed import policy, testbed


def run(args: argparse.Namespace) -> int:
    try:
        if args.action == "up":
            testbed.up(getattr(args, "network", None))
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
            changes = policy_changes(args)
            if not (args.storage or args.tunnelled or changes or args.reset_policy):
                print(json.dumps(testbed.read_mode()))
            else:
                print(json.dumps(testbed.set_mode(args.storage, args.tunnelled, changes,
                                                  reset_policy=args.reset_policy)))
    except (RuntimeError, PermissionError, TimeoutError, FileNotFoundError) as exc:
        print(f"rally-lm testbed {args.action}: {exc}", file=sys.stderr)
        return 1
    return 0


def _on_off(value: str | None) -> bool | None:
    return None if value is None else value == "on"


def policy_changes(args: argparse.Namespace) -> dict:
    """The Policy fields the command line sets (the others keep their values)."""
    given = {
        "post_copy": _on_off(getattr(args, "post_copy", None)),
        "auto_converge": _on_off(getattr(args, "auto_converge", None)),
        "timeout_action": getattr(args, "timeout_action", None),
        "completion_timeout": getattr(args, "completion_timeout", None),
        "max_downtime_ms": getattr(args, "max_downtime", None),
        "downtime_steps": getattr(args, "downtime_steps", None),
        "downtime_delay": getattr(args, "downtime_delay", None),
        "bandwidth_mib": getattr(args, "bandwidth", None),
        "native_tls": _on_off(getattr(args, "native_tls", None)),
    }
    changes = {k: v for k, v in given.items() if v is not None}
    link = getattr(args, "link_rate", None)
    if link is not None:
        try:
            changes["link_mbit"] = None if link == "off" else float(link)
        except ValueError:
            raise RuntimeError(f"--link-rate takes Mbit/s or off, not {link!r}") from None
    return changes




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
    if wanted["storage"] not in ("local", "shared", "ceph") or \
            wanted["tunnelled"] not in ("on", "off"):
        raise RuntimeError(f"{args_file} must set storage (local|shared|ceph) and tunnelling "
                           "(on|off)")
    backend = cell.get("network_backend")
    if backend is not None and backend != mode["network"]:
        raise RuntimeError(f"{args_file} is a cell of network {backend}; the testbed runs "
                           f"{mode['network']}: `rally-lm testbed down`, then "
                           f"`rally-lm testbed up --network {backend}`")
    # An args file may name the testbed's migration policy; without one, Nova's defaults.
    wanted_policy = policy.Policy.from_dict(cell.get("testbed_policy")).to_dict()
    if wanted != {k: mode[k] for k in wanted} or wanted_policy != mode["policy"]:
        testbed.set_mode(wanted["storage"], wanted["tunnelled"], wanted_policy,
                         reset_policy=True)
    template = Path(args.template) if args.template else templates.template()
    run = rally_runner.run_task(template, args_file, Path(args.out))
    print(f"task {run.uuid}: rally task start exited {run.exit_code}")
    print(f"HTML report: {run.html}")
    print(f"JSON report: {run.json}")
    print(f"log: {run.log}")
    return run.exit_code
