#!/usr/bin/env python3
"""A trial for the live Slurm tests: every task records where and when it ran; rank 0 reports.

Writes trials/<id>/task.<rank>.json with the node it ran on, the node lists Slurm gave it and its
start and end times, so tests can check placement and concurrency from the files alone.
"""
from __future__ import annotations

import argparse
import json
import os
import time

from hpc_hpo import report

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float, required=True)
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--sleep", type=float, default=1.0)
args = parser.parse_args()

started = time.time()
for epoch in range(1, args.epochs + 1):
    time.sleep(args.sleep)
    report(epoch=epoch, loss=round(abs(args.x - 0.3) + 1.0 / epoch, 3))
record = {name: os.environ.get(name) for name in ("SLURMD_NODENAME", "SLURM_JOB_NODELIST", "SLURM_STEP_NODELIST",
                                                  "SLURM_PROCID", "SLURM_JOB_ID", "SLURM_STEP_ID")}
record.update(started=started, ended=time.time())
rank = os.environ.get("SLURM_PROCID", "0")
with open(os.path.join(os.environ["HPC_HPO_TRIAL_DIR"], f"task.{rank}.json"), "w") as handle:
    json.dump(record, handle)
