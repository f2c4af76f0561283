#!/usr/bin/env bash
# README command 1: on a fresh Debian 12 machine, as root: install everything,
# bring up the embedded testbed, run the evacuation benchmark in one local-
# storage and one Ceph cell, and print where Rally's HTML reports are and how
# to run the seed's whole study and the policy sweep.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${RALLY_LM_RESULTS:-$PWD/results/$(date +%Y%m%d-%H%M%S)}

bash tools/install-system-deps.sh
bash tools/install-python-env.sh
.venv/bin/rally-lm testbed up
status=0
for cell in testbed-local-off testbed-ceph-off; do
    .venv/bin/rally-lm testbed run-task "task_templates/args/$cell.yaml" --out "$out" || status=$?
done
.venv/bin/rally-lm report "$out"/testbed-*-off-*.json --out "$out/comparison" \
    --note "Testbed cells: flavors are scaled (lm.small.scaled-16 = the seed's small with \
RAM/16, disk/40, vCPU/4) and QEMU runs under software emulation." || status=$?
echo
echo "Rally HTML reports (open in a browser, work offline):"
ls -1 "$out"/testbed-*.html
echo "Comparison of the cells: $out/comparison/comparison.html (and comparison.md)"
echo
echo "The seed's whole study (12 cells + a volume-backed one, 6 VMs x 2 round trips,"
echo "about 1.5-2 hours here; resumable):"
echo "  .venv/bin/rally-lm study --out study"
echo "Migration policies (5 policies x 3 dirty rates over a shaped link, 24 min here):"
echo "  .venv/bin/rally-lm study --matrix policies --out policies"
exit "$status"
