"""The comparison HTML renders in a real headless browser."""

import shutil
import subprocess
from pathlib import Path

import pytest

from rally_lm.report import cells, render
from tests.functional.conftest import require

pytestmark = pytest.mark.functional
FIXTURES = sorted((Path(__file__).resolve().parents[1] / "fixtures" / "rally").glob("*.json"))


def test_comparison_renders_in_chromium(tmp_path):
    chromium = shutil.which("chromium")
    require(chromium is not None, "chromium is not installed (tools/install-system-deps.sh)")
    html, _markdown = render.render(cells.load(FIXTURES), tmp_path)
    shot = tmp_path / "comparison.png"
    proc = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
         "--window-size=1400,2000", f"--screenshot={shot}", html.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert shot.exists() and shot.stat().st_size > 20_000
