"""``rally-lm testbed up|down|status|env|mode``."""

from __future__ import annotations

import argparse
import json
import sys

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
        elif args.action == "mode":
            if not (args.storage or args.tunnelled):
                print(json.dumps(testbed.read_mode()))
            else:
                print(json.dumps(testbed.set_mode(args.storage, args.tunnelled)))
    except (RuntimeError, PermissionError, TimeoutError) as exc:
        print(f"rally-lm testbed {args.action}: {exc}", file=sys.stderr)
        return 1
    return 0
