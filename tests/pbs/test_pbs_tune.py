"""hpc_hpo.tune() and PBS: the Python-function trials run as local processes and Slurm jobs only.
A config that resolves to PBS (named, or found by `auto`) is a clear ConfigError before anything
is created, never a quiet fallback to processes on the driver's machine; with `backend: local`
the trials run as local processes, inside a PBS job too."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

import hpc_hpo
from hpc_hpo.errors import ConfigError
from pbs_helpers import PROGRAMS, REPO, STANDIN, Standin, allocation_env

sys.path.insert(0, str(PROGRAMS))
import function_trials  # noqa: E402

ARGS = dict(metric={"name": "loss", "mode": "min"}, resource={"name": "epoch", "max": 2},
            scheduler={"type": "fifo"}, budget={"max_trials": 2}, quiet=True)
PARAMS = {"x": {"type": "uniform", "low": 0.0, "high": 1.0}, "epochs": 2, "sleep": 0.01}


@pytest.fixture(autouse=True)
def importable_in_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    """submitit's job processes import the function by name: they need the same path."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(PROGRAMS), str(REPO), os.environ.get("PYTHONPATH", "")]))
    for name in ("SLURM_JOB_ID", "PBS_JOBID", "PBS_NODEFILE"):
        monkeypatch.delenv(name, raising=False)


def test_backend_pbs_is_a_clear_error_before_anything_is_created(tmp_path: Path, standin: Standin,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in standin.env().items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        hpc_hpo.tune(function_trials.quadratic, PARAMS, execution={"backend": "pbs", "num_parallel_evals": 2},
                     experiment_dir=tmp_path / "exp", **ARGS)
    message = str(caught.value)
    assert "execution.backend" in message and "'pbs'" in message and "hpc_hpo.tune()" in message
    assert "local" in message and "hpc-hpo run" in message
    assert not (tmp_path / "exp").exists() and standin.commands() == []


@pytest.mark.parametrize("where", ["inside a PBS job", "qsub on PATH"])
def test_auto_that_finds_pbs_is_the_same_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str,
                                              standin: Standin) -> None:
    if where == "inside a PBS job":
        for name, value in allocation_env(tmp_path).items():
            monkeypatch.setenv(name, value)
    else:  # a PBS login node: qsub and no sbatch, and a server that answers qstat
        for name, value in standin.env().items():
            monkeypatch.setenv(name, value)
        # The stand-in's commands need a python3, and nothing else of the machine's PATH (no sbatch).
        monkeypatch.setenv("PATH", os.pathsep.join([str(STANDIN), os.path.dirname(sys.executable)]))
    with pytest.raises(ConfigError) as caught:
        hpc_hpo.tune(function_trials.quadratic, PARAMS, execution={"num_parallel_evals": 2},
                     experiment_dir=tmp_path / "exp", **ARGS)
    assert "'auto'" in str(caught.value) and "found PBS" in str(caught.value)
    assert not (tmp_path / "exp").exists()


def test_backend_local_inside_a_pbs_job_runs_local_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in allocation_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    best = hpc_hpo.tune(function_trials.quadratic, PARAMS,
                        execution={"backend": "local", "num_parallel_evals": 2, "poll_interval": 0.05},
                        experiment_dir=tmp_path / "exp", **ARGS)
    assert best is not None and best["trial_id"] in ("0000", "0001")
    events = [json.loads(line) for line in (tmp_path / "exp" / "journal.jsonl").read_text().splitlines()]
    assert {e["backend"] for e in events if e["type"] == "trial_started"} == {"local"}
    assert [e["state"] for e in events if e["type"] == "trial_ended"] == ["finished", "finished"]
