"""The seed's promotion quantile q_j = r_j / r_{j+1} (max_t after the last rung) in every rung system:
stopping ASHA's cutoff, promotion ASHA's and PASHA's floor(q_j * n), asynchronous Hyperband's brackets,
and the warning when rung_levels come with grace_period or reduction_factor (DESIGN.md, "Scheduling
semantics").

Expected cutoffs are numpy.quantile of the values recorded before (DESIGN.md states the rule in numpy
terms); expected promotion counts are floor(q_j * n) worked out by hand.
"""
from __future__ import annotations

import logging
import math
from fractions import Fraction

import numpy as np
import pytest

from hpc_hpo.config import scheduler_searcher, validate_config
from hpc_hpo.schedulers import Decision, Pasha, PromotionAsha, StoppingAsha, rung_levels
from hpc_hpo.schedulers.base import Resume, StartNew, kept_count, promotion_quantiles

CONTINUE, STOP, PAUSE, PROMOTE = Decision.CONTINUE, Decision.STOP, Decision.PAUSE, Decision.PROMOTE
LEVELS_20 = [1, 3, 9, 20]  # rungs 1, 3, 9 with max_t 20: keeps 1/3, 1/3, 9/20
LEVELS_D2L = [2, 4, 8, 10]  # d2l's settings, rungs 2, 4, 8 with max_t 10: keeps 1/2, 1/2, 8/10


# --------------------------------------------------------------------------- q_j itself

@pytest.mark.parametrize(("levels", "expected"), [
    (LEVELS_20, [Fraction(1, 3), Fraction(1, 3), Fraction(9, 20)]),
    (LEVELS_D2L, [Fraction(1, 2), Fraction(1, 2), Fraction(4, 5)]),
    ([1, 3, 9, 27, 56], [Fraction(1, 3)] * 3 + [Fraction(27, 56)]),
    ([1, 2.5, 6.25, 15.625], [Fraction(2, 5)] * 3),
])
def test_quantile_is_the_ratio_of_neighbouring_levels(levels, expected):
    assert promotion_quantiles(levels) == expected


@pytest.mark.parametrize(("max_t", "grace", "eta"), [(81, 1, 3), (8.1, 0.1, 3), (0.9, 0.1, 3), (16, 0.5, 2),
                                                     (64, 1, 4), (97.65625, 1, 2.5), (1000, 0.001, 10)])
def test_geometric_levels_keep_exactly_one_in_eta(max_t, grace, eta):
    """Levels made in floats (0.1 * 3 = 0.30000000000000004) still give exactly 1/eta, so floor(q * n)
    is floor(n / eta) for every n and no decision of geometric levels changes."""
    levels = rung_levels(max_t, grace, eta)
    quantiles = promotion_quantiles(levels)
    assert quantiles == [1 / Fraction(eta)] * (len(levels) - 1)
    for q in quantiles:
        assert [kept_count(n, q) for n in range(200)] == [math.floor(n / eta) for n in range(200)]
        assert float(q) == 1 / eta  # the same float as before, so stopping ASHA's cutoffs are unchanged


def test_kept_count_is_exact_where_floats_are_not():
    # In floats 0.45 * 20 = 9.000000000000002 and 0.7 * 10 = 7.000000000000001: a float floor could
    # only be right by luck; the count must be the exact integer.
    assert kept_count(20, Fraction(9, 20)) == 9
    assert kept_count(19, Fraction(9, 20)) == 8  # 8.55
    assert kept_count(10, Fraction(7, 10)) == 7
    assert kept_count(0, Fraction(1, 3)) == 0


# --------------------------------------------------------------------------- stopping ASHA

def fill_rung(s: StoppingAsha, level: float, values: list[float], prefix: str = "t") -> None:
    for i, v in enumerate(values):
        s.on_report(f"{prefix}{i}", level, v)


@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize(("levels", "rung_index", "q"), [
    (LEVELS_20, 2, 9 / 20), (LEVELS_20, 0, 1 / 3), (LEVELS_D2L, 2, 8 / 10), (LEVELS_D2L, 1, 1 / 2)])
