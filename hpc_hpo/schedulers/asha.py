"""Stopping ASHA (asynchronous successive halving), exactly as DESIGN.md states the rule.

Each rung keeps its values in a SortedList, so a report costs O(log n) in the number of
trials: one bisect to find the rung, two indexed lookups for the cutoff, one insertion.
"""
from __future__ import annotations

import bisect
import math

from sortedcontainers import SortedList

from .base import Decision, Outcome, Scheduler, quantile_sorted


class StoppingAsha(Scheduler):
    def __init__(self, levels: list[float], reduction_factor: float, mode: str) -> None:
        super().__init__(max_t=levels[-1], mode=mode)
        self.levels = levels  # the last level is max_t
        self.eta = reduction_factor
        self.rungs: list[SortedList] = [SortedList() for _ in levels[:-1]]
        self.next_rung: dict[str, int] = {}  # per trial: index of the first rung not yet reached
        # The kept share is the best 1/eta: the low quantile for min, the high one for max.
        self.q = 1 / reduction_factor if mode == "min" else 1 - 1 / reduction_factor

    def on_report(self, trial_id: str, resource: float, value: float) -> Outcome:
        if resource >= self.max_t:
            return Outcome(Decision.COMPLETE, rung=self.max_t)
        # The highest rung at or below this resource; a report that jumps over rungs
        # (a trial reporting every few epochs) is judged at the highest rung it reached.
        reached = bisect.bisect_right(self.levels, resource) - 1
        first_open = self.next_rung.get(trial_id, 0)
        if reached < first_open:
            return Outcome(Decision.CONTINUE)
        self.next_rung[trial_id] = reached + 1
        return self._judge(reached, value)

    def _judge(self, rung_index: int, value: float) -> Outcome:
        rung = self.rungs[rung_index]
        level = self.levels[rung_index]
        if math.isnan(value):
            # NaN is worse than anything: stop it, and keep it out of the rung so cutoffs stay numbers.
            return Outcome(Decision.STOP, rung=level)
        if not rung:
            rung.add(value)
            return Outcome(Decision.CONTINUE, rung=level)
        cutoff = quantile_sorted(rung, self.q)
        worse = value > cutoff if self.mode == "min" else value < cutoff
        rung.add(value)
        return Outcome(Decision.STOP if worse else Decision.CONTINUE, rung=level, cutoff=cutoff)

    def on_trial_end(self, trial_id: str) -> None:
        self.next_rung.pop(trial_id, None)
