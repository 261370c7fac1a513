"""Promotion ASHA and PASHA: hand-worked streams (eta 3, levels 1, 3, 9 unless said), then a simulated
driver checked call by call against a brute-force model of the rules in promotion.py's docstring.

Notation in comments: n = values recorded at the rung, quota = floor(n/3) = how many of the best
may be promoted from it; "rank r" counts the values strictly ahead (ties: the earlier report ahead).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest

from hpc_hpo.schedulers.base import Decision, Outcome, Resume, StartNew
from hpc_hpo.schedulers.promotion import Pasha, PromotionAsha

CONTINUE, STOP, PAUSE, PROMOTE, COMPLETE = (Decision.CONTINUE, Decision.STOP, Decision.PAUSE, Decision.PROMOTE,
                                            Decision.COMPLETE)


def start(scheduler: PromotionAsha, trial_id: str, target: float = 1) -> None:
    action = scheduler.next_action(0)
    assert action == StartNew(target=target)
    scheduler.on_start(trial_id, action)


def pause(scheduler: PromotionAsha, trial_id: str, resource: float, value: float) -> None:
    assert scheduler.on_report(trial_id, resource, value).decision == PAUSE
    scheduler.on_paused(trial_id)


def resume(scheduler: PromotionAsha, expected: Resume) -> None:
    assert scheduler.next_action(99) == expected
    scheduler.on_start(expected.trial_id, expected)


# --------------------------------------------------------------------------- hand-worked streams

def test_a_trial_alone_at_its_rung_pauses_and_nobody_is_resumed() -> None:
    asha = PromotionAsha([1, 3, 9], 3, "min")
    start(asha, "a")
    assert asha.on_report("a", 1, 0.5) == Outcome(PAUSE, rung=1)  # n=1, quota 0
    asha.on_paused("a")
    assert asha.next_action(1) == StartNew(target=1)


def test_nobody_is_promotable_until_a_rung_has_eta_values_then_the_best_paused_one_is() -> None:
    asha = PromotionAsha([1, 3, 9], 3, "min")
    for trial_id in "abc":
        start(asha, trial_id)
    pause(asha, "a", 1, 0.5)  # alone: floor(1/3) = 0 promotable
    pause(asha, "b", 1, 0.2)  # floor(2/3) = 0
    assert asha.next_action(2) == StartNew(target=1)
    # c's value makes n = 3, top 1: the best is b (0.2), paused, so c pauses and b is picked.
    outcome = asha.on_report("c", 1, 0.9)
    assert outcome.decision == PAUSE
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
    assert outcome == Outcome(PROMOTE, rung=1, target=3)
    assert asha.on_report("c", 2, 0.95).decision == CONTINUE  # between rungs
    assert asha.on_report("c", 3, 0.97).decision == PAUSE  # alone at rung 3
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
    assert (outcome.decision, outcome.target) == (PROMOTE, 3)
    pause(asha, "g", 3, 0.5)  # rung 3: n=3, top 1: a is the pick, so g pauses
    pause(asha, "h", 1, 0.02)  # h is promotable at rung 1 (second of eight, top 2) but a at rung 3 comes first
    assert asha.next_action(8) == Resume("a", 3, 9)
    asha.on_start("a", Resume("a", 3, 9))
    assert asha.next_action(8) == Resume("h", 1, 3)
    assert asha.on_report("a", 9, 0.01) == Outcome(COMPLETE, rung=9)


# The same stream in both modes: for max the values are negated, and every decision is the same.
STREAM = [  # (trial, resource, value for min, decision)
    ("a", 1, 0.4, PAUSE),      # n=1 quota 0
    ("b", 1, 0.6, PAUSE),      # n=2 quota 0
    ("c", 1, 0.3, PROMOTE),    # n=3 quota 1: c is rank 0 and the only promotable one
    ("c", 2, 9.0, CONTINUE),   # between rungs: no judgement however bad
    ("c", 3, 0.2, PAUSE),      # rung 3: n=1
    ("d", 1, 0.5, PAUSE),      # rung 1: n=4 quota 1: c (rank 0) already promoted; a rank 1 -> nobody
    ("e", 1, 0.9, PAUSE),      # n=5 quota 1
    ("f", 1, 0.8, PAUSE),      # n=6 quota 2: a (rank 1) is promotable and is the pick, not f
]


@pytest.mark.parametrize("mode", ["min", "max"])
def test_one_stream_both_modes(mode: str) -> None:
    sign = 1 if mode == "min" else -1
    asha = PromotionAsha([1, 3, 9], 3, mode)
    for trial_id in "abcdef":
        start(asha, trial_id)
    for trial_id, resource, value, decision in STREAM:
        outcome = asha.on_report(trial_id, resource, sign * value)
        assert outcome.decision == decision, (trial_id, resource)
        if decision == PAUSE:
            asha.on_paused(trial_id)
    resume(asha, Resume("a", 1, 3))
    assert asha.next_action(6) == StartNew(target=1)  # quota 2 used by c and a


@pytest.mark.parametrize(("mode", "order", "picked"), [
    # Three equal values at rung 1: the one reported first is ahead, whoever it is.
    ("min", "abc", "a"), ("min", "cba", "c"), ("max", "bca", "b"), ("max", "acb", "a"),
])
def test_ties_go_to_the_earlier_report(mode: str, order: str, picked: str) -> None:
    asha = PromotionAsha([1, 3, 9], 3, mode)
    for trial_id in order:
        start(asha, trial_id)
    for trial_id in order:
        pause(asha, trial_id, 1, 0.5)  # the third report is not the pick: the first one is
    assert asha.next_action(3) == Resume(picked, 1, 3)


def test_a_tied_reporter_is_behind_the_paused_trial_that_reported_first() -> None:
    asha = PromotionAsha([1, 3, 9], 3, "min")
    for trial_id in "abc":
        start(asha, trial_id)
    pause(asha, "a", 1, 0.5)
    pause(asha, "b", 1, 0.9)
    assert asha.on_report("c", 1, 0.5).decision == PAUSE  # ties with a, but a reported first
    asha.on_paused("c")
    assert asha.next_action(3) == Resume("a", 1, 3)


def test_never_promoted_twice_from_the_same_rung() -> None:
    asha = PromotionAsha([1, 3, 9], 3, "min")
    for trial_id in "abc":
        start(asha, trial_id)
    pause(asha, "a", 1, 0.1)
    pause(asha, "b", 1, 0.2)
    pause(asha, "c", 1, 0.3)
    resume(asha, Resume("a", 1, 3))
    pause(asha, "a", 3, 0.1)  # a is paused again (at 3) and still ranks first at rung 1
    assert asha.next_action(3) == StartNew(target=1)
    with pytest.raises(ValueError, match="paused at 3"):
        asha.on_start("a", Resume("a", 1, 3))  # the driver cannot resume it from rung 1 again
    with pytest.raises(ValueError, match="not paused"):
        asha.on_start("zz", Resume("zz", 1, 3))  # nor resume a trial it never paused


def test_a_paused_trial_is_a_candidate_only_once_it_has_exited() -> None:
    asha = PromotionAsha([1, 3, 9], 3, "min")
    for trial_id in "abc":
        start(asha, trial_id)
    assert asha.on_report("a", 1, 0.1).decision == PAUSE  # told to pause; not exited yet
    pause(asha, "b", 1, 0.2)
    pause(asha, "c", 1, 0.3)  # n=3 quota 1: a would be the pick, but it is still pausing
    assert asha.next_action(3) == StartNew(target=1)
    asha.on_paused("a")
    assert asha.next_action(3) == Resume("a", 1, 3)


@pytest.mark.parametrize(("ends", "expected"), [
    (False, Resume("a", 1, 3)),
    (True, StartNew(target=1)),  # a (rank 0) is gone; b is rank 1 of 3, quota 1: nobody
])
def test_a_trial_that_ended_is_never_resumed(ends: bool, expected) -> None:
    asha = PromotionAsha([1, 3, 9], 3, "min")
    for trial_id in "abc":
        start(asha, trial_id)
    pause(asha, "a", 1, 0.1)
    if ends:
        asha.on_trial_end("a")  # its value stays in the rung: b is still rank 1
    pause(asha, "b", 1, 0.2)
    pause(asha, "c", 1, 0.3)
    assert asha.next_action(3) == expected


def test_a_trial_that_failed_to_pause_is_never_resumed() -> None:
    asha = PromotionAsha([1, 3, 9], 3, "min")
    for trial_id in "abc":
        start(asha, trial_id)
    assert asha.on_report("a", 1, 0.1).decision == PAUSE
    asha.on_trial_end("a")  # it crashed instead of exiting cleanly: no on_paused
    asha.on_paused("a")  # a late or stray on_paused does not bring it back
    pause(asha, "b", 1, 0.2)
    pause(asha, "c", 1, 0.3)
    assert asha.next_action(3) == StartNew(target=1)


def test_nan_stops_and_is_not_recorded() -> None:
    asha = PromotionAsha([1, 3, 9], 3, "min")
    for trial_id in "abcd":
        start(asha, trial_id)
    pause(asha, "a", 1, 0.1)
    assert asha.on_report("b", 1, math.nan) == Outcome(STOP, rung=1)
    asha.on_trial_end("b")
    pause(asha, "c", 1, 0.2)  # n=2 (the NaN does not count): quota 0
    assert asha.next_action(3) == StartNew(target=1)
    pause(asha, "d", 1, 0.3)  # n=3: quota 1
    assert asha.next_action(4) == Resume("a", 1, 3)


def test_reports_jumping_over_rungs_are_decided_at_the_highest_rung_reached() -> None:
    asha = PromotionAsha([1, 3, 9, 27], 3, "min")
    start(asha, "a")
    assert asha.on_report("a", 0.5, 0.9) == Outcome(CONTINUE)  # below its target
    assert asha.on_report("a", 4, 0.9) == Outcome(PAUSE, rung=3)  # jumped over 1: recorded at 3 only
    asha.on_paused("a")
    assert [len(r.values) for r in asha.systems[0]] == [0, 1, 0]
    assert asha.on_report("b", 30, 0.1) == Outcome(COMPLETE, rung=27)  # at or beyond max_t


def test_no_target_exceeds_max_t() -> None:
    asha = PromotionAsha([1, 3], 3, "min")  # a single rung below max_t = 3
    for trial_id in "abc":
        start(asha, trial_id)
    pause(asha, "a", 1, 0.3)
    pause(asha, "b", 1, 0.2)
    assert asha.on_report("c", 1, 0.1) == Outcome(PROMOTE, rung=1, target=3)
    assert asha.on_report("c", 3, 0.1) == Outcome(COMPLETE, rung=3)
    only_max = PromotionAsha([5], 3, "min")  # no rung below max_t: trials run through
    assert only_max.next_action(0) == StartNew(target=5)
    assert only_max.on_report("x", 5, 1.0).decision == COMPLETE


def test_the_same_calls_give_the_same_answers() -> None:
    """What a restarted driver relies on: replaying the calls rebuilds the same state and answers."""
    runs = []
    for _ in range(2):
        asha = PromotionAsha([1, 3, 9, 27], 3, "min", brackets=2, seed=7)
        answers = []
        for i in range(12):
            action = asha.next_action(i)
            trial_id = action.trial_id if isinstance(action, Resume) else f"t{i}"
            asha.on_start(trial_id, action)
            outcome = asha.on_report(trial_id, action.target, (i * 7) % 5 / 10)
            if outcome.decision == PAUSE:
                asha.on_paused(trial_id)
            answers += [action, outcome]
        runs.append(answers)
    assert runs[0] == runs[1]
    assert {a.bracket for a in runs[0] if isinstance(a, StartNew)} == {0, 1}
    assert any(isinstance(a, Resume) for a in runs[0])


# --------------------------------------------------------------------------- PASHA

def pasha_stream(epsilon: float, f_at_3: float) -> Pasha:
    """levels 1, 3, 9, 27; the maximum starts at 3. Values are losses (mode min)."""
    p = Pasha([1, 3, 9, 27], 3, "min", ranking_epsilon=epsilon)
    assert p.max_resource == 3
    for trial_id in "abcdef":
        start(p, trial_id)
    pause(p, "a", 1, 0.1)
    pause(p, "b", 1, 0.2)
    pause(p, "c", 1, 0.3)  # n=3 quota 1: a
    resume(p, Resume("a", 1, 3))
    # a reaches the maximum: it pauses there whatever its rank (nobody runs past 3 yet).
    assert p.on_report("a", 3, 0.5) == Outcome(PAUSE, rung=3)
    p.on_paused("a")
    assert p.on_report("d", 1, 0.05) == Outcome(PROMOTE, rung=1, target=3)  # n=4 quota 1: d is rank 0
    pause(p, "d", 3, 0.4)  # at 3: d 0.4 < a 0.5, and at 1: d 0.05 < a 0.1: same ranking
    assert p.max_resource == 3
    pause(p, "e", 1, 0.15)  # n=5 quota 1
    assert p.on_report("f", 1, 0.01) == Outcome(PROMOTE, rung=1, target=3)  # n=6 quota 2: f rank 0
    # f at 3: order at 3 by value, then the values at 1 in that order, against the values at 1 sorted.
    p.on_report("f", 3, f_at_3)
    return p


def test_pasha_grows_when_the_top_rung_ranking_differs_from_the_rung_below() -> None:
    # f 0.6 at 3: order d (0.4), a (0.5), f (0.6); at 1 they had 0.05, 0.1, 0.01: f went from
    # first to last, so the maximum grows to 9. Then the rung-3 scan: n=3 quota 1, d is rank 0 and
    # paused -> d is the pick (f pauses), and d, paused at the old maximum, is resumed to 9.
    p = pasha_stream(0.0, 0.6)
    assert p.max_resource == 9
    assert p.trials["f"].waiting_at == 1  # f paused at rung 3
    p.on_paused("f")
    resume(p, Resume("d", 3, 9))
    assert p.on_report("d", 9, 0.3) == Outcome(PAUSE, rung=9)  # the new maximum: alone at 9, no growth
    assert p.max_resource == 9


def test_pasha_does_not_grow_while_the_rankings_agree() -> None:
    # f 0.3 at 3: order f (0.3), d (0.4), a (0.5); at 1: 0.01, 0.05, 0.1, the same order.
    p = pasha_stream(0.0, 0.3)
    assert p.max_resource == 3
    p.on_paused("f")
    # Nothing is promotable past 3; at rung 1 (n=6, quota 2) f and d were promoted already.
    assert p.next_action(6) == StartNew(target=1)


@pytest.mark.parametrize(("epsilon", "grows"), [
    # In order at 3 the values at 1 are c = 0.05, 0.1, 0.01; sorted s = 0.01, 0.05, 0.1;
    # |c - s| = 0.04, 0.05, 0.09: the rankings differ iff some difference exceeds epsilon.
    (0.0, True), (0.05, True), (0.089, True), (0.091, False), (0.1, False),
])
def test_pasha_soft_ranking(epsilon: float, grows: bool) -> None:
    p = pasha_stream(epsilon, 0.6)
    assert p.max_resource == (9 if grows else 3)


def test_pasha_ties_are_not_disagreements() -> None:
    p = Pasha([1, 3, 9], 3, "max")
    for trial_id in "abcdefg":
        start(p, trial_id)
    # a, b, c at 1: 0.9, 0.8, 0.7 -> c pauses and a is picked; a ties at 3 with b later.
    pause(p, "a", 1, 0.9)
    pause(p, "b", 1, 0.8)
    pause(p, "c", 1, 0.7)
    resume(p, Resume("a", 1, 3))
    pause(p, "a", 3, 0.5)
    for trial_id, value in (("d", 0.1), ("e", 0.2), ("f", 0.3)):
        pause(p, trial_id, 1, value)  # n=6 quota 2: b (rank 1) is the pick
    resume(p, Resume("b", 1, 3))
    pause(p, "b", 3, 0.5)  # equal to a at 3, worse at 1: a tie is not a disagreement
    assert p.max_resource == 3
    assert p.on_report("g", 1, 0.95).decision == PROMOTE  # n=7 quota 2: g rank 0
    p.on_report("g", 3, 0.6)  # g is best at 3 and at 1: still the same ranking
    assert p.max_resource == 3
    assert p.on_report("g", 9, 0.6).decision == COMPLETE  # max_t always completes


def test_pasha_counts_a_report_beyond_the_maximum_at_the_maximum() -> None:
    p = Pasha([1, 3, 9, 27], 3, "min")
    start(p, "a")
    assert p.on_report("a", 10, 0.5) == Outcome(PAUSE, rung=3)  # reached 9, but the maximum is 3
    assert [len(r.values) for r in p.systems[0]] == [0, 1, 0]
    assert p.on_report("b", 27, 0.5) == Outcome(COMPLETE, rung=27)  # max_t completes regardless


def test_pasha_with_two_levels_is_promotion_asha() -> None:
    p = Pasha([1, 3], 3, "min")
    assert p.max_resource == 3
    for trial_id in "abc":
        start(p, trial_id)
    pause(p, "a", 1, 0.3)
    pause(p, "b", 1, 0.2)
    assert p.on_report("c", 1, 0.1) == Outcome(PROMOTE, rung=1, target=3)
    assert p.on_report("c", 3, 0.1).decision == COMPLETE


# --------------------------------------------------------------------------- simulated driver

@dataclass
class Model:
    """A brute-force restatement of the rules: lists, full sorts, no SortedList, no incremental PASHA."""

    levels: list[float]
    eta: float
    mode: str
    per_bracket: bool
    systems: int
    pasha: bool = False
    epsilon: float = 0.0
    top: int = 0
    records: dict = field(default_factory=dict)  # (system, rung) -> list of (loss, arrival, trial)
    keys: dict = field(default_factory=dict)  # (trial, rung) -> (loss, arrival, trial)
    candidates: set = field(default_factory=set)  # (system, rung, trial)
    arrivals: int = 0

    def __post_init__(self) -> None:
        self.top = min(1, len(self.levels) - 1) if self.pasha else len(self.levels) - 1

    def system(self, bracket: int) -> int:
        return bracket if self.per_bracket else 0

    def record(self, system: int, rung: int, trial_id: str, value: float) -> tuple:
        loss = value if self.mode == "min" else -value
        key = (loss, self.arrivals, trial_id)
        self.arrivals += 1
        self.records.setdefault((system, rung), []).append(key)
        self.keys[(trial_id, rung)] = key
        if self.pasha and rung == self.top:
            while self.top < len(self.levels) - 1 and self.disagree(self.top):
                self.top += 1
        return key

    def disagree(self, rung: int) -> bool:
        both = [t for (t, r) in self.keys if r == rung and (t, rung - 1) in self.keys]
        order = sorted(both, key=lambda t: (self.keys[(t, rung)][0], self.keys[(t, rung - 1)][0]))
        c = [self.keys[(t, rung - 1)][0] for t in order]
        return any(abs(x - y) > self.epsilon for x, y in zip(c, sorted(c)))

    def promotable(self, system: int, rung: int, key: tuple) -> bool:
        values = self.records.get((system, rung), [])
        rank = sum(1 for other in values if other < key)
        return rank < math.floor(len(values) / self.eta)

    def pick(self, extra: tuple | None = None) -> tuple | None:
        for rung in range(self.top - 1, -1, -1):
            for system in range(self.systems):
                keys = [self.keys[(t, rung)] for s, r, t in self.candidates if (s, r) == (system, rung)]
                if extra is not None and extra[:2] == (system, rung):
                    keys.append(extra[2])
                if keys and self.promotable(system, rung, min(keys)):
                    return system, rung, min(keys)[2]
        return None


SIM_CASES = [  # (levels, mode, brackets, per_bracket, pasha, epsilon)
    ([1, 3, 9, 27], "min", 1, True, False, 0.0),
    ([1, 3, 9, 27], "max", 1, True, False, 0.0),
    ([1, 3, 9, 27, 81], "min", 3, True, False, 0.0),
    ([1, 3, 9, 27, 81], "max", 3, False, False, 0.0),
    ([1, 3, 9, 27], "min", 1, True, True, 0.0),
    ([1, 3, 9, 27, 81], "max", 1, True, True, 0.0),
    ([1, 3, 9, 27, 81], "min", 1, True, True, 1.0),  # integer values: a difference of 1 is tolerated
]


@pytest.mark.parametrize(("levels", "mode", "brackets", "per_bracket", "pasha", "epsilon"), SIM_CASES)
def test_simulated_driver_matches_the_brute_force_model(levels, mode, brackets, per_bracket, pasha, epsilon):
    """K slots, coarse random values (many ties), random report order, reports that skip resources,
    late on_paused, failures: every answer equals the model's, and the driver-facing invariants hold."""
    eta = 3
    for seed in range(6):
        rng = np.random.default_rng(seed)
        if pasha:
            s = Pasha(levels, eta, mode, ranking_epsilon=epsilon, seed=seed)
        else:
            s = PromotionAsha(levels, eta, mode, brackets=brackets, rung_system_per_bracket=per_bracket, seed=seed)
        model = Model(levels, eta, mode, per_bracket, brackets if per_bracket else 1, pasha, epsilon)
        bracket: dict[str, int] = {}
        running: dict[str, list] = {}  # trial -> [last resource, target index]
        pausing: dict[str, int] = {}  # told to pause at rung, not exited yet
        paused_at: dict[str, int] = {}
        promoted: set[tuple[str, int]] = set()
        created, slots, max_t = 0, int(rng.integers(1, 6)), levels[-1]
        for _ in range(500):
            while len(running) < slots:
                action = s.next_action(created)
                expected = model.pick()
                if isinstance(action, Resume):
                    trial_id, rung = action.trial_id, levels.index(action.resume_from)
                    assert expected == (model.system(bracket[trial_id]), rung, trial_id)
                    assert paused_at.pop(trial_id) == rung  # resumed from the rung it paused at
                    assert action.target == levels[rung + 1] <= levels[model.top]
                    assert (trial_id, rung) not in promoted
                    assert model.promotable(model.system(bracket[trial_id]), rung, model.keys[(trial_id, rung)])
                    promoted.add((trial_id, rung))
                    model.candidates.discard((model.system(bracket[trial_id]), rung, trial_id))
                    running[trial_id] = [action.resume_from, rung + 1]
                else:
                    assert expected is None
                    assert action.target == levels[action.bracket] and action.bracket < brackets
                    trial_id = f"t{created}"
                    created += 1
                    bracket[trial_id] = action.bracket
                    running[trial_id] = [0, action.bracket]
                s.on_start(trial_id, action)
            event = rng.random()
            if pausing and event < 0.3:  # a pausing trial exits: cleanly, or it fails
                trial_id = list(pausing)[int(rng.integers(len(pausing)))]
                rung = pausing.pop(trial_id)
                if rng.random() < 0.9:
                    s.on_paused(trial_id)
                    paused_at[trial_id] = rung
                    model.candidates.add((model.system(bracket[trial_id]), rung, trial_id))
                else:
                    s.on_trial_end(trial_id)
                continue
            if paused_at and event < 0.33:  # a paused trial is ended for good (e.g. cancelled)
                trial_id = list(paused_at)[int(rng.integers(len(paused_at)))]
                model.candidates.discard((model.system(bracket[trial_id]), paused_at.pop(trial_id), trial_id))
                s.on_trial_end(trial_id)
                continue
            trial_id = list(running)[int(rng.integers(len(running)))]
            if rng.random() < 0.02:  # a running trial fails
                del running[trial_id]
                s.on_trial_end(trial_id)
                continue
            last, target = running[trial_id]
            step = int(rng.integers(1, 4)) if rng.random() < 0.95 else int(rng.integers(4, 30))
            resource = min(last + step, max_t)
            running[trial_id][0] = resource
            value = float(rng.integers(0, 6))  # coarse: ties are common
            outcome = s.on_report(trial_id, resource, value)
            assert resource <= max_t
            reached = max(i for i, level in enumerate(levels) if level <= resource)
            if resource >= max_t:
                assert outcome == Outcome(COMPLETE, rung=max_t)
                del running[trial_id]
                s.on_trial_end(trial_id)
                continue
            if reached < target:
                assert outcome == Outcome(CONTINUE)
                continue
            reached = min(reached, model.top)
            system = model.system(bracket[trial_id])
            key = model.record(system, reached, trial_id, value)
            mine = (system, reached, key)
            if reached < model.top and model.pick(extra=mine) == (system, reached, trial_id):
                assert outcome == Outcome(PROMOTE, rung=levels[reached], target=levels[reached + 1])
                assert (trial_id, reached) not in promoted
                assert model.promotable(system, reached, key)
                promoted.add((trial_id, reached))
                running[trial_id][1] = reached + 1
            else:
                assert outcome == Outcome(PAUSE, rung=levels[reached])
                del running[trial_id]
                pausing[trial_id] = reached
            if pasha:
                assert s.top == model.top
        assert promoted, "the simulation never promoted anyone"
