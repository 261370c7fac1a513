#!/usr/bin/env python3
"""A cheap trial program for tests: a loss curve that depends on its hyperparameters, reported each epoch.

Values are rounded to one decimal so that ties at rung cutoffs happen often.
"""
from __future__ import annotations

import argparse
import atexit
import os
import sys
import time

from hpc_hpo import report, target_resource

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float, required=True)
parser.add_argument("--shape", default="fast")
parser.add_argument("--epochs", type=int, default=9)
parser.add_argument("--sleep", type=float, default=0.02)
parser.add_argument("--fail_above", type=float, default=2.0, help="exit 1 after epoch 1 when x exceeds this")
parser.add_argument("--resume_from", type=int, default=0)
parser.add_argument("--checkpoint_dir", default=None)
args = parser.parse_args()


def _record_place(place: str, started: float) -> None:
    with open(os.path.join(os.environ["HPC_HPO_TRIAL_DIR"], "places"), "a") as handle:
        handle.write(f"{place} {started:.3f} {time.time():.3f}\n")


trial_dir = os.environ["HPC_HPO_TRIAL_DIR"]
with open(os.path.join(trial_dir, "pid"), "w") as handle:
    handle.write(str(os.getpid()))
# One line per process started: the crash tests check that no run was ever started twice.
with open(os.path.join(trial_dir, "starts"), "a") as handle:
    handle.write(f"{os.environ.get('HPC_HPO_RUN_TAG', '')} {os.getpid()}\n")
# Where each run ran and with which GPUs, from when to when: the packing tests check that runs at the
# same time on one node never share a GPU.
started = time.time()
place = " ".join([os.environ.get("HPC_HPO_RUN_TAG", "") or "-", os.environ.get("SLURMD_NODENAME", "") or "-",
                  os.environ.get("CUDA_VISIBLE_DEVICES", "") or "-", os.environ.get("SLURM_CPUS_ON_NODE", "") or "-"])
atexit.register(lambda: _record_place(place, started))
checkpoint = os.path.join(args.checkpoint_dir or os.environ["HPC_HPO_CHECKPOINT_DIR"], "epoch")
if args.resume_from:
    # A resumed run must find the checkpoint of exactly the epoch it resumes from.
    with open(checkpoint) as handle:
        saved = int(handle.read())
    if saved != args.resume_from or os.environ["HPC_HPO_RESUME_FROM"] != str(args.resume_from):
        sys.exit(f"checkpoint says epoch {saved}, resume_from is {args.resume_from}")
epoch = args.resume_from
while epoch < max(args.epochs, target_resource() or 0):  # a promotion raises the target in report()
    epoch += 1
    speed = 1.0 if args.shape == "fast" else 0.5
    loss = round(abs(args.x - 0.3) * 4 + 2.0 / (1 + speed * epoch), 1)
    with open(checkpoint, "w") as handle:
        handle.write(str(epoch))
    # Every epoch any run of this trial trained, so tests can count the work done twice.
    with open(os.path.join(trial_dir, "epochs_trained"), "a") as handle:
        handle.write(f"{epoch}\n")
    report(epoch=epoch, loss=loss)
    if args.x > args.fail_above:
        print("synthetic failure: x is too large", file=sys.stderr)
        sys.exit(1)
    time.sleep(args.sleep)
