"""Stopping ASHA (asynchronous successive halving), exactly as DESIGN.md states the rule.

Each rung keeps its values in a SortedList, so a report costs O(log n) in the number of
trials: one bisect to find the rung, two indexed lookups for the cutoff, one insertion.

With brackets B > 1 this is asynchronous Hyperband (see brackets.py): a trial of bracket b is
first judged at levels[b] (its reports below that only continue), and its values go to its
bracket's own rungs (rung_system_per_bracket) or to rungs shared by all brackets. The bracket is
drawn in next_action and learnt in on_start; a trial never seen in on_start is in bracket 0, so
with one bracket the behaviour is exactly that of plain stopping ASHA.
"""
from __future__ import annotations

import bisect
import math

from sortedcontainers import SortedList

from .base import (Action, Branch, Decision, Outcome, Resume, Scheduler, StartNew, promotion_quantiles,
                   quantile_sorted)
from .brackets import Brackets


class StoppingAsha(Scheduler):
    def __init__(self, levels: list[float], reduction_factor: float, mode: str, brackets: int = 1,
                 rung_system_per_bracket: bool = True, seed: int = 0) -> None:
        super().__init__(max_t=levels[-1], mode=mode)
        self.levels = levels  # the last level is max_t
        self.eta = reduction_factor
        self.brackets = Brackets(levels, reduction_factor, brackets, rung_system_per_bracket, seed)
        # One list of rungs per rung system; `rungs` is bracket 0's (the only one with one bracket).
        self.systems: list[list[SortedList]] = [[SortedList() for _ in levels[:-1]]
                                                for _ in range(self.brackets.num_systems)]
        self.rungs = self.systems[0]
        self.bracket_of: dict[str, int] = {}  # trials of bracket 0 need no entry
        self.next_rung: dict[str, int] = {}  # per trial: index of the first rung not yet reached
        # The kept share at rung j is the best q_j = r_j / r_{j+1} (1/eta for geometric levels): the
        # cutoff is the low quantile q_j for min, the high one 1 - q_j for max.
        kept = [float(q) for q in promotion_quantiles(levels)]
        self.cutoff_quantiles = kept if mode == "min" else [1 - q for q in kept]

    def next_action(self, trial_index: int) -> Action:
        """Always a new trial, run through to max_t unless stopped; with brackets, in a drawn bracket."""
        return StartNew(target=self.max_t, bracket=self.brackets.draw(trial_index))

    def on_start(self, trial_id: str, action: StartNew | Resume | Branch) -> None:
        if isinstance(action, StartNew) and action.bracket:
            self.bracket_of[trial_id] = self.brackets.check(action.bracket)

    def on_report(self, trial_id: str, resource: float, value: float) -> Outcome:
        if resource >= self.max_t:
            return Outcome(Decision.COMPLETE, rung=self.max_t)
        # The highest rung at or below this resource; a report that jumps over rungs
        # (a trial reporting every few epochs) is judged at the highest rung it reached.
        reached = bisect.bisect_right(self.levels, resource) - 1
        bracket = self.bracket_of.get(trial_id, 0)
        first_open = self.next_rung.get(trial_id, bracket)  # bracket b is first judged at levels[b]
        if reached < first_open:
            return Outcome(Decision.CONTINUE)
        self.next_rung[trial_id] = reached + 1
        return self._judge(self.systems[self.brackets.system(bracket)], reached, value)

    def _judge(self, rungs: list[SortedList], rung_index: int, value: float) -> Outcome:
        rung = rungs[rung_index]
        level = self.levels[rung_index]
        if math.isnan(value):
            # NaN is worse than anything: stop it, and keep it out of the rung so cutoffs stay numbers.
            return Outcome(Decision.STOP, rung=level)
        if not rung:
            rung.add(value)
            return Outcome(Decision.CONTINUE, rung=level)
        cutoff = quantile_sorted(rung, self.cutoff_quantiles[rung_index])
        worse = value > cutoff if self.mode == "min" else value < cutoff
        rung.add(value)
        return Outcome(Decision.STOP if worse else Decision.CONTINUE, rung=level, cutoff=cutoff)

    def on_trial_end(self, trial_id: str) -> None:
        self.next_rung.pop(trial_id, None)
        self.bracket_of.pop(trial_id, None)
