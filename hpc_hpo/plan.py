"""`hpc-hpo plan`: what the configured scheduler will run and the resource it will spend, without running it.

The headline figures come from simulating the configured scheduler (plan_simulation.py) a number of
times on synthetic learning curves, or on the curves and speeds measured in an experiment (--from):
the resource spent, the trials reaching each rung, wall time and node-hours at the configured
parallelism, as a median and a range over the simulations. The budget is honoured as the driver
honours it. Synchronous Hyperband's bracket table and the asynchronous brackets' probabilities are
exact and stay as they were. Resource is counted as the driver counts it: each trial's furthest report
(pausing schedulers resume from checkpoints).
"""
from __future__ import annotations

import dataclasses
import math
import random
import statistics
from typing import Any, Callable, Sequence

from .config import ExperimentConfig
from .plan_simulation import (Measurements, SimulatedTrial, SimulationBudget, SimulationResult, TrialSource,
                              report_points, simulate, synthetic_trials)
from .schedulers import make_scheduler
from .schedulers.base import rung_levels
from .schedulers.brackets import bracket_probabilities
from .schedulers.sync_hyperband import hyperband_plan

DEFAULT_SIMULATIONS = 10
# When no trial reaches max_t: max_trials is searched up to this many times the configured one.
SEARCH_FACTOR = 64
SEARCH_SIMULATIONS = 3


@dataclasses.dataclass(frozen=True)
class PlanOptions:
    """What the command line adds to the config: parallelism, seeds, time per resource, measured curves."""

    workers: int | None = None  # None: execution.num_parallel_evals (1 if that is 0)
    simulations: int = DEFAULT_SIMULATIONS
    seconds_per_resource: float | None = None
    measured: Measurements | None = None
    measured_from: str | None = None  # the experiment named by --from, for the text


def format_plan(config: ExperimentConfig, options: PlanOptions = PlanOptions()) -> str:
    spec, resource = config.scheduler, config.resource
    head = f"scheduler {spec.type}, resource '{resource.name}' up to {resource.max:g}"
    if spec.type == "pbt":
        total = spec.population_size * resource.max
        return (f"{head}\npopulation {spec.population_size}, pausing every {spec.perturbation_interval:g}; "
                f"total resource {total:g} (the population, each to the maximum; PBT is not simulated)")
    levels = scheduler_levels(config)
    lines = [head]
    if spec.type == "sync_hyperband":
        lines.append(_sync_plan(levels, spec.reduction_factor, spec.repeat))
    elif spec.type != "fifo":
        lines.append(_async_plan(config, levels))
    lines.append(_simulated(config, levels, options))
    return "\n".join(lines)


def scheduler_levels(config: ExperimentConfig) -> list[float]:
    spec = config.scheduler
    if spec.type == "fifo":
        return [config.resource.max]
    return rung_levels(config.resource.max, spec.grace_period, spec.reduction_factor, spec.rung_levels)


# --------------------------------------------------------------------------- the exact parts


def _sync_plan(levels: list[float], eta: float, repeat: int | None = 1) -> str:
    lines = ["bracket  stage  configs  resource each", "-------  -----  -------  -------------"]
    resumed = scratch = configs = 0.0
    for bracket in hyperband_plan(levels, eta):
        previous = 0.0
        configs += bracket[0].configs
        for stage in bracket:
            lines.append(f"{stage.bracket:>7}  {stage.index:>5}  {stage.configs:>7}  {stage.level:>13g}")
            resumed += stage.configs * (stage.level - previous)
            scratch += stage.configs * stage.level
            previous = stage.level
    lines.append(f"{int(configs)} configs; total resource {resumed:g} resuming from checkpoints "
                 f"({scratch:g} if every stage restarted from scratch), if the budget lets the plan finish")
    if repeat is None:
        lines.append("a pass of the plan; scheduler.repeat is null: passes follow one another until the budget ends")
    elif repeat > 1:
        lines.append(f"a pass of the plan; scheduler.repeat {repeat}: {int(configs) * repeat} configs, total resource "
                     f"{resumed * repeat:g} resuming ({scratch * repeat:g} from scratch) for the {repeat} passes")
    return "\n".join(lines)


