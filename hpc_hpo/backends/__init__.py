"""Backends run trials: local processes, Slurm steps and jobs, or PBS jobs and trials inside a PBS job."""
from __future__ import annotations

import os
import shutil
import subprocess

from ..config import ExperimentConfig
from .base import EXITED, RUNNING, Backend, JobStatus, LaunchSpec
from .local import LocalBackend, make_local_backend

__all__ = ["Backend", "JobStatus", "LaunchSpec", "LocalBackend", "make_backend", "RUNNING", "EXITED"]


# How long a batch system's query may take before `auto` decides it does not answer.
ANSWER_TIMEOUT_S = 15.0


def make_backend(config: ExperimentConfig) -> Backend:
    """`auto`: inside a Slurm or PBS allocation, its trials run there; otherwise jobs of the batch system
    whose commands are found and answer (sbatch first), otherwise local processes."""
    kind, why = backend_choice(config)
    if kind == "slurm":
        from .slurm import make_slurm_backend
        backend = make_slurm_backend(config)
    elif kind == "pbs":
        from .pbs import make_pbs_backend
        backend = make_pbs_backend(config)
    else:
        backend = make_local_backend(config)
    backend.chosen_because = why
    return backend


def backend_kind(config: ExperimentConfig) -> str:
    return backend_choice(config)[0]


def backend_choice(config: ExperimentConfig) -> tuple[str, str]:
    """The backend to use and, for `auto`, why (said in the driver's first line)."""
    chosen = config.execution.backend
    if chosen != "auto":
        return chosen, ""
    if config.execution.slurm.alloc_jobid or os.environ.get("SLURM_JOB_ID"):
        return "slurm", "auto: inside a Slurm allocation"
    # PBS sets both in every job; a Slurm site's qsub wrapper comes with sbatch beside it.
    if os.environ.get("PBS_JOBID") and os.environ.get("PBS_NODEFILE"):
        return "pbs", "auto: inside a PBS job"
    # A command on PATH is not a batch system: a workstation may carry Slurm's client tools
    # unconfigured. It must answer a cheap query before trials are sent to it.
    if shutil.which("sbatch") and answers(["sinfo", "-h", "-o", "%P"]):
        return "slurm", "auto: sbatch found and sinfo answers"
    if shutil.which("qsub") and answers(["qstat"]):
        return "pbs", "auto: qsub found and qstat answers"
    found = [name for name in ("sbatch", "qsub") if shutil.which(name)]
    return "local", (f"auto: {' and '.join(found)} found but not answering: local processes" if found
                     else "auto: no batch system found: local processes")


def answers(argv: list[str]) -> bool:
    try:
        return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=ANSWER_TIMEOUT_S).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
