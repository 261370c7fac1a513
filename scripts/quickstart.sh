#!/usr/bin/env bash
# The main job on a fresh machine: make the virtual environment (scripts/venv.sh), install hpc_hpo
# with the example's dependencies, and tune launchers/train_mlp.py with configs/quickstart.yaml.
# Extra arguments go to 'hpc-hpo run' (e.g. --experiment-dir DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="$(bash scripts/venv.sh examples)"
exec "$PY" -m hpc_hpo run configs/quickstart.yaml "$@"
