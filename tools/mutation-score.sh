#!/usr/bin/env bash
# Mutation testing of the measurement core (rally_lm/probes, rally_lm/migration,
# rally_lm/task/sla; selection in pyproject.toml [tool.mutmut]).
#   tools/mutation-score.sh          print the score of the last run, per package
#   tools/mutation-score.sh --run    run mutmut first (about an hour on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--run" ]]; then
    rm -rf mutants
    .venv/bin/mutmut run --max-children "$(nproc)" >/dev/null
fi
exec .venv/bin/python tools/mutation_score.py mutants
