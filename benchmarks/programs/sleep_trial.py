#!/usr/bin/env python3
"""A trial for benchmarks/slurm_utilisation.py: each epoch sleeps base * (0.5 + x) seconds, so configs differ in speed.

It stamps its own work in trials/<id>/work.jsonl (one writer: this run): when the program started,
and the start and end of each epoch's sleep, tagged with the run number (HPC_HPO_RUN). The
benchmark counts only completed sleeps as trial work; an epoch a cancel cuts short has a start
and no end.

The loss depends on y only (x sets the speed, so a fast config is not also a good one):
|y - 0.3| + 1 / (1 + epoch). It runs to hpc_hpo.target_resource() (a promotion raises it while the
run goes on), saves a checkpoint before each report (a pause ends the process inside report())
and, resumed with --resume_from R --checkpoint_dir DIR, goes on from the checkpoint's epoch R.
"""
from __future__ import annotations

import time

STARTED = time.time()

import argparse  # noqa: E402  (after the stamp: the launch cost includes the interpreter's start)
import json  # noqa: E402
import os  # noqa: E402
from pathlib import Path  # noqa: E402

from hpc_hpo import checkpoint_dir, report, target_resource, trial_dir  # noqa: E402


def stamp(directory: Path, **fields: float | int) -> None:
    """Append one line and close: the benchmark reads the file after the run."""
    with open(directory / "work.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"run": int(os.environ.get("HPC_HPO_RUN", "1")), **fields}) + "\n")


def save(directory: Path, epoch: int) -> None:
    temporary = directory / "state.json.tmp"
    temporary.write_text(json.dumps({"epoch": epoch}))
    os.replace(temporary, directory / "state.json")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--x", type=float, required=True, help="speed: epoch seconds = base * (0.5 + x)")
    parser.add_argument("--y", type=float, required=True, help="quality: the loss is |y - 0.3| + 1/(1 + epoch)")
    parser.add_argument("--base", type=float, default=4.0, help="seconds of the mean epoch")
    parser.add_argument("--epochs", type=int, default=9, help="where to stop outside hpc_hpo")
    parser.add_argument("--resume_from", type=int, default=0)
    parser.add_argument("--checkpoint_dir", type=Path, default=None)
    args = parser.parse_args()
    here = trial_dir() or Path(".")
    stamp(here, program_start=STARTED)
    checkpoints = args.checkpoint_dir or checkpoint_dir() or Path(".")
    epoch = 0
    if args.resume_from:
        saved = json.loads((checkpoints / "state.json").read_text())["epoch"]
        if saved != args.resume_from:
            raise SystemExit(f"checkpoint is at epoch {saved}, asked to resume from {args.resume_from}")
        epoch = saved
    seconds = args.base * (0.5 + args.x)
    while epoch < (target_resource() or args.epochs):
        epoch += 1
        stamp(here, epoch=epoch, start=time.time())
        time.sleep(seconds)
        stamp(here, epoch=epoch, end=time.time())
        save(checkpoints, epoch)
        report(epoch=epoch, loss=round(abs(args.y - 0.3) + 1.0 / (1 + epoch), 6))


if __name__ == "__main__":
    main()
