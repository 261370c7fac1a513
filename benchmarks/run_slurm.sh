#!/usr/bin/env bash
# Run the live Slurm benchmarks at full size; each writes its own section of docs/benchmarks.md.
# They need the project's 4-node cluster (bash .ci/cluster/cluster.sh up, as root) and all four of its
# nodes free: both run the driver inside `salloc -N4 --exclusive`.
#   bash benchmarks/run_slurm.sh               (about 9 minutes: latency about 3, utilisation about 6)
# Run it on a quiet machine: the cluster's nodes share this host's cores, so other load shows up as
# launch overhead and decision latency.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ -z "${SLURM_CONF:-}" ] && [ -f .ci/cluster/cluster.sh ]; then
  eval "$(bash .ci/cluster/cluster.sh env)"
fi
if ! sinfo -h >/dev/null 2>&1; then
  echo "run_slurm: sinfo fails: is the cluster up? (as root: bash .ci/cluster/cluster.sh up)" >&2
  exit 1
fi
"$PYTHON" benchmarks/slurm_latency.py
"$PYTHON" benchmarks/slurm_utilisation.py
"$PYTHON" benchmarks/elastic_drivers.py
echo "run_slurm: docs/benchmarks.md updated"
