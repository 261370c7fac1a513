"""`hpc-hpo plan` against real runs: its simulated resource (median over simulation seeds) within 15% of
what real runs of the same config spend (median over searcher seeds). The fast synthetic trial program
keeps it affordable; docs/benchmarks.md ("hpc-hpo plan against real runs") does the same for the
quickstart."""
from __future__ import annotations

import re
import statistics
from pathlib import Path

import pytest

from conftest import cli, synthetic_config, write_config

from hpc_hpo.state import load_state

# Real runs of 4 trials at a time spend what the order of their reports makes ASHA decide, which a loaded
# machine shifts (one seed spent 88 on a quiet machine, 116 on a busy one): a median over 9 seeds holds
# still where one over 5 moved by 10%.
SEEDS = range(9)


def spent_by_real_run(tmp_path: Path, seed: int, **overrides) -> float:
    config = synthetic_config(tmp_path, experiment_dir=str(tmp_path / f"exp{seed}"),
                              searcher={"type": "random", "seed": seed}, **overrides)
    result = cli("run", str(write_config(tmp_path, config, f"exp{seed}.yaml")), "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return sum(t.last_resource or 0 for t in load_state(tmp_path / f"exp{seed}").trials.values())


def planned(tmp_path: Path, **overrides) -> float:
    path = write_config(tmp_path, synthetic_config(tmp_path, **overrides), "planned.yaml")
    result = cli("plan", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return float(re.search(r"resource spent +median (\S+)", result.stdout)[1])


@pytest.mark.slow
@pytest.mark.parametrize("scheduler", [{"type": "asha"}, {"type": "promotion"}])
def test_plan_predicts_the_resource_real_runs_spend(tmp_path: Path, scheduler: dict) -> None:
    overrides = {"scheduler": scheduler, "budget": {"max_trials": 24}}
    real = statistics.median(spent_by_real_run(tmp_path, seed, **overrides) for seed in SEEDS)
    plan = planned(tmp_path, **overrides)
    assert abs(plan - real) <= 0.15 * real, f"plan {plan}, real runs {real}"


def test_plan_from_an_experiment_that_measured_something_else_says_so(tmp_path: Path) -> None:
    measured = synthetic_config(tmp_path, budget={"max_trials": 4}, experiment_dir=str(tmp_path / "measured"))
    assert cli("run", str(write_config(tmp_path, measured, "measured.yaml")), "--quiet", cwd=tmp_path).returncode == 0
    other = synthetic_config(tmp_path, metric={"name": "accuracy", "mode": "max"}, resource={"name": "epoch", "max": 27},
                             params={"x": {"type": "uniform", "low": 0.0, "high": 1.0}, "epochs": 27})
    result = cli("plan", str(write_config(tmp_path, other, "other.yaml")), "--from", str(tmp_path / "measured"),
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "measured loss (min) against epoch; this config tunes accuracy (max)" in result.stderr
    assert "has no report past epoch 9; beyond it the simulated curves keep their last value up to 27" in result.stderr
    same = cli("plan", str(write_config(tmp_path, measured, "same.yaml")), "--from", str(tmp_path / "measured"),
               cwd=tmp_path)
    assert same.returncode == 0 and "note:" not in same.stderr, same.stderr


def test_plan_of_a_directory_says_it_takes_a_config(tmp_path: Path) -> None:
    result = cli("plan", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"'{tmp_path}' is a directory; plan takes a config file" in result.stderr, result.stderr
