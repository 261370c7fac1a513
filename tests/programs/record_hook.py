#!/usr/bin/env python3
"""A hook for tests: records its HPC_HPO_* environment, its JSON file and when it ran into OUT_DIR, then
optionally sleeps or fails.  Usage: record_hook.py OUT_DIR [--sleep S] [--exit CODE]"""
from __future__ import annotations

import argparse
import json
import os
import time

parser = argparse.ArgumentParser()
parser.add_argument("out_dir")
parser.add_argument("--sleep", type=float, default=0.0)
parser.add_argument("--exit", type=int, default=0)
args = parser.parse_args()
started = time.time()
with open(os.environ["HPC_HPO_HOOK_FILE"], encoding="utf-8") as handle:
    payload = json.load(handle)
record = {"env": {k: v for k, v in os.environ.items() if k.startswith("HPC_HPO_")}, "payload": payload,
          "pid": os.getpid(), "started": started}
name = os.path.join(args.out_dir, f"{os.environ['HPC_HPO_HOOK_EVENT']}-{os.getpid()}-{started:.6f}.json")
with open(name + ".tmp", "w", encoding="utf-8") as handle:
    json.dump(record, handle)
os.replace(name + ".tmp", name)
time.sleep(args.sleep)
record["ended"] = time.time()
with open(name + ".tmp", "w", encoding="utf-8") as handle:
    json.dump(record, handle)
os.replace(name + ".tmp", name)
print(f"hook {os.environ['HPC_HPO_HOOK_EVENT']} done")
raise SystemExit(args.exit)
