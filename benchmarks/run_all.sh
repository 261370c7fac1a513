#!/usr/bin/env bash
# Run every benchmark that needs no Slurm cluster, at full size, with the peers; each writes its own
# section of docs/benchmarks.md (and search quality its PNG under docs/).
#   bash benchmarks/run_all.sh                 (about 30 minutes on 2 cores)
#   bash benchmarks/run_all.sh --peers none    (hpc_hpo only; no peer venv needed)
# The live Slurm benchmarks need the cluster and a quiet machine: bash benchmarks/run_slurm.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
PEERS=all
if [ "${1:-}" = "--peers" ] && [ -n "${2:-}" ]; then
  PEERS="$2"
fi
if [ "$PEERS" != "none" ]; then
  bash benchmarks/peers.sh
fi
"$PYTHON" benchmarks/scheduler_peers.py --peers "$PEERS"
"$PYTHON" benchmarks/journal_lock.py
"$PYTHON" benchmarks/search_quality.py --peers "$PEERS"
echo "run_all: docs/benchmarks.md updated"
