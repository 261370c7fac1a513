"""Settings a mode does not use are refused, not silently ignored.

`partition: gpu` in steps mode asks for nothing: the trials are steps of an allocation that already has
its partition. A user who wrote it believes it holds, so the run stops at once with one line that names
the setting, the mode that would use it, and why this run is in the other mode ("auto" is decided at run
time: inside an allocation or not). Checked where the mode is decided (make_slurm_backend,
make_pbs_backend), with the mode they decided.
"""
from __future__ import annotations

from typing import Any

from ..config import PbsSpec, SlurmSpec
from ..errors import ConfigError

# execution.slurm settings that only one mode reads -> that mode, and what the setting does there.
SLURM_ONLY_IN = {
    "alloc_args": ("sbatch", "extra sbatch options of each trial job"),
    "time_limit": ("sbatch", "the time limit of each trial job"),
    "partition": ("sbatch", "the partition of each trial job"),
    "account": ("sbatch", "the account each trial job is charged to"),
    "template": ("sbatch", "the job script of each trial job"),
    "alloc_jobid": ("steps", "the allocation whose steps the trials are"),
}
# How each Slurm mode runs trials, for the message.
SLURM_MODES = {"sbatch": "each trial its own sbatch job", "steps": "each trial an srun step of one allocation"}
# execution.pbs settings that only qsub mode reads (in allocation mode trials run on the job's own hosts).
PBS_ONLY_IN = {
    "queue": ("qsub", "the queue of each trial job"),
    "account": ("qsub", "the account each trial job is charged to"),
    "walltime": ("qsub", "the walltime of each trial job"),
    "select": ("qsub", "the chunk resources of each trial job"),
    "template": ("qsub", "the job script of each trial job"),
    "qsub_args": ("qsub", "extra qsub options of each trial job"),
}
PBS_MODES = {"qsub": "each trial its own qsub job", "allocation": "each trial on hosts of the driver's own PBS job"}


def check_slurm_mode_settings(settings: SlurmSpec, mode: str, job_id: str | None, own_allocation: bool) -> None:
    """Raise ConfigError for the first execution.slurm setting the decided mode does not use."""
    _refuse_unused("execution.slurm", settings, mode, SLURM_ONLY_IN, SLURM_MODES,
                   _slurm_why(settings.mode, mode, job_id, own_allocation))


def check_pbs_mode_settings(settings: PbsSpec, mode: str) -> None:
    """Raise ConfigError for the first execution.pbs setting the decided mode does not use."""
    if settings.mode == "auto":
        why = ("mode: auto, and the driver runs inside a PBS job" if mode == "allocation"
               else "mode: auto, and the driver runs outside any PBS job")
    else:
        why = f"mode: {mode}"
    _refuse_unused("execution.pbs", settings, mode, PBS_ONLY_IN, PBS_MODES, why)


def _slurm_why(configured: str, mode: str, job_id: str | None, own_allocation: bool) -> str:
    """Why this run is in this mode, in the config's words."""
    if own_allocation:
        return "the driver makes its own allocation (execution.slurm.allocation)"
    if configured != "auto":
        return f"mode: {mode}"
    if mode == "steps":
        return f"mode: auto, and the driver runs inside allocation {job_id}"
    return "mode: auto, and the driver runs outside any allocation"


def _refuse_unused(section: str, settings: Any, mode: str, only_in: dict[str, tuple[str, str]],
                   modes: dict[str, str], why: str) -> None:
    for name, (used_in, what) in only_in.items():
        value = getattr(settings, name)
        if used_in == mode or value is None or value == ():
            continue
        shown: Any = list(value) if isinstance(value, tuple) else str(value)
        raise ConfigError(f"{section}.{name}", shown,
                          f"sets {what}, used only in {used_in} mode ({modes[used_in]}); this run is in {mode} "
                          f"mode ({why}), which would ignore it",
                          f"remove it, or set {section}.mode: {used_in}")
