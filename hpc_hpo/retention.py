"""Which checkpoints an experiment no longer needs (execution.keep_checkpoints). Pure: no I/O.

- `all`: nothing is deleted (nor with several objectives, whose best is a front: see checkpoints_to_drop).
- `resumable` (the default): what a resume may still need stays: the checkpoints of trials that are
  running, paused, interrupted or pending, and the `keep_best` best trials' checkpoints. A trial
  that ended for good (stopped, completed, finished, failed, cancelled) loses its checkpoint once
  it is not among the best.
- `best`: as `resumable` while the experiment runs; when it ends for good, only the best trials'
  checkpoints stay, paused trials' too are deleted (an extension of the experiment then starts
  those trials' next runs from nothing: use `resumable` for experiments you may extend).

PBT snapshots (a trial's checkpoint as it was at a pause, which children copy) at a level are
deleted once the whole population has started and every trial that is not over has got past that
level: no one can pause there again and look for a parent.
"""
from __future__ import annotations

import heapq

from .state import ENDED_STATES, ExperimentState

POLICIES = ("all", "resumable", "best")


def best_trials(state: ExperimentState, keep_best: int) -> set[str]:
    """The ids of the keep_best trials with the best values at any report (ties: the earlier trial)."""
    sign = 1.0 if state.mode == "min" else -1.0
    scored = (t for t in state.trials.values() if t.best_value is not None)
    return {t.trial_id for t in heapq.nsmallest(keep_best, scored, key=lambda t: (sign * t.best_value, t.index))}


def checkpoints_to_drop(state: ExperimentState, policy: str, keep_best: int, final: bool,
                        present: set[str]) -> set[str]:
    """The trials (among those whose checkpoint is present) whose checkpoint can go now."""
    if policy == "all" or len(state.objectives) > 1:
        # Several objectives: "best" is a Pareto front, and a trial off it by one objective's ranking may be on
        # it; the driver keeps no per-report values to tell (README "Several objectives"), so nothing goes.
        return set()
    keep = best_trials(state, keep_best)
    droppable = set(ENDED_STATES)
    if policy == "best" and final:
        droppable |= {t.state for t in state.trials.values()}
    return {trial_id for trial_id in present
            if trial_id in state.trials and trial_id not in keep and state.trials[trial_id].state in droppable}


def snapshots_to_drop(state: ExperimentState, policy: str, present: dict[str, list[float]],
                      new_trials_may_start: bool) -> list[tuple[str, float]]:
    """(trial id, level) of PBT snapshots that no trial can branch from any more. While trials that start
    from nothing may still come (PBT's population not yet all started), none: such a trial pauses at
    every level and may pick any trial's snapshot there as its parent's."""
    if policy == "all" or new_trials_may_start:
        return []
    going = [t.last_resource or 0.0 for t in state.trials.values() if t.state not in ENDED_STATES]
    lowest = min(going) if going else float("inf")
    return [(trial_id, level) for trial_id, levels in present.items() for level in levels if level < lowest]
