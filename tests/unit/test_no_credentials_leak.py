"""Samples and fixtures (real Rally output) carry no credential."""

from pathlib import Path

import pytest

from rally_lm_testbed import layout

ROOT = Path(__file__).resolve().parents[2]
FILES = [p for d in ("samples", "tests/fixtures") for p in (ROOT / d).rglob("*") if p.is_file()]


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_password_or_token_in(path):
    text = path.read_text(errors="replace")
    assert layout.PASSWORD not in text
    assert '"password": "' not in text and "OS_PASSWORD" not in text
    assert "X-Auth-Token" not in text
