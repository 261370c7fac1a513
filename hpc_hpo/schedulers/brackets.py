"""Asynchronous Hyperband's brackets, shared by stopping ASHA and promotion ASHA.

Bracket b (0 .. B-1) starts at levels[b]: its trials are first judged there, and bracket 0 is
plain successive halving from the grace period. A new trial's bracket is drawn with probability
proportional to the number of configs synchronous Hyperband would start in that bracket, so the
asynchronous schedule spends its budget across brackets as Hyperband does:

    s_max = len(levels) - 1                 (halvings in bracket 0)
    s     = s_max - b                       (halvings in bracket b)
    n_s   = ceil((s_max + 1) / (s + 1) * eta**s)

normalised over the B brackets in use. Levels 1, 3, 9, 27, 81 with eta 3 give 81, 34, 15, 8, 5.

Every bracket's rungs are the same levels (bracket b simply has none below levels[b]), so the share
kept at a rung is that level's q_j = levels[j] / levels[j + 1] in every bracket (base.promotion_quantiles).

The draw for trial index i uses np.random.default_rng([seed, i]) and nothing else, so a restarted
driver that asks again for the same index gets the same bracket.
"""
from __future__ import annotations

import bisect
import itertools
import math
from fractions import Fraction
from typing import Sequence

import numpy as np


def hyperband_sizes(levels: Sequence[float], reduction_factor: float) -> list[int]:
    """n_s for every bracket b = 0 .. len(levels) - 1 (the last one starts at max_t: no halving).

    Exact rational arithmetic: in floats, 11/9 * 3**8 is 8019.000000000001, and its ceiling 8020
    instead of 8019 (11 levels, eta 3, bracket 2).
    """
    eta = Fraction(reduction_factor)
    s_max = len(levels) - 1
    return [math.ceil(Fraction(s_max + 1, s + 1) * eta ** s) for s in range(s_max, -1, -1)]


def check_brackets(levels: Sequence[float], brackets: int) -> None:
    """1 bracket always works; B > 1 needs B <= len(levels) - 1, so that every bracket has a rung below max_t."""
    if brackets < 1:
        raise ValueError(f"brackets = {brackets}: must be at least 1")
    if brackets > 1 and brackets > len(levels) - 1:
        raise ValueError(f"brackets = {brackets}: must be at most the number of rung levels below max_t "
                         f"({len(levels) - 1} for levels {list(levels)}); lower brackets, or add rung levels")


def bracket_probabilities(levels: Sequence[float], reduction_factor: float, brackets: int) -> list[float]:
    """P(bracket b) for b < brackets: Hyperband's n_s for those brackets, normalised."""
    check_brackets(levels, brackets)
    sizes = hyperband_sizes(levels, reduction_factor)[:brackets]
    total = sum(sizes)
    return [size / total for size in sizes]


class Brackets:
    """Which bracket a new trial joins, where it starts, and which rung system records its values."""

    def __init__(self, levels: Sequence[float], reduction_factor: float, brackets: int = 1,
                 rung_system_per_bracket: bool = True, seed: int = 0) -> None:
        check_brackets(levels, brackets)
        self.count = brackets
        self.per_bracket = rung_system_per_bracket
        self.seed = seed
        sizes = hyperband_sizes(levels, reduction_factor)[:brackets]
        self.total = sum(sizes)
        self.cumulative = list(itertools.accumulate(sizes))  # integers: the draw is u * total against these

    @property
    def num_systems(self) -> int:
        """One rung system per bracket, or one shared by all (brackets then only shift the first rung)."""
        return self.count if self.per_bracket else 1

    def system(self, bracket: int) -> int:
        return bracket if self.per_bracket else 0

    def check(self, bracket: int) -> int:
        if not 0 <= bracket < self.count:
            raise ValueError(f"bracket {bracket} is out of range: this scheduler has {self.count} bracket(s)")
        return bracket

    def draw(self, trial_index: int) -> int:
        """The bracket of the new trial with this index: deterministic in (seed, trial_index)."""
        if self.count == 1:
            return 0
        u = np.random.default_rng([self.seed, trial_index]).random()
        return bisect.bisect_right(self.cumulative, u * self.total)
