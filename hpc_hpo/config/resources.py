"""A trial's shape: execution.gpus_per_eval, cpus_per_eval, mem_per_eval, tasks_per_eval, each a number or
`{param: name}` (the trial's value of a hyperparameter), and nodes_per_eval given as such a reference."""
from __future__ import annotations

import dataclasses
import re
from typing import Any

from ..errors import ConfigError
from ..space import Choice, Fixed, RandInt, Space
from .reading import MAX_COUNT, Section, as_number
from .specs import PerEval, TrialShape

SHAPE_KEYS = ("gpus_per_eval", "cpus_per_eval", "mem_per_eval", "tasks_per_eval")
# Memory as Slurm writes it: a number of megabytes, or with a unit (K, M, G, T; an optional B).
MEMORY_PATTERN = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]?)B?$", re.IGNORECASE | re.ASCII)
MEGABYTES = {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024 * 1024}
MAX_MEMORY_MB = 1024 ** 3  # a petabyte per trial: anything larger is a typo


def trial_shape(section: Section) -> TrialShape:
    return TrialShape(gpus=per_eval(section, "gpus_per_eval"), cpus=per_eval(section, "cpus_per_eval"),
                      mem_mb=per_eval(section, "mem_per_eval", memory=True),
                      tasks=per_eval(section, "tasks_per_eval"))


def per_eval(section: Section, name: str, memory: bool = False) -> PerEval:
    value = section.get(name, None)
    key = section.key(name)
    if value is None:
        return PerEval()
    if isinstance(value, dict):
        return PerEval(param=parameter_reference(value, key))
    if memory:
        return PerEval(value=megabytes(value, key))
    # gpus_per_eval: 0 says "no GPU" (a CPU trial in a GPU allocation); every other amount is at least 1.
    count = as_number(value, key, integer=True, positive=name != "gpus_per_eval", maximum=MAX_COUNT)
    if count < 0:
        raise ConfigError(key, value, "must be 0 or more")
    return PerEval(value=count)


def parameter_reference(value: dict[str, Any], key: str) -> str:
    if set(value) != {"param"} or not isinstance(value["param"], str) or not value["param"]:
        raise ConfigError(key, value, "must be a number or {param: <name of a parameter>}",
                          "e.g. {param: gpus} with gpus: {type: choice, values: [1, 2, 4]} in params")
    return value["param"]


def megabytes(value: Any, key: str) -> int:
    """16G, 500M, 2000 (megabytes, as Slurm reads a bare number) -> megabytes."""
    text = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    match = MEMORY_PATTERN.fullmatch(text) if text is not None else None
    if match is None:
        raise ConfigError(key, value, "must be an amount of memory: megabytes, or a number with K, M, G or T",
                          "e.g. 16G or 500M")
    amount = float(match.group(1)) * MEGABYTES[match.group(2).upper()]
    if not 1 <= amount <= MAX_MEMORY_MB:
        raise ConfigError(key, value, "must be between 1M and 1P", "e.g. 16G")
    return int(amount)


def resolve_shape_params(shape: TrialShape, nodes_param: str | None, nodes_per_eval: int,
                         space: Space) -> TrialShape:
    """Check each {param: name} against the search space (an unconditional parameter whose every value is
    a positive whole number) and note its smallest value; refuse a sub-node shape for multi-node trials."""
    if shape.sub_node and (nodes_per_eval > 1 or nodes_param is not None):
        raise ConfigError("execution.slurm.nodes_per_eval", nodes_param and {"param": nodes_param} or nodes_per_eval,
                          "asks for whole nodes, while gpus/cpus/mem/tasks_per_eval ask for a share of one node",
                          "use one: nodes_per_eval for trials of whole nodes, *_per_eval for trials within a node")
    if nodes_param is not None:
        least_of(nodes_param, "execution.slurm.nodes_per_eval", space)
    fields = {}
    for name, key in (("gpus", "gpus_per_eval"), ("cpus", "cpus_per_eval"), ("mem_mb", "mem_per_eval"),
                      ("tasks", "tasks_per_eval")):
        amount: PerEval = getattr(shape, name)
        if amount.param is not None:
            fields[name] = dataclasses.replace(amount, least=least_of(amount.param, f"execution.{key}", space))
    return dataclasses.replace(shape, **fields)


def least_of(name: str, key: str, space: Space) -> int:
    """The smallest value a shape parameter takes; every value must be a positive whole number."""
    params = {p.name: p for p in space.params}
    if name not in params:
        raise ConfigError(key, {"param": name}, "names no parameter in params",
                          f"use one of: {', '.join(params) or '(none)'}")
    param = params[name]
    if param.conditions:
        raise ConfigError(key, {"param": name}, "names a conditional parameter, which some trials lack",
                          "use a parameter every trial has")
    domain = param.domain
    values: list[Any]
    if isinstance(domain, Choice):
        values = list(domain.values)
    elif isinstance(domain, Fixed):
        values = [domain.value]
    elif isinstance(domain, RandInt):
        values = [domain.low, domain.high]
    else:
        values = []
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
        raise ConfigError(key, {"param": name}, f"names parameter '{name}', whose values are not all positive "
                          "whole numbers", "use a choice of counts, e.g. values: [1, 2, 4], or a randint from 1")
    return min(values)


# srun options that say what a step gets: with a shape, the driver sets them from its book.
SHAPE_OPTIONS = ("-n", "--ntasks", "-c", "--cpus-per-task", "--gres", "--gpus", "--gpus-per-task",
                 "--gpus-per-node", "--cpus-per-gpu", "--mem", "--mem-per-cpu", "--mem-per-gpu", "-N", "--nodes",
                 "-w", "--nodelist", "--exclusive", "--exact", "--ntasks-per-node")


def check_launch_args(shape: TrialShape, launch_args: tuple[str, ...]) -> None:
    """With a shape, the driver places each step and asks for its share itself: a launch_args flag that
    asks for something else would make Slurm's book and the driver's disagree."""
    if not shape.sub_node:
        return
    for arg in launch_args:
        option = arg.split("=", 1)[0]
        if option in SHAPE_OPTIONS or any(arg.startswith(o) and len(o) == 2 and len(arg) > 2 for o in ("-n", "-c", "-N", "-w")):
            raise ConfigError("execution.slurm.launch_args", arg, "says what a step gets, which "
                              "gpus/cpus/mem/tasks_per_eval decide when they are set",
                              "set the amount with the *_per_eval keys and leave it out of launch_args")
