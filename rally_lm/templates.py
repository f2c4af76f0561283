"""Where the task templates are: the checkout's, or the ones a wheel installed.

A checkout (or an editable install) has them at ``task_templates/`` beside
the package; a wheel installs them as data files under
``<prefix>/share/rally-lm/`` (``task_templates/``, and ``samples/`` for the
Grafana dashboard). ``rally-lm templates --out DIR`` copies them somewhere
to edit.
"""

from __future__ import annotations

import shutil
import sys
import sysconfig
from pathlib import Path

import rally_lm

NAME = "task_templates"
TEMPLATE = "evacuate_host.yaml.j2"


def _candidates() -> list[Path]:
    data = Path(sysconfig.get_paths().get("data", sys.prefix))
    return [Path(rally_lm.__file__).resolve().parents[1] / NAME,
            data / "share" / "rally-lm" / NAME,
            Path(sys.prefix) / "share" / "rally-lm" / NAME]


def directory() -> Path:
    """The task templates' directory (its args/ below it)."""
    for candidate in _candidates():
        if (candidate / TEMPLATE).exists():
            return candidate
    raise FileNotFoundError("rally_lm's task templates are not installed here (looked in "
                            + ", ".join(str(c) for c in _candidates()) + ")")


def template() -> Path:
    return directory() / TEMPLATE


def args_dir() -> Path:
    return directory() / "args"


def copy(out: Path) -> list[Path]:
    """Copy the templates (and the sample dashboard, where installed) into ``out``."""
    source = directory()
    out.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, out / NAME, dirs_exist_ok=True)
    copied = [out / NAME]
    dashboard = source.parent / "samples" / "grafana-dashboard.json"
    if dashboard.exists():
        shutil.copy2(dashboard, out / dashboard.name)
        copied.append(out / dashboard.name)
    return copied
