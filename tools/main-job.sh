#!/usr/bin/env bash
# README command 1: on a fresh Debian 12 machine, as root: install everything,
# bring up the embedded testbed, take a first look at the seed's study - its
# local-storage and Ceph cells, small flavor, tunnelling off, 2 VMs x 1 round
# trip each (`rally-lm study --profile quick`) - and print where Rally's HTML
# reports and the comparison are, and how to run the whole study and the
# policy sweep.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${RALLY_LM_RESULTS:-$PWD/results/$(date +%Y%m%d-%H%M%S)}

bash tools/install-system-deps.sh
bash tools/install-python-env.sh
.venv/bin/rally-lm testbed up
status=0
.venv/bin/rally-lm study --profile quick --cells local-off-small ceph-off-small \
    --no-volume-cell --out "$out" \
    --note "A first look: 2 VMs x 1 round trip per cell, too few migrations to tell \
small differences (the intervals say how few). Flavors are scaled (lm.small.scaled-16 = the \
seed's small with RAM/16, disk/40, vCPU/4) and QEMU runs under software emulation." \
    || status=$?
echo
echo "Rally HTML reports (open in a browser, work offline):"
ls -1 "$out"/rally/*.html
echo "Comparison of the cells: $out/comparison/comparison.html (and comparison.md)"
echo
echo "The seed's whole study (12 cells + a volume-backed one; --profile default: 3 VMs x"
echo "2 round trips per cell; resumable):"
echo "  .venv/bin/rally-lm study --out study"
echo "Migration policies (5 policies x 3 dirty rates over a shaped link):"
echo "  .venv/bin/rally-lm study --matrix policies --out policies"
exit "$status"
