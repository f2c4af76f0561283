"""A study's state on disk, so a rerun skips the cells already done and keeps them.

``<out>/study.json`` holds, per cell, its status (``done``, ``failed``,
``not run`` with why) and where its Rally reports are, relative to ``<out>``
(a study moved or resumed from another directory still finds them); it is
rewritten after every cell, atomically.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any


@dataclasses.dataclass
class CellResult:
    cell: str
    status: str = "pending"  # pending | done | failed | not run
    task: str | None = None
    json: str | None = None
    html: str | None = None
    exit_code: int | None = None
    seconds: float | None = None
    migrations: int = 0
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class StudyState:
    settings: dict[str, Any]
    cells: dict[str, CellResult] = dataclasses.field(default_factory=dict)
    started: float = dataclasses.field(default_factory=time.time)
    #: The study's directory: where the reports' stored paths start (never saved).
    root: Path = dataclasses.field(default=Path("."), compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"settings": self.settings, "started": self.started,
                "cells": {k: v.to_dict() for k, v in self.cells.items()}}

    @classmethod
    def load(cls, path: Path, settings: dict[str, Any]) -> StudyState:
        """The state of the study in ``path``; a fresh one if there is none.

        A study of other settings there is never overwritten: ValueError says so.
        """
        if not path.exists():
            return cls(settings=settings, root=path.parent)
        data = json.loads(path.read_text())
        if data.get("settings") != settings:
            differ = sorted(k for k in {**settings, **data.get("settings", {})}
                            if settings.get(k) != data.get("settings", {}).get(k))
            raise ValueError(f"{path} holds a study with other settings ({', '.join(differ)}"
                             f" differ); choose another --out, or remove it to start over")
        return cls(settings=settings, started=data["started"], root=path.parent,
                   cells={k: CellResult(**v) for k, v in data["cells"].items()})

    def relative(self, report: Path) -> str:
        """How a report's path is stored: from the study's directory."""
        return os.path.relpath(report, self.root)

    def locate(self, stored: str) -> Path:
        """A stored report path on disk (states written before 0.3 stored it as
        given on the command line, from where the study ran)."""
        path = self.root / stored
        return path if path.exists() or not Path(stored).exists() else Path(stored)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(self.to_dict(), indent=1))
        os.replace(temporary, path)

    def done(self, name: str) -> bool:
        """A cell counts as done only with its report still where the state says."""
        result = self.cells.get(name)
        return bool(result and result.status == "done" and result.json
                    and self.locate(result.json).exists())
