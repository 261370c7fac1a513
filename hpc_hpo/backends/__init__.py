"""Backends run trials: local processes, Slurm steps and jobs, or PBS jobs and trials inside a PBS job."""
from __future__ import annotations

import os
import shutil

from ..config import ExperimentConfig
from .base import EXITED, RUNNING, Backend, JobStatus, LaunchSpec
from .local import LocalBackend

__all__ = ["Backend", "JobStatus", "LaunchSpec", "LocalBackend", "make_backend", "RUNNING", "EXITED"]


def make_backend(config: ExperimentConfig) -> Backend:
    """`auto`: inside a Slurm or PBS allocation, its trials run there; otherwise jobs of the batch system
    whose commands are found (sbatch first), otherwise local processes."""
    kind = backend_kind(config)
    if kind == "slurm":
        from .slurm import make_slurm_backend
        return make_slurm_backend(config)
    if kind == "pbs":
        from .pbs import make_pbs_backend
        return make_pbs_backend(config)
    return LocalBackend(kill_grace_s=config.execution.stop_grace_period)


def backend_kind(config: ExperimentConfig) -> str:
    chosen = config.execution.backend
    if chosen != "auto":
        return chosen
    if config.execution.slurm.alloc_jobid or os.environ.get("SLURM_JOB_ID"):
        return "slurm"
    # PBS sets both in every job; a Slurm site's qsub wrapper comes with sbatch beside it.
    if os.environ.get("PBS_JOBID") and os.environ.get("PBS_NODEFILE"):
        return "pbs"
    if shutil.which("sbatch"):
        return "slurm"
    return "pbs" if shutil.which("qsub") else "local"
