"""Python functions tuned by hpc_hpo.tune in the tests (importable by name: pickled by reference)."""
from __future__ import annotations

import json
import os
import time
from typing import Any

from hpc_hpo import report, target_resource


def quadratic(config: dict[str, Any]) -> str:
    """Loss falls with the epoch towards (x - 0.3)^2; records where it ran."""
    with open(os.path.join(os.environ["HPC_HPO_TRIAL_DIR"], "ran_in"), "w") as handle:
        handle.write(f"{os.getpid()} {os.environ.get('SLURM_JOB_ID', '')}")
    for epoch in range(1, int(config["epochs"]) + 1):
        time.sleep(config.get("sleep", 0.05))
        report(epoch=epoch, loss=round((config["x"] - 0.3) ** 2 + 1.0 / epoch, 4))
    return "done"


def broken(config: dict[str, Any]) -> None:
    report(epoch=1, loss=1.0)
    raise ValueError(f"broken on purpose with x={config['x']:.3f}")


def sleep_epochs(config: dict[str, Any]) -> None:
    """benchmarks/programs/sleep_trial.py as a function, for the utilisation comparison of tests/slurm: each
    epoch sleeps base * (0.5 + x) s, the loss is |y - 0.3| + 1 / (1 + epoch), and the work is stamped in
    work.jsonl as that program stamps it (the benchmark's accounting reads it). It also notes the job it
    ran in and the environment variables the Slurm job options set."""
    here = os.environ["HPC_HPO_TRIAL_DIR"]
    run = int(os.environ.get("HPC_HPO_RUN", "1"))

    def stamp(**fields: float) -> None:
        with open(os.path.join(here, "work.jsonl"), "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"run": run, **fields}) + "\n")

    stamp(program_start=time.time())
    with open(os.path.join(here, f"job-{run}.json"), "w", encoding="utf-8") as handle:
        json.dump({k: v for k, v in os.environ.items() if k.startswith(("SLURM_JOB_ID", "SLURM_MEM"))}, handle)
    seconds = float(config["base"]) * (0.5 + float(config["x"]))
    epoch = 0
    while epoch < (target_resource() or int(config.get("epochs", 9))):
        epoch += 1
        stamp(epoch=epoch, start=time.time())
        time.sleep(seconds)
        stamp(epoch=epoch, end=time.time())
        report(epoch=epoch, loss=round(abs(float(config["y"]) - 0.3) + 1.0 / (1 + epoch), 6))
