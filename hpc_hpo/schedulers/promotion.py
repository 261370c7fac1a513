"""Promotion ASHA (Li et al. 2018) and PASHA (Bohdal et al. 2022): trials pause at rungs, and a free
slot resumes the best paused trial that has earned the next rung, or starts a new config.

The rules, exactly as implemented (levels from rung_levels(); the last is max_t; eta the reduction
factor; "loss" is the value for mode min and minus the value for mode max, so lower is better):

- A run goes only up to its next rung: a new trial of bracket b to levels[b], a resumed or promoted
  trial to the level after the rung it was at. Reports below the run's target only CONTINUE.
- The first report at or above the target is recorded at the highest rung level it reached (a
  trial reporting every few epochs can jump over rungs), and decided there:
  * the pick: scan the rungs from the top (below max_t) down; at each rung take the best candidate,
    where the candidates are the paused trials not yet promoted from it, plus this reporting
    trial at its own rung; it is promotable iff it is among the best floor(q_j * n) of the n values
    recorded at that rung j (every value ever recorded there counts: trials promoted, paused, ended),
    where q_j = levels[j] / levels[j + 1] (the seed's rule; 1/eta for geometric levels).
    The first promotable trial found is the pick. If the pick is this trial: PROMOTE, target = the
    next level, and it counts as promoted from that rung. Otherwise PAUSE.
  * a report at or above max_t COMPLETEs. A NaN at a rung STOPs the trial and is not recorded (as
    in stopping ASHA: a diverged run is never resumed and does not loosen the rung's quota).
- next_action makes the same scan over the paused trials (those whose on_paused came): the pick is
  resumed (Resume from the rung it paused at, to the next level); nobody promotable -> StartNew in
  a drawn bracket. Nobody waits for stragglers. A trial is resumed at most once from a rung (it
  leaves the candidates when resumed), and an ended trial is never a candidate.
- Ties: values at a rung compare as (loss, arrival): at equal values the one recorded there first
  (the earlier report) ranks ahead. Among rung systems (one per bracket) at the same level, the
  scan looks at bracket 0's first.
- Brackets (asynchronous Hyperband, see brackets.py): bracket b starts at levels[b]; each bracket
  keeps its own rungs (rung_system_per_bracket) or all share one set of rungs.

Cost: per rung a SortedList of all (loss, arrival, trial id) recorded there and a SortedList of its
candidates; the best candidate is promotable iff its rank (a bisect in the first) is below
floor(q_j * n). A report or a look-up is O(log n) per rung, times the (few) rungs and brackets.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

from sortedcontainers import SortedList

from .base import Action, Branch, Decision, Outcome, Resume, Scheduler, StartNew, kept_count, promotion_quantiles
from .brackets import Brackets

Key = tuple[float, int, str]  # (loss: lower is better, arrival order of the report, trial id)


@dataclass
class _Rung:
    values: SortedList = field(default_factory=SortedList)  # every Key recorded at this rung
    candidates: SortedList = field(default_factory=SortedList)  # paused here, not yet promoted from here


@dataclass
class _Trial:
    bracket: int
    system: int  # index of the rung system its values go to
    next_rung: int  # index of the level the current run goes to; reports below it only continue
    keys: dict[int, Key] = field(default_factory=dict)  # rung index -> its key there
    waiting_at: int | None = None  # told to PAUSE at this rung index
    paused: bool = False  # ... and exited cleanly: a candidate there


class PromotionAsha(Scheduler):
    def __init__(self, levels: list[float], reduction_factor: float, mode: str, brackets: int = 1,
                 rung_system_per_bracket: bool = True, seed: int = 0) -> None:
        super().__init__(max_t=levels[-1], mode=mode)
        self.levels = list(levels)  # the last level is max_t
        self.eta = reduction_factor
        self.quantiles = promotion_quantiles(self.levels)  # q_j per rung below max_t
        self.sign = 1.0 if mode == "min" else -1.0
        self.brackets = Brackets(levels, reduction_factor, brackets, rung_system_per_bracket, seed)
        self.systems: list[list[_Rung]] = [[_Rung() for _ in levels[:-1]] for _ in range(self.brackets.num_systems)]
        self.top = len(levels) - 1  # index of the highest level any run goes to (PASHA starts lower)
        self.trials: dict[str, _Trial] = {}  # trials not ended
        self.arrivals = 0  # values recorded so far, over all rungs: the tie-break

    # ------------------------------------------------------------------ the scheduler API

    def next_action(self, trial_index: int) -> Action:
        pick = self._pick()
        if pick is not None:
            _, rung, key = pick
            return Resume(key[2], resume_from=self.levels[rung], target=self.levels[rung + 1])
        bracket = self.brackets.draw(trial_index)
        return StartNew(target=self.levels[bracket], bracket=bracket)

    def on_start(self, trial_id: str, action: StartNew | Resume | Branch) -> None:
        if isinstance(action, Resume):
            self._resume(trial_id, action)
        elif trial_id not in self.trials:
            bracket = self.brackets.check(action.bracket) if isinstance(action, StartNew) else 0
            self._add(trial_id, bracket)

    def on_report(self, trial_id: str, resource: float, value: float) -> Outcome:
        if resource >= self.max_t:
            return Outcome(Decision.COMPLETE, rung=self.max_t)
        trial = self.trials.get(trial_id) or self._add(trial_id, 0)
        if trial.waiting_at is not None:  # told to pause already: the same answer
            return Outcome(Decision.PAUSE, rung=self.levels[trial.waiting_at])
        reached = bisect.bisect_right(self.levels, resource) - 1
        if reached < trial.next_rung:
            return Outcome(Decision.CONTINUE)
        reached = min(reached, self.top)  # PASHA: a report beyond the current maximum counts there
        level = self.levels[reached]
        trial.next_rung = reached + 1
        if math.isnan(value):
            return Outcome(Decision.STOP, rung=level)
        key: Key = (self.sign * value, self.arrivals, trial_id)
        self.arrivals += 1
        trial.keys[reached] = key
        rung = self.systems[trial.system][reached]
        rung.values.add(key)
        self._recorded(trial, reached)
        if reached < self.top and self._is_pick(trial.system, reached, key):
            return Outcome(Decision.PROMOTE, rung=level, target=self.levels[reached + 1])
        trial.waiting_at = reached
        return Outcome(Decision.PAUSE, rung=level)

    def on_paused(self, trial_id: str) -> None:
        trial = self.trials.get(trial_id)
        if trial is None or trial.waiting_at is None or trial.paused:
            return  # not told to pause (or already paused): nothing to resume
        trial.paused = True
        self.systems[trial.system][trial.waiting_at].candidates.add(trial.keys[trial.waiting_at])

    def on_trial_end(self, trial_id: str) -> None:
        """Gone for good: never a candidate again (its values stay: they still shape the rungs)."""
        trial = self.trials.pop(trial_id, None)
        if trial is not None and trial.paused:
            self.systems[trial.system][trial.waiting_at].candidates.remove(trial.keys[trial.waiting_at])

    # ------------------------------------------------------------------ the scan

    def _pick(self, reporter: tuple[int, int, Key] | None = None) -> tuple[int, int, Key] | None:
        """(rung system, rung index, key) of the trial a free slot would resume, or None.

        `reporter` (system, rung index, key): a reporting trial that counts as a candidate at its rung.
        """
        for rung_index in range(self.top - 1, -1, -1):
            for system_index, system in enumerate(self.systems):
                rung = system[rung_index]
                best = rung.candidates[0] if rung.candidates else None
                if reporter is not None and reporter[:2] == (system_index, rung_index):
                    if best is None or reporter[2] < best:
                        best = reporter[2]
                kept = kept_count(len(rung.values), self.quantiles[rung_index])
                if best is not None and rung.values.bisect_left(best) < kept:
                    return system_index, rung_index, best
        return None

    def _is_pick(self, system: int, rung_index: int, key: Key) -> bool:
        """Would the scan pick this reporting trial, were it a candidate at its rung?"""
        reporter = (system, rung_index, key)
        return self._pick(reporter) == reporter

    # ------------------------------------------------------------------ helpers

    def _add(self, trial_id: str, bracket: int) -> _Trial:
        trial = _Trial(bracket=bracket, system=self.brackets.system(bracket), next_rung=bracket)
        self.trials[trial_id] = trial
        return trial

    def _resume(self, trial_id: str, action: Resume) -> None:
        trial = self.trials.get(trial_id)
        if trial is None or not trial.paused:
            raise ValueError(f"trial {trial_id} cannot be resumed: it is not paused (or it has ended)")
        rung_index = trial.waiting_at
        if action.resume_from != self.levels[rung_index]:
            raise ValueError(f"trial {trial_id} paused at {self.levels[rung_index]}, "
                             f"not at resume_from={action.resume_from}")
        self.systems[trial.system][rung_index].candidates.remove(trial.keys[rung_index])
        trial.waiting_at, trial.paused = None, False
        trial.next_rung = rung_index + 1

    def _recorded(self, trial: _Trial, rung_index: int) -> None:
        """A value was just recorded for `trial` at this rung (PASHA watches the rankings here)."""


class Pasha(PromotionAsha):
    """PASHA (Bohdal et al. 2022): promotion ASHA whose maximum resource grows only while needed.

    The paper's idea: start with a small maximum resource (the first two rungs) and add a rung only
    when the ranking of the configurations at the current top rung differs from their ranking at
    the rung below, i.e. while more resource still changes which configurations look best. Values
    closer than epsilon count as equal (soft ranking), so noise does not force growth.

    Our exact rule. `top` is the index of the current maximum, initially 1 (levels[1]):
    - Trials run to levels[top] at most: a report that reaches levels[top] (or beyond, below max_t)
      is recorded at rung `top` and the trial PAUSEs there; a paused trial at `top` becomes a
      candidate like any other and may be promoted once the maximum has grown past it. A report at
      levels[-1] = max_t COMPLETEs. Below `top`, promotion ASHA's rules apply unchanged (one bracket).
    - S = the trials with values at both rung `top` and rung `top` - 1 (every trial that reached
      the top by climbing the rungs). Put S in its order at the top rung, sorted by (loss at top,
      loss at the rung below, arrival at the top rung): call the losses at the rung below, taken in that
      order, c_0, c_1, ...; and call the same losses sorted, s_0 <= s_1 <= .... The rankings
      disagree iff |c_i - s_i| > ranking_epsilon for some i: the i-th best configuration at the top
      rung is not, within epsilon, as good at the rung below as the i-th best there (Syne Tune's
      soft-ranking groups). With epsilon 0 this is: some two configurations are in strictly
      opposite order at the two rungs (a tie at either rung is not a disagreement).
    - The rule is checked each time a value is recorded at rung `top` (while levels[top] < max_t),
      before that report is decided; when the rankings disagree, top += 1. (The new top has no
      values yet, so one step at a time.) The report that made the maximum grow can itself be
      PROMOTEd past the old maximum when it is the scan's pick.
    - epsilon is the configured ranking_epsilon, fixed (Syne Tune instead re-estimates it from
      ranking swaps during the run).

    Cost: with epsilon 0, a check is two neighbour lookups in a SortedList (O(log n)); with
    epsilon > 0 it walks S (O(|S|), |S| being the trials at the current top rung).
    """

    def __init__(self, levels: list[float], reduction_factor: float, mode: str, ranking_epsilon: float = 0.0,
                 seed: int = 0) -> None:
        super().__init__(levels, reduction_factor, mode, brackets=1, seed=seed)
        if ranking_epsilon < 0:
            raise ValueError(f"ranking_epsilon = {ranking_epsilon}: must be 0 or more")
        self.epsilon = ranking_epsilon
        self.top = min(1, len(levels) - 1)
        # Per rung k >= 1, the trials of S_k: (loss at k, loss at k - 1, arrival at k); and their losses at k - 1.
        self.pairs: list[SortedList] = [SortedList() for _ in levels[:-1]]
        self.below: list[SortedList] = [SortedList() for _ in levels[:-1]]

    @property
    def max_resource(self) -> float:
        """The resource trials currently run to at most."""
        return self.levels[self.top]

    def _recorded(self, trial: _Trial, rung_index: int) -> None:
        if rung_index == 0 or rung_index - 1 not in trial.keys:
            return
        here = trial.keys[rung_index]
        entry = (here[0], trial.keys[rung_index - 1][0], here[1])
        self.pairs[rung_index].add(entry)
        self.below[rung_index].add(entry[1])
        if rung_index == self.top and self._disagree(rung_index, entry):
            # Nobody was recorded above the old maximum, so the new top's S is empty: no cascade.
            self.top += 1

    def _disagree(self, rung_index: int, added: tuple[float, float, int]) -> bool:
        """Do the rankings of S at rung_index and at the rung below differ (the rule in the class docstring)?"""
        pairs = self.pairs[rung_index]
        if self.epsilon == 0:
            # The rankings agreed before `added` joined (else the maximum had grown), i.e. the losses
            # below were sorted in top-rung order: they still are iff they are around `added`.
            i = pairs.bisect_left(added)
            return (i > 0 and pairs[i - 1][1] > added[1]) or (i + 1 < len(pairs) and pairs[i + 1][1] < added[1])
        return any(abs(entry[1] - below) > self.epsilon for entry, below in zip(pairs, self.below[rung_index]))
