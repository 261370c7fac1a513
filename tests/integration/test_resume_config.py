"""Resuming an experiment with the same or a changed config, through the real CLI and through hpc_hpo.tune().

A seedless config resumes its experiment (the seed drawn at creation is frozen and reused); changes to how
the experiment runs (budget, execution) are applied and journaled once; changes to what it is (space,
metric, scheduler, searcher) are refused with exit 2 and nothing written.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import PROGRAMS, REPO, cli, synthetic_config, write_config

sys.path.insert(0, str(PROGRAMS))
import function_trials  # noqa: E402

import hpc_hpo  # noqa: E402
from hpc_hpo.state import load_state  # noqa: E402

GOOD_ENDS = {"completed", "stopped", "finished"}


def journal(experiment: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (experiment / "journal.jsonl").read_text().splitlines()]


def end_states(experiment: Path) -> dict[str, str]:
    """Every trial's state as `hpc-hpo status` folds it from the journal."""
    return {t.trial_id: t.state for t in load_state(experiment).trials.values()}


def config_changes(experiment: Path) -> list[list[dict[str, Any]]]:
    return [e["changes"] for e in journal(experiment) if e["type"] == "config_changed"]


def frozen_seed(experiment: Path) -> int:
    return yaml.safe_load((experiment / "experiment.yaml").read_text())["searcher"]["seed"]


