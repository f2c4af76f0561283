"""Where a result came from: the code, the machine and its boot, recorded with every task.

Two cells compare only if they ran in conditions alike: the same rally_lm
(version, and the commit of the checkout it ran from, "-dirty" with
uncommitted changes), the same benchmark host and the same boot of it (the
kernel's boot id changes at every boot: a new session). The cloud's own
fingerprint (Nova's microversion, compute and hypervisor versions) is recorded
beside it by lm_workload; the contention record by the round trip.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from pathlib import Path

import rally_lm

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
PACKAGE_DIR = Path(rally_lm.__file__).resolve().parent


@functools.cache
def commit(where: Path = PACKAGE_DIR) -> str:
    """The git commit of the checkout rally_lm runs from ("" for an installed wheel)."""
    try:
        head = subprocess.run(["git", "-C", str(where), "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return ""
        dirty = subprocess.run(["git", "-C", str(where), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def provenance() -> dict[str, str]:
    """rally_lm's version and commit, and the benchmark host's name, kernel, CPUs, boot."""
    try:
        boot = BOOT_ID.read_text().strip()
    except OSError:
        boot = ""
    return {"rally_lm version": rally_lm.__version__, "rally_lm commit": commit(),
            "benchmark host": platform.node(), "kernel": platform.release(),
            "cpus": str(os.cpu_count() or 0), "boot id": boot}
