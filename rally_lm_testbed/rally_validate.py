"""Validate many task-argument variants with Rally's own API, against the testbed.

What ``rally task validate`` (and ``rally task start`` before it creates
anything) does, for a list of variants in one process: render the template
with each variant's args over an args file, validate against the testbed's
Rally environment, and print one JSON line per variant: {"name", "error"}
("" when valid). Runs inside the probe namespace (rally_runner.validate_many).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml


def main(argv: list[str]) -> int:
    conf, env, template, args_file, variants_file = argv
    from rally import api as rally_api
    from rally import plugins

    api = rally_api.API(config_file=conf)
    plugins.load()  # as the CLI's commands do
    base = yaml.safe_load(Path(args_file).read_text())
    for name, args in json.loads(Path(variants_file).read_text()):
        try:
            rendered = api.task.render_template(task_template=Path(template).read_text(),
                                                template_dir=str(Path(template).parent),
                                                **{**base, **args})
            api.task.validate(deployment=env, config=yaml.safe_load(rendered))
            error = ""
        except Exception as exc:  # noqa: BLE001 - the message is the answer
            error = f"{type(exc).__name__}: {exc}"
        print(json.dumps({"name": name, "error": error}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
