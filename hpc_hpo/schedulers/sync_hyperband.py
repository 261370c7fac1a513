"""Synchronous Hyperband (Li et al. 2017; Polyaxon's max_iterations and eta), its exact bracket plan.

With rung levels L_0 < ... < L_smax (the last is max_t), bracket s (s_max first, down to 0) starts
n = ceil((s_max+1)/(s+1) * eta**s) configs and runs, at stage i = 0..s, the best
floor(n * eta**-i) of them to level L_(s_max-s+i). For levels 1, 3, 9, 27, 81 and eta 3:
s=4: 81@1, 27@3, 9@9, 3@27, 1@81; s=3: 34@3, 11@9, 3@27, 1@81; s=2: 15@9, 5@27, 1@81;
s=1: 8@27, 2@81; s=0: 5@81.

A stage ends when each of its trials has reported at the stage level or ended. Then the best of
them (ties: the earlier report) are resumed one by one from their checkpoints as they are paused;
the rest stay paused for good, which is synchronous successive halving's stop. Brackets run one
after another; after the last one the scheduler is DONE.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from .base import DONE, WAIT, Action, Branch, Decision, Outcome, Resume, Scheduler, StartNew
from .brackets import hyperband_sizes


@dataclass(frozen=True)
class Stage:
    bracket: int  # s: the number of halvings in its bracket
    index: int  # i: 0 .. s
    configs: int  # n_i
    level: float  # the resource every config of the stage runs to


def hyperband_plan(levels: list[float], reduction_factor: float) -> list[list[Stage]]:
    """The brackets in the order they run (s_max first), each the list of its stages."""
    s_max = len(levels) - 1
    sizes = hyperband_sizes(levels, reduction_factor)  # indexed by b = s_max - s
    eta = Fraction(reduction_factor)
    plan = []
    for s in range(s_max, -1, -1):
        n = sizes[s_max - s]
        plan.append([Stage(s, i, math.floor(n / eta ** i), levels[s_max - s + i]) for i in range(s + 1)])
    return plan


class SyncHyperband(Scheduler):
    def __init__(self, levels: list[float], reduction_factor: float, mode: str) -> None:
        super().__init__(max_t=levels[-1], mode=mode)
        self.stages = [stage for bracket in hyperband_plan(levels, reduction_factor) for stage in bracket]
        self.position = 0  # index into self.stages of the stage running now
        self.members: list[str] = []  # trials of the current stage, in the order they joined it
        self.results: dict[str, tuple[float, int]] = {}  # trial -> (loss, arrival) at the stage level
        self.ended: set[str] = set()  # members that ended without a result
        self.to_resume: list[str] = []  # chosen for the current stage, not yet resumed
        self.paused: set[str] = set()
        self.previous_level: float = 0
        self.arrivals = 0

    @property
    def stage(self) -> Stage | None:
        return self.stages[self.position] if self.position < len(self.stages) else None

    def next_action(self, trial_index: int) -> Action:
        stage = self.stage
        if stage is None:
            return DONE
        if stage.index == 0 and len(self.members) < stage.configs:
            return StartNew(target=stage.level, bracket=stage.bracket)
        for trial_id in self.to_resume:
            if trial_id in self.paused:
                return Resume(trial_id, resume_from=self.previous_level, target=stage.level)
        return WAIT

    def on_start(self, trial_id: str, action: StartNew | Resume | Branch) -> None:
        if isinstance(action, Resume):
            self.to_resume.remove(trial_id)
            self.paused.discard(trial_id)
        self.members.append(trial_id)

    def on_report(self, trial_id: str, resource: float, value: float) -> Outcome:
        stage = self.stage
        if stage is None or trial_id not in self.members or resource < stage.level:
            return Outcome(Decision.CONTINUE)
        if trial_id not in self.results:
            loss = value if self.mode == "min" else -value
            self.results[trial_id] = (math.inf if math.isnan(value) else loss, self.arrivals)
            self.arrivals += 1
        decision = Decision.COMPLETE if resource >= self.max_t else Decision.PAUSE
        self._maybe_next_stage()
        return Outcome(decision, rung=stage.level)

    def on_paused(self, trial_id: str) -> None:
        self.paused.add(trial_id)

    def on_trial_end(self, trial_id: str) -> None:
        self.paused.discard(trial_id)
        if trial_id in self.to_resume:
            self.to_resume.remove(trial_id)
        if trial_id in self.members and trial_id not in self.results:
            self.ended.add(trial_id)
            self._maybe_next_stage()

    def _maybe_next_stage(self) -> None:
        """Once every member of a fully started stage has a result or has ended, choose the next stage's."""
        stage = self.stage
        if stage is None or len(self.members) < stage.configs or self.to_resume:
            return
        if any(t not in self.results and t not in self.ended for t in self.members):
            return
        ranked = sorted((t for t in self.members if t in self.results), key=lambda t: self.results[t])
        self.position += 1
        self.previous_level = stage.level
        following = self.stage
        if following is not None and following.index > 0:
            self.to_resume = ranked[:following.configs]
            if not self.to_resume:  # everybody failed: the bracket is over
                self._skip_rest_of_bracket()
        self.members, self.results, self.ended = [], {}, set()
        self._promote_into_stage()

    def _promote_into_stage(self) -> None:
        """A stage whose configs are chosen starts counting them as members only as they resume."""
        stage = self.stage
        if stage is not None and stage.index > 0:
            # Members join in on_start(Resume); the stage is 'fully started' when all chosen ones have.
            self.stages[self.position] = Stage(stage.bracket, stage.index, len(self.to_resume), stage.level)

    def _skip_rest_of_bracket(self) -> None:
        while self.stage is not None and self.stage.index > 0:
            self.position += 1
