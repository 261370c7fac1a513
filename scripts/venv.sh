#!/usr/bin/env bash
# Make (or reuse) the virtual environment hpc_hpo runs in, install this checkout into it with the
# given extras, and print that environment's python on stdout (everything else goes to stderr).
#
#   PY="$(bash scripts/venv.sh test,examples)"
#
# Which environment: the activated one ($VIRTUAL_ENV) if there is one, else $HPC_HPO_VENV, else
# .venv in the repository. A stock Debian/Ubuntu python3 refuses 'pip install' outside a venv
# (PEP 668), and its venv module needs the python3-venv package: as root with apt it is installed
# here; otherwise the one line below says what to run.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
BASE_PYTHON="${PYTHON:-python3}"

say() { echo "venv: $*" >&2; }

if [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then
  venv="$VIRTUAL_ENV"
else
  venv="${HPC_HPO_VENV:-$PWD/.venv}"
  if [ ! -x "$venv/bin/python" ]; then
    if ! command -v "$BASE_PYTHON" >/dev/null 2>&1; then
      say "no '$BASE_PYTHON' found; install Python 3.10 or newer (apt-get install python3 python3-venv)"
      exit 1
    fi
    # Debian splits ensurepip (which venv needs for pip) into python3-venv.
    if ! "$BASE_PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
      if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing python3-venv with apt"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        apt-get install -y -qq python3-venv >/dev/null
      else
        say "'$BASE_PYTHON -m venv' needs the python3-venv package: run 'sudo apt-get install python3-venv', then this again"
        exit 1
      fi
    fi
    say "creating a virtual environment in $venv"
    rm -rf "$venv"
    "$BASE_PYTHON" -m venv "$venv"
  fi
fi

spec="."
[ -n "$extras" ] && spec=".[$extras]"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$spec" >&2
echo "$venv/bin/python"
