"""Rung levels, the cutoff quantile, stopping ASHA and FIFO, against DESIGN.md "Scheduling semantics".

Every expected cutoff below is worked out by hand from numpy's 'linear' quantile:
for sorted P of length n, the virtual index is (n - 1) * q, and the cutoff interpolates
linearly between the two neighbouring values.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sortedcontainers import SortedList

from hpc_hpo.schedulers import Decision, FifoScheduler, StoppingAsha, rung_levels
from hpc_hpo.schedulers.base import Outcome, quantile_sorted

CONTINUE, STOP, COMPLETE = Decision.CONTINUE, Decision.STOP, Decision.COMPLETE


# --------------------------------------------------------------------------- rung levels

@pytest.mark.parametrize(("max_t", "grace", "eta", "expected"), [
    (81, 1, 3, [1, 3, 9, 27, 81]),
    (56, 1, 3, [1, 3, 9, 27, 56]),
    (20, 2, 2, [2, 4, 8, 16, 20]),
    # eta as the config passes it (a float) must give the same levels
    (81, 1, 3.0, [1, 3, 9, 27, 81]),
])
def test_geometric_rung_levels(max_t, grace, eta, expected):
    assert rung_levels(max_t, grace, eta) == expected


def test_geometric_rung_levels_never_exceed_max_and_end_with_it():
    levels = rung_levels(100, 1, 3)
    assert levels == [1, 3, 9, 27, 81, 100]
    assert levels == sorted(set(levels))


def test_explicit_rung_levels_get_max_appended():
    assert rung_levels(27, 1, 3, [2, 5]) == [2, 5, 27]


def test_explicit_rung_levels_ending_at_max_keep_it_once():
    assert rung_levels(27, 1, 3, [2, 5, 27]) == [2, 5, 27]


def test_explicit_rung_levels_ignore_grace_and_eta():
    assert rung_levels(10, 4, 2, [1, 7]) == [1, 7, 10]


# --------------------------------------------------------------------------- quantile

QS = [1 / 2, 1 / 3, 2 / 3, 1 / 4, 3 / 4]

finite_floats = st.floats(min_value=-1e300, max_value=1e300, allow_nan=False, allow_infinity=False)
small_int_floats = st.integers(min_value=-3, max_value=3).map(float)  # many ties
value_lists = st.one_of(
    st.lists(finite_floats, min_size=1, max_size=40),
    st.lists(small_int_floats, min_size=1, max_size=40),
    st.lists(st.one_of(small_int_floats, st.floats(min_value=-5, max_value=5)), min_size=1, max_size=40),
)


@settings(max_examples=400, deadline=None)
@given(values=value_lists, q=st.sampled_from(QS))
def test_quantile_sorted_equals_numpy_bit_for_bit(values, q):
    values = sorted(values)
    expected = float(np.quantile(np.array(values, dtype=float), q))
    assert quantile_sorted(values, q) == expected


@settings(max_examples=100, deadline=None)
@given(values=st.lists(small_int_floats, min_size=1, max_size=40), q=st.sampled_from(QS))
def test_quantile_sorted_on_a_sorted_list_container(values, q):
    """The scheduler passes a SortedList, not a list: same result."""
    expected = float(np.quantile(np.array(sorted(values)), q))
    assert quantile_sorted(SortedList(values), q) == expected


@pytest.mark.parametrize(("values", "q", "expected"), [
    ([5.0], 1 / 3, 5.0),                 # a single value is every quantile
    ([1.0, 3.0], 0.5, 2.0),              # index 0.5: halfway
    ([1.0, 2.0, 3.0, 4.0, 5.0], 0.25, 2.0),  # index 1.0 exactly
    ([1.0, 2.0, 3.0, 4.0, 5.0], 0.75, 4.0),  # index 3.0 exactly
    ([0.0, 4.0, 8.0], 0.25, 2.0),        # index 0.5
    ([2.0, 2.0, 2.0], 1 / 3, 2.0),       # all ties
])
def test_quantile_sorted_hand_worked(values, q, expected):
    assert quantile_sorted(values, q) == expected


# --------------------------------------------------------------------------- stopping ASHA

def asha(mode: str, eta: float = 3, levels=(1, 3, 9, 27)) -> StoppingAsha:
    return StoppingAsha(list(levels), eta, mode)


def test_first_value_at_a_rung_continues_whatever_it_is():
    for mode, value in [("min", 1e9), ("max", -1e9)]:
        s = asha(mode)
        out = s.on_report("a", 1, value)
        assert out == Outcome(CONTINUE, rung=1, cutoff=None)
        assert list(s.rungs[0]) == [value]


def test_min_mode_hand_worked_stream_eta3():
    """q = 1/3. Values arrive at rung 1 in this order."""
    s = asha("min")
    assert s.on_report("a", 1, 0.5) == Outcome(CONTINUE, rung=1)
    # P = [0.5]: the cutoff is 0.5; 0.9 > 0.5 stops.
    out = s.on_report("b", 1, 0.9)
    assert (out.decision, out.rung, out.cutoff) == (STOP, 1, 0.5)
    # P = [0.5, 0.9] (the stopped 0.9 joined): index 1/3 -> 0.5 + 0.4/3 = 0.6333...
    # 0.6 <= 0.6333 continues. Had 0.9 not joined, P = [0.5], cutoff 0.5, and 0.6 would stop.
    out = s.on_report("c", 1, 0.6)
    assert out.decision == CONTINUE
    assert out.cutoff == pytest.approx(0.5 + 0.4 / 3, rel=1e-12)
    # P = [0.5, 0.6, 0.9]: index 2/3 -> 0.5 + 0.1 * 2/3 = 0.56666...; 0.6 > that stops.
    out = s.on_report("d", 1, 0.6)
    assert out.decision == STOP
    assert out.cutoff == pytest.approx(0.5 + 0.1 * 2 / 3, rel=1e-12)
    # P = [0.5, 0.6, 0.6, 0.9]: index 1.0 -> 0.6 exactly; 0.6 == cutoff continues (strict).
    out = s.on_report("e", 1, 0.6)
    assert (out.decision, out.cutoff) == (CONTINUE, 0.6)
    # P = [0.5, 0.6, 0.6, 0.6, 0.9]: index 4/3 -> between 0.6 and 0.6 -> 0.6; 0.61 stops.
    out = s.on_report("f", 1, 0.61)
    assert (out.decision, out.cutoff) == (STOP, 0.6)
    assert list(s.rungs[0]) == [0.5, 0.6, 0.6, 0.6, 0.61, 0.9]


def test_max_mode_hand_worked_stream_eta3():
    """q = 1 - 1/3 = 2/3: the cutoff is a high quantile, and lower values stop."""
    s = asha("max")
    assert s.on_report("a", 1, 0.5).decision == CONTINUE
    # P = [0.5]: cutoff 0.5; 0.2 < 0.5 stops.
    out = s.on_report("b", 1, 0.2)
    assert (out.decision, out.cutoff) == (STOP, 0.5)
    # P = [0.2, 0.5]: index 2/3 -> 0.2 + 0.3 * 2/3 = 0.4; 0.45 >= 0.4 continues.
    # Without the stopped 0.2 in P, the cutoff would be 0.5 and 0.45 would stop.
    out = s.on_report("c", 1, 0.45)
    assert out.decision == CONTINUE
    assert out.cutoff == pytest.approx(0.4, rel=1e-12)
    # P = [0.2, 0.45, 0.5]: index 4/3 -> 0.45 + 0.05/3 = 0.46666...; 0.4 stops.
    out = s.on_report("d", 1, 0.4)
    assert out.decision == STOP
    assert out.cutoff == pytest.approx(0.45 + 0.05 / 3, rel=1e-12)
    # A high value continues.
    out = s.on_report("e", 1, 0.99)
    assert out.decision == CONTINUE
    assert list(s.rungs[0]) == [0.2, 0.4, 0.45, 0.5, 0.99]


@pytest.mark.parametrize("mode", ["min", "max"])
def test_value_equal_to_cutoff_continues_in_both_modes(mode):
    """eta 2: q = 1/2 either way, so every cutoff here is exact. P = [1, 3] -> cutoff 2."""
    s = asha(mode, eta=2, levels=(1, 2, 4))
    s.on_report("a", 1, 1.0)
    s.on_report("b", 1, 3.0)  # P=[1]: min stops 3, max continues; either way 3 joins
    out = s.on_report("c", 1, 2.0)
    assert (out.decision, out.cutoff) == (CONTINUE, 2.0)
    # P = [1, 2, 3]: cutoff 2 again; equal continues, a hair worse stops.
    assert s.on_report("d", 1, 2.0) == Outcome(CONTINUE, rung=1, cutoff=2.0)
    worse = 2.0 + 1e-9 if mode == "min" else 2.0 - 1e-9
    # P = [1, 2, 2, 3]: index 1.5 between 2 and 2 -> 2.
    assert s.on_report("e", 1, worse) == Outcome(STOP, rung=1, cutoff=2.0)


def test_many_ties_at_the_rung():
    s = asha("min")
    for i in range(4):
        # P all 2.0 -> cutoff 2.0 -> 2.0 continues every time
        out = s.on_report(f"t{i}", 1, 2.0)
        assert out.decision == CONTINUE
        if i:
            assert out.cutoff == 2.0
    assert s.on_report("worse", 1, 2.0000001) == Outcome(STOP, rung=1, cutoff=2.0)
    assert s.on_report("better", 1, 1.9999999).decision == CONTINUE


def test_eta4_cutoffs_min_and_max():
    """P = [1, 2, 3, 4, 5]: min q=1/4 -> index 1 -> 2.0; max q=3/4 -> index 3 -> 4.0."""
    for mode, cutoff, ok, bad in [("min", 2.0, 2.0, 2.5), ("max", 4.0, 4.0, 3.5)]:
        for probe, decision in [(ok, CONTINUE), (bad, STOP)]:
            s = asha(mode, eta=4, levels=(1, 4, 16))
            for i, v in enumerate([3.0, 1.0, 5.0, 2.0, 4.0]):
                s.on_report(f"p{i}", 1, v)
            assert s.on_report("probe", 1, probe) == Outcome(decision, rung=1, cutoff=cutoff)


def test_cutoff_uses_only_the_reports_rung():
    s = asha("min")
    s.on_report("a", 1, 0.1)
    s.on_report("a", 3, 0.1)
    s.on_report("b", 1, 0.2)   # P=[0.1]: stop, joins rung 1
    # c's value at rung 3 is compared only with rung 3's [0.1], not with rung 1's values.
    s.on_report("c", 1, 0.05)
    out = s.on_report("c", 3, 0.15)
    assert (out.decision, out.rung, out.cutoff) == (STOP, 3, 0.1)
    assert list(s.rungs[0]) == [0.05, 0.1, 0.2]
    assert list(s.rungs[1]) == [0.1, 0.15]


@pytest.mark.parametrize("mode", ["min", "max"])
def test_report_at_or_above_max_t_completes(mode):
    s = asha(mode)
    s.on_report("a", 1, 0.5)
    # Even a value that would lose at a rung completes at max_t.
    terrible = 1e9 if mode == "min" else -1e9
    assert s.on_report("a", 27, terrible) == Outcome(COMPLETE, rung=27)
    assert s.on_report("b", 30, terrible).decision == COMPLETE
    assert s.on_report("c", 27, float("nan")).decision == COMPLETE
    # Nothing was recorded for max_t (there is no rung there) and rung 1 is untouched.
    assert len(s.rungs) == 3
    assert list(s.rungs[0]) == [0.5]


def test_reports_between_rungs_only_continue():
    s = asha("min")
    # below the first rung
    assert s.on_report("a", 0.5, 100.0) == Outcome(CONTINUE)
    assert s.on_report("a", 1, 0.5) == Outcome(CONTINUE, rung=1)
    s.on_report("b", 1, 0.4)
    # between rungs 1 and 3: no judgment however bad, nothing recorded
    assert s.on_report("a", 2, 1e9) == Outcome(CONTINUE)
    assert s.on_report("a", 2.5, 1e9) == Outcome(CONTINUE)
    assert [list(r) for r in s.rungs] == [[0.4, 0.5], [], []]


def test_trial_jumping_over_rungs_is_judged_at_the_highest_rung_reached():
    s = asha("min")
    s.on_report("x", 1, 0.3)
    s.on_report("x", 3, 0.3)
    s.on_report("x", 9, 0.1)  # rung 9 now holds [0.1]
    # The jumper reports at 2: judged at rung 1 (P = [0.3], 0.2 <= 0.3 continues) ...
    assert s.on_report("j", 2, 0.2) == Outcome(CONTINUE, rung=1, cutoff=0.3)
    assert list(s.rungs[0]) == [0.2, 0.3]
    # ... then at 10: judged at rung 9 (cutoff = the single value 0.1), not at rung 3.
    out = s.on_report("j", 10, 0.5)
    assert (out.decision, out.rung, out.cutoff) == (STOP, 9, 0.1)
    assert list(s.rungs[1]) == [0.3]        # rung 3 never saw j
    assert list(s.rungs[2]) == [0.1, 0.5]
    # and later reports below the next rung are not judged again at 9 or 3
    assert s.on_report("j", 11, 0.0) == Outcome(CONTINUE)
    assert list(s.rungs[1]) == [0.3] and list(s.rungs[2]) == [0.1, 0.5]


def test_jump_judged_at_rung_not_at_lower_rungs_decision_differs():
    """Rung 3 holds a low value that would stop j; rung 9 is empty, so j continues there."""
    s = asha("min")
    s.on_report("x", 3, 0.0)   # first at 3 (x skipped 1, fine)
    s.on_report("j", 1, 0.5)
    out = s.on_report("j", 10, 0.5)
    assert out == Outcome(CONTINUE, rung=9, cutoff=None)
    assert list(s.rungs[1]) == [0.0]
    assert list(s.rungs[2]) == [0.5]


def test_trial_judged_at_most_once_per_rung():
    s = asha("min")
    s.on_report("a", 3, 0.1)
    assert s.on_report("b", 3, 0.5) == Outcome(STOP, rung=3, cutoff=0.1)
    # Further reports of b that still sit at rung 3's level range are not judged again.
    assert s.on_report("b", 4, 0.5) == Outcome(CONTINUE)
    assert s.on_report("b", 8.9, 0.5) == Outcome(CONTINUE)
    assert list(s.rungs[1]) == [0.1, 0.5]
    # A different trial is judged as usual (and b's value counts).
    out = s.on_report("c", 3, 0.3)   # P=[0.1, 0.5]: 0.1 + 0.4/3 = 0.2333 -> stop
    assert out.decision == STOP
    assert out.cutoff == pytest.approx(0.1 + 0.4 / 3, rel=1e-12)


def test_nan_stops_and_does_not_enter_the_rung():
    s = asha("min")
    # NaN as the very first value at a rung also stops.
    assert s.on_report("n0", 1, float("nan")).decision == STOP
    assert len(s.rungs[0]) == 0
    s.on_report("a", 1, 1.0)
    s.on_report("b", 1, 3.0)
    out = s.on_report("n1", 1, float("nan"))
    assert out.decision == STOP and out.rung == 1
    assert list(s.rungs[0]) == [1.0, 3.0]
    # The next cutoff is that of [1, 3] (q=1/3 -> 1 + 2/3), not disturbed by a NaN.
    out = s.on_report("c", 1, 1.5)
    assert out.decision == CONTINUE
    assert out.cutoff == pytest.approx(1 + 2 / 3, rel=1e-12)
    assert not math.isnan(out.cutoff)


def test_nan_stops_in_max_mode_too():
    s = asha("max")
    s.on_report("a", 1, 1.0)
    assert s.on_report("n", 1, float("nan")).decision == STOP
    assert list(s.rungs[0]) == [1.0]


def test_same_reports_same_decisions():
    stream = [("a", 1, 0.5), ("b", 1, 0.7), ("c", 1, 0.4), ("a", 3, 0.3), ("c", 3, 0.35),
              ("d", 2, 0.6), ("a", 9, 0.2), ("c", 10, 0.25), ("a", 27, 0.1)]
    runs = []
    for _ in range(2):
        s = asha("min")
        runs.append([s.on_report(*r) for r in stream])
    assert runs[0] == runs[1]


def test_rungs_are_sorted_lists():
    """O(log n) per report comes from a SortedList per rung (structure, not timing)."""
    s = asha("min")
    for i, v in enumerate([5.0, 1.0, 3.0]):
        s.on_report(f"t{i}", 1, v)
    assert len(s.rungs) == 3  # one per level below max_t
    assert all(isinstance(rung, SortedList) for rung in s.rungs)


# --------------------------------------------------------------------------- FIFO

def test_fifo_continues_below_max_and_completes_at_or_above():
    s = FifoScheduler(max_t=10, mode="min")
    assert s.on_report("a", 1, 1e9).decision == CONTINUE
    assert s.on_report("a", 9.99, float("nan")).decision == CONTINUE
    assert s.on_report("a", 10, 0.5) == Outcome(COMPLETE, rung=10)
    assert s.on_report("b", 11, 0.5).decision == COMPLETE
    s_max = FifoScheduler(max_t=3, mode="max")
    assert s_max.on_report("a", 2, -1e9).decision == CONTINUE
    assert s_max.on_report("a", 3, -1e9).decision == COMPLETE
