"""Python-function trials (`hpc_hpo.tune`) run as trial programs through the backend `hpc-hpo run`
would use: local processes, Slurm steps or sbatch jobs. So they get everything a program trial gets:
the job's time limit and alloc_args, the template, steps packing, GPUs, the exit marker that tells the
driver at once that a stopped job ended, and re-adoption by the next driver after a crash.

The function is pickled once into the experiment (cloudpickle: a function defined in the user's
script is carried by value, one in an importable module by name) together with the driver's
sys.path, and every trial runs `python -m hpc_hpo.function_trial <that file>`, which loads it and
calls it with the trial's config. The trial's HPC_HPO_* variables are set as for any program, so
`hpc_hpo.report(...)` works inside the function.
"""
from __future__ import annotations

import dataclasses
import os
import pickle
import sys
from pathlib import Path
from typing import Any, Callable

from .base import Backend, DelegatingBackend, LaunchSpec

# Where the pickled function lives in the experiment directory.
FUNCTION_FILE = "function.pkl"
# The package's parent directory: the trial's interpreter finds hpc_hpo there when it is not installed.
PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class FunctionBackend(DelegatingBackend):
    """The backend `hpc-hpo run` would use, each run's command replaced by hpc_hpo.function_trial."""

    def __init__(self, inner: Backend, function_pickle: bytes, experiment_dir: Path) -> None:
        """function_pickle: what pickled_function made of the function to tune."""
        super().__init__(inner)
        self.function_bytes = function_pickle
        self.payload = experiment_dir / FUNCTION_FILE
        self.written = False

    def submit(self, spec: LaunchSpec) -> str:
        if not self.written:  # at the first run: the experiment directory exists only once the driver made it
            write_payload(self.payload, self.function_bytes)
            self.written = True
        env = {**spec.env, "PYTHONPATH": with_package_root(spec.env.get("PYTHONPATH", os.environ.get("PYTHONPATH")))}
        return self.inner.submit(dataclasses.replace(spec, argv=runner_argv(self.payload), env=env))


def pickled_function(fn: Callable[[dict[str, Any]], Any]) -> bytes:
    """The function and the driver's import path, to be written into the experiment."""
    import cloudpickle  # only the driver needs it: trials unpickle with the standard library

    search_path = [os.path.abspath(entry or os.curdir) for entry in sys.path]
    return pickle.dumps({"sys_path": search_path, "function": cloudpickle.dumps(fn),
                         "name": f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"})


def write_payload(path: Path, data: bytes) -> None:
    """Replaced whole, never written in place: a run starting meanwhile reads the old function or the new."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_bytes(data)
    os.replace(partial, path)


def runner_argv(payload: Path) -> tuple[str, ...]:
    return (sys.executable, "-m", "hpc_hpo.function_trial", str(payload))


def with_package_root(python_path: str | None) -> str:
    """PYTHONPATH with hpc_hpo's parent directory appended (after the user's entries, which still win)."""
    entries = [entry for entry in (python_path or "").split(os.pathsep) if entry]
    return os.pathsep.join(entries if PACKAGE_ROOT in entries else [*entries, PACKAGE_ROOT])
