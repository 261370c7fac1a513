"""execution.slurm.allocation: the allocation a driver on a login node makes for itself.

    execution: {backend: slurm, slurm: {mode: steps, allocation: {nodes: 8, time: "04:00:00", args: [...]}}}

The driver runs `salloc --no-shell` with these, runs its trials as steps in the allocation, and asks for
the next one when it ends before the experiment does (hpc_hpo/backends/slurm_allocation.py).
"""
from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .reading import MAX_COUNT, Section
from .specs import AllocationRequest

ALLOCATION_KEYS = ("nodes", "time", "args")
# salloc options the driver sets itself: given again in args, the two would disagree.
SET_BY_THE_DRIVER = {"-N": "allocation.nodes", "--nodes": "allocation.nodes", "-t": "allocation.time",
                     "--time": "allocation.time", "-J": "the driver (the experiment's name)",
                     "--job-name": "the driver (the experiment's name)", "--no-shell": "the driver"}
TIME_RULE = "must be a Slurm time limit: minutes (a number), MM:SS, HH:MM:SS, D-HH or D-HH:MM:SS"


def allocation_request(section: Section) -> AllocationRequest | None:
    """The allocation to ask for, or None when the driver runs in the allocation it was started in (or
    names one with alloc_jobid, or runs trials as sbatch jobs)."""
    value = section.get("allocation", None)
    if value is None:
        return None
    _refuse_other_ways(section)
    request = Section(value, section.key("allocation"), ALLOCATION_KEYS)
    nodes = request.number("nodes", integer=True, positive=True, maximum=MAX_COUNT,
                           why="nodes of the allocation the driver asks for (salloc -N)")
    _check_nodes_per_eval(section, nodes)
    return AllocationRequest(nodes=nodes, time=_time(request), args=_args(request))


def _refuse_other_ways(section: Section) -> None:
    """An allocation of its own is steps mode's; naming one (alloc_jobid) or using none (sbatch) contradicts it."""
    key = section.key("allocation")
    if section.data.get("alloc_jobid") is not None:
        raise ConfigError(key, section.data["allocation"], "asks for a new allocation, but alloc_jobid names "
                          "an existing one", "set only one of execution.slurm.allocation and alloc_jobid")
    if section.data.get("mode") == "sbatch":
        raise ConfigError(key, section.data["allocation"], "is for steps mode (trials as steps in the driver's own "
                          "allocation), but mode is sbatch (each trial its own job)",
                          "set execution.slurm.mode: steps, or remove allocation")


def _check_nodes_per_eval(section: Section, nodes: int) -> None:
    per_eval = section.data.get("nodes_per_eval", 1)
    if isinstance(per_eval, int) and not isinstance(per_eval, bool) and per_eval > nodes:
        raise ConfigError(section.key("allocation.nodes"), nodes, f"is fewer than nodes_per_eval ({per_eval}): "
                          "no trial would fit", f"ask for at least {per_eval} nodes")


def _time(request: Section) -> str | None:
    """A Slurm time limit; a bare YAML number is minutes, as salloc reads it."""
    from .execution import SLURM_TIME_PATTERN  # execution.py imports this module

    value: Any = request.get("time", None)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise ConfigError(request.key("time"), value, "must be more than 0 minutes",
                              "write minutes (60) or a Slurm time such as '04:00:00'")
        return str(value)
    text = request.text("time", None, SLURM_TIME_PATTERN, TIME_RULE)
    if text.strip("0:-") == "":
        raise ConfigError(request.key("time"), value, "must be more than 0 (Slurm reads 0 as no limit)",
                          "write the allocation's length, e.g. '04:00:00'")
    return text


def _args(request: Section) -> tuple[str, ...]:
    """Extra salloc flags (--partition, --gres, --exclusive, ...): flags only, none the driver sets itself."""
    from .execution import _slurm_args  # execution.py imports this module

    args = _slurm_args(request, "args")
    for arg in args:
        option = arg.split("=", 1)[0]
        short = option[:2] if not option.startswith("--") else option
        owner = SET_BY_THE_DRIVER.get(option) or SET_BY_THE_DRIVER.get(short)
        if owner is not None:
            raise ConfigError(request.key("args"), arg, f"is set by {owner}",
                              "remove it from args" + (f" and set {owner}" if owner.startswith("allocation.") else ""))
    return args
