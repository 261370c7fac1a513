"""Asynchronous Hyperband: bracket sizes and draws, and brackets in stopping and promotion ASHA.

Hand-worked sizes: n_s = ceil((s_max + 1) / (s + 1) * eta**s) with s_max = len(levels) - 1 and
s = s_max - b for bracket b.
"""
from __future__ import annotations

import dataclasses
import sys
import types

import numpy as np
import pytest

from hpc_hpo.config import validate_config
from hpc_hpo.schedulers import FifoScheduler, Pasha, PromotionAsha, StoppingAsha, make_scheduler
from hpc_hpo.schedulers.base import Decision, Outcome, Resume, StartNew
from hpc_hpo.schedulers.brackets import Brackets, bracket_probabilities, hyperband_sizes

CONTINUE, STOP, PAUSE = Decision.CONTINUE, Decision.STOP, Decision.PAUSE
LEVELS_81 = [1, 3, 9, 27, 81]


# --------------------------------------------------------------------------- sizes and probabilities

@pytest.mark.parametrize(("levels", "eta", "sizes"), [
    # s_max = 4: 5/5*81 = 81, 5/4*27 = 33.75 -> 34, 5/3*9 = 15, 5/2*3 = 7.5 -> 8, 5/1*1 = 5
    (LEVELS_81, 3, [81, 34, 15, 8, 5]),
    # s_max = 3: 4/4*27 = 27, 4/3*9 = 12, 4/2*3 = 6, 4/1*1 = 4
    ([1, 3, 9, 27], 3.0, [27, 12, 6, 4]),
    # eta 2, s_max = 3: 8, 4/3*4 = 5.33 -> 6, 4/2*2 = 4, 4
    ([1, 2, 4, 8], 2, [8, 6, 4, 4]),
    # uneven levels (max_t = 56): only the number of levels matters
    ([1, 3, 9, 27, 56], 3, [81, 34, 15, 8, 5]),
])
def test_hyperband_sizes(levels, eta, sizes):
    assert hyperband_sizes(levels, eta) == sizes


def test_hyperband_sizes_are_exact_where_floats_are_not():
    # 11 levels, eta 3, bracket 2: s = 8, 11/9 * 3**8 = 11 * 729 = 8019 exactly (8020 in floats).
    assert hyperband_sizes(list(range(1, 12)), 3)[2] == 8019


@pytest.mark.parametrize(("brackets", "expected"), [
    (1, [1.0]),
    (2, [81 / 115, 34 / 115]),  # normalised over the first two only
    (4, [81 / 138, 34 / 138, 15 / 138, 8 / 138]),
])
def test_bracket_probabilities_normalise_over_the_brackets_used(brackets, expected):
    assert bracket_probabilities(LEVELS_81, 3, brackets) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("levels", "brackets"), [
    (LEVELS_81, 5),  # bracket 4 would start at max_t: no rung to judge anyone at
    (LEVELS_81, 0),
    ([1, 3], 2),
])
def test_too_many_brackets_are_refused(levels, brackets):
    with pytest.raises(ValueError, match="brackets"):
        bracket_probabilities(levels, 3, brackets)
    for cls in (StoppingAsha, PromotionAsha):
        with pytest.raises(ValueError, match="brackets"):
            cls(levels, 3, "min", brackets=brackets)


def test_one_bracket_is_fine_even_without_a_rung_below_max_t():
    assert StoppingAsha([5], 3, "min").next_action(0) == StartNew(target=5)


def test_draws_are_deterministic_per_seed_and_trial_index():
    a, b = Brackets(LEVELS_81, 3, 4, seed=11), Brackets(LEVELS_81, 3, 4, seed=11)
    draws = [a.draw(i) for i in range(200)]
    assert draws == [b.draw(i) for i in reversed(range(200))][::-1]  # order of asking does not matter
    assert draws != [Brackets(LEVELS_81, 3, 4, seed=12).draw(i) for i in range(200)]
    # exactly the generator the brief names: u from default_rng([seed, index]) against the cumulative sizes
    for i in range(50):
        u = np.random.default_rng([11, i]).random() * 138
        assert draws[i] == sum(u >= c for c in (81, 115, 130))


