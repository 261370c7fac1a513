"""Helpers for end-to-end tests: write a config, run the real CLI in a subprocess, read the results."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

PROGRAMS = Path(__file__).resolve().parents[1] / "programs"
REPO = Path(__file__).resolve().parents[2]


def cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The real CLI in a subprocess, importing hpc_hpo from this checkout whatever pip last installed."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "hpc_hpo.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=env)


def synthetic_config(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "name": "synthetic",
        "command": [sys.executable, str(PROGRAMS / "synthetic_trial.py")],
        "experiment_dir": str(tmp_path / "exp"),
        "params": {"x": {"type": "uniform", "low": 0.0, "high": 1.0},
                   "shape": {"type": "choice", "values": ["fast", "slow"]},
                   "epochs": 9},
        "metric": {"name": "loss", "mode": "min"},
        "resource": {"name": "epoch", "max": 9},
        "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 3},
        "searcher": {"type": "random", "seed": 7},
        "budget": {"max_trials": 24},
        "execution": {"backend": "local", "num_parallel_evals": 4, "poll_interval": 0.05},
    }
    for key, value in overrides.items():
        # Sections merge with the defaults; params and metric are replaced whole.
        if isinstance(value, dict) and isinstance(config.get(key), dict) and key not in ("params", "metric"):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config


def write_config(tmp_path: Path, config: dict[str, Any], name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def read_export(tmp_path: Path, experiment: str = "exp") -> list[dict[str, str]]:
    out = tmp_path / "export.csv"
    result = cli("export", str(tmp_path / experiment), "--csv", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with open(out, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def run_experiment(tmp_path: Path):
    def run(**overrides: Any) -> subprocess.CompletedProcess[str]:
        path = write_config(tmp_path, synthetic_config(tmp_path, **overrides))
        return cli("run", str(path), cwd=tmp_path)
    return run
