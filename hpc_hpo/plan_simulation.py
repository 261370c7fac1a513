"""What `hpc-hpo plan` predicts from: the configured scheduler itself (the real Scheduler class) driven by a
small event loop of `workers` slots on learning curves, synthetic or measured in an experiment.

Why simulate: a formula such as "a share 1/eta of the trials reaches each rung" holds only for a long
run. Stopping ASHA lets every first value at a rung through and judges early trials against few
values, so a short run (the quickstart's 48 trials) spends about twice the formula's resource; promotion
ASHA with too few trials promotes nobody to the maximum. The loop makes the same calls as the driver
(next_action / on_start, on_report at each report, on_paused when a paused run has exited, on_trial_end)
and honours the budget as the driver does (max_trials, max_resource, max_time, metric_threshold).

Pure: no I/O, no clock; every random draw comes from a generator seeded by (seed, trial index, ...).

The model of a run: it starts when a slot is free, takes `startup` time, then `pace` time per unit of
resource, and reports at the report points (the rung levels and a grid between them); a run told to
pause, stop or complete frees its slot at that report. Driver latencies other than `startup` are left out.
"""
from __future__ import annotations

import bisect
import heapq
import math
import statistics
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

from .schedulers.base import DONE, WAIT, Branch, Decision, Resume, Scheduler
from .state import ExperimentState

# Report points between rungs: every unit of resource up to this many units, else this many even steps.
# Only budget checks (max_resource, max_time) see them: schedulers decide at rung levels.
GRID_POINTS = 100
# A synthetic trial's time per unit of resource is lognormal around 1 (or the given seconds) with this
# spread, so runs finish out of order as real ones do.
PACE_SPREAD = 0.3
# A simulation whose budget never ends it (a time budget without seconds) stops at this many trials.
TRIALS_LIMIT = 100_000


@dataclass(frozen=True)
class SimulatedTrial:
    """One config's learning curve (value reported at a resource) and its speed."""

    curve: Callable[[float], float]
    pace: float  # time per unit of resource
    startup: float = 0.0  # time from a run's start to its first unit of progress


TrialSource = Callable[[int], SimulatedTrial]  # trial index -> the trial


@dataclass(frozen=True)
class SimulationBudget:
    """The config's budget keys, as the driver applies them (time in the trials' time unit)."""

    max_trials: int | None = None
    max_resource: float | None = None
    max_time: float | None = None
    metric_threshold: float | None = None
    mode: str = "min"


@dataclass
class SimulationResult:
    workers: int
    furthest: dict[str, float] = field(default_factory=dict)  # trial -> its furthest report
    wall: float = 0.0  # time from the first start to the end (or the budget's stop)
    busy: float = 0.0  # slot-time spent running trials
    stopped_by: str | None = None  # the budget key that ended it, if one did
    trials_refused: bool = False  # the scheduler wanted a new trial that max_trials refused

    @property
    def spent(self) -> float:
        """Resource spent: each trial's furthest report (resumed runs go on from checkpoints), as the driver counts it."""
        return float(sum(self.furthest.values()))

    @property
    def trials(self) -> int:
        return len(self.furthest)

    @property
    def busy_share(self) -> float:
        return self.busy / (self.workers * self.wall) if self.wall > 0 else 0.0

    def reaching(self, level: float) -> int:
        return sum(1 for r in self.furthest.values() if r >= level)


def report_points(levels: Sequence[float]) -> list[float]:
    """The rung levels, and a grid between them for the budget checks."""
    max_t = levels[-1]
    if float(max_t).is_integer() and max_t <= GRID_POINTS:
        grid: Iterable[float] = range(1, int(max_t) + 1)
    else:
        grid = (max_t * k / GRID_POINTS for k in range(1, GRID_POINTS + 1))
    return sorted(set(levels) | set(grid))


@dataclass
class _Run:
    trial_id: str
    start: float
    from_resource: float
    target: float
    at: float  # the resource of its latest report in this run


