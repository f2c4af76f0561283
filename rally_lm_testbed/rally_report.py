"""Export a finished task's Rally reports, several formats in one process.

What ``rally task report UUID --html-static|--json --out PATH`` does, once
per format, with Rally's own API and exporters - without paying Rally's
start-up (plugin discovery, ~3 s here) once per format. Prints one JSON line
per format: {"type", "path", "error"} ("" when written).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    conf, uuid, *formats = argv
    if not formats or len(formats) % 2:
        print("usage: rally_report CONF UUID TYPE PATH [TYPE PATH ...]", file=sys.stderr)
        return 2
    from rally import api as rally_api
    from rally import plugins

    api = rally_api.API(config_file=conf)
    plugins.load()  # as the CLI's commands do
    for output_type, path in zip(formats[::2], formats[1::2], strict=True):
        try:
            report = api.task.export(tasks=[uuid], output_type=output_type, output_dest=path)
            for name, content in report.get("files", {}).items():
                Path(name).expanduser().write_text(content)
            error = ""
        except Exception as exc:  # noqa: BLE001 - reported per format, as the CLI would
            error = f"{type(exc).__name__}: {exc}"
        print(json.dumps({"type": output_type, "path": path, "error": error}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
