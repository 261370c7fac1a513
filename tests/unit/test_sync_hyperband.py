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


@pytest.mark.parametrize("overlap", [False, True])
def test_the_best_of_a_stage_are_resumed_and_failures_do_not_block(overlap: bool) -> None:
    levels = [1, 3, 9]
    hb = SyncHyperband(levels, 3, "max", overlap=overlap)  # bracket s=2 first: 9 configs at 1, 3 at 3, 1 at 9
    # While bracket 2 waits, a free slot starts bracket 1's first config (5 at 3), unless brackets run in turn.
    idle = StartNew(target=3, bracket=1) if overlap else WAIT
    values = [0.1, 0.9, 0.5, 0.7, 0.3, 0.8, 0.2, 0.6, 0.4]
    for i in range(9):
        action = hb.next_action(i)
        assert action == StartNew(target=1, bracket=2)
        hb.on_start(f"t{i}", action)
    assert hb.next_action(9) == idle
    hb.on_trial_end("t8")  # fails before reporting
    for i in range(8):
        assert hb.on_report(f"t{i}", 1, values[i]).decision == Decision.PAUSE
        assert hb.next_action(9) == idle  # nobody is paused yet
    for i in range(8):
        hb.on_paused(f"t{i}")
    chosen = []
    while isinstance(action := hb.next_action(9), Resume):
        hb.on_start(action.trial_id, action)
        chosen.append((action.trial_id, action.resume_from, action.target))
    assert chosen == [("t1", 1, 3), ("t5", 1, 3), ("t3", 1, 3)]  # 0.9, 0.8, 0.7: the best three
    assert hb.next_action(9) == idle


# --------------------------------------------------------------------------- brackets that overlap


def run_with_log(levels: list[float], slots: int, seed: int, fail: set[str] = frozenset()):
    """An event-driven driver: runs take a per-config time per unit of resource, so brackets overlap.

    Returns the scheduler, every call made to it (to replay), the actions taken with the time, and each
    trial's value (value = quality * 10 / resource: the ranking is the same at every level)."""
    rng = np.random.default_rng(seed)
    hb = SyncHyperband(levels, 3, "min")
    calls, actions, quality, pace = [], [], {}, {}
    running: dict[str, tuple[float, float]] = {}  # trial -> (finish time, target)
    now = 0.0
    while True:
        while len(running) < slots:
            action = hb.next_action(len(quality))
            if action is WAIT or action is DONE:
                break
            trial_id = action.trial_id if isinstance(action, Resume) else f"t{len(quality)}"
            if isinstance(action, StartNew):
                quality[trial_id], pace[trial_id] = float(rng.random()), float(rng.lognormal(0, 0.3))
            start = action.resume_from if isinstance(action, Resume) else 0
            hb.on_start(trial_id, action)
            calls.append(("on_start", trial_id, action))
            actions.append((now, trial_id, action))
            running[trial_id] = (now + (action.target - start) * pace[trial_id], action.target)
        if not running:
            return hb, calls, actions, quality
        trial_id = min(running, key=lambda t: running[t])
        now, target = running.pop(trial_id)
        if trial_id in fail:
            hb.on_trial_end(trial_id)
            calls.append(("on_trial_end", trial_id))
            continue
        value = quality[trial_id] * 10 / target
        outcome = hb.on_report(trial_id, target, value)
        calls.append(("on_report", trial_id, target, value))
        if outcome.decision == Decision.PAUSE:
            hb.on_paused(trial_id)
            calls.append(("on_paused", trial_id))
        else:
            assert outcome.decision == Decision.COMPLETE
            hb.on_trial_end(trial_id)
            calls.append(("on_trial_end", trial_id))


def bracket_of(actions) -> dict[str, int]:
    return {trial_id: a.bracket for _, trial_id, a in actions if isinstance(a, StartNew)}


