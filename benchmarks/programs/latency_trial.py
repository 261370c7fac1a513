#!/usr/bin/env python3
"""A trial for benchmarks/slurm_latency.py: stamps when it started and its pid, for a watcher to time its end.

With --probe it only prints the time it started (for the bare-srun comparison).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

STARTED = time.time()
parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float, default=0.5)
parser.add_argument("--epochs", type=int, default=9)
parser.add_argument("--sleep", type=float, default=0.5)
parser.add_argument("--probe", action="store_true")
args = parser.parse_args()
if args.probe:
    print(STARTED)
    sys.exit(0)

from hpc_hpo import report  # noqa: E402  (after the probe: the bare run times the same start-up)

trial_dir = os.environ["HPC_HPO_TRIAL_DIR"]
with open(os.path.join(trial_dir, "started"), "w") as handle:
    handle.write(repr(STARTED))
with open(os.path.join(trial_dir, "pid"), "w") as handle:
    handle.write(str(os.getpid()))


for epoch in range(1, args.epochs + 1):
    time.sleep(args.sleep)
    report(epoch=epoch, loss=round(abs(args.x - 0.3) * 4 + 2.0 / (1 + epoch), 2))
