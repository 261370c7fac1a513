"""Synchronous Hyperband (Li et al. 2017; Polyaxon's max_iterations and eta), its exact bracket plan.

With rung levels L_0 < ... < L_smax (the last is max_t), bracket s (s_max first, down to 0) starts
n = ceil((s_max+1)/(s+1) * eta**s) configs and runs, at stage i = 0..s, the best
floor(n * eta**-i) of them to level L_(s_max-s+i). For levels 1, 3, 9, 27, 81 and eta 3:
s=4: 81@1, 27@3, 9@9, 3@27, 1@81; s=3: 34@3, 11@9, 3@27, 1@81; s=2: 15@9, 5@27, 1@81;
s=1: 8@27, 2@81; s=0: 5@81.

Each bracket is synchronous successive halving: a stage ends when each of its trials has reported at
the stage level or ended. Then the best of them (ties: the earlier report) are resumed one by one
from their checkpoints as they are paused; the rest stay paused for good, which is synchronous
successive halving's stop.

Brackets overlap, so that no worker idles at a barrier: a free slot goes to the first bracket, in
plan order, that has something to run now (a chosen trial that is paused and can resume, or a config
still to start), and a bracket's configs start only once every earlier bracket has started all of its
first stage. So the earliest unfinished bracket always comes first, and a later bracket only takes
slots the earlier ones cannot use. `overlap=False` runs the brackets one after another (the classic
schedule; the benchmark's "before").

The plan runs `repeat` times (Li et al.'s outer loop; null: until the budget ends): a pass's brackets
join once every bracket of the passes before has started its first stage, so the next pass fills the
slots the last pass's long single-config stages leave idle. After the last pass's last stage the
scheduler is DONE.

StartNew carries the bracket of the new config, so on_start, live or replayed from the journal, knows
where the trial belongs: s in the first pass, s + k * (s_max + 1) in pass k.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
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


@dataclass
class _Bracket:
    """One bracket's progress through its stages: synchronous successive halving on its own."""

    stages: list[Stage]
    ident: int  # the bracket number its StartNew carries: s, plus (s_max + 1) per pass before
    position: int = 0  # index into stages of the stage running now
    expected: int = 0  # members the current stage waits for: its configs, or the trials chosen for it
    members: list[str] = field(default_factory=list)  # trials of the current stage, in the order they joined
    results: dict[str, tuple[float, int]] = field(default_factory=dict)  # trial -> (loss, arrival) at the level
    ended: set[str] = field(default_factory=set)  # members that ended (a result or not): never resumed
    to_resume: list[str] = field(default_factory=list)  # chosen for the current stage, not yet resumed
    previous_level: float = 0

    def __post_init__(self) -> None:
        self.expected = self.stages[0].configs

    @property
    def stage(self) -> Stage | None:
        return self.stages[self.position] if self.position < len(self.stages) else None

    @property
    def done(self) -> bool:
        return self.position >= len(self.stages)

    @property
    def starting(self) -> bool:
        """Still starting the configs of its first stage."""
        return self.position == 0 and len(self.members) < self.expected

    def resumable(self, paused: set[str]) -> Resume | None:
        """The first chosen trial that has exited at its pause, to run on to this stage's level."""
        stage = self.stage
        for trial_id in self.to_resume:
            if trial_id in paused:
                return Resume(trial_id, resume_from=self.previous_level, target=stage.level)
        return None

    def stage_over(self) -> bool:
        if len(self.members) < self.expected:
            return False
        return all(t in self.results or t in self.ended for t in self.members)

    def advance(self) -> None:
        """The stage is over: choose the best for the next stage, or end the bracket."""
        # A trial that ended after its result cannot resume: it is not chosen.
        ranked = sorted((t for t in self.members if t in self.results and t not in self.ended),
                        key=lambda t: self.results[t])
        self.previous_level = self.stage.level
        self.position += 1
        self.members, self.results, self.ended = [], {}, set()
        following = self.stage
        if following is None:
            return
        self.to_resume = ranked[:following.configs]
        self.expected = len(self.to_resume)
        if not self.to_resume:  # everybody failed: the bracket is over
            self.position = len(self.stages)


