#!/usr/bin/env python3
"""A trial that reports epoch 1, then waits for a `go` file in its trial directory before it ends: a
test decides when the run ends (e.g. only once the driver that started it has been killed) and how.
The go file holds the exit code; with 0 (or nothing) the trial reports epoch 2 and completes."""
import os
import sys
import time

from hpc_hpo import report

trial_dir = os.environ["HPC_HPO_TRIAL_DIR"]
with open(os.path.join(trial_dir, "pid"), "w") as handle:
    handle.write(str(os.getpid()))
# One line per process started: a run started twice shows as two lines.
with open(os.path.join(trial_dir, "starts"), "a") as handle:
    handle.write(f"{os.environ.get('HPC_HPO_RUN_TAG', '')} {os.getpid()}\n")
report(epoch=1, loss=1.0)
go = os.path.join(trial_dir, "go")
deadline = time.monotonic() + 120
while not os.path.exists(go) and time.monotonic() < deadline:
    time.sleep(0.05)
time.sleep(0.05)  # the test writes the file whole; give it the moment to finish
with open(go) as handle:
    code = int(handle.read().strip() or 0)
if code:
    print(f"gated failure: exit {code}", file=sys.stderr)
    sys.exit(code)
report(epoch=2, loss=0.5)
