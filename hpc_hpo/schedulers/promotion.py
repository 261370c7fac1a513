"""Promotion ASHA (Li et al. 2018): trials pause at rungs; a free slot promotes the best paused trial.

A trial runs only up to its next rung. When a slot frees up, rungs are scanned from the top: a
paused trial is promoted iff it is among the best floor(n/eta) of the n values recorded at its rung
and was not promoted from that rung before; otherwise a new config starts. Nobody waits for
stragglers. A trial that reaches its rung while it would itself be the pick continues at once
(PROMOTE) instead of pausing and being resumed.

Each rung keeps all its values and its promotable candidates in SortedLists of
(loss, arrival, trial_id): the best candidate is promotable iff its rank among all values is below
floor(n/eta), so a report or a look-up costs O(log n) per rung, and there are O(log max_t) rungs.
Ties go to the earlier arrival.
"""
from __future__ import annotations

import bisect
import math

from sortedcontainers import SortedList

from .base import Action, Branch, Decision, Outcome, Resume, Scheduler, StartNew

Key = tuple[float, int, str]  # (loss: lower is better, arrival order, trial id)


class PromotionAsha(Scheduler):
    def __init__(self, levels: list[float], reduction_factor: float, mode: str) -> None:
        super().__init__(max_t=levels[-1], mode=mode)
        self.levels = levels  # the last level is max_t
        self.eta = reduction_factor
        self.values: list[SortedList] = [SortedList() for _ in levels[:-1]]
        self.candidates: list[SortedList] = [SortedList() for _ in levels[:-1]]
        self.keys: dict[tuple[str, int], Key] = {}  # (trial, rung) -> its key there
        self.target_rung: dict[str, int] = {}  # index of the level the trial's current run goes to
        self.pausing_at: dict[str, int] = {}  # told to PAUSE at this rung, not yet exited
        self.arrivals = 0

    def next_action(self, trial_index: int) -> Action:
        pick = self._pick()
        if pick is None:
            return StartNew(target=self.levels[0])
        trial_id, rung = pick
        return Resume(trial_id, resume_from=self.levels[rung], target=self.levels[rung + 1])

    def on_start(self, trial_id: str, action: StartNew | Resume | Branch) -> None:
        if isinstance(action, Resume):
            rung = self.levels.index(action.resume_from)
            self.candidates[rung].discard(self.keys[(trial_id, rung)])
            self.target_rung[trial_id] = rung + 1
        else:
            self.target_rung[trial_id] = 0

    def on_report(self, trial_id: str, resource: float, value: float) -> Outcome:
        if resource >= self.max_t:
            return Outcome(Decision.COMPLETE, rung=self.max_t)
        rung = bisect.bisect_right(self.levels, resource) - 1
        if rung < self.target_rung.get(trial_id, 0):
            return Outcome(Decision.CONTINUE)
        loss = value if self.mode == "min" else -value
        key: Key = (math.inf if math.isnan(value) else loss, self.arrivals, trial_id)
        self.arrivals += 1
        self.keys[(trial_id, rung)] = key
        self.values[rung].add(key)
        if self._pick(reporting=(trial_id, rung)) == (trial_id, rung):
            self.target_rung[trial_id] = rung + 1
            return Outcome(Decision.PROMOTE, rung=self.levels[rung], target=self.levels[rung + 1])
        self.pausing_at[trial_id] = rung
        return Outcome(Decision.PAUSE, rung=self.levels[rung])

    def on_paused(self, trial_id: str) -> None:
        rung = self.pausing_at.pop(trial_id)
        self.candidates[rung].add(self.keys[(trial_id, rung)])

    def on_trial_end(self, trial_id: str) -> None:
        """Gone for good: never a candidate again (its values stay: they still shape the rungs)."""
        self.pausing_at.pop(trial_id, None)
        for rung in range(len(self.candidates)):
            key = self.keys.get((trial_id, rung))
            if key is not None:
                self.candidates[rung].discard(key)

    def _pick(self, reporting: tuple[str, int] | None = None) -> tuple[str, int] | None:
        """The trial a free slot would resume: scan rungs from the top; at each, the best candidate
        (the reporting trial counts as one at its rung) is promotable iff it ranks in the top floor(n/eta)."""
        for rung in range(len(self.candidates) - 1, -1, -1):
            best = self.candidates[rung][0] if self.candidates[rung] else None
            if reporting is not None and reporting[1] == rung:
                mine = self.keys[reporting]
                best = mine if best is None or mine < best else best
            if best is None:
                continue
            top = int(math.floor(len(self.values[rung]) / self.eta))
            if self.values[rung].bisect_left(best) < top:
                return best[2], rung
        return None
