"""Python functions tuned by hpc_hpo.tune in the tests (importable by name, as submitit needs)."""
from __future__ import annotations

import os
import time
from typing import Any

from hpc_hpo import report


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
