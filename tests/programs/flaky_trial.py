#!/usr/bin/env python3
"""Fails (exit 3) on attempts below --succeed_on, then reports 3 epochs. The attempt comes from HPC_HPO_ATTEMPT."""
import argparse
import os
import sys

from hpc_hpo import report

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float, default=0.5)
parser.add_argument("--succeed_on", type=int, default=2)
args = parser.parse_args()
attempt = int(os.environ["HPC_HPO_ATTEMPT"])
report(epoch=1, loss=args.x)
if attempt < args.succeed_on:
    print(f"flaky failure on attempt {attempt}", file=sys.stderr)
    sys.exit(3)
for epoch in (2, 3):
    report(epoch=epoch, loss=args.x / epoch)
