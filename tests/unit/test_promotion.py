"""Promotion ASHA on hand-worked streams (eta 3, levels 1, 3, 9), and invariants under a simulated driver."""
from __future__ import annotations

import math

import numpy as np

from hpc_hpo.schedulers.base import Decision, Resume, StartNew
from hpc_hpo.schedulers.promotion import PromotionAsha


def start(scheduler: PromotionAsha, trial_id: str) -> None:
    action = scheduler.next_action(0)
    assert action == StartNew(target=1)
    scheduler.on_start(trial_id, action)


def pause(scheduler: PromotionAsha, trial_id: str, resource: float, value: float) -> None:
    assert scheduler.on_report(trial_id, resource, value).decision == Decision.PAUSE
    scheduler.on_paused(trial_id)


def test_nobody_is_promotable_until_a_rung_has_eta_values_then_the_best_paused_one_is() -> None:
    asha = PromotionAsha([1, 3, 9], 3, "min")
    for trial_id in "abc":
        start(asha, trial_id)
    pause(asha, "a", 1, 0.5)  # alone: floor(1/3) = 0 promotable
    pause(asha, "b", 1, 0.2)  # floor(2/3) = 0
    assert asha.next_action(2) == StartNew(target=1)
    # c's value makes n = 3, top 1: the best is b (0.2), paused, so c pauses and b is picked.
    outcome = asha.on_report("c", 1, 0.9)
    assert outcome.decision == Decision.PAUSE
    asha.on_paused("c")
    assert asha.next_action(3) == Resume("b", resume_from=1, target=3)
    asha.on_start("b", Resume("b", 1, 3))
    # b was promoted from rung 1: never again; a is not in the top floor(3/3) = 1 after b.
    assert asha.next_action(3) == StartNew(target=1)


def test_a_reporter_that_would_be_the_pick_is_promoted_without_pausing() -> None:
    asha = PromotionAsha([1, 3, 9], 3, "max")
    for trial_id in "abc":
        start(asha, trial_id)
    pause(asha, "a", 1, 0.5)
    pause(asha, "b", 1, 0.2)
    outcome = asha.on_report("c", 1, 0.9)  # mode max: 0.9 is the best of three
    assert (outcome.decision, outcome.target) == (Decision.PROMOTE, 3)
    assert asha.on_report("c", 2, 0.95).decision == Decision.CONTINUE  # between rungs
    assert asha.on_report("c", 3, 0.97).decision == Decision.PAUSE  # alone at rung 3
    assert asha.next_action(3) == StartNew(target=1)  # a (0.5) is second of three: not in the top 1


def test_higher_rungs_are_scanned_first_and_the_max_completes() -> None:
    asha = PromotionAsha([1, 3, 9], 3, "min")
    for trial_id in "abc":
        start(asha, trial_id)
    pause(asha, "a", 1, 0.1)
    pause(asha, "b", 1, 0.5)
    pause(asha, "c", 1, 0.6)  # n=3, top 1: a is the pick, not c
    assert asha.next_action(3) == Resume("a", 1, 3)
    asha.on_start("a", Resume("a", 1, 3))
    pause(asha, "a", 3, 0.05)  # alone at rung 3; b ranks second of three at rung 1
    for trial_id, value in (("d", 0.7), ("e", 0.8), ("f", 0.9)):
        start(asha, trial_id)
        pause(asha, trial_id, 1, value)  # at f: n=6, top 2, b (second) is promotable but is not f
    assert asha.next_action(6) == Resume("b", 1, 3)
    asha.on_start("b", Resume("b", 1, 3))
    pause(asha, "b", 3, 0.2)  # rung 3: n=2, top 0
    start(asha, "g")
    start(asha, "h")
    outcome = asha.on_report("g", 1, 0.01)  # n=7, top 2: g is best at rung 1 and nobody above is promotable
    assert (outcome.decision, outcome.target) == (Decision.PROMOTE, 3)
    pause(asha, "g", 3, 0.5)  # rung 3: n=3, top 1: a is the pick, so g pauses
    pause(asha, "h", 1, 0.02)  # h is promotable at rung 1 (second of eight, top 2) but a at rung 3 comes first
    assert asha.next_action(8) == Resume("a", 3, 9)
    asha.on_start("a", Resume("a", 3, 9))
    assert asha.next_action(8) == Resume("h", 1, 3)
    assert asha.on_report("a", 9, 0.01).decision == Decision.COMPLETE


def test_ended_trials_are_never_resumed_and_nan_ranks_last() -> None:
    asha = PromotionAsha([1, 3, 9], 3, "min")
    for trial_id in "abc":
        start(asha, trial_id)
    pause(asha, "a", 1, 0.1)
    pause(asha, "b", 1, math.nan)
    asha.on_trial_end("a")
    pause(asha, "c", 1, 0.3)
    assert asha.next_action(3) == StartNew(target=1)  # a is gone; c is second of three


def test_invariants_under_a_simulated_driver() -> None:
    """K slots, random values and finishing orders: no double promotion, resume targets are the
    next level, nobody beyond max_t, and every promoted trial was in the top floor(n/eta) then."""
    levels, eta = [1, 3, 9, 27], 3
    for seed in range(20):
        rng = np.random.default_rng(seed)
        asha = PromotionAsha(levels, eta, "min")
        quality: dict[str, float] = {}
        running: dict[str, tuple[float, float]] = {}  # trial -> (at, target)
        promoted: set[tuple[str, float]] = set()
        recorded: dict[float, list[float]] = {level: [] for level in levels[:-1]}
        started = 0
        for _ in range(400):
            while len(running) < 4:
                action = asha.next_action(started)
                if isinstance(action, Resume):
                    key = (action.trial_id, action.resume_from)
                    assert key not in promoted
                    values = sorted(recorded[action.resume_from])
                    top = values[: len(values) // eta]
                    assert quality[action.trial_id] * action.resume_from in top or any(
                        math.isclose(quality[action.trial_id] / action.resume_from, v) for v in top)
                    assert action.target == levels[levels.index(action.resume_from) + 1]
                    promoted.add(key)
                    asha.on_start(action.trial_id, action)
                    running[action.trial_id] = (action.resume_from, action.target)
                else:
                    trial_id = f"t{started}"
                    started += 1
                    quality[trial_id] = float(rng.random())
                    asha.on_start(trial_id, action)
                    running[trial_id] = (0, action.target)
            trial_id = list(running)[int(rng.integers(len(running)))]
            at, target = running.pop(trial_id)
            resource = at + 1
            while True:
                assert resource <= levels[-1]
                value = quality[trial_id] / resource
                outcome = asha.on_report(trial_id, resource, value)
                if resource in recorded and resource >= target:
                    recorded[resource].append(value)
                if outcome.decision == Decision.PROMOTE:
                    promoted.add((trial_id, resource))
                    target = outcome.target
                elif outcome.decision == Decision.PAUSE:
                    asha.on_paused(trial_id)
                    break
                elif outcome.decision == Decision.COMPLETE:
                    asha.on_trial_end(trial_id)
                    break
                resource += 1
        assert any(level == 9 for _, level in promoted), "the simulation never promoted past rung 3"