def seedless(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    config = synthetic_config(tmp_path, **overrides)
    config["searcher"] = {"type": "random"}
    return config


def quick(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """The synthetic experiment with trials of 3 short epochs: runs take about a second."""
    config = synthetic_config(tmp_path, params={"x": {"type": "uniform", "low": 0.0, "high": 1.0},
                                                "shape": {"type": "choice", "values": ["fast", "slow"]},
                                                "epochs": 3, "sleep": 0.01},
                              resource={"name": "epoch", "max": 3})
    config.update(overrides)
    return config


def run(tmp_path: Path, config: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return cli("run", str(write_config(tmp_path, config)), cwd=tmp_path)


def files_of(experiment: Path) -> dict[str, tuple[bytes, int]]:
    """Every file of the experiment with its bytes and modification time: what "nothing written" compares."""
    return {str(p.relative_to(experiment)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(experiment.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- seeds


def test_a_seedless_config_resumes_through_the_cli_with_its_frozen_seed(tmp_path: Path) -> None:
    config = seedless(tmp_path, budget={"max_trials": 3})
    first = run(tmp_path, config)
    assert first.returncode == 0, first.stderr
    seed = frozen_seed(tmp_path / "exp")
    states = end_states(tmp_path / "exp")
    assert len(states) == 3 and set(states.values()) <= GOOD_ENDS, states

    again = run(tmp_path, config)  # the very same file: the same experiment, no refusal
    assert again.returncode == 0, again.stderr
    assert "already ended" in again.stdout and "different config" not in again.stderr
    # status, best, export and plan load the seedless config too.
    for command in (["status"], ["best"], ["export", "--csv", "-"], ["plan"]):
        shown = cli(*command, str(tmp_path / "exp.yaml"), cwd=tmp_path)
        assert shown.returncode == 0 and "Traceback" not in shown.stderr, (command, shown.stderr)

    more = run(tmp_path, {**config, "budget": {"max_trials": 5}})
    assert more.returncode == 0, more.stderr
    states = end_states(tmp_path / "exp")
    assert len(states) == 5 and set(states.values()) <= GOOD_ENDS, states
    assert frozen_seed(tmp_path / "exp") == seed
    assert [[c["key"] for c in changes] for changes in config_changes(tmp_path / "exp")] == [["budget.max_trials"]]
    # The resumed searcher is the one the experiment began with: the same trials as a fresh experiment
    # run with that seed named.
    twin = {**config, "experiment_dir": str(tmp_path / "twin"), "searcher": {"type": "random", "seed": seed},
            "budget": {"max_trials": 5}}
    assert run(tmp_path, twin).returncode == 0
    configs = {e["trial_id"]: e["config"] for e in journal(tmp_path / "exp") if e["type"] == "trial_created"}
    twins = {e["trial_id"]: e["config"] for e in journal(tmp_path / "twin") if e["type"] == "trial_created"}
    assert configs == twins and len(configs) == 5


@pytest.fixture
def importable_in_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    """submitit's job processes import the function by name: they need the same path."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(PROGRAMS), str(REPO), os.environ.get("PYTHONPATH", "")]))


def tune_quadratic(tmp_path: Path, max_trials: int) -> dict[str, Any] | None:
    return hpc_hpo.tune(function_trials.quadratic,
                        {"x": {"type": "uniform", "low": 0.0, "high": 1.0}, "epochs": 3, "sleep": 0.01},
                        metric={"name": "loss", "mode": "min"}, resource={"name": "epoch", "max": 3},
                        scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 3},
                        budget={"max_trials": max_trials},
                        execution={"backend": "local", "num_parallel_evals": 2, "poll_interval": 0.05},
                        experiment_dir=tmp_path / "exp", quiet=True)


def test_a_seedless_tune_call_resumes_its_experiment(tmp_path: Path, importable_in_jobs: None) -> None:
    best = tune_quadratic(tmp_path, 3)
    states = end_states(tmp_path / "exp")
    assert len(states) == 3 and set(states.values()) <= GOOD_ENDS, states
    seed, lines = frozen_seed(tmp_path / "exp"), len(journal(tmp_path / "exp"))

    assert tune_quadratic(tmp_path, 3) == best  # resumed: already ended, nothing refused or rerun
    assert len(journal(tmp_path / "exp")) == lines

    tune_quadratic(tmp_path, 5)
    states = end_states(tmp_path / "exp")
    assert len(states) == 5 and set(states.values()) <= GOOD_ENDS, states
    assert frozen_seed(tmp_path / "exp") == seed
    assert config_changes(tmp_path / "exp") == [[{"key": "budget.max_trials", "path": ["budget", "max_trials"],
                                                  "old": 3, "new": 5}]]


# --------------------------------------------------------------------------- changes that are applied


def test_a_raised_max_trials_continues_an_ended_experiment(tmp_path: Path) -> None:
    config = quick(tmp_path, budget={"max_trials": 4})
    assert run(tmp_path, config).returncode == 0
    assert len(end_states(tmp_path / "exp")) == 4

    raised = {**config, "budget": {"max_trials": 9}}
    result = run(tmp_path, raised)
    assert result.returncode == 0, result.stderr
    assert "resumed experiment" in result.stdout and "budget.max_trials 4 -> 9" in result.stderr
    states = end_states(tmp_path / "exp")
    assert sorted(states) == [f"{i:04d}" for i in range(9)] and set(states.values()) <= GOOD_ENDS, states
    events = journal(tmp_path / "exp")
    assert events[-1]["type"] == "experiment_ended" and events[-1]["final"] is True
    assert "max_trials (9)" in events[-1]["reason"]
    assert config_changes(tmp_path / "exp") == [[{"key": "budget.max_trials", "path": ["budget", "max_trials"],
                                                  "old": 4, "new": 9}]]
    assert yaml.safe_load((tmp_path / "exp" / "experiment.yaml").read_text())["budget"] == {"max_trials": 4}

    again = run(tmp_path, raised)  # the same changed config: compared with the effective config, no new change
    assert again.returncode == 0 and "already ended" in again.stdout, again.stderr
    assert len(config_changes(tmp_path / "exp")) == 1 and len(end_states(tmp_path / "exp")) == 9


def test_a_changed_parallelism_is_applied_on_resume(tmp_path: Path) -> None:
    config = quick(tmp_path, scheduler={"type": "fifo"}, budget={"max_trials": 8},
                   execution={"backend": "local", "num_parallel_evals": 4, "poll_interval": 0.05})
    config["params"]["sleep"] = 0.3
    path = write_config(tmp_path, config)
    driver = subprocess.Popen([sys.executable, "-m", "hpc_hpo.cli", "run", str(path)], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    pid_files = [tmp_path / "exp" / "trials" / f"{i:04d}" / "pid" for i in range(4)]
    deadline = time.monotonic() + 30
    while not all(p.exists() and p.read_text() for p in pid_files) and time.monotonic() < deadline:
        time.sleep(0.05)
    driver.send_signal(signal.SIGINT)
    driver.communicate(timeout=60)
    assert driver.returncode == 130
    interrupted = len(journal(tmp_path / "exp"))

    narrower = {**config, "execution": {**config["execution"], "num_parallel_evals": 2}}
    result = run(tmp_path, narrower)
    assert result.returncode == 0, result.stderr
    assert "2 at a time" in result.stdout
    assert config_changes(tmp_path / "exp") == [[{"key": "execution.num_parallel_evals",
                                                  "path": ["execution", "num_parallel_evals"], "old": 4, "new": 2}]]
    # Applied: never more than 2 runs at once after the change (runs start after the driver journaled
    # the ends it saw, so the journal's order is the driver's view).
    running: set[str] = set()
    most = 0
    for event in journal(tmp_path / "exp")[interrupted:]:
        if event["type"] == "trial_started":
            running.add(event["trial_id"])
        elif event["type"] in ("trial_ended", "trial_paused", "trial_retry", "trial_interrupted"):
            running.discard(event["trial_id"])
        most = max(most, len(running))
    assert most == 2
    states = end_states(tmp_path / "exp")
    assert len(states) == 8, states
    # Trials the interrupt cancelled keep that state (or are run again); every other one ended well.
    created_later = {e["trial_id"] for e in journal(tmp_path / "exp")[interrupted:] if e["type"] == "trial_created"}
    assert created_later and all(states[t] in GOOD_ENDS for t in created_later), states
    assert set(states.values()) <= GOOD_ENDS | {"cancelled"}, states


# --------------------------------------------------------------------------- changes that are refused


@pytest.mark.parametrize("change, key", [
    ({"params": {"x": {"type": "uniform", "low": 0.0, "high": 2.0},
                 "shape": {"type": "choice", "values": ["fast", "slow"]}, "epochs": 3, "sleep": 0.01}},
     "params.x.high"),
    ({"metric": {"name": "loss", "mode": "max"}}, "metric.mode"),
    ({"scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2}}, "scheduler.reduction_factor"),
    ({"searcher": {"type": "random", "seed": 8}}, "searcher.seed"),
], ids=["space", "metric-mode", "reduction-factor", "seed"])
def test_a_change_of_what_the_experiment_is_is_refused_and_nothing_is_written(
        tmp_path: Path, change: dict[str, Any], key: str) -> None:
    config = quick(tmp_path, budget={"max_trials": 2})
    assert run(tmp_path, config).returncode == 0
    states = end_states(tmp_path / "exp")
    assert len(states) == 2 and set(states.values()) <= GOOD_ENDS, states
    before = files_of(tmp_path / "exp")
    journal_bytes = (tmp_path / "exp" / "journal.jsonl").read_bytes()
    frozen_bytes = (tmp_path / "exp" / "experiment.yaml").read_bytes()

    result = run(tmp_path, {**config, **change, "budget": {"max_trials": 4}})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("hpc-hpo: error:"), result.stderr
    assert key in lines[0] and "budget.max_trials" not in lines[0]
    assert "--experiment-dir" in lines[0] and "experiment_dir to a new directory" in lines[0]
    assert (tmp_path / "exp" / "journal.jsonl").read_bytes() == journal_bytes
    assert (tmp_path / "exp" / "experiment.yaml").read_bytes() == frozen_bytes
    assert files_of(tmp_path / "exp") == before  # not even the driver lease was touched
    assert end_states(tmp_path / "exp") == states

    # A new experiment directory takes the changed config, as the message says.
    elsewhere = cli("run", str(tmp_path / "exp.yaml"), "--experiment-dir", str(tmp_path / "new"), cwd=tmp_path)
    assert elsewhere.returncode == 0, elsewhere.stderr
    states = end_states(tmp_path / "new")
    assert len(states) == 4 and set(states.values()) <= GOOD_ENDS, states
