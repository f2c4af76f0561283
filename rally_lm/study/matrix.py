"""The seed's matrix (storage x tunnelling x flavor), and the policy sweep.

==============  ==============================================================
storage         ``local`` (per-host disks: Nova block-migrates) or ``ceph``
                (RBD: shared block storage, the seed's "shared storage")
tunnelling      ``off`` (QEMU's stream goes straight between the hosts) or
                ``on`` (through libvirtd)
flavor          the seed's ``small`` (2 vCPU, 4 GiB, 40 GB), ``medium`` and
                ``large``; on the testbed scaled to one machine (see SCALE)
volume          the seed's lesson 3: one extra cell boots its VMs from Cinder
                volumes (ceph, off, small)
==============  ==============================================================

The policy sweep (``--matrix policies``, testbed only) runs each migration
policy of ``task_templates/args/policy-*.yaml`` as one task over a link
shaped for migration traffic, its VMs dirtying memory below, near and above
that link's rate (one rate per VM, from the args file).
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import yaml

from rally_lm import templates

STORAGES = ("local", "ceph")
TUNNELLINGS = ("off", "on")
FLAVORS = ("small", "medium", "large")
#: The seed's flavors: vCPUs, RAM MiB, disk GB.
SEED_FLAVORS = {"small": (2, 4096, 40), "medium": (4, 8192, 80), "large": (8, 16384, 160)}
#: How the testbed scales them to one 2-core machine: RAM / 16, disk / 40,
#: vCPUs / 4 (at least 1) - flavors lm.<size>.scaled-16.
SCALE = {"ram": 16, "disk": 40, "vcpus": 4}


@dataclasses.dataclass(frozen=True)
class Profile:
    """How much of each cell a study runs: VMs, round trips, passes over the matrix."""

    name: str
    vms: int
    round_trips: int
    passes: int
    what: str

    def migrations(self, vms: int | None = None, round_trips: int | None = None,
                   passes: int | None = None) -> int:
        """Migrations per cell, over all passes."""
        return 2 * (vms or self.vms) * (round_trips or self.round_trips) * \
            (passes or self.passes)


#: The study's profiles. With several passes, the whole matrix runs once per
#: pass (A B C A B C): drift in the machine over the study hits every cell alike.
PROFILES = {
    "quick": Profile("quick", 2, 1, 1, "a first look"),
    "default": Profile("default", 3, 2, 1, "31.5 min for the 13 cells on the 2-core testbed"),
    "seed": Profile("seed", 6, 20, 1, "the seed's own counts"),
}


def ordered(cells: list[StudyCell], passes: int) -> list[tuple[int, StudyCell]]:
    """(pass, cell) in running order: every cell of pass 1, then of pass 2..."""
    return [(number, cell) for number in range(1, passes + 1) for cell in cells]


def run_name(cell: StudyCell, number: int) -> str:
    """A cell's name in a pass ("ceph-off-small", then "ceph-off-small#2")."""
    return cell.name if number == 1 else f"{cell.name}#{number}"


@dataclasses.dataclass(frozen=True)
class StudyCell:
    storage: str
    tunnelling: str
    flavor: str
    volume: bool = False
    #: Policy sweep cells: the policy (its args file policy-<name>.yaml, which
    #: also says how many VMs, one per dirty rate).
    policy: str = ""

    @property
    def name(self) -> str:
        if self.policy:
            return self.policy
        return f"{self.storage}-{self.tunnelling}-{self.flavor}" + ("-volume" if self.volume
                                                                     else "")

    @property
    def args_file(self) -> Path | None:
        """The policy's own task args (None for the seed's cells)."""
        return templates.args_dir() / f"policy-{self.policy}.yaml" if self.policy else None

    @property
    def label_storage(self) -> str:
        """The storage label the task records (the volume cell is told apart)."""
        return f"{self.storage}-volume" if self.volume else self.storage


def seed_matrix(volume_cell: bool = True) -> list[StudyCell]:
    cells = [StudyCell(s, t, f) for s, t, f in itertools.product(STORAGES, TUNNELLINGS,
                                                                 FLAVORS)]
    if volume_cell:
        cells.append(StudyCell("ceph", "off", "small", volume=True))
    return cells


def policy_names(args_dir: Path | None = None) -> list[str]:
    """Every policy with an args file (``policy-<name>.yaml``), in a stable order."""
    args_dir = args_dir or templates.args_dir()
    return sorted(p.stem.removeprefix("policy-") for p in args_dir.glob("policy-*.yaml"))


def policy_matrix(storage: str = "ceph", tunnelling: str = "off") -> list[StudyCell]:
    return [StudyCell(storage, tunnelling, "small", policy=policy) for policy in policy_names()]


def scaled_flavor(flavor: str) -> str:
    return f"lm.{flavor}.scaled-{SCALE['ram']}"


def select(cells: list[StudyCell], patterns: list[str] | None) -> list[StudyCell]:
    """Cells whose name contains every part of any pattern ("ceph-off", "large")."""
    if not patterns:
        return cells
    return [c for c in cells if any(all(part in c.name.split("-") for part in p.split("-"))
                                    for p in patterns)]


def planned_migrations(cell: StudyCell, vms: int | None, round_trips: int) -> int:
    """Migrations a cell plans: its VMs (a policy's from its args file) both ways."""
    if cell.policy:
        vms = int(yaml.safe_load(cell.args_file.read_text())["vm_count"])
    return vms * round_trips * 2
