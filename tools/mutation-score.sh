#!/usr/bin/env bash
# Mutation testing of the measurement core (rally_lm/probes, rally_lm/migration,
# rally_lm/task/sla; selection in pyproject.toml [tool.mutmut]).
#   tools/mutation-score.sh          print the score of the last run, per package
#   tools/mutation-score.sh --run    run mutmut first (1.5-2 hours on 2 cores, idle)
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--run" ]]; then
    rm -rf mutants
    # Mutants run clean-up code (ssh_mux sweeps its temporary directories): they
    # get a temporary directory of their own, never the machine's /tmp. During
    # runs without one, /tmp was emptied twice (docs/mutation.md).
    private_tmp=$(mktemp -d -t rally-lm-mutants.XXXXXX)
    status=0
    TMPDIR=$private_tmp .venv/bin/mutmut run --max-children "$(nproc)" >/dev/null || status=$?
    # A mutant of a stop() can leave a test's fake child (a looping fake virsh) behind.
    pkill -f "$private_tmp" || true
    rm -rf "$private_tmp"
    (( status == 0 )) || exit "$status"
fi
exec .venv/bin/python tools/mutation_score.py mutants
