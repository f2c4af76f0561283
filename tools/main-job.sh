#!/usr/bin/env bash
# README command 1: on a fresh Debian 12 machine, as root: install everything,
# bring up the embedded testbed, run the evacuation benchmark in one local-
# and one shared-storage cell, and print where Rally's HTML reports are.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${RALLY_LM_RESULTS:-$PWD/results/$(date +%Y%m%d-%H%M%S)}

bash tools/install-system-deps.sh
bash tools/install-python-env.sh
.venv/bin/rally-lm testbed up
status=0
for cell in testbed-local-off testbed-shared-off; do
    .venv/bin/rally-lm testbed run-task "task_templates/args/$cell.yaml" --out "$out" || status=$?
done
.venv/bin/rally-lm report "$out"/testbed-*-off-*.json --out "$out/comparison" \
    --note "Testbed cells: flavors are scaled (lm.small.scaled-16 = the seed's small with \
RAM/16, disk/40, vCPU/4) and QEMU runs under software emulation." || status=$?
echo
echo "Rally HTML reports (open in a browser, work offline):"
ls -1 "$out"/testbed-*.html
echo "Comparison of the cells: $out/comparison/comparison.html (and comparison.md)"
exit "$status"