def test_stopping_cutoff_uses_the_rungs_own_quantile(mode, levels, rung_index, q):
    level = levels[rung_index]
    earlier = [float(v) for v in range(1, 21)]  # 1 .. 20 at this rung
    s = StoppingAsha(levels, 3, mode)  # eta 3 must not matter
    fill_rung(s, level, earlier)
    expected = float(np.quantile(earlier, q if mode == "min" else 1 - q))
    outcome = s.on_report("new", level, expected)
    assert outcome.cutoff == pytest.approx(expected, rel=1e-12)
    assert outcome.decision == CONTINUE  # exactly at the cutoff is not strictly worse
    worse = expected + 0.01 if mode == "min" else expected - 0.01
    assert s.on_report("new2", level, worse).decision == STOP


def test_stopping_keeps_nine_twentieths_at_rung_9_not_a_third():
    """Values 1..20 at rung 9 (min): the cutoff is quantile(P, 9/20) = 9.55, so 9 continues; with
    1/eta (cutoff 7.33) it would stop."""
    s = StoppingAsha(LEVELS_20, 3, "min")
    fill_rung(s, 9, [float(v) for v in range(1, 21)])
    outcome = s.on_report("new", 9, 9.0)
    assert outcome.decision == CONTINUE
    assert outcome.cutoff == pytest.approx(9.55)
    assert s.on_report("other", 9, 9.6).decision == STOP


def test_stopping_d2l_rung_8_keeps_four_fifths_for_max():
    s = StoppingAsha(LEVELS_D2L, 2, "max")
    fill_rung(s, 8, [float(v) for v in range(1, 11)])  # cutoff quantile(P, 1 - 0.8) = 2.8
    assert s.on_report("new", 8, 3.0).decision == CONTINUE
    assert s.on_report("other", 8, 2.5).decision == STOP


def test_stopping_matches_numpy_on_random_non_geometric_reports():
    """Many trials, reports that skip rungs: every decision is numpy's quantile at the rung's q_j."""
    levels = [1, 3, 9, 20]
    quantiles = [1 / 3, 1 / 3, 9 / 20]
    for mode in ("min", "max"):
        rng = np.random.default_rng(4)
        s = StoppingAsha(levels, 3, mode)
        recorded: list[list[float]] = [[], [], []]
        for trial in range(150):
            resource = 0
            while resource < 20:
                resource += int(rng.integers(1, 6))
                value = float(rng.integers(0, 30))
                outcome = s.on_report(str(trial), min(resource, 20), value)
                if resource >= 20:
                    break
                if outcome.rung is None:
                    continue
                rung = levels.index(outcome.rung)
                previous = recorded[rung]
                if previous:
                    q = quantiles[rung] if mode == "min" else 1 - quantiles[rung]
                    cutoff = float(np.quantile(previous, q))
                    worse = value > cutoff if mode == "min" else value < cutoff
                    assert outcome.decision == (STOP if worse else CONTINUE)
                previous.append(value)
                if outcome.decision == STOP:
                    break


# --------------------------------------------------------------------------- promotion ASHA and PASHA

def pause_all(s: PromotionAsha, level: float, values: list[float]) -> list[Decision]:
    """n trials report at `level` (their first target) in turn and exit when told to pause."""
    decisions = []
    for i, v in enumerate(values):
        s.on_start(f"t{i}", StartNew(target=level))
        decisions.append(s.on_report(f"t{i}", level, v).decision)
        if decisions[-1] == PAUSE:
            s.on_paused(f"t{i}")
    return decisions


def promoted_from(s: PromotionAsha, level: float, budget: int = 100) -> list[str]:
    """Every trial a free slot resumes from `level` (each promotion runs and reports nothing yet)."""
    resumed = []
    for index in range(budget):
        action = s.next_action(1000 + index)
        if not isinstance(action, Resume):
            break
        assert action.resume_from == level
        s.on_start(action.trial_id, action)
        resumed.append(action.trial_id)
    return resumed


