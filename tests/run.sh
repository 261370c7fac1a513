#!/usr/bin/env bash
# The test command: installs everything the tests need on a fresh machine, then runs the whole suite.
#   bash tests/run.sh            (extra arguments go to pytest, e.g. -m "not slow" for a quick run)
# Python packages go into the activated virtual environment, or into .venv (made by scripts/venv.sh),
# so the command works the same on a bare Debian/Ubuntu (PEP 668) and inside a venv.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="$(bash scripts/venv.sh test,examples)"

# The live Slurm tests need the project's 4-node cluster. As root with apt it is installed and
# started here; otherwise tests/slurm skips them with the reason (and fails them under CI=true).
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  bash .ci/cluster/cluster.sh up
  # Two bindfs mounts of one directory imitate two NFS clients in the shared-filesystem lock tests.
  if ! command -v bindfs >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bindfs >/dev/null
  fi
fi
if [ -f .ci/cluster/cluster.sh ]; then
  eval "$(bash .ci/cluster/cluster.sh env)"
fi

set +e
"$PY" -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "tests/run.sh: pytest collected no tests; that is a failure" >&2
  exit 1
fi
exit "$status"
