"""The trial side: `report()` appends one JSON line to this trial's metrics file.

Kept free of heavy imports so that `from hpc_hpo import report` costs a trial nothing.

When a run reaches its target resource below the maximum (a rung, under a pausing scheduler),
report() waits for the driver's verdict in the trial's decision file: 'promote' raises the
target and returns; 'pause' (or 'stop', 'complete') ends the process with exit code 0, so a
program should save its checkpoint before it reports.

When the driver stops gracefully it writes the trial's interrupt file: the next report() returns
'pause' (and report() ends the process with exit code 0), so the run ends right after a report
whose checkpoint it has saved, and the next driver resumes it from there.
"""
from __future__ import annotations

import errno
import json
import math
import os
import stat
import sys
import time
import warnings
from pathlib import Path
from typing import Any

TRIAL_DIR_ENV = "HPC_HPO_TRIAL_DIR"
DECISION_FILE = "decision.json"
METRICS_FILE = "metrics.jsonl"
# Written by a driver that stops gracefully (a signal, a budget, the allocation's end): the run should
# save and exit at its next report. One stat per report is all it costs a trial.
INTERRUPT_FILE = "interrupt"
DECISION_TIMEOUT_ENV = "HPC_HPO_DECISION_TIMEOUT"  # seconds to wait for a verdict (default 120)
_warned_outside = False
_promoted_target: float | None = None  # a PROMOTE raised this run's target


def trial_dir() -> Path | None:
    """This trial's directory, or None when the program runs outside hpc_hpo."""
    value = os.environ.get(TRIAL_DIR_ENV)
    return Path(value) if value else None


def checkpoint_dir() -> Path | None:
    """Where this trial keeps its checkpoints (created on first use), or None outside hpc_hpo."""
    directory = trial_dir()
    if directory is None:
        return None
    path = Path(os.environ.get("HPC_HPO_CHECKPOINT_DIR") or directory / "checkpoint")
    path.mkdir(exist_ok=True)
    return path


def resume_from() -> float:
    """The resource this run resumes from (its checkpoint's), 0 for a fresh start."""
    return float(os.environ.get("HPC_HPO_RESUME_FROM") or 0)


def target_resource() -> float | None:
    """How far this run should go: the next rung under a pausing scheduler, else the maximum."""
    if _promoted_target is not None:
        return _promoted_target
    value = os.environ.get("HPC_HPO_TARGET_RESOURCE")
    return float(value) if value else None


def report(**metrics: Any) -> str:
    """Record one report, e.g. report(epoch=3, accuracy=0.91); returns the decision ('continue' mostly).

    Outside a trial this does nothing and warns once, so the same script runs standalone.
    The file is opened, appended and closed each time: on NFS, close() is what makes the
    line visible to the driver on another node (close-to-open consistency).
    """
    decision = record(metrics)
    if decision in ("pause", "stop", "complete"):
        sys.exit(0)
    return decision


def record(metrics: dict[str, Any]) -> str:
    """report() without ending the process: the decision is returned ('hpc-hpo report' prints it)."""
    global _warned_outside
    directory = trial_dir()
    if directory is None:
        if not _warned_outside:
            _warned_outside = True
            warnings.warn(f"hpc_hpo.report() called outside a trial ({TRIAL_DIR_ENV} is not set); "
                          "nothing is recorded", stacklevel=3)
        return "continue"
    if rank() == 0:  # in a multi-task trial every rank may call report(); one line per report is kept
        line = json.dumps({**{k: _plain(v) for k, v in metrics.items()}, "t": time.time()})
        _append(directory / METRICS_FILE, (line + "\n").encode("utf-8"))
    if os.path.exists(directory / INTERRUPT_FILE):
        return "pause"
    return _await_verdict(directory, metrics)


def _append(path: Path, data: bytes) -> None:
    """Append to the trial's file, never through a symbolic link: one put there (by the program, or anyone
    who can write the trial directory) could send the line into any file this process may write."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     0o666)
    except OSError as exc:
        from .errors import HpoError
        if exc.errno == errno.ENOENT and not path.parent.is_dir():
            raise HpoError(f"the trial directory {path.parent} ({TRIAL_DIR_ENV}) does not exist: reports are "
                           "written into the directory the driver made for the trial") from None
        if exc.errno != errno.ELOOP:
            raise
        raise HpoError(f"{path} is a symbolic link; reports are not written through one (it may point anywhere): "
                       "remove it and report again") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            from .errors import HpoError
            raise HpoError(f"{path} is not a regular file; remove it and report again")
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)  # close() is what makes the line visible to the driver on another NFS client


# Where launchers put a task's rank: srun, PMI-based MPI, Open MPI, torchrun.
RANK_VARIABLES = ("SLURM_PROCID", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "RANK")


def rank() -> int:
    """This task's rank in a multi-task trial (0 when run alone): let rank 0 alone write the trial's shared
    files (checkpoints), as report() does with the metrics file."""
    for name in RANK_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 0


def _await_verdict(directory: Path, metrics: dict[str, Any]) -> str:
    """At the run's target below the maximum, wait for the driver's decision about this report."""
    global _promoted_target
    target, maximum = target_resource(), os.environ.get("HPC_HPO_MAX_RESOURCE")
    resource = _resource_of(metrics)
    if target is None or maximum is None or resource is None or resource < target or target >= float(maximum):
        return "continue"
    deadline = time.monotonic() + float(os.environ.get(DECISION_TIMEOUT_ENV) or 120)
    while time.monotonic() < deadline:
        verdict = _read_verdict(directory / DECISION_FILE)
        if verdict is not None and float(verdict.get("resource", -1)) == resource:
            if verdict.get("decision") == "promote":
                _promoted_target = float(verdict["target"])
            return str(verdict.get("decision", "continue"))
        time.sleep(0.05)
    return "continue"  # no verdict in time: go on; the driver cancels the run if it must


def _resource_of(metrics: dict[str, Any]) -> float | None:
    name = os.environ.get("HPC_HPO_RESOURCE_NAME", "epoch")
    value = metrics.get(name)
    try:
        return float(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


def _read_verdict(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


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
