"""How often the anatomy's pause matches libvirt's downtime, in recorded Rally reports.

Issue 13's goal: the pause within one probe interval + 5 ms of libvirt's
downtime on >= 90 % of migrations. Reads the Rally JSON reports given (a
study's or a sweep's ``rally/*.json``; no testbed needed) and prints every
completed migration with both figures, then the share within tolerance -
for all of them, and without the migrations that switched to post-copy,
whose libvirt downtime ends on the source once the device state is sent,
before the destination runs the guest (docs/measurement.md).

    .venv/bin/python bench/pause_vs_libvirt.py samples/policies/rally/*.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rally_lm.report import cells


def rows(paths: list[Path]) -> list[dict]:
    found = []
    for cell in cells.load(paths, split=False):
        tolerance = float(cell.config.get("probe_interval", 0.01)) * 1000.0 + 5.0
        for migration in cell.migrations:
            libvirt, pause = migration.get("hypervisor_downtime_ms"), migration.get("pause_ms")
            if libvirt is None or pause is None:
                continue
            found.append({"task": cell.policy or cell.name, "vm": migration["vm"],
                          "direction": migration["direction"],
                          "copy_mode": migration.get("copy_mode") or "-",
                          "libvirt_ms": float(libvirt), "pause_ms": float(pause),
                          "within": abs(float(pause) - float(libvirt)) <= tolerance,
                          "tolerance_ms": tolerance})
    return found


def share(selected: list[dict]) -> str:
    within = sum(r["within"] for r in selected)
    percent = 100.0 * within / len(selected) if selected else float("nan")
    return f"{within}/{len(selected)} ({percent:.0f} %)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", type=Path)
    found = rows(parser.parse_args().reports)
    print(f"{'task':<22} {'vm':>22} {'dir':>4} {'copy':>9} {'libvirt':>8} {'pause':>8} "
          f"{'within':>6}")
    for r in found:
        print(f"{r['task'][:22]:<22} {r['vm']:>22} {r['direction']:>4} "
              f"{r['copy_mode']:>9} {r['libvirt_ms']:8.0f} {r['pause_ms']:8.1f} "
              f"{'yes' if r['within'] else 'NO':>6}")
    print(f"pause within one probe interval + 5 ms of libvirt's downtime: {share(found)} "
          "(goal >= 90 %)")
    print("the same without post-copy switches: "
          f"{share([r for r in found if r['copy_mode'] != 'post-copy'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
