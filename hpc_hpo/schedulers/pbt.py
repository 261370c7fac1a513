"""Population-based training (Jaderberg et al. 2017) in the pause-and-resume model of hpc_hpo.

A population of `population_size` trials runs in steps of `perturbation_interval`: each pauses at
every multiple of the interval. When a paused trial is ranked among the worst `quantile_fraction`
of the values recorded at that resource, it is replaced (exploit) by a new trial that starts from
the checkpoint of one of the best `quantile_fraction` there, with a perturbed copy of that trial's
config (explore); otherwise it is resumed. Replacing, not mutating, keeps one config per trial, so
the journal and the export stay plain: a child's rows start at resume_from + 1 and carry its own
hyperparameters.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..space import Choice, Fixed, LogRandInt, RandInt, Scalar, Space
from .base import DONE, WAIT, Action, Branch, Decision, Outcome, Resume, Scheduler, StartNew

PERTURB_FACTORS = (0.8, 1.2)  # explore: scale a numeric value by one of these (as Ray Tune's PBT)


class Pbt(Scheduler):
    snapshots_at_pause = True

    def __init__(self, space: Space, max_t: float, mode: str, perturbation_interval: float,
                 population_size: int, quantile_fraction: float = 0.25, resample_probability: float = 0.25,
                 seed: int = 0) -> None:
        super().__init__(max_t=max_t, mode=mode)
        self.space, self.interval, self.population_size = space, perturbation_interval, population_size
        self.quantile_fraction, self.resample_probability, self.seed = quantile_fraction, resample_probability, seed
        self.sign = 1.0 if mode == "min" else -1.0  # values are kept as losses: lower is better
        self.configs: dict[str, dict[str, Any]] = {}
        self.level: dict[str, float] = {}  # each trial's last pause level
        self.scores: dict[float, dict[str, float]] = {}  # level -> trial -> loss recorded there
        self.paused: dict[str, float] = {}  # waiting for a verdict, in the order they paused
        self.snapshots: dict[float, set[str]] = {}  # level -> trials that paused there (their checkpoint was kept)
        self.members: set[str] = set()  # trials of the population that are not gone
        self.gone: set[str] = set()  # ended without pausing (failed, cancelled): never a parent
        self.started = 0

    def next_action(self, trial_index: int) -> Action:
        for trial_id, level in self.paused.items():
            action = self._exploit_or_resume(trial_id, level, trial_index)
            if action is not WAIT:
                return action
        if self.started < self.population_size:
            return StartNew(target=self._next_level(0))
        return WAIT if self.members else DONE

    def _exploit_or_resume(self, trial_id: str, level: float, trial_index: int) -> Action:
        """Resume the trial, replace it by a child of a good one, or WAIT while that one is still pausing."""
        target = self._next_level(level)
        ranked = sorted(((t, v) for t, v in self.scores.get(level, {}).items() if t not in self.gone),
                        key=lambda item: (item[1], item[0]))
        cut = max(1, int(math.floor(len(ranked) * self.quantile_fraction)))
        worst = {t for t, _ in ranked[-cut:]}
        best = [t for t, _ in ranked[:cut] if t not in worst]
        if len(ranked) < 2 or trial_id not in worst or not best:
            return Resume(trial_id, resume_from=level, target=target)
        # A parent must have paused at this level: only then does its checkpoint snapshot exist.
        kept = self.snapshots.get(level, set())
        if not all(t in kept for t in best):
            return WAIT
        rng = np.random.default_rng([self.seed, trial_index])
        parent = best[int(rng.integers(len(best)))]
        return Branch(parent_id=parent, replaces=trial_id, config=self.explore(self.configs[parent], rng),
                      resume_from=level, target=target)

    def explore(self, config: dict[str, Any], rng: np.random.Generator) -> dict[str, Scalar]:
        """Each parameter: resample with resample_probability, else nudge (scale numbers, step choices)."""
        values: dict[str, Scalar] = {}
        for param in self.space.params:
            if param.name not in config:
                continue
            domain = param.domain
            if isinstance(domain, Fixed):
                values[param.name] = config[param.name]
            elif rng.random() < self.resample_probability:
                values[param.name] = domain.sample(rng)
            else:
                values[param.name] = _nudge(domain, config[param.name], rng)
        return self.space.complete(values, lambda param: param.domain.sample(rng))

    @property
    def may_start_new(self) -> bool:
        return self.started < self.population_size  # children start at their parent's level, not from 0

    def on_start(self, trial_id: str, action: StartNew | Resume | Branch) -> None:
        if isinstance(action, StartNew):
            self.started += 1
            self.members.add(trial_id)
        elif isinstance(action, Resume):
            self.paused.pop(trial_id, None)
        else:
            self.paused.pop(action.replaces, None)
            self.members.discard(action.replaces)
            self.members.add(trial_id)
            self.level[trial_id] = action.resume_from

    def on_trial_created(self, trial_id: str, config: dict[str, Any]) -> None:
        self.configs[trial_id] = dict(config)

    def on_report(self, trial_id: str, resource: float, value: float) -> Outcome:
        if resource >= self.max_t:
            return Outcome(Decision.COMPLETE, rung=self.max_t)
        if resource < self._next_level(self.level.get(trial_id, 0)):
            return Outcome(Decision.CONTINUE)
        level = self._next_level(self.level.get(trial_id, 0))
        self.level[trial_id] = level
        loss = self.sign * value if not math.isnan(value) else math.inf
        self.scores.setdefault(level, {})[trial_id] = loss
        return Outcome(Decision.PAUSE, rung=level)

    def on_paused(self, trial_id: str) -> None:
        self.paused[trial_id] = self.level[trial_id]
        self.snapshots.setdefault(self.level[trial_id], set()).add(trial_id)

    def on_trial_end(self, trial_id: str) -> None:
        if trial_id not in self.snapshots.get(self.level.get(trial_id, -1), set()):
            self.gone.add(trial_id)
        self.members.discard(trial_id)
        self.paused.pop(trial_id, None)

    def _next_level(self, level: float) -> float:
        return min(level + self.interval, self.max_t)


def _nudge(domain: Any, value: Any, rng: np.random.Generator) -> Scalar:
    if isinstance(domain, Choice):
        index = next(i for i, v in enumerate(domain.values) if v == value)
        step = -1 if rng.random() < 0.5 else 1
        return domain.values[min(max(index + step, 0), len(domain.values) - 1)]
    factor = PERTURB_FACTORS[int(rng.integers(2))]
    scaled = value * factor
    if isinstance(domain, (RandInt, LogRandInt)):
        scaled = int(round(scaled)) if round(scaled) != value else value + (1 if factor > 1 else -1)
        return int(min(max(scaled, domain.low), domain.high))
    return float(min(max(scaled, domain.low), domain.high))
