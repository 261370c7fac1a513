#!/usr/bin/env bash
# The test command: installs everything the tests need on a fresh machine, then runs the whole suite.
#   bash tests/run.sh            (extra arguments go to pytest)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"

"$PYTHON" -m pip install --quiet --disable-pip-version-check -e '.[test,examples]'

set +e
"$PYTHON" -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "tests/run.sh: pytest collected no tests; that is a failure" >&2
  exit 1
fi
exit "$status"
