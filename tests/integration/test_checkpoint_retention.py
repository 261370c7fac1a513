"""Checkpoint retention on real local experiments: what stays on disk after a run, per policy."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import cli, synthetic_config, write_config

from hpc_hpo.retention import best_trials
from hpc_hpo.state import ENDED_STATES, load_state


def run_experiment(tmp_path: Path, **overrides: Any) -> Path:
    config = synthetic_config(tmp_path, **overrides)
    done = cli("run", str(write_config(tmp_path, config)), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return tmp_path / "exp"


def with_checkpoint(experiment: Path) -> set[str]:
    return {d.name for d in (experiment / "trials").iterdir() if (d / "checkpoint").is_dir()}


def test_by_default_ended_trials_keep_a_checkpoint_only_among_the_best_three(tmp_path: Path) -> None:
    experiment = run_experiment(tmp_path, budget={"max_trials": 12})
    state = load_state(experiment)
    assert {t.state for t in state.trials.values()} <= set(ENDED_STATES)
    kept = with_checkpoint(experiment)
    assert kept == best_trials(state, 3) and len(kept) == 3, (kept, best_trials(state, 3))
    # Nothing put aside is left behind once the driver is gone.
    assert not list(experiment.glob("trials/*/.deleted-*"))


def test_all_keeps_every_checkpoint_and_keep_best_sets_how_many(tmp_path: Path) -> None:
    first, second = tmp_path / "all", tmp_path / "one"
    first.mkdir()
    second.mkdir()
    experiment = run_experiment(first, budget={"max_trials": 8}, execution={"keep_checkpoints": "all"})
    assert len(with_checkpoint(experiment)) == 8
    experiment = run_experiment(second, budget={"max_trials": 8}, execution={"keep_best": 1})
    assert with_checkpoint(experiment) == best_trials(load_state(experiment), 1)


def test_promotion_keeps_paused_trials_resumable_and_best_drops_them_at_the_end(tmp_path: Path) -> None:
    resumable, best = tmp_path / "resumable", tmp_path / "best"
    resumable.mkdir()
    best.mkdir()
    scheduler = {"type": "promotion", "grace_period": 1, "reduction_factor": 3}
    experiment = run_experiment(resumable, scheduler=scheduler, budget={"max_trials": 9}, execution={"keep_best": 1})
    state = load_state(experiment)
    paused = {t.trial_id for t in state.trials.values() if t.state == "paused"}
    assert paused, "promotion left no paused trial: the test tests nothing"
    assert paused <= with_checkpoint(experiment)
    # A paused trial resumed in an extension finds its checkpoint: raise the budget and run again.
    extended = synthetic_config(resumable, scheduler=scheduler, budget={"max_trials": 12}, execution={"keep_best": 1})
    done = cli("run", str(write_config(resumable, extended)), cwd=resumable)
    assert done.returncode == 0, done.stderr
    assert not [t for t in load_state(experiment).trials.values() if t.state == "failed"]
    experiment = run_experiment(best, scheduler=scheduler, budget={"max_trials": 9},
                                execution={"keep_checkpoints": "best", "keep_best": 1})
    assert with_checkpoint(experiment) == best_trials(load_state(experiment), 1)


def test_pbt_snapshots_no_one_can_branch_from_are_deleted_and_pbt_still_works(tmp_path: Path) -> None:
    scheduler = {"type": "pbt", "perturbation_interval": 1, "population_size": 4}
    experiment = run_experiment(tmp_path, scheduler=scheduler, searcher={"type": "random", "seed": 3},
                                budget={"max_trials": 12}, params={
                                    "x": {"type": "uniform", "low": 0.0, "high": 1.0},
                                    "shape": {"type": "choice", "values": ["fast", "slow"]}, "epochs": 9})
    state = load_state(experiment)
    assert not [t for t in state.trials.values() if t.state == "failed"], state.trials
    events = [json.loads(line) for line in (experiment / "journal.jsonl").read_text().splitlines()]
    children = [e for e in events if e["type"] == "trial_created" and "parent" in e]
    assert children, "no child was branched from a snapshot: the test tests nothing"
    # At the end no trial is going: every snapshot is past use.
    assert not list(experiment.glob("trials/*/snapshots/*")), list(experiment.glob("trials/*/snapshots/*"))


def test_a_driver_killed_mid_deletion_leaves_nothing_a_later_run_keeps(tmp_path: Path) -> None:
    experiment = run_experiment(tmp_path, budget={"max_trials": 4})
    leftover = experiment / "trials" / "0000" / ".deleted-1-0"
    (leftover / "deep").mkdir(parents=True)
    (leftover / "deep" / "weights").write_bytes(b"x" * 1000)
    config = synthetic_config(tmp_path, budget={"max_trials": 6})
    done = cli("run", str(write_config(tmp_path, config)), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert not leftover.exists()


@pytest.mark.parametrize("value", ["some", 3])
def test_a_bad_policy_is_one_clear_error(tmp_path: Path, value: Any) -> None:
    config = synthetic_config(tmp_path, execution={"keep_checkpoints": value})
    done = cli("run", str(write_config(tmp_path, config)), cwd=tmp_path)
    assert done.returncode == 2 and "execution.keep_checkpoints" in done.stderr and "resumable" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "exp").exists()


def test_status_says_how_much_the_experiment_and_its_checkpoints_hold(tmp_path: Path) -> None:
    experiment = run_experiment(tmp_path, budget={"max_trials": 6}, execution={"keep_best": 2})
    (experiment / "trials" / "0000" / "bulk").write_bytes(b"x" * 3 * 1024 * 1024)  # not a checkpoint
    kept = next(iter(with_checkpoint(experiment)))
    (experiment / "trials" / kept / "checkpoint" / "weights").write_bytes(b"x" * 2 * 1024 * 1024)
    done = cli("status", str(experiment), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    [line] = [line for line in done.stdout.splitlines() if line.startswith("disk: ")]
    # 3 MiB + 2 MiB and a little more in all; 2 MiB and a few bytes of it checkpoints.
    assert line.startswith("disk: 5.") and "MiB in the experiment directory, 2.0 MiB of it checkpoints" in line, line
