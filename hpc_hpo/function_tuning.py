"""`hpc_hpo.tune(fn, params, ...)`: tune a Python function instead of a program, as Ray Tune and
Syne Tune offer. The arguments are the sections of an experiment YAML file, validated by the same
rules; each trial calls `fn(config)` in its own process (submitit), locally or as a Slurm job.

PBS is not among them: submitit has no PBS executor, and quietly running the trials as processes
on the driver's machine instead (a login node, or the first host of a PBS job while the other hosts
idle) is not what a config that names PBS asks for. So a config that resolves to PBS, named or
found by `auto`, is refused before anything is created, with the two ways that do work.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from .backends.function import FunctionBackend
from .backends import backend_kind
from .config import ExperimentConfig, validate_config
from .errors import ConfigError
from .experiment import check_resume
from .driver import Driver
from .results import best_as_dict


def tune(fn: Callable[[dict[str, Any]], Any], params: dict[str, Any], *, metric: dict[str, Any],
         resource: dict[str, Any], name: str | None = None, scheduler: dict[str, Any] | None = None,
         searcher: dict[str, Any] | None = None, budget: dict[str, Any] | None = None,
         execution: dict[str, Any] | None = None, experiment_dir: str | os.PathLike[str] | None = None,
         quiet: bool = False) -> dict[str, Any] | None:
    """Run (or resume) the experiment; returns the best trial as `hpc-hpo best --json` prints it.

    `fn` must be importable by name (defined at a module's top level) so that submitit can pickle
    it. Call `hpc_hpo.report(epoch=..., loss=...)` inside it after each epoch.
    """
    name = name or fn.__name__
    data: dict[str, Any] = {"name": name, "command": [f"python-function:{fn.__module__}.{fn.__qualname__}"],
                            "params": params, "metric": metric, "resource": resource}
    for key, value in (("scheduler", scheduler), ("searcher", searcher), ("budget", budget),
                       ("execution", execution)):
        if value is not None:
            data[key] = value
    if experiment_dir is not None:
        data["experiment_dir"] = str(experiment_dir)
    config = validate_config(data, check_program=False)
    cluster = function_cluster(config)
    check_resume(config)  # a change the experiment refuses is refused before anything is written
    backend = FunctionBackend(fn, Path(config.experiment_dir) / "submitit", cluster, config.execution.slurm)
    state = Driver(config, backend, quiet=quiet).run()
    return best_as_dict(state)


def function_cluster(config: ExperimentConfig) -> str:
    """The submitit executor for the config's backend: "slurm" or "local"; PBS is a ConfigError."""
    kind = backend_kind(config)
    if kind != "pbs":
        return "slurm" if kind == "slurm" else "local"
    chosen = config.execution.backend
    found = "" if chosen == "pbs" else ("found PBS (a PBS job, or qsub on PATH without sbatch), but ")
    raise ConfigError("execution.backend", chosen,
                      f"{found}hpc_hpo.tune() cannot run Python functions on PBS: submitit, which runs them, "
                      "has local processes and Slurm jobs only",
                      "set execution.backend to local to run the trials as processes on this machine (inside a "
                      "one-host PBS job, say), or make the trial a program that calls hpc_hpo.report() and "
                      "run it with `hpc-hpo run` and backend: pbs")
