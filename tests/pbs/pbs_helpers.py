"""Helpers for the PBS tests: the stand-in PBS commands on PATH, the real CLI in a subprocess.

No PBS server can be installed on the machines these tests run on; standin/ holds small, faithful
stand-ins for qsub, qstat, qdel and qselect that run jobs as local processes and print what the
OpenPBS documentation shows. Nothing in hpc_hpo depends on them.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
STANDIN = HERE / "standin"
LAUNCHERS = HERE / "launchers"
REPO = HERE.parents[1]
PROGRAMS = REPO / "tests" / "programs"
# The allocation the allocation-mode tests pretend to run in: a host once per MPI process placed on it.
HOSTS = ["n1", "n2", "n3", "n4", "n5"]


def _integration_helpers() -> Any:
    """The local tests' crash-cycle helpers, loaded under their own name (both directories have a conftest)."""
    path = REPO / "tests" / "integration" / "conftest.py"
    spec = importlib.util.spec_from_file_location("integration_helpers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_helpers = _integration_helpers()
kill_restart_cycles, check_nothing_lost_or_doubled = _helpers.kill_restart_cycles, _helpers.check_nothing_lost_or_doubled
read_export = _helpers.read_export
check_shared_journal, oracle_disagreements = _helpers.check_shared_journal, _helpers.oracle_disagreements
DRIVER_PBS = REPO / "slurm_templates" / "driver.pbs"


class Standin:
    """One stand-in PBS server: its state directory, its behaviour, what it was asked."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "pbs_server"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.configure()

    def configure(self, **settings: Any) -> None:
        (self.dir / "config.json").write_text(json.dumps(settings))

    def env(self, extra_path: Path | None = None) -> dict[str, str]:
        path = os.pathsep.join(str(p) for p in (extra_path, STANDIN) if p is not None)
        return {"PBS_STANDIN_DIR": str(self.dir), "PATH": f"{path}{os.pathsep}{os.environ['PATH']}"}

    def commands(self, name: str | None = None) -> list[list[str]]:
        try:
            lines = (self.dir / "commands.jsonl").read_text().splitlines()
        except FileNotFoundError:
            return []
        argvs = [json.loads(line)["argv"] for line in lines]
        return [a for a in argvs if name is None or a[0] == name]

    def jobs(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in sorted((self.dir / "jobs").glob("*.json"))]


def cli(*args: str, cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The real CLI in a subprocess, importing hpc_hpo from this checkout, with the given environment added."""
    full = {**os.environ, **env}
    full["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    for name in ("PBS_JOBID", "PBS_NODEFILE", "SLURM_JOB_ID"):
        if name not in env:
            full.pop(name, None)
    return subprocess.run([sys.executable, "-m", "hpc_hpo.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=full)


def pbs_config(tmp_path: Path, pbs: dict[str, Any] | None = None, **overrides: Any) -> Path:
    """An experiment on the synthetic trial program, run through the PBS backend."""
    config: dict[str, Any] = {
        "name": "pbs_synthetic",
        "command": [sys.executable, str(PROGRAMS / "synthetic_trial.py")],
        "experiment_dir": str(tmp_path / "exp"),
        "params": {"x": {"type": "uniform", "low": 0.0, "high": 1.0}, "epochs": 9},
        "metric": {"name": "loss", "mode": "min"},
        "resource": {"name": "epoch", "max": 9},
        "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 3},
        "searcher": {"type": "random", "seed": 3},
        "budget": {"max_trials": 6},
        "execution": {"backend": "pbs", "num_parallel_evals": 3, "poll_interval": 0.1,
                      "stop_grace_period": 3,
                      "pbs": {"mode": "qsub", "qstat_interval": 0.3, **(pbs or {})}},
    }
    for key, value in overrides.items():
        if key == "execution":
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def journal(tmp_path: Path) -> list[dict[str, Any]]:
    lines = (tmp_path / "exp" / "journal.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def ended(tmp_path: Path) -> dict[str, dict[str, Any]]:
    """The trial_ended event of every trial."""
    return {e["trial_id"]: e for e in journal(tmp_path) if e["type"] == "trial_ended"}


def allocation_env(tmp_path: Path) -> dict[str, str]:
    """A fake PBS job: PBS_JOBID, a PBS_NODEFILE over HOSTS, and the stand-in launchers first on PATH."""
    nodefile = tmp_path / "nodefile"
    nodefile.write_text("".join(f"{host}\n" * 4 for host in HOSTS[:4]) + "n5\n")
    return {"PBS_JOBID": "4242.server", "PBS_NODEFILE": str(nodefile),
            "PATH": f"{LAUNCHERS}{os.pathsep}{os.environ['PATH']}"}


def driver_env(env: dict[str, str]) -> dict[str, str]:
    """The full environment of a driver started directly (not through cli()), importing this checkout."""
    full = {**os.environ, **env}
    full["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    for name in ("PBS_JOBID", "PBS_NODEFILE", "SLURM_JOB_ID"):
        if name not in env:
            full.pop(name, None)
    return full


def launches(tmp_path: Path) -> list[dict[str, Any]]:
    """What the stand-in launchers recorded: the hosts of each run they started, and when it ran."""
    return [json.loads(p.read_text()) for p in (tmp_path / "exp" / "trials").glob("*/launch.*.json")]


def hpc_hpo_command(tmp_path: Path) -> Path:
    """An `hpc-hpo` for job scripts (HPC_HPO in driver.pbs) that runs this checkout with this Python."""
    script = tmp_path / "hpc-hpo"
    script.write_text(f'#!/bin/sh\nexport PYTHONPATH="{REPO}${{PYTHONPATH:+:$PYTHONPATH}}"\n'
                      f'exec {sys.executable} -m hpc_hpo.cli "$@"\n')
    script.chmod(0o755)
    return script
