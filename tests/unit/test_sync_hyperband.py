"""Synchronous Hyperband: the exact bracket plan, and the schedule a simulated driver gets from it."""
from __future__ import annotations

import numpy as np
import pytest

from hpc_hpo.schedulers.base import DONE, WAIT, Decision, Resume, StartNew, rung_levels
from hpc_hpo.schedulers.sync_hyperband import SyncHyperband, hyperband_plan

PLAN_81 = [[(81, 1), (27, 3), (9, 9), (3, 27), (1, 81)],
           [(34, 3), (11, 9), (3, 27), (1, 81)],
           [(15, 9), (5, 27), (1, 81)],
           [(8, 27), (2, 81)],
           [(5, 81)]]


@pytest.mark.parametrize("max_t, plan", [
    (81, PLAN_81),
    # A non-power maximum: the levels are 1, 3, 9, 27, 56 and the counts are those of R=81.
    (56, [[(n, 56 if r == 81 else r) for n, r in bracket] for bracket in PLAN_81]),
    (27, [[(27, 1), (9, 3), (3, 9), (1, 27)], [(12, 3), (4, 9), (1, 27)], [(6, 9), (2, 27)], [(4, 27)]]),
])
def test_the_bracket_plan_is_exact(max_t: float, plan: list) -> None:
    stages = hyperband_plan(rung_levels(max_t, 1, 3), 3)
    assert [[(s.configs, s.level) for s in bracket] for bracket in stages] == plan


def test_eta_2() -> None:
    stages = hyperband_plan(rung_levels(16, 1, 2), 2)
    # s_max = 4: n = ceil(5/(s+1) * 2**s) -> 16, 10, 7, 5, 5
    assert [bracket[0].configs for bracket in stages] == [16, 10, 7, 5, 5]
    assert [(s.configs, s.level) for s in stages[1]] == [(10, 2), (5, 4), (2, 8), (1, 16)]


def simulate(levels: list[float], eta: float, slots: int, seed: int, fail: float = 0.0):
    """A driver loop: returns the actions taken and checks the schedule against the plan."""
    rng = np.random.default_rng(seed)
    hb = SyncHyperband(levels, eta, "min")
    quality, running, actions = {}, {}, []
    paused_wait: list[str] = []
    for step in range(100000):
        while len(running) < slots:
            action = hb.next_action(len(quality))
            if action is WAIT or action is DONE:
                break
            if isinstance(action, StartNew):
                trial_id = f"t{len(quality)}"
                quality[trial_id] = float(rng.random())
                at = 0
            else:
                trial_id, at = action.trial_id, action.resume_from
            hb.on_start(trial_id, action)
            actions.append((trial_id, action))
            running[trial_id] = (at, action.target)
        if action is DONE and not running:
            return actions
        if not running:
            # Trials told to pause exit now.
            for trial_id in paused_wait:
                hb.on_paused(trial_id)
            paused_wait.clear()
            continue
        trial_id = list(running)[int(rng.integers(len(running)))]
        at, target = running.pop(trial_id)
        assert target <= levels[-1]
        if rng.random() < fail:
            hb.on_trial_end(trial_id)
            continue
        outcome = hb.on_report(trial_id, target, quality[trial_id] / target)
        if outcome.decision == Decision.PAUSE:
            paused_wait.append(trial_id)
            if rng.random() < 0.5:
                hb.on_paused(trial_id)
                paused_wait.remove(trial_id)
        else:
            assert outcome.decision == Decision.COMPLETE
            hb.on_trial_end(trial_id)
    raise AssertionError("the simulation did not finish")


@pytest.mark.parametrize("slots", [1, 4, 16])
def test_a_driver_gets_exactly_the_plan_and_the_best_go_on(slots: int) -> None:
    levels = rung_levels(27, 1, 3)
    actions = simulate(levels, 3, slots, seed=slots)
    plan = hyperband_plan(levels, 3)
    per_stage = {}
    for trial_id, action in actions:
        per_stage.setdefault((action.bracket if isinstance(action, StartNew) else None, action.target), []).append(
            trial_id)
    new_by_bracket = {}
    for trial_id, action in actions:
        if isinstance(action, StartNew):
            new_by_bracket[action.bracket] = new_by_bracket.get(action.bracket, 0) + 1
    assert new_by_bracket == {bracket[0].bracket: bracket[0].configs for bracket in plan}
    resumes = [a for _, a in actions if isinstance(a, Resume)]
    expected_resumes = sum(stage.configs for bracket in plan for stage in bracket[1:])
    assert len(resumes) == expected_resumes
    assert len({(a.trial_id, a.resume_from) for a in resumes}) == len(resumes)


def test_the_best_of_a_stage_are_resumed_and_failures_do_not_block() -> None:
    levels = [1, 3, 9]
    hb = SyncHyperband(levels, 3, "max")  # bracket s=2 first: 9 configs at 1, 3 at 3, 1 at 9
    values = [0.1, 0.9, 0.5, 0.7, 0.3, 0.8, 0.2, 0.6, 0.4]
    for i in range(9):
        action = hb.next_action(i)
        assert action == StartNew(target=1, bracket=2)
        hb.on_start(f"t{i}", action)
    assert hb.next_action(9) is WAIT
    hb.on_trial_end("t8")  # fails before reporting
    for i in range(8):
        assert hb.on_report(f"t{i}", 1, values[i]).decision == Decision.PAUSE
        assert hb.next_action(9) is WAIT  # nobody is paused yet
    for i in range(8):
        hb.on_paused(f"t{i}")
    chosen = []
    while isinstance(action := hb.next_action(9), Resume):
        hb.on_start(action.trial_id, action)
        chosen.append((action.trial_id, action.resume_from, action.target))
    assert chosen == [("t1", 1, 3), ("t5", 1, 3), ("t3", 1, 3)]  # 0.9, 0.8, 0.7: the best three
    assert hb.next_action(9) is WAIT