@pytest.mark.parametrize("brackets", [2, 4])
def test_empirical_draw_frequencies_match_the_probabilities(brackets):
    n = 40_000
    draws = np.array([Brackets(LEVELS_81, 3, brackets, seed=3).draw(i) for i in range(n)])
    counts = np.bincount(draws, minlength=brackets)
    assert len(counts) == brackets  # never a bracket beyond those used
    for p, count in zip(bracket_probabilities(LEVELS_81, 3, brackets), counts):
        assert abs(count / n - p) < 4 * np.sqrt(p * (1 - p) / n)


def test_next_action_uses_the_draw():
    stopping = StoppingAsha(LEVELS_81, 3, "min", brackets=4, seed=5)
    promotion = PromotionAsha(LEVELS_81, 3, "min", brackets=4, seed=5)
    draw = Brackets(LEVELS_81, 3, 4, seed=5).draw
    for i in range(40):
        assert stopping.next_action(i) == StartNew(target=81, bracket=draw(i))  # stopping runs through
        assert promotion.next_action(i) == StartNew(target=LEVELS_81[draw(i)], bracket=draw(i))
    assert StoppingAsha(LEVELS_81, 3, "min").next_action(7) == StartNew(target=81)  # one bracket: bracket 0


# --------------------------------------------------------------------------- stopping ASHA with brackets

def test_stopping_a_bracket_1_trial_is_not_judged_at_level_1():
    for per_bracket in (True, False):
        s = StoppingAsha([1, 3, 9, 27], 3, "min", brackets=2, rung_system_per_bracket=per_bracket)
        s.on_start("a", StartNew(target=27, bracket=0))
        s.on_start("b", StartNew(target=27, bracket=1))
        assert s.on_report("a", 1, 0.1) == Outcome(CONTINUE, rung=1)
        # b is far worse at 1, but bracket 1 is first judged at 3: no judgement, nothing recorded.
        assert s.on_report("b", 1, 100.0) == Outcome(CONTINUE)
        assert s.on_report("b", 2, 100.0) == Outcome(CONTINUE)
        assert [list(r) for r in s.systems[0]] == [[0.1], [], []]
        assert s.on_report("b", 3, 100.0).rung == 3  # judged at its first rung
        # A trial never seen in on_start is in bracket 0: judged at 1 (the old behaviour).
        assert s.on_report("c", 1, 0.5) == Outcome(STOP, rung=1, cutoff=0.1)


@pytest.mark.parametrize(("per_bracket", "expected"), [
    (True, Outcome(CONTINUE, rung=3)),  # bracket 0's rung 3 is empty: the first value continues
    (False, Outcome(STOP, rung=3, cutoff=0.1)),  # shared: b's 0.1 at 3 is the cutoff
])
def test_stopping_rung_system_per_bracket(per_bracket, expected):
    s = StoppingAsha([1, 3, 9, 27], 3, "min", brackets=2, rung_system_per_bracket=per_bracket)
    s.on_start("a", StartNew(target=27, bracket=0))
    s.on_start("b", StartNew(target=27, bracket=1))
    assert s.on_report("b", 3, 0.1) == Outcome(CONTINUE, rung=3)
    s.on_report("a", 1, 0.5)
    assert s.on_report("a", 3, 0.5) == expected
    assert len(s.systems) == (2 if per_bracket else 1)


def test_stopping_refuses_an_unknown_bracket():
    s = StoppingAsha([1, 3, 9, 27], 3, "min", brackets=2)
    with pytest.raises(ValueError, match="bracket 2"):
        s.on_start("a", StartNew(target=27, bracket=2))


# --------------------------------------------------------------------------- promotion ASHA with brackets

def test_promotion_a_bracket_1_trial_runs_to_level_3_first():
    p = PromotionAsha([1, 3, 9, 27], 3, "min", brackets=2)
    p.on_start("b", StartNew(target=3, bracket=1))
    assert p.on_report("b", 1, 0.1) == Outcome(CONTINUE)  # below its first rung: not recorded
    assert p.on_report("b", 3, 0.1) == Outcome(PAUSE, rung=3)
    assert [len(r.values) for r in p.systems[1]] == [0, 1, 0]
    assert [len(r.values) for r in p.systems[0]] == [0, 0, 0]