class _Loop:
    """The driver's calls to the scheduler, on simulated time."""

    def __init__(self, scheduler: Scheduler, source: TrialSource, workers: int, points: Sequence[float],
                 budget: SimulationBudget) -> None:
        self.scheduler, self.source, self.points, self.budget = scheduler, source, list(points), budget
        self.result = SimulationResult(workers)
        self.free = workers
        self.now = 0.0
        self.trials: dict[str, SimulatedTrial] = {}
        self.runs: dict[str, _Run] = {}
        self.events: list[tuple[float, int, str]] = []  # (time, sequence, trial) of each run's next report
        self.sequence = 0

    def run(self) -> SimulationResult:
        self._fill()
        while self.events and self.result.stopped_by is None:
            time, _, trial_id = heapq.heappop(self.events)
            if self.budget.max_time is not None and time > self.budget.max_time:
                self.now = self.budget.max_time
                self.result.stopped_by = "max_time"
                break
            self.now = time
            self._report(self.runs[trial_id])
            self._fill()
        for run in list(self.runs.values()):  # a budget stopped the experiment: runs are interrupted
            self._end_run(run)
        self.result.wall = self.now
        return self.result

    def _fill(self) -> None:
        """Free slots get what the scheduler wants, as the driver's planning does (it stops at WAIT, DONE,
        or a new trial the budget refuses)."""
        while self.free > 0 and self.result.stopped_by is None:
            index = len(self.trials)
            action = self.scheduler.next_action(index)
            if action is WAIT or action is DONE:
                return
            if isinstance(action, Branch):
                raise ValueError("PBT's branches are not simulated")
            if isinstance(action, Resume):
                trial_id, start_from = action.trial_id, action.resume_from
            else:
                if self.budget.max_trials is not None and index >= self.budget.max_trials:
                    self.result.trials_refused = True
                    return
                if index >= TRIALS_LIMIT:
                    self.result.stopped_by = "the simulation's trial limit"
                    return
                trial_id, start_from = f"{index:04d}", 0.0
                self.trials[trial_id] = self.source(index)
                self.result.furthest[trial_id] = 0.0
            self.scheduler.on_start(trial_id, action)
            self.free -= 1
            run = _Run(trial_id, self.now, start_from, action.target, start_from)
            self.runs[trial_id] = run
            self._schedule_next(run, first=True)

    def _schedule_next(self, run: _Run, first: bool = False) -> None:
        trial = self.trials[run.trial_id]
        i = bisect.bisect_right(self.points, run.at)
        point = min(self.points[i], run.target) if i < len(self.points) else run.target
        delay = (point - run.at) * trial.pace + (trial.startup if first else 0.0)
        run.at = point
        self.sequence += 1
        heapq.heappush(self.events, (self.now + delay, self.sequence, run.trial_id))

    def _report(self, run: _Run) -> None:
        resource = run.at
        value = self.trials[run.trial_id].curve(resource)
        self.result.furthest[run.trial_id] = resource
        outcome = self.scheduler.on_report(run.trial_id, resource, value)
        self._check_budget(value)
        decision = outcome.decision
        if decision == Decision.PROMOTE:
            run.target = outcome.target
        if decision in (Decision.CONTINUE, Decision.PROMOTE) and resource < run.target:
            self._schedule_next(run)
            return
        self._end_run(run)
        if decision == Decision.PAUSE:
            self.scheduler.on_paused(run.trial_id)
        else:  # stopped, completed, or a run that reached its target and exited: gone for good
            self.scheduler.on_trial_end(run.trial_id)

    def _check_budget(self, value: float) -> None:
        budget = self.budget
        threshold = budget.metric_threshold
        if threshold is not None and (value <= threshold if budget.mode == "min" else value >= threshold):
            self.result.stopped_by = "metric_threshold"
        elif budget.max_resource is not None and self.result.spent >= budget.max_resource:
            self.result.stopped_by = "max_resource"

    def _end_run(self, run: _Run) -> None:
        del self.runs[run.trial_id]
        self.result.busy += self.now - run.start
        self.free += 1


