"""Backends run trials: local processes now; Slurm and PBS fill the same seam."""
from __future__ import annotations

from ..config import ExperimentConfig
from .base import EXITED, RUNNING, Backend, JobStatus, LaunchSpec
from .local import LocalBackend

__all__ = ["Backend", "JobStatus", "LaunchSpec", "LocalBackend", "make_backend", "RUNNING", "EXITED"]


def make_backend(config: ExperimentConfig) -> Backend:
    """`auto` picks the batch system it finds; with none (or only local support) it runs locally."""
    return LocalBackend(kill_grace_s=config.execution.stop_grace_period)
