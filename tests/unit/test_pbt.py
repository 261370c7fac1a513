"""PBT's pure rules: pausing every interval, exploit of the worst by a paused best, explore within the space."""
from __future__ import annotations

import numpy as np

from hpc_hpo.config import validate_config
from hpc_hpo.schedulers.base import DONE, WAIT, Branch, Decision, Resume, StartNew
from hpc_hpo.schedulers.pbt import Pbt


def space():
    config = validate_config({
        "name": "pbt", "command": "python train.py", "metric": {"name": "loss", "mode": "min"},
        "resource": {"max": 9}, "budget": {"max_trials": 4},
        "params": {"lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
                   "width": {"type": "randint", "low": 8, "high": 64},
                   "opt": {"type": "choice", "values": ["adam", "sgd", "rmsprop"]},
                   "momentum": {"type": "uniform", "low": 0.0, "high": 0.9,
                                "condition": {"parent": "opt", "equals": "sgd"}},
                   "epochs": 9}}, check_program=False)
    return config.space


def population(pbt: Pbt, values: dict[str, float], level: float = 3) -> None:
    """Start len(values) trials, report each at `level` (all PAUSE), and pause them in order."""
    rng = np.random.default_rng(0)
    for i, trial_id in enumerate(values):
        action = pbt.next_action(i)
        assert action == StartNew(target=level)
        pbt.on_trial_created(trial_id, pbt.space.sample(rng))
        pbt.on_start(trial_id, action)
    for trial_id, value in values.items():
        assert pbt.on_report(trial_id, level, value).decision == Decision.PAUSE


def test_trials_pause_every_interval_and_complete_at_max() -> None:
    pbt = Pbt(space(), max_t=9, mode="min", perturbation_interval=3, population_size=1)
    population(pbt, {"a": 1.0})
    pbt.on_paused("a")
    assert pbt.next_action(1) == Resume("a", resume_from=3, target=6)
    pbt.on_start("a", Resume("a", 3, 6))
    assert pbt.on_report("a", 4, 0.9).decision == Decision.CONTINUE
    assert pbt.on_report("a", 6, 0.8).decision == Decision.PAUSE
    pbt.on_paused("a")
    pbt.on_start("a", pbt.next_action(1))
    assert pbt.on_report("a", 9, 0.7).decision == Decision.COMPLETE
    pbt.on_trial_end("a")
    assert pbt.next_action(1) is DONE


def test_the_worst_is_replaced_by_a_child_of_a_paused_best_and_others_resume() -> None:
    pbt = Pbt(space(), max_t=9, mode="min", perturbation_interval=3, population_size=4, quantile_fraction=0.25)
    population(pbt, {"a": 0.1, "b": 0.5, "c": 0.6, "d": 0.9})
    pbt.on_paused("d")  # the worst pauses first, while the best has not paused yet: wait for it
    assert pbt.next_action(4) is WAIT
    pbt.on_paused("a")
    action = pbt.next_action(4)
    assert isinstance(action, Branch)
    assert (action.parent_id, action.replaces, action.resume_from, action.target) == ("a", "d", 3, 6)
    pbt.on_start("0004", action)
    assert pbt.next_action(5) == Resume("a", resume_from=3, target=6)  # the best goes on
    pbt.on_start("a", Resume("a", 3, 6))
    pbt.on_paused("b")
    assert pbt.next_action(5) == Resume("b", resume_from=3, target=6)  # not among the worst


def test_mode_max_replaces_the_lowest() -> None:
    pbt = Pbt(space(), max_t=9, mode="max", perturbation_interval=3, population_size=4)
    population(pbt, {"a": 0.1, "b": 0.5, "c": 0.6, "d": 0.9})
    for trial_id in "abcd":
        pbt.on_paused(trial_id)
    action = pbt.next_action(4)
    assert isinstance(action, Branch) and (action.parent_id, action.replaces) == ("d", "a")


def test_a_failed_trial_is_never_a_parent() -> None:
    pbt = Pbt(space(), max_t=9, mode="min", perturbation_interval=3, population_size=3)
    population(pbt, {"a": 0.1, "b": 0.5, "c": 0.9})
    pbt.on_trial_end("a")  # crashed after reporting, before pausing
    pbt.on_paused("c")
    pbt.on_paused("b")
    action = pbt.next_action(3)
    assert isinstance(action, Branch) and (action.parent_id, action.replaces) == ("b", "c")


def test_explore_stays_in_the_space_and_moves_choices_to_neighbours() -> None:
    the_space = space()
    pbt = Pbt(the_space, max_t=9, mode="min", perturbation_interval=3, population_size=2, resample_probability=0.0)
    parent = {"lr": 1e-3, "width": 32, "opt": "sgd", "momentum": 0.5, "epochs": 9}
    changed = 0
    for i in range(500):
        child = pbt.explore(parent, np.random.default_rng([1, i]))
        for param in the_space.params:
            if param.name in child:
                assert param.domain.contains(child[param.name]), (param.name, child[param.name])
        assert ("momentum" in child) == (child["opt"] == "sgd")  # inactive parameters are absent
        assert child["opt"] in ("adam", "rmsprop")  # 'sgd' is in the middle: one step either way
        assert child["lr"] in (1e-3 * 0.8, 1e-3 * 1.2)
        assert child["epochs"] == 9
        changed += child != parent
    assert changed == 500
    resampling = Pbt(the_space, max_t=9, mode="min", perturbation_interval=3, population_size=2,
                     resample_probability=1.0)
    lrs = {resampling.explore(parent, np.random.default_rng([2, i]))["lr"] for i in range(50)}
    assert len(lrs) == 50 and all(1e-4 <= lr <= 1e-1 for lr in lrs)


def test_new_trials_may_start_until_the_whole_population_has() -> None:
    """What the driver asks before it deletes PBT snapshots (hpc_hpo/retention.py)."""
    pbt = Pbt(space(), max_t=9, mode="min", perturbation_interval=3, population_size=2)
    assert pbt.may_start_new
    population(pbt, {"a": 1.0})
    assert pbt.may_start_new  # one of two started
    pbt.on_trial_created("b", {"lr": 0.01, "width": 9, "opt": "adam", "epochs": 9})
    pbt.on_start("b", StartNew(target=3))
    assert not pbt.may_start_new
