"""The trial side: `report()` appends one JSON line to this trial's metrics file.

Kept free of heavy imports so that `from hpc_hpo import report` costs a trial nothing.
"""
from __future__ import annotations

import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any

TRIAL_DIR_ENV = "HPC_HPO_TRIAL_DIR"
_warned_outside = False


def trial_dir() -> Path | None:
    """This trial's directory, or None when the program runs outside hpc_hpo."""
    value = os.environ.get(TRIAL_DIR_ENV)
    return Path(value) if value else None


def checkpoint_dir() -> Path | None:
    """Where this trial keeps its checkpoints (created on first use), or None outside hpc_hpo."""
    directory = trial_dir()
    if directory is None:
        return None
    path = directory / "checkpoint"
    path.mkdir(exist_ok=True)
    return path


def report(**metrics: Any) -> None:
    """Record one report, e.g. report(epoch=3, accuracy=0.91).

    Outside a trial this does nothing and warns once, so the same script runs standalone.
    The file is opened, appended and closed each time: on NFS, close() is what makes the
    line visible to the driver on another node (close-to-open consistency).
    """
    global _warned_outside
    directory = trial_dir()
    if directory is None:
        if not _warned_outside:
            _warned_outside = True
            warnings.warn(f"hpc_hpo.report() called outside a trial ({TRIAL_DIR_ENV} is not set); "
                          "nothing is recorded", stacklevel=2)
        return
    line = json.dumps({**{k: _plain(v) for k, v in metrics.items()}, "t": time.time()})
    with open(directory / "metrics.jsonl", "a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()


def _plain(value: Any) -> Any:
    """numpy scalars and other number-likes become plain JSON numbers."""
    if isinstance(value, (bool, int, str, float)) or value is None:
        return value
    if type(value).__name__.startswith("bool"):  # numpy.bool_ without importing numpy
        return bool(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return int(number) if number.is_integer() and not math.isinf(number) and "int" in type(value).__name__ \
        else number
