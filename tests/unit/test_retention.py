"""Which checkpoints and PBT snapshots an experiment still needs (hpc_hpo/retention.py)."""
from __future__ import annotations

from hpc_hpo.journal import make_event
from hpc_hpo.retention import best_trials, checkpoints_to_drop, snapshots_to_drop
from hpc_hpo.state import ExperimentState


def experiment(trials: dict[str, tuple[str, float | None, float]], mode: str = "min") -> ExperimentState:
    """trial id -> (state, best value, last resource)."""
    state = ExperimentState()
    state.apply(make_event("experiment_created", name="t", metric="loss", mode=mode, resource="epoch", params=["x"]))
    for index, (trial_id, (kind, value, resource)) in enumerate(trials.items()):
        state.apply(make_event("trial_created", trial_id, index=index, config={"x": index}))
        trial = state.trials[trial_id]
        trial.state, trial.best_value, trial.last_resource = kind, value, resource
    return state


STATE = {"0000": ("stopped", 0.9, 1), "0001": ("completed", 0.1, 9), "0002": ("paused", 0.5, 3),
         "0003": ("stopped", 0.8, 1), "0004": ("running", 0.7, 2), "0005": ("failed", None, 0),
         "0006": ("completed", 0.2, 9)}


def test_the_best_are_ranked_by_mode() -> None:
    assert best_trials(experiment(STATE), 2) == {"0001", "0006"}
    assert best_trials(experiment(STATE, mode="max"), 2) == {"0000", "0003"}


def test_resumable_drops_ended_trials_outside_the_best() -> None:
    state = experiment(STATE)
    present = set(STATE)
    assert checkpoints_to_drop(state, "resumable", 2, False, present) == {"0000", "0003", "0005"}
    # Kept: the best two (completed), and what may resume (paused, running).
    assert checkpoints_to_drop(state, "resumable", 2, True, present) == {"0000", "0003", "0005"}
    assert checkpoints_to_drop(state, "all", 2, True, present) == set()
    assert checkpoints_to_drop(state, "resumable", 0, False, {"0001"}) == {"0001"}


def test_best_drops_paused_trials_too_once_the_experiment_ends() -> None:
    state = experiment(STATE)
    assert "0002" not in checkpoints_to_drop(state, "best", 2, False, set(STATE))
    assert checkpoints_to_drop(state, "best", 2, True, set(STATE)) == {"0000", "0002", "0003", "0004", "0005"}


def test_snapshots_go_once_every_trial_still_going_is_past_their_level() -> None:
    state = experiment({"0000": ("paused", 0.5, 4), "0001": ("running", 0.4, 2), "0002": ("stopped", 0.9, 2)})
    present = {"0000": [2.0, 4.0], "0002": [2.0], "0001": [2.0]}
    assert snapshots_to_drop(state, "resumable", present, False) == []  # 0001 may still pause at 2
    state.trials["0001"].last_resource = 4
    assert sorted(snapshots_to_drop(state, "resumable", present, False)) == [
        ("0000", 2.0), ("0001", 2.0), ("0002", 2.0)]
    assert snapshots_to_drop(state, "all", present, False) == []


def test_no_snapshot_goes_while_a_trial_may_still_start_from_nothing() -> None:
    """PBT's population not yet all started: a member started later pauses at 2 and may pick any snapshot
    there as its parent's, though every trial that exists is past it (the flaky e2e failure: a child's
    copy of its parent's snapshot found it deleted)."""
    state = experiment({"0000": ("paused", 0.5, 4), "0001": ("running", 0.4, 4)})
    assert snapshots_to_drop(state, "resumable", {"0000": [2.0]}, new_trials_may_start=True) == []
    assert snapshots_to_drop(state, "resumable", {"0000": [2.0]}, new_trials_may_start=False) == [("0000", 2.0)]


def test_with_several_objectives_no_checkpoint_is_dropped() -> None:
    """The best of several objectives is a front, not the keep_best of the first one: nothing may go."""
    from hpc_hpo.retention import checkpoints_to_drop
    from hpc_hpo.state import COMPLETED, ExperimentState, TrialState
    state = ExperimentState(mode="min", objectives=["loss", "ms"], modes=["min", "min"])
    for i in range(5):
        state.trials[f"{i:04d}"] = TrialState(f"{i:04d}", i, {}, state=COMPLETED, best_value=float(i))
    present = set(state.trials)
    assert checkpoints_to_drop(state, "resumable", 1, final=True, present=present) == set()
    assert checkpoints_to_drop(state, "best", 1, final=True, present=present) == set()
    state.objectives, state.modes = [], []
    assert checkpoints_to_drop(state, "best", 1, final=True, present=present) == present - {"0000"}
