"""Python-function trials (`hpc_hpo.tune`) run through submitit's executors: local processes or
Slurm jobs (submitit has no PBS executor: tune() refuses a config that resolves to PBS). submitit
pickles the function and its arguments and runs them in a fresh process; this backend only maps
the Backend seam onto submitit's jobs.

The function gets its trial's config as a dict and calls `hpc_hpo.report(...)` like any trial
program: the trial's HPC_HPO_* variables are set in the job before it is called.
"""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any, Callable

import submitit

from ..config import SlurmSpec
from .base import EXITED, RUN_TAG_ENV, RUNNING, Backend, JobStatus, LaunchSpec


def run_function_trial(fn: Callable[[dict[str, Any]], Any], env: dict[str, str], trial_dir: str) -> Any:
    """What runs inside the submitit job: the trial's environment, its config, the user's function."""
    os.environ.update(env)
    config = json.loads((Path(trial_dir) / "config.json").read_text(encoding="utf-8"))
    try:
        return fn(config)
    except SystemExit as exc:
        # report() ends the process with exit(0) on stop, pause or complete: a normal end here.
        if exc.code in (0, None):
            return None
        raise


class FunctionBackend(Backend):
    """Each trial a submitit job: `cluster` is "local" (a process) or "slurm" (an sbatch job)."""

    def __init__(self, fn: Callable[[dict[str, Any]], Any], folder: Path, cluster: str,
                 slurm: SlurmSpec | None = None) -> None:
        self.fn, self.folder, self.cluster, self.slurm = fn, folder, cluster, slurm
        self.name = f"submitit-{cluster}"
        self.nodes_per_eval = slurm.nodes_per_eval if cluster == "slurm" and slurm is not None else 1
        self._executor: submitit.AutoExecutor | None = None
        self.jobs: dict[str, submitit.Job[Any]] = {}

    @property
    def executor(self) -> submitit.AutoExecutor:
        """Made at the first submit: submitit creates its folder, which must wait for the experiment's."""
        if self._executor is None:
            self._executor = submitit.AutoExecutor(folder=self.folder / "%j", cluster=self.cluster)
            if self.cluster == "slurm" and self.slurm is not None:
                parameters: dict[str, Any] = {"nodes": self.slurm.nodes_per_eval, "tasks_per_node": 1}
                if self.slurm.partition:
                    parameters["slurm_partition"] = self.slurm.partition
                if self.slurm.account:
                    parameters["slurm_account"] = self.slurm.account
                self._executor.update_parameters(**parameters)
        return self._executor

    def slots(self, requested: int) -> int:
        return requested or (os.cpu_count() or 1)

    def submit(self, spec: LaunchSpec) -> str:
        self.executor.update_parameters(name=spec.tag)
        env = {**spec.env, RUN_TAG_ENV: spec.tag}
        job = self.executor.submit(run_function_trial, self.fn, env, str(spec.trial_dir))
        self.jobs[job.job_id] = job
        return job.job_id

    def poll(self, handles: list[str]) -> dict[str, JobStatus]:
        statuses = {}
        for handle in handles:
            job = self.jobs.get(handle)
            if job is None:
                statuses[handle] = JobStatus(EXITED, None, "not started by this driver")
            elif not job.done():
                statuses[handle] = JobStatus(RUNNING)
            else:
                statuses[handle] = self._ended(job)
                del self.jobs[handle]
        return statuses

    @staticmethod
    def _ended(job: submitit.Job[Any]) -> JobStatus:
        if job.state.upper() in ("INTERRUPTED", "CANCELLED"):
            return JobStatus(EXITED, -signal.SIGTERM, "cancelled")
        try:
            job.result()
        except Exception as exc:  # the function raised, or the job died: its traceback is the reason
            return JobStatus(EXITED, 1, str(exc).strip()[-1500:])
        return JobStatus(EXITED, 0)

    def cancel(self, handle: str) -> None:
        job = self.jobs.get(handle)
        if job is not None and not job.done():
            job.cancel(check=False)

    def shutdown(self) -> None:
        for job in self.jobs.values():
            if not job.done():
                job.cancel(check=False)
