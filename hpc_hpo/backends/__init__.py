"""Backends run trials: local processes, or Slurm steps and jobs; PBS fills the same seam."""
from __future__ import annotations

import os
import shutil

from ..config import ExperimentConfig
from .base import EXITED, RUNNING, Backend, JobStatus, LaunchSpec
from .local import LocalBackend

__all__ = ["Backend", "JobStatus", "LaunchSpec", "LocalBackend", "make_backend", "RUNNING", "EXITED"]


def make_backend(config: ExperimentConfig) -> Backend:
    """`auto`: Slurm steps inside an allocation, Slurm jobs where sbatch is found, otherwise local processes."""
    if backend_kind(config) == "slurm":
        from .slurm import make_slurm_backend
        return make_slurm_backend(config)
    return LocalBackend(kill_grace_s=config.execution.stop_grace_period)


def backend_kind(config: ExperimentConfig) -> str:
    chosen = config.execution.backend
    if chosen != "auto":
        return chosen
    in_allocation = bool(config.execution.slurm.alloc_jobid or os.environ.get("SLURM_JOB_ID"))
    return "slurm" if in_allocation or shutil.which("sbatch") else "local"
