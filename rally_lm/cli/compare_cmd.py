"""``rally-lm compare``: did the candidate get worse than the baseline? For pipelines."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rally_lm.cli.report_cmd import InputError, load_cells
from rally_lm.report import cells, compare


def run(args: argparse.Namespace) -> int:
    """0 when nothing got worse, 1 when something did, 2 on bad input."""
    if not 0.0 <= args.tolerance < 10.0 or not 0.5 <= args.confidence < 1.0:
        print("rally-lm compare: --tolerance takes a share >= 0 (0.1 = 10 %), --confidence "
              "one in [0.5, 1)", file=sys.stderr)
        return 2
    try:
        baseline = cells.pool(load_cells(args.baseline))
        candidate = cells.pool(load_cells(args.candidate))
    except (InputError, FileNotFoundError) as exc:
        print(f"rally-lm compare: {exc}", file=sys.stderr)
        return 2
    pairs, alone = compare.pair(baseline, candidate, args.tolerance, args.confidence,
                                across=getattr(args, "across", None))
    if not pairs:
        print("rally-lm compare: no cell of the candidate matches one of the baseline: "
              + "; ".join(alone), file=sys.stderr)
        return 2
    try:
        written = compare.render(pairs, alone, Path(args.out), args.tolerance, args.confidence)
    except OSError as exc:
        print(f"rally-lm compare: cannot write to {args.out}: {exc.strerror or exc}",
              file=sys.stderr)
        return 2
    print(written["md"].read_text())
    print(f"written: {written['md']}, {written['html']}, {written['json']}")
    return 1 if any(p.worse for p in pairs) else 0