def test_brackets_overlap_and_each_stage_resumes_the_best_of_its_own_bracket() -> None:
    levels = rung_levels(27, 1, 3)
    hb, _, actions, quality = run_with_log(levels, slots=16, seed=3)
    assert hb.next_action(999) is DONE
    brackets = bracket_of(actions)
    # Overlap: some bracket's configs started while an earlier bracket still had stages to run.
    last_action_time = {}
    for time, trial_id, _ in actions:
        last_action_time[brackets[trial_id]] = time
    first_start = {}
    for time, trial_id, a in actions:
        if isinstance(a, StartNew):
            first_start.setdefault(a.bracket, time)
    assert any(first_start[s] < last_action_time[s + 1] for s in range(len(levels) - 1))
    # Per bracket and stage: those resumed to a level are exactly the best of those that reached the level before.
    plan = {bracket[0].bracket: bracket for bracket in hyperband_plan(levels, 3)}
    for s, stages in plan.items():
        members = sorted(t for t in brackets if brackets[t] == s)
        assert len(members) == stages[0].configs
        for previous, stage in zip(stages, stages[1:]):
            resumed = {t for _, t, a in actions if isinstance(a, Resume) and brackets[t] == s and a.target == stage.level}
            best = set(sorted(members, key=lambda t: quality[t])[:stage.configs])
            assert resumed == best, (s, stage)
            members = sorted(best)