def simulate(scheduler: Scheduler, source: TrialSource, workers: int, points: Sequence[float],
             budget: SimulationBudget = SimulationBudget()) -> SimulationResult:
    """Run the scheduler to its end (or the budget's) with `workers` slots on the trials `source` makes."""
    if workers < 1:
        raise ValueError(f"workers = {workers}: must be at least 1")
    return _Loop(scheduler, source, workers, points, budget).run()


# --------------------------------------------------------------------------- learning curves


def synthetic_trials(seed: int, max_t: float, mode: str, seconds_per_resource: float = 1.0,
                     pace_spread: float = PACE_SPREAD) -> TrialSource:
    """A family of curves: loss(r) = a + b * (1 + 100 r / max_t) ** -c, with a random asymptote a, drop b and
    rate c per config (so curves cross, as real ones do), plus a little noise per report. For mode max the
    value is -loss. Paces are lognormal around `seconds_per_resource`."""
    sign = 1.0 if mode == "min" else -1.0

    def make(index: int) -> SimulatedTrial:
        rng = np.random.default_rng([seed, index])
        asymptote, drop = rng.uniform(0.05, 0.5), rng.uniform(0.3, 1.0)
        rate = rng.lognormal(math.log(0.6), 0.4)
        pace = seconds_per_resource * rng.lognormal(0.0, pace_spread)

        def curve(resource: float) -> float:
            noise = np.random.default_rng([seed, index, int(resource * 1000)]).normal(0.0, 0.01)
            return sign * (asymptote + drop * (1 + 100 * resource / max_t) ** -rate + noise)
        return SimulatedTrial(curve, pace)
    return make


@dataclass(frozen=True)
class MeasuredTrial:
    resources: tuple[float, ...]  # increasing
    values: tuple[float, ...]
    pace: float | None  # seconds per unit of resource, None when it could not be measured


@dataclass(frozen=True)
class Measurements:
    """Curves and speeds measured in an experiment, for `plan --from`."""

    trials: tuple[MeasuredTrial, ...]
    pace: float  # median seconds per unit of resource
    startup: float  # median seconds from a trial's start to its first progress

    def source(self, seed: int) -> TrialSource:
        """Each simulated trial takes the curve and pace of a measured trial drawn at random; past its last
        report its value stays where it was (a trial stopped early keeps looking as it did)."""
        def make(index: int) -> SimulatedTrial:
            measured = self.trials[int(np.random.default_rng([seed, index]).integers(len(self.trials)))]
            return SimulatedTrial(_step_curve(measured), measured.pace or self.pace, self.startup)
        return make


def _step_curve(trial: MeasuredTrial) -> Callable[[float], float]:
    def curve(resource: float) -> float:
        i = bisect.bisect_right(trial.resources, resource) - 1
        return trial.values[max(i, 0)]
    return curve


def measure(state: ExperimentState) -> Measurements:
    """Per trial its curve (value at each report) and its seconds per unit of resource, from consecutive
    reports of one run (a report after a pause starts a new run: its gap includes the pause)."""
    rows: dict[str, list] = {}
    for row in state.rows:
        rows.setdefault(row.trial_id, []).append(row)
    trials, paces, startups = [], [], []
    for trial_rows in rows.values():
        steps = [(b.elapsed_s - a.elapsed_s) / (float(b.resource) - float(a.resource))
                 for a, b in zip(trial_rows, trial_rows[1:])
                 if a.decision in ("continue", "promote") and float(b.resource) > float(a.resource)
                 and b.elapsed_s >= a.elapsed_s]
        pace = statistics.median(steps) if steps else None
        first = trial_rows[0]
        if pace is not None:
            paces.append(pace)
            startups.append(max(first.elapsed_s - pace * float(first.resource), 0.0))
        values = [row.value for row in trial_rows]
        if all(math.isfinite(v) for v in values):
            trials.append(MeasuredTrial(tuple(float(r.resource) for r in trial_rows), tuple(values), pace))
    if not trials:
        raise ValueError("the experiment has no trial with reports to learn curves from")
    return Measurements(tuple(trials), statistics.median(paces) if paces else 1.0,
                        statistics.median(startups) if startups else 0.0)