def _async_plan(config: ExperimentConfig, levels: list[float]) -> str:
    spec = config.scheduler
    eta, brackets = spec.reduction_factor, spec.brackets
    lines = [f"rung levels {', '.join(f'{v:g}' for v in levels)}; reduction factor {eta:g}"]
    if brackets > 1:
        for b, p in enumerate(bracket_probabilities(levels, eta, brackets)):
            lines.append(f"bracket {b}: starts at {levels[b]:g}, probability {p:.3f}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the simulation


def simulations(config: ExperimentConfig, options: PlanOptions, budget: SimulationBudget | None = None,
                count: int | None = None) -> list[SimulationResult]:
    """The configured scheduler run `count` times (seeds: the config's seed, +1, ...) with the configured
    parallelism on the configured (or measured) curves."""
    levels = scheduler_levels(config)
    points = report_points(levels)
    budget = budget or simulation_budget(config, options)
    results = []
    for i in range(options.simulations if count is None else count):
        seed = config.searcher.seed + i
        seeded = dataclasses.replace(config, searcher=dataclasses.replace(config.searcher, seed=seed))
        scheduler = make_scheduler(seeded)
        if config.metric.objectives:  # MO-ASHA ranks tuples: the other objectives get curves of their own
            scheduler = SeveralObjectives(scheduler, len(config.metric.objectives), seed)
        results.append(simulate(scheduler, _source(config, options, seed), _workers(config, options), points, budget))
    return results


class SeveralObjectives:
    """The simulation's curves give one value; a scheduler of several objectives (MO-ASHA) gets that value plus,
    for each further objective, a value of a curve of its own per trial (seeded, falling with the resource like
    the synthetic curves), so that the fronts at each rung, and the share kept there, are as in a real run."""

    def __init__(self, scheduler: Any, objectives: int, seed: int) -> None:
        self.scheduler, self.objectives, self.seed = scheduler, objectives, seed

    def __getattr__(self, name: str) -> Any:
        return getattr(self.scheduler, name)

    def on_report(self, trial_id: str, resource: float, value: float) -> Any:
        others = []
        for k in range(1, self.objectives):
            rng = random.Random(f"{self.seed}-{trial_id}-{k}")
            floor, rate = rng.random(), 0.2 + rng.random()
            others.append(floor + math.exp(-rate * resource))
        return self.scheduler.on_report(trial_id, resource, (value, *others))


def simulation_budget(config: ExperimentConfig, options: PlanOptions) -> SimulationBudget:
    """The budget keys the simulation can honour: max_time needs seconds, metric_threshold measured values."""
    budget = config.budget
    return SimulationBudget(max_trials=budget.max_trials, max_resource=budget.max_resource,
                            max_time=budget.max_time if _time_known(options) else None,
                            metric_threshold=budget.metric_threshold if options.measured else None,
                            mode=config.metric.mode)


def _source(config: ExperimentConfig, options: PlanOptions, seed: int) -> TrialSource:
    if options.measured is not None:
        source = options.measured.source(seed)
    else:
        source = synthetic_trials(seed, config.resource.max, config.metric.mode, options.seconds_per_resource or 1.0)
    if not _time_known(options):
        return source
    # In seconds, a run also waits for the driver's next sweep to start (half a poll interval on average).
    latency = config.execution.poll_interval / 2
    return _delayed(source, latency)


def _delayed(source: TrialSource, latency: float) -> TrialSource:
    def make(index: int) -> SimulatedTrial:
        trial = source(index)
        return dataclasses.replace(trial, startup=trial.startup + latency)
    return make


def _workers(config: ExperimentConfig, options: PlanOptions) -> int:
    return options.workers or config.execution.num_parallel_evals or 1


def _time_known(options: PlanOptions) -> bool:
    return options.measured is not None or options.seconds_per_resource is not None


def _simulated(config: ExperimentConfig, levels: list[float], options: PlanOptions) -> str:
    budget = simulation_budget(config, options)
    ends_by_itself = config.scheduler.type == "sync_hyperband" and config.scheduler.repeat is not None
    if not ends_by_itself and budget.max_trials is None and budget.max_resource is None and budget.max_time is None:
        # (config validation makes sure one of them is set: here, max_time without the seconds to count it)
        return (f"not simulated: only budget.max_time or budget.metric_threshold ends this experiment, and the "
                f"time per {config.resource.name} is unknown; give --seconds-per-resource S or --from EXP")
    results = simulations(config, options)
    name = config.resource.name
    where = (f"curves and speeds measured in {options.measured_from}" if options.measured is not None
             else "synthetic learning curves")
    seeds = f"seeds {config.searcher.seed}-{config.searcher.seed + len(results) - 1}"
    lines = [f"simulated {len(results)} times ({seeds}) on {where}, {_workers(config, options)} trials at a time:",
             f"  resource spent   {_spread([r.spent for r in results], _number)}",
             f"  trials started   {_spread([r.trials for r in results], _number)}",
             "  trials reaching  " + ", ".join(f"{name} {level:g}: {_median([r.reaching(level) for r in results])}"
                                               for level in levels) + " (medians)"]
    lines += _time_lines(config, results, options)
    lines += _budget_notes(config, results, options)
    warning = _unreachable_warning(config, results, options)
    return "\n".join(lines + ([warning] if warning else []))


def _time_lines(config: ExperimentConfig, results: list[SimulationResult], options: PlanOptions) -> list[str]:
    walls = [r.wall for r in results]
    if not _time_known(options):
        return [f"  wall time        {_spread(walls, _rounded)} times the time of one {config.resource.name} "
                "(give --seconds-per-resource S or --from EXP for hours and node-hours)"]
    nodes = _nodes_per_eval(config)
    used = [r.busy * nodes / 3600 for r in results]
    held = [r.wall * r.workers * nodes / 3600 for r in results]
    return [f"  wall time        {_spread(walls, _duration)}",
            f"  node-hours       {_spread(used, _hours)} running trials ({nodes} node{'s' if nodes > 1 else ''} "
            f"each); {_median(held, _hours)} held by {results[0].workers} slots for the wall time"]


def _budget_notes(config: ExperimentConfig, results: list[SimulationResult], options: PlanOptions) -> list[str]:
    budget, notes = config.budget, []
    stops = [r.stopped_by or ("max_trials" if r.trials_refused else "the scheduler's end") for r in results]
    ends = ", ".join(f"{why} ({stops.count(why)} of {len(stops)})" for why in dict.fromkeys(stops))
    notes.append(f"  ended by         {ends}")
    if budget.max_time is not None and not _time_known(options):
        notes.append(f"  budget.max_time ({budget.max_time:g} s) is not simulated: the time per "
                     f"{config.resource.name} is unknown (give --seconds-per-resource S or --from EXP)")
    if budget.metric_threshold is not None and options.measured is None:
        notes.append("  budget.metric_threshold is not simulated on synthetic curves (give --from EXP)")
    return notes


def _unreachable_warning(config: ExperimentConfig, results: list[SimulationResult],
                         options: PlanOptions) -> str | None:
    """No trial reaches max_t: `best` would then report a trial paused or stopped on the way."""
    max_t, name = config.resource.max, config.resource.name
    missing = sum(1 for r in results if r.reaching(max_t) == 0)
    if missing == 0:
        return None
    share = "every simulation" if missing == len(results) else f"{missing} of {len(results)} simulations"
    text = (f"warning: in {share} no trial reached {name} {max_t:g}: the best trial would then be one paused or "
            "stopped on the way")
    if config.scheduler.type == "pasha":
        return text + ("; PASHA raises its maximum only while the rankings at its two top rungs disagree, "
                       "which on these curves they stop doing")
    needed = _max_trials_needed(config, options) if all(r.trials_refused for r in results) else None
    if needed is not None:
        text += f"; raise budget.max_trials from {config.budget.max_trials} to at least {needed}"
    elif config.budget.max_trials is not None:
        text += "; raise budget.max_trials (or the other budget keys)"
    return text


def _max_trials_needed(config: ExperimentConfig, options: PlanOptions) -> int | None:
    """The smallest max_trials with which every one of a few simulations has a trial reach max_t."""
    base = simulation_budget(config, options)

    def enough(trials: int) -> bool:
        budget = dataclasses.replace(base, max_trials=trials)
        runs = simulations(config, options, budget, count=SEARCH_SIMULATIONS)
        return all(r.reaching(config.resource.max) > 0 for r in runs)

    low = config.budget.max_trials or 1
    ceiling = low * SEARCH_FACTOR  # beyond it the answer is "no number of trials does it" (flat curves, say)
    high = low * 2
    while not enough(high):
        if high >= ceiling:
            return None
        low, high = high, min(high * 2, ceiling)
    while high - low > 1:  # enough(high), not enough(low)
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle, high)
    return high


# --------------------------------------------------------------------------- formatting


def _nodes_per_eval(config: ExperimentConfig) -> int:
    execution = config.execution
    return execution.pbs.nodes_per_eval if execution.backend == "pbs" else execution.slurm.nodes_per_eval


def _median(values: Sequence[float], show: Callable[[float], str] | None = None) -> str:
    return (show or _number)(statistics.median(values))


def _spread(values: Sequence[float], show: Callable[[float], str]) -> str:
    return f"median {show(statistics.median(values))} (range {show(min(values))} to {show(max(values))})"


def _number(value: float) -> str:
    return f"{value:.4g}" if not float(value).is_integer() else f"{int(value)}"


def _rounded(value: float) -> str:
    return f"{value:.3g}"


def _hours(value: float) -> str:
    return f"{value:.3g}"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes = math.floor(seconds / 60 + 0.5)
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60}h {minutes % 60:02d}m"