def climb_to_top_rung(s: PromotionAsha, values: list[float], levels: list[float]) -> None:
    """Each trial in turn reports `value` at every rung below max_t and pauses at the highest one. The
    values come worst-last, so nobody is promoted on its own report; at the lower rungs the test plays
    the driver and resumes every paused trial, so that all of them reach the top rung."""
    for i, v in enumerate(values):
        trial = f"t{i}"
        s.on_start(trial, StartNew(target=levels[0]))
        for rung in range(len(levels) - 1):
            assert s.on_report(trial, levels[rung], v).decision == PAUSE
            s.on_paused(trial)
            if rung < len(levels) - 2:
                s.on_start(trial, Resume(trial, resume_from=levels[rung], target=levels[rung + 1]))


def worst_last(n: int, mode: str) -> list[float]:
    return [float(v) for v in (range(1, n + 1) if mode == "min" else range(n, 0, -1))]


@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize(("levels", "n", "kept"), [(LEVELS_20, 20, 9), (LEVELS_20, 10, 4),
                                                   (LEVELS_D2L, 10, 8), (LEVELS_D2L, 7, 5)])
def test_promotion_from_the_top_rung_keeps_q_j_of_it(mode, levels, n, kept):
    """n paused trials at the rung below max_t: free slots resume exactly floor(q_j * n), the best ones
    (eta 3 is passed and must not matter: with it 20 would keep 6, 10 keep 3, 7 keep 2)."""
    s = PromotionAsha(levels, 3, mode)
    climb_to_top_rung(s, worst_last(n, mode), levels)
    assert promoted_from(s, levels[-2]) == [f"t{i}" for i in range(kept)]


def test_promotion_first_rung_of_d2l_keeps_half():
    s = PromotionAsha(LEVELS_D2L, 3, "min")  # eta 3 would keep a third (3 of 10)
    assert pause_all(s, 2, worst_last(10, "min")) == [PAUSE] * 10
    assert promoted_from(s, 2) == [f"t{i}" for i in range(5)]


def test_reporting_trial_is_promoted_at_once_within_nine_twentieths():
    """The 20th value at rung 9 ranks 9th (index 8): promoted on its report, since 8 < floor(20 * 9/20)
    = 9 (with 1/eta, 8 < 6 fails). Bracket 2 starts at rung 9; the trials before it end after pausing,
    so the reporter is the only candidate there."""
    s = PromotionAsha(LEVELS_20, 3, "min", brackets=3, rung_system_per_bracket=False)
    earlier = [float(v) for v in range(1, 21) if v != 9]
    for i, v in enumerate(earlier):
        s.on_start(f"t{i}", StartNew(target=9, bracket=2))
        s.on_report(f"t{i}", 9, v)
        s.on_trial_end(f"t{i}")
    s.on_start("last", StartNew(target=9, bracket=2))
    outcome = s.on_report("last", 9, 9.0)
    assert outcome.decision == PROMOTE and outcome.target == 20


def test_pasha_uses_q_j_at_each_rung():
    """PASHA with levels 2, 4, 8, 10: at rung 2 it keeps half, not 1/eta."""
    p = Pasha(LEVELS_D2L, 3, "min")
    assert pause_all(p, 2, worst_last(8, "min")) == [PAUSE] * 8
    assert promoted_from(p, 2) == [f"t{i}" for i in range(4)]


def test_pasha_grown_maximum_promotes_half_at_rung_4():
    """Five trials go on from rung 2 to 4 (the first maximum) and report there best-last, so the
    rankings at 2 and 4 disagree at the second report and the maximum grows to 8. From then on each
    report is the best so far at rung 4 and is promoted iff rank 0 < floor(n/2): n = 2, 3, 4, 5 all are
    (with 1/eta, n = 2 would pause: floor(2/3) = 0)."""
    p = Pasha(LEVELS_D2L, 3, "min")
    pause_all(p, 2, worst_last(10, "min"))
    assert promoted_from(p, 2) == [f"t{i}" for i in range(5)]
    decisions = [p.on_report(f"t{i}", 4, 5.0 - i).decision for i in range(5)]
    assert decisions == [PAUSE] + [PROMOTE] * 4
    assert p.max_resource == 8


# --------------------------------------------------------------------------- brackets

