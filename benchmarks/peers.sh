#!/usr/bin/env bash
# Create benchmarks/.venv-peers: the peers (Optuna, Syne Tune) and matplotlib for the plots.
# Benchmark-only dependencies, never runtime ones: hpc_hpo itself does not import any of them.
#   bash benchmarks/peers.sh            (idempotent: a venv with the pinned versions is kept)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV=benchmarks/.venv-peers
# Pinned: the versions the figures in docs/benchmarks.md were measured with (Python 3.11).
PINS=(
  "optuna==5.0.0"
  "syne-tune==0.16.0"
  "matplotlib==3.11.2"
)
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PINS[@]}" 2> >(grep -v "is ignored: it is neither" >&2)
# hpc_hpo itself (editable, no extra deps beyond its own) so the peer runners can import the
# shared stream generator and synthetic functions from benchmarks/.
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e . 2> >(grep -v "is ignored: it is neither" >&2)
"$VENV/bin/python" - <<'PY'
import importlib.metadata as m
for name in ("optuna", "syne-tune", "matplotlib", "numpy", "scipy"):
    print(f"{name} {m.version(name)}")
PY
