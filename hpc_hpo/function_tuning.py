"""`hpc_hpo.tune(fn, params, ...)`: tune a Python function instead of a program, as Ray Tune and
Syne Tune offer. The arguments are the sections of an experiment YAML file, validated by the same
rules; each trial calls `fn(config)` in its own process, started by the backend `hpc-hpo run` would
use with the same execution settings (local processes, Slurm steps or sbatch jobs): see
backends/function.py. A tune() call on an experiment directory resumes it like `hpc-hpo run` does,
taking back the trial jobs a killed driver left running.

PBS is not among them (yet): function trials are tested on local processes and Slurm only, and
quietly running them as processes on the driver's machine instead (a login node, or the first host
of a PBS job while the other hosts idle) is not what a config that names PBS asks for. So a config
that resolves to PBS, named or found by `auto`, is refused before anything is created, with the two
ways that do work.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from .backends import backend_kind, make_backend
from .backends.function import FunctionBackend, pickled_function
from .backends.slurm_allocation import run_in_own_allocations, wants_own_allocation
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

    `fn` is pickled (cloudpickle) into the experiment: a function of an importable module is found there
    by name in each trial (on the driver's sys.path), one defined in the running script travels by value.
    Call `hpc_hpo.report(epoch=..., loss=...)` inside it after each epoch.
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
    refuse_pbs(config)
    check_resume(config)  # a change the experiment refuses is refused before anything is written
    pickled, experiment = function_pickle(fn), Path(config.experiment_dir)
    if wants_own_allocation(config, dict(os.environ)):  # as `hpc-hpo run` does: salloc, then trials as steps
        from .backends.slurm import make_slurm_backend
        driver = run_in_own_allocations(
            config, lambda job_id: FunctionBackend(make_slurm_backend(config, job_id), pickled, experiment),
            lambda backend: Driver(config, backend, quiet=quiet))
        return best_as_dict(driver.state)
    state = Driver(config, FunctionBackend(make_backend(config), pickled, experiment), quiet=quiet).run()
    return best_as_dict(state)


def function_pickle(fn: Callable[[dict[str, Any]], Any]) -> bytes:
    """fn pickled for the trial processes; a function that cannot be is refused before anything is created."""
    try:
        return pickled_function(fn)
    except Exception as exc:  # cloudpickle's errors vary: a lock, an open file or a generator in a closure
        raise ConfigError("tune(fn)", getattr(fn, "__name__", repr(fn)),
                          f"cannot be pickled for the trial processes ({type(exc).__name__}: {exc})",
                          "make it a plain function that builds what it needs (models, files, locks) itself, "
                          "defined at a module's top level") from None


def refuse_pbs(config: ExperimentConfig) -> None:
    """A config whose backend resolves to PBS (named, or found by `auto`) is a ConfigError."""
    if backend_kind(config) != "pbs":
        return
    chosen = config.execution.backend
    found = "" if chosen == "pbs" else ("found PBS (a PBS job, or qsub on PATH without sbatch), but ")
    raise ConfigError("execution.backend", chosen,
                      f"{found}hpc_hpo.tune() does not run Python functions on PBS: its function trials run as "
                      "local processes and Slurm jobs only",
                      "set execution.backend to local to run the trials as processes on this machine (inside a "
                      "one-host PBS job, say), or make the trial a program that calls hpc_hpo.report() and "
                      "run it with `hpc-hpo run` and backend: pbs")