@pytest.mark.parametrize("per_bracket", [True, False])
def test_stopping_brackets_use_each_levels_quantile(per_bracket):
    """Bracket 1 starts at rung 3 of 1, 3, 9, 20; at rung 9 its cutoff is quantile(P, 9/20)."""
    s = StoppingAsha(LEVELS_20, 3, "min", brackets=2, rung_system_per_bracket=per_bracket)
    values = [float(v) for v in range(1, 21)]
    for i, v in enumerate(values):
        s.on_start(f"b{i}", StartNew(target=20, bracket=1))
        assert s.on_report(f"b{i}", 1, 0.0).decision == CONTINUE  # below bracket 1's first rung
        s.on_report(f"b{i}", 9, v)  # jumps over rung 3: judged at 9
    s.on_start("new", StartNew(target=20, bracket=1))
    outcome = s.on_report("new", 9, 9.5)
    assert outcome.cutoff == pytest.approx(float(np.quantile(values, 9 / 20)))
    assert outcome.decision == CONTINUE


@pytest.mark.parametrize("per_bracket", [True, False])
def test_promotion_brackets_use_each_levels_quantile(per_bracket):
    """Ten bracket-1 trials pause at rung 4 of 2, 4, 8, 10: five are resumed (1/2), not three (1/eta)."""
    s = PromotionAsha(LEVELS_D2L, 3, "min", brackets=2, rung_system_per_bracket=per_bracket)
    for i, v in enumerate(worst_last(10, "min")):
        s.on_start(f"t{i}", StartNew(target=4, bracket=1))
        assert s.on_report(f"t{i}", 4, v).decision == PAUSE
        s.on_paused(f"t{i}")
    assert promoted_from(s, 4) == [f"t{i}" for i in range(5)]


# --------------------------------------------------------------------------- the config warning

def scheduler_config(**scheduler) -> dict:
    return {"name": "q", "command": "train", "params": {"x": {"type": "uniform", "low": 0, "high": 1}},
            "metric": {"name": "loss", "mode": "min"}, "resource": {"max": 20},
            "budget": {"max_trials": 5}, "scheduler": scheduler}


@pytest.fixture
def warnings_log(caplog, monkeypatch):
    monkeypatch.setattr(scheduler_searcher, "_said", set())
    caplog.set_level(logging.WARNING)
    return caplog


def warned(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


@pytest.mark.parametrize(("extra", "named"), [
    ({"grace_period": 2}, ["scheduler.grace_period"]),
    ({"reduction_factor": 2}, ["scheduler.reduction_factor"]),
    ({"grace_period": 1, "reduction_factor": 3}, ["scheduler.grace_period", "scheduler.reduction_factor"]),
])
def test_rung_levels_with_grace_or_eta_warns_that_they_are_ignored(warnings_log, extra, named):
    config = validate_config(scheduler_config(type="asha", rung_levels=[1, 3, 9], **extra), check_program=False)
    messages = warned(warnings_log)
    assert len(messages) == 1
    assert all(key in messages[0] for key in named) and "ignored" in messages[0]
    assert "scheduler.rung_levels" in messages[0]
    assert "\n" not in messages[0]
    assert config.scheduler.rung_levels == (1, 3, 9)
    validate_config(scheduler_config(type="asha", rung_levels=[1, 3, 9], **extra), check_program=False)
    assert len(warned(warnings_log)) == 1  # the same config validated again (resume, plot) says it once


@pytest.mark.parametrize("scheduler", [
    {"type": "asha", "rung_levels": [1, 3, 9]},
    {"type": "asha", "grace_period": 2, "reduction_factor": 2},
    {"type": "promotion", "rung_levels": [1, 3, 9], "reduction_factor": 3, "brackets": 2},  # sizes brackets
    {"type": "fifo", "rung_levels": [1, 3, 9], "grace_period": 2},
])
def test_no_warning_when_nothing_is_ignored(warnings_log, scheduler):
    validate_config(scheduler_config(**scheduler), check_program=False)
    assert warned(warnings_log) == []


def test_promotion_with_rung_levels_warns_about_grace_only_when_eta_sizes_brackets(warnings_log):
    validate_config(scheduler_config(type="promotion", rung_levels=[1, 3, 9], grace_period=1, reduction_factor=3,
                                     brackets=2), check_program=False)
    (message,) = warned(warnings_log)
    assert "scheduler.grace_period" in message and "reduction_factor" not in message
