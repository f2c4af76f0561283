"""`rally-lm study` end to end on the testbed: one small cell, then a resumed rerun."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rally_lm_testbed import testbed

pytestmark = [pytest.mark.functional, pytest.mark.testbed]
ROOT = Path(__file__).resolve().parents[2]


def study(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rally_lm.cli.main", "study", "--out",
                           str(out), "--cells", "ceph-off-small", "--no-volume-cell",
                           "--vms", "1", "--round-trips", "1", *extra],
                          capture_output=True, text=True, timeout=1800, cwd=ROOT)


def test_one_cell_study_then_a_rerun_that_skips_it(testbed_session, tmp_path):
    testbed.up()
    before = testbed.read_mode()
    first = study(tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    lines = first.stdout.splitlines()
    # One progress line per migration, with an ETA, then the cell's end.
    moves = [line for line in lines if "ETA" in line]
    assert len(moves) == 2 and all("[1/1 ceph-off-small]" in line for line in moves), lines
    state = json.loads((tmp_path / "study.json").read_text())
    cell = state["cells"]["ceph-off-small"]
    assert cell["status"] == "done" and cell["migrations"] == 2
    assert (tmp_path / cell["html"]).exists() and (tmp_path / cell["json"]).exists()
    markdown = (tmp_path / "comparison" / "comparison.md").read_text()
    assert "ceph | off | lm.small.scaled-16" in markdown
    # The cell ran on Ceph; the testbed is back in the mode the study found.
    assert testbed.read_mode() == before
    if before["storage"] != "ceph":
        assert "mode: storage=ceph" in first.stdout, lines
        assert "restoring the testbed's mode" in first.stdout, lines

    again = study(tmp_path)
    assert again.returncode == 0, again.stdout[-3000:]
    assert "done before" in again.stdout and "ETA" not in again.stdout
    assert json.loads((tmp_path / "study.json").read_text())["cells"]["ceph-off-small"] == cell
