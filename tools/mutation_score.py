"""Mutation score of the measurement core, per package, from mutmut's own records.

Reads ``mutants/**/*.meta`` (mutmut 3), so it reports the last ``mutmut run``
as it ended. Score = (killed + timeout) / (every mutant but skipped ones): a
mutant no selected test reaches ("no tests") counts as a survivor, not as
nothing. Survivors are listed with their function so each can be read with
``mutmut show NAME`` and either killed by a test or named as equivalent in
docs/mutation.md.
"""

from __future__ import annotations

import collections
import json
import sys
from pathlib import Path

STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests",
          34: "skipped", 35: "suspicious", 36: "timeout", -24: "timeout", 24: "timeout",
          152: "timeout", 255: "timeout", None: "not checked"}


def package_of(meta: Path, root: Path) -> str:
    """The source file's directory: rally_lm/probes, rally_lm/migration, ..."""
    return "/".join(meta.relative_to(root).parts[:-1])


def main(root: Path = Path("mutants")) -> int:
    if not root.is_dir():
        print("no mutants/ directory: run `mutmut run` first (see README, Development)",
              file=sys.stderr)
        return 2
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    survivors: dict[str, list[str]] = collections.defaultdict(list)
    for meta in sorted(root.rglob("*.py.meta")):
        package = package_of(meta, root)
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            status = STATUS.get(code, "suspicious")
            counts[package][status] += 1
            if status in ("survived", "no tests", "suspicious"):
                survivors[package].append(f"{name} ({status})")
    total = collections.Counter()
    print(f"{'package':<28} {'killed':>7} {'survived':>9} {'no tests':>9} {'timeout':>8} "
          f"{'unchecked':>10} {'score':>7}")
    for package, count in sorted(counts.items()):
        total.update(count)
        print(_line(package, count))
    print(_line("all", total))
    for package, names in sorted(survivors.items()):
        print(f"\nsurvivors in {package} ({len(names)}):")
        for name in names:
            print(f"  {name}")
    return 0


def _line(label: str, count: collections.Counter) -> str:
    judged = sum(count.values()) - count["skipped"] - count["not checked"]
    score = (count["killed"] + count["timeout"]) / judged * 100 if judged else 0.0
    return (f"{label:<28} {count['killed']:>7} {count['survived']:>9} {count['no tests']:>9} "
            f"{count['timeout']:>8} {count['not checked']:>10} {score:>6.1f}%")


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("mutants")))
