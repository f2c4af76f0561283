"""``rally-lm report``: the comparison document from Rally results."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from rally_lm.report import baseline, cells, render

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _from_rally(uuid: str, workdir: Path) -> Path:
    rally = shutil.which("rally") or str(Path(sys.executable).with_name("rally"))
    out = workdir / f"{uuid}.json"
    proc = subprocess.run([rally, "task", "report", uuid, "--json", "--out", str(out)],
                          capture_output=True, text=True)
    if proc.returncode != 0 or not out.exists():
        # Rally says why on stdout (a task it does not know, a database it cannot open).
        said = " ".join((proc.stderr.strip() or proc.stdout.strip() or
                         f"exit {proc.returncode}").split())
        raise InputError(f"rally has no report of task {uuid}: {said[-300:]}")
    return out


def load_cells(tasks: list[str], split: bool = True) -> list[cells.Cell]:
    """The cells of task UUIDs (from Rally's database) or Rally JSON reports.

    Raises InputError, with what is wrong, for anything that is not one.
    """
    with tempfile.TemporaryDirectory(prefix="rally-lm-report-") as tmp:
        paths = [_from_rally(t, Path(tmp)) if UUID.match(t) else Path(t) for t in tasks]
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise InputError(f"no such file: {', '.join(missing)}")
        try:
            found = cells.load(paths, split=split)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InputError(f"not a Rally JSON report ({type(exc).__name__}: {exc})") \
                from exc
    if not found:
        raise InputError("no LiveMigration.evacuate_host workload in the input")
    return found


class InputError(Exception):
    """An input that is no Rally task of rally_lm; the message says which and why."""


def run(args: argparse.Namespace) -> int:
    try:
        found = load_cells(args.tasks)
    except (InputError, FileNotFoundError) as exc:
        print(f"rally-lm report: {exc}", file=sys.stderr)
        return 2
    try:
        seed = [cell for path in (args.baseline or [])
                for cell in baseline.load(Path(path), args.baseline_source)]
    except (OSError, ValueError, KeyError) as exc:
        print(f"rally-lm report: baseline: {exc}", file=sys.stderr)
        return 2
    titled = {"title": args.title} if args.title else {}  # else render's own default
    try:
        html, markdown = render.render(found, Path(args.out), note=args.note, baseline=seed,
                                       across_sessions=args.pair_across_sessions, **titled)
    except OSError as exc:
        print(f"rally-lm report: cannot write to {args.out}: {exc.strerror or exc}",
              file=sys.stderr)
        return 2
    print(f"comparison of {len(found)} cell(s):\n  {html}\n  {markdown}")
    return 0
