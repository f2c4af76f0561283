"""tools/install-system-deps.sh changes the host only as it says."""

import subprocess
from pathlib import Path

import pytest

from tests.functional.conftest import require

pytestmark = pytest.mark.functional
ROOT = Path(__file__).resolve().parents[2]
POLICY = Path("/usr/sbin/policy-rc.d")
MARKER = "rally_lm install"


def test_no_policy_of_ours_is_left_on_the_host(root_with_netns):
    # CI ran the install before the tests: whatever is there now is not ours.
    assert not (POLICY.exists() and MARKER in POLICY.read_text())


def test_an_existing_policy_is_put_back_byte_for_byte(root_with_netns, tmp_path):
    saved = POLICY.read_bytes() if POLICY.exists() else None
    mine = b"#!/bin/sh\n# the operator's own policy\nexit 0\n"
    POLICY.write_bytes(mine)
    POLICY.chmod(0o755)
    try:
        proc = subprocess.run(["bash", str(ROOT / "tools" / "install-system-deps.sh"),
                               "--minimal"], capture_output=True, text=True, timeout=900)
        require(proc.returncode == 0, f"install failed: {proc.stderr[-1000:]}")
        assert POLICY.read_bytes() == mine
        assert POLICY.stat().st_mode & 0o777 == 0o755
    finally:
        if saved is None:
            POLICY.unlink(missing_ok=True)
        else:
            POLICY.write_bytes(saved)
