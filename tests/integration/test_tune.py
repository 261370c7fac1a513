"""hpc_hpo.tune: Python-function trials through submitit's local executor (the Slurm one is in tests/slurm)."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

PROGRAMS = Path(__file__).resolve().parents[1] / "programs"
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROGRAMS))
import function_trials  # noqa: E402

import hpc_hpo  # noqa: E402


@pytest.fixture(autouse=True)
def importable_in_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    """submitit's job processes import the function by name: they need the same path."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(PROGRAMS), str(REPO), os.environ.get("PYTHONPATH", "")]))


def events(experiment: Path) -> list[dict]:
    return [json.loads(line) for line in (experiment / "journal.jsonl").read_text().splitlines()]


def test_a_function_is_tuned_with_asha_and_the_best_is_returned(tmp_path: Path) -> None:
    best = hpc_hpo.tune(function_trials.quadratic,
                        {"x": {"type": "uniform", "low": 0.0, "high": 1.0}, "epochs": 9, "sleep": 0.05},
                        metric={"name": "loss", "mode": "min"}, resource={"name": "epoch", "max": 9},
                        scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 3},
                        searcher={"type": "random", "seed": 3}, budget={"max_trials": 9},
                        execution={"backend": "local", "num_parallel_evals": 2, "poll_interval": 0.05},
                        experiment_dir=tmp_path / "exp", quiet=True)
    log = events(tmp_path / "exp")
    ended = {e["trial_id"]: e["state"] for e in log if e["type"] == "trial_ended"}
    stopped = {e["trial_id"] for e in log if e["type"] == "report" and e["decision"] == "stop"}
    assert len(ended) == 9 and stopped, ended
    assert all(state == "finished" for t, state in ended.items() if t not in stopped), ended
    configs = {e["trial_id"]: e["config"] for e in log if e["type"] == "trial_created"}
    finished_losses = {t: min(e["value"] for e in log if e["type"] == "report" and e["trial_id"] == t)
                       for t, state in ended.items() if state == "finished"}
    winner = min(finished_losses, key=finished_losses.get)
    assert best["trial_id"] == winner and best["config"]["x"] == configs[winner]["x"]
    # Each trial ran in its own process, not in the driver.
    pids = {(tmp_path / "exp" / "trials" / t / "ran_in").read_text().split()[0] for t in ended}
    assert len(pids) == 9 and str(os.getpid()) not in pids


def test_a_raising_function_fails_its_trial_with_the_traceback(tmp_path: Path) -> None:
    hpc_hpo.tune(function_trials.broken, {"x": {"type": "uniform", "low": 0.0, "high": 1.0}},
                 metric={"name": "loss", "mode": "min"}, resource={"name": "epoch", "max": 3},
                 scheduler={"type": "fifo"}, budget={"max_trials": 2},
                 execution={"backend": "local", "num_parallel_evals": 2, "poll_interval": 0.05},
                 experiment_dir=tmp_path / "exp", quiet=True)
    ended = [e for e in events(tmp_path / "exp") if e["type"] == "trial_ended"]
    assert [e["state"] for e in ended] == ["failed", "failed"]
    assert all("broken on purpose" in e["reason"] for e in ended), ended[0]["reason"]