def test_replaying_the_calls_rebuilds_the_same_scheduler() -> None:
    levels = rung_levels(27, 1, 3)
    _, calls, _, _ = run_with_log(levels, slots=8, seed=5)
    # Cut the history anywhere: a scheduler fed the same calls answers next_action as the live one did.
    for cut in (10, len(calls) // 3, len(calls) // 2, len(calls) - 5):
        first, second = SyncHyperband(levels, 3, "min"), SyncHyperband(levels, 3, "min")
        for scheduler in (first, second):
            for call in calls[:cut]:
                getattr(scheduler, call[0])(*call[1:])
        answers = []
        for scheduler in (first, second):
            sequence = []
            for i in range(20):  # take every action it offers now, committing each
                action = scheduler.next_action(1000 + i)
                sequence.append(action)
                if action is WAIT or action is DONE:
                    break
                scheduler.on_start(action.trial_id if isinstance(action, Resume) else f"x{i}", action)
            answers.append(sequence)
        assert answers[0] == answers[1]
        assert any(isinstance(a, (StartNew, Resume)) for a in answers[0]) or cut > len(calls) // 2


def test_done_only_when_every_bracket_is_done() -> None:
    levels = [1, 3, 9]
    hb = SyncHyperband(levels, 3, "min")
    # Bracket 0 (5 configs straight to 9... here s=0: 3 configs at 9) finishing first does not end the plan.
    plan = hyperband_plan(levels, 3)
    started = []
    while isinstance(action := hb.next_action(len(started)), StartNew):
        trial_id = f"t{len(started)}"
        hb.on_start(trial_id, action)
        started.append((trial_id, action))
    assert len(started) == sum(bracket[0].configs for bracket in plan)  # every bracket started
    for trial_id, action in started:
        if action.bracket == 0:
            assert hb.on_report(trial_id, 9, 0.5).decision == Decision.COMPLETE
            hb.on_trial_end(trial_id)
    assert hb.next_action(99) is WAIT  # the other brackets still wait for their reports
    hb2, _, _, _ = run_with_log(levels, slots=4, seed=1)
    assert hb2.next_action(99) is DONE


def test_a_failed_member_does_not_block_its_bracket_nor_the_others() -> None:
    levels = rung_levels(27, 1, 3)
    # t0 (bracket 3, stage 0) fails before reporting; a trial of bracket 2 fails too.
    hb, calls, actions, quality = run_with_log(levels, slots=8, seed=2, fail={"t0", "t30"})
    assert hb.next_action(999) is DONE
    brackets = bracket_of(actions)
    assert brackets["t0"] == 3 and brackets["t30"] == 2
    resumed = {t for _, t, a in actions if isinstance(a, Resume)}
    assert "t0" not in resumed and "t30" not in resumed
    plan = hyperband_plan(levels, 3)
    expected = sum(stage.configs for bracket in plan for stage in bracket[1:])
    assert len([a for _, _, a in actions if isinstance(a, Resume)]) == expected  # enough healthy ones remain


def test_a_chosen_trial_that_ends_before_it_resumes_does_not_block_the_stage() -> None:
    hb = SyncHyperband([1, 3, 9], 3, "min", overlap=False)
    for i in range(9):
        hb.on_start(f"t{i}", hb.next_action(i))
    for i in range(9):
        hb.on_report(f"t{i}", 1, float(i))
        hb.on_paused(f"t{i}")
    first = hb.next_action(9)
    assert first == Resume("t0", resume_from=1, target=3)
    hb.on_trial_end("t1")  # chosen (second best), gone before its resume
    hb.on_start("t0", first)
    third = hb.next_action(9)
    assert third == Resume("t2", resume_from=1, target=3)
    hb.on_start("t2", third)
    for trial_id, value in (("t0", 0.0), ("t2", 2.0)):
        assert hb.on_report(trial_id, 3, value).decision == Decision.PAUSE
        hb.on_paused(trial_id)
    assert hb.next_action(9) == Resume("t0", resume_from=3, target=9)  # the stage ended with two of three


def test_repeat_runs_the_plan_that_many_times_and_a_replay_follows_the_passes() -> None:
    from hpc_hpo.plan_simulation import simulate, synthetic_trials
    from hpc_hpo.schedulers.base import rung_levels
    levels = rung_levels(27, 1, 3)  # plan: 27+12+6+4 = 49 configs a pass
    once = simulate(SyncHyperband(levels, 3, "min"), synthetic_trials(0, 27, "min"), 8, levels)
    twice = simulate(SyncHyperband(levels, 3, "min", repeat=2), synthetic_trials(0, 27, "min"), 8, levels)
    assert (once.trials, twice.trials) == (49, 98)
    assert twice.spent == 2 * once.spent  # each pass spends its plan exactly
    assert twice.busy_share > once.busy_share  # the second pass fills the first one's idle slots


def test_a_replayed_trial_of_a_later_pass_finds_its_bracket() -> None:
    levels = [1, 3, 9]
    live = SyncHyperband(levels, 3, "min", repeat=None)
    replayed = SyncHyperband(levels, 3, "min", repeat=None)
    for index in range(200):  # run whatever it asks for, each run reporting at once at its target
        action = live.next_action(index)
        if not isinstance(action, (StartNew, Resume)):
            break
        trial_id = action.trial_id if isinstance(action, Resume) else f"{index:04d}"
        for scheduler in (live, replayed):  # the replay makes the same calls, never next_action
            scheduler.on_start(trial_id, action)
            outcome = scheduler.on_report(trial_id, action.target, float(int(trial_id) % 7))
            if outcome.decision == Decision.PAUSE:
                scheduler.on_paused(trial_id)
            else:
                scheduler.on_trial_end(trial_id)
        if live.passes >= 3:
            break
    assert live.passes > 1 and live.passes == replayed.passes
    assert [b.ident for b in live.brackets] == [b.ident for b in replayed.brackets]


def test_repeat_is_an_option_of_sync_hyperband_only_and_null_needs_a_budget() -> None:
    import pytest
    from hpc_hpo.config import validate_config
    from hpc_hpo.errors import ConfigError
    base = {"name": "h", "command": "python x.py", "params": {"x": {"type": "uniform", "low": 0, "high": 1}},
            "metric": {"name": "loss", "mode": "min"}, "resource": {"name": "epoch", "max": 27}}
    assert validate_config({**base, "scheduler": {"type": "sync_hyperband", "repeat": 3}},
                           check_program=False).scheduler.repeat == 3
    with pytest.raises(ConfigError) as refused:
        validate_config({**base, "scheduler": {"type": "asha", "repeat": 3}, "budget": {"max_trials": 5}},
                        check_program=False)
    assert refused.value.key == "scheduler.repeat"
    with pytest.raises(ConfigError) as endless:
        validate_config({**base, "scheduler": {"type": "sync_hyperband", "repeat": None}}, check_program=False)
    assert "never runs out" in str(endless.value)
    assert validate_config({**base, "scheduler": {"type": "sync_hyperband", "repeat": None},
                            "budget": {"max_trials": 100}}, check_program=False).scheduler.repeat is None