@pytest.mark.parametrize(("per_bracket", "expected"), [
    # Own rungs: bracket 0's rung 3 holds only a (n=1), bracket 1's b and c (n=2): quota 0 in both.
    (True, None),  # a new trial, in the bracket drawn for index 3
    # Shared rungs: a, b, c at 3 (n=3, quota 1): a is the best and paused.
    (False, Resume("a", 3, 9)),
])
def test_promotion_rung_system_per_bracket(per_bracket, expected):
    p = PromotionAsha([1, 3, 9, 27], 3, "min", brackets=2, rung_system_per_bracket=per_bracket, seed=0)
    p.on_start("a", StartNew(target=1, bracket=0))
    p.on_start("b", StartNew(target=3, bracket=1))
    p.on_start("c", StartNew(target=3, bracket=1))
    for trial_id, value in (("a", 0.5), ("b", 0.7), ("c", 0.9)):
        # a (bracket 0) reports first at 3: it skipped 1 and is decided at the highest rung reached
        assert p.on_report(trial_id, 3, value).decision == PAUSE
        p.on_paused(trial_id)
    if expected is None:
        bracket = Brackets([1, 3, 9, 27], 3, 2, seed=0).draw(3)
        expected = StartNew(target=[1, 3][bracket], bracket=bracket)
    assert p.next_action(3) == expected


def test_promotion_scans_bracket_0_first_at_equal_levels():
    p = PromotionAsha([1, 3, 9, 27], 3, "min", brackets=2)
    for trial_id, bracket in (("x", 1), ("y", 1), ("z", 1), ("a", 0), ("b", 0), ("c", 0)):
        p.on_start(trial_id, StartNew(target=[1, 3][bracket], bracket=bracket))
    for trial_id, value in (("x", 0.1), ("y", 0.2), ("z", 0.3), ("a", 0.9), ("b", 0.95), ("c", 0.99)):
        assert p.on_report(trial_id, 3, value).decision == PAUSE  # third of each bracket: the first is the pick
        p.on_paused(trial_id)
    assert p.next_action(6) == Resume("a", 3, 9)  # bracket 0's rung 3 before bracket 1's, values aside
    p.on_start("a", Resume("a", 3, 9))
    assert p.next_action(6) == Resume("x", 3, 9)


# --------------------------------------------------------------------------- make_scheduler

def config(scheduler: dict, **spec_overrides):
    cfg = validate_config({
        "name": "b", "command": "python train.py", "metric": {"name": "loss", "mode": "max"},
        "resource": {"max": 27}, "budget": {"max_trials": 4}, "searcher": {"seed": 42},
        "scheduler": scheduler, "params": {"lr": {"type": "uniform", "low": 0.0, "high": 1.0}},
    }, check_program=False)
    # Types and keys config validation does not accept yet are set directly on the spec.
    return dataclasses.replace(cfg, scheduler=dataclasses.replace(cfg.scheduler, **spec_overrides))


def test_make_scheduler_dispatches_with_brackets_and_the_searcher_seed(monkeypatch):
    s = make_scheduler(config({"type": "asha"}, brackets=3, rung_system_per_bracket=False))
    assert type(s) is StoppingAsha and s.levels == [1, 3, 9, 27] and s.mode == "max"
    assert (s.brackets.count, s.brackets.per_bracket, s.brackets.seed) == (3, False, 42)
    s = make_scheduler(config({"type": "promotion"}, brackets=2))
    assert type(s) is PromotionAsha and (s.brackets.count, s.brackets.per_bracket, s.brackets.seed) == (2, True, 42)
    s = make_scheduler(config({"type": "asha"}, type="pasha", ranking_epsilon=0.25))
    assert type(s) is Pasha and s.epsilon == 0.25 and s.brackets.seed == 42 and s.max_resource == 3
    assert type(make_scheduler(config({"type": "fifo"}))) is FifoScheduler

    made = {}

    class SyncHyperband:
        def __init__(self, levels, reduction_factor, mode, repeat):
            made.update(levels=levels, eta=reduction_factor, mode=mode, repeat=repeat)

    module = types.ModuleType("hpc_hpo.schedulers.sync_hyperband")
    module.SyncHyperband = SyncHyperband
    monkeypatch.setitem(sys.modules, "hpc_hpo.schedulers.sync_hyperband", module)
    assert isinstance(make_scheduler(config({"type": "asha"}, type="sync_hyperband")), SyncHyperband)
    assert made == {"levels": [1, 3, 9, 27], "eta": 3.0, "mode": "max", "repeat": 1}
