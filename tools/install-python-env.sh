#!/usr/bin/env bash
# Creates ./.venv with rally_lm (editable), Rally, rally-openstack and the test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${RALLY_LM_PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip >/dev/null
.venv/bin/pip install -q -e '.[test]'
.venv/bin/rally-lm --help >/dev/null