class SyncHyperband(Scheduler):
    def __init__(self, levels: list[float], reduction_factor: float, mode: str, overlap: bool = True,
                 repeat: int | None = 1) -> None:
        super().__init__(max_t=levels[-1], mode=mode)
        self.overlap = overlap
        self.plan = hyperband_plan(levels, reduction_factor)
        self.repeat = repeat  # passes of the plan; None: no end but the budget's
        self.passes = 0
        self.brackets: list[_Bracket] = []
        self.index_of_s: dict[int, int] = {}  # bracket number -> index in self.brackets
        self._add_pass()
        self.bracket_of: dict[str, _Bracket] = {}  # trials not ended -> their bracket
        self.paused: set[str] = set()
        self.arrivals = 0  # results recorded so far, over all brackets: the tie-break

    def next_action(self, trial_index: int) -> Action:
        for run in self.brackets:
            if run.done:
                continue
            resume = run.resumable(self.paused)
            if resume is not None:
                return resume
            if run.starting:
                return StartNew(target=run.stage.level, bracket=run.ident)
            if not self.overlap:
                return WAIT
        if self._more_passes():  # every bracket so far has started: the next pass may (a query: no state kept)
            first = self.plan[0][0]
            return StartNew(target=first.level, bracket=first.bracket + self.passes * len(self.plan))
        return DONE if all(run.done for run in self.brackets) else WAIT

    def _more_passes(self) -> bool:
        if self.repeat is not None and self.passes >= self.repeat:
            return False
        return self.overlap or all(run.done for run in self.brackets)

    def _add_pass(self) -> None:
        for stages in self.plan:
            ident = stages[0].bracket + self.passes * len(self.plan)
            self.index_of_s[ident] = len(self.brackets)
            self.brackets.append(_Bracket(stages, ident))
        self.passes += 1

    def on_start(self, trial_id: str, action: StartNew | Resume | Branch) -> None:
        if isinstance(action, Resume):
            run = self.bracket_of[trial_id]
            run.to_resume.remove(trial_id)
            self.paused.discard(trial_id)
        elif isinstance(action, StartNew):
            while action.bracket not in self.index_of_s and action.bracket >= self.passes * len(self.plan) \
                    and (self.repeat is None or self.passes < self.repeat):
                self._add_pass()  # the first config of a new pass (live, or replayed from the journal)
            if action.bracket not in self.index_of_s:
                raise ValueError(f"bracket {action.bracket} is not in this Hyperband plan "
                                 f"(brackets {sorted(self.index_of_s)})")
            run = self.brackets[self.index_of_s[action.bracket]]
            self.bracket_of[trial_id] = run
        else:
            raise ValueError(f"synchronous Hyperband does not branch trials (trial {trial_id})")
        run.members.append(trial_id)

    def on_report(self, trial_id: str, resource: float, value: float) -> Outcome:
        run = self.bracket_of.get(trial_id)
        stage = run.stage if run is not None else None
        if stage is None or trial_id not in run.members or resource < stage.level:
            return Outcome(Decision.CONTINUE)
        if trial_id not in run.results:
            loss = value if self.mode == "min" else -value
            run.results[trial_id] = (math.inf if math.isnan(value) else loss, self.arrivals)
            self.arrivals += 1
        decision = Decision.COMPLETE if resource >= self.max_t else Decision.PAUSE
        self._maybe_advance(run)
        return Outcome(decision, rung=stage.level)

    def on_paused(self, trial_id: str) -> None:
        self.paused.add(trial_id)

    def on_trial_end(self, trial_id: str) -> None:
        self.paused.discard(trial_id)
        run = self.bracket_of.pop(trial_id, None)
        if run is None:
            return
        if trial_id in run.to_resume:  # chosen, but gone before it resumed: it ends the stage without a result
            run.to_resume.remove(trial_id)
            run.members.append(trial_id)
        if trial_id in run.members:
            run.ended.add(trial_id)
            self._maybe_advance(run)

    def _maybe_advance(self, run: _Bracket) -> None:
        if not run.done and run.stage_over():
            run.advance()
