"""`hpc-hpo plan`: what the configured scheduler will run and the resource it will spend, without running it.

Resource figures assume trials resume from checkpoints (a stage costs the difference to the level
before), except stopping ASHA and FIFO, whose trials run in one go.
"""
from __future__ import annotations

from .config import ExperimentConfig
from .schedulers.base import rung_levels
from .schedulers.brackets import bracket_probabilities
from .schedulers.sync_hyperband import hyperband_plan


def format_plan(config: ExperimentConfig) -> str:
    spec, resource = config.scheduler, config.resource
    head = f"scheduler {spec.type}, resource '{resource.name}' up to {resource.max:g}"
    if spec.type == "fifo":
        return head + "\n" + _per_trials(config, resource.max, "every trial runs to the maximum")
    if spec.type == "pbt":
        total = spec.population_size * resource.max
        return (f"{head}\npopulation {spec.population_size}, pausing every {spec.perturbation_interval:g}; "
                f"total resource {total:g} (the population, each to the maximum)")
    levels = rung_levels(resource.max, spec.grace_period, spec.reduction_factor, spec.rung_levels)
    if spec.type == "sync_hyperband":
        return head + "\n" + _sync_plan(levels, spec.reduction_factor)
    return head + "\n" + _async_plan(config, levels)


def _sync_plan(levels: list[float], eta: float) -> str:
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
                 f"({scratch:g} if every stage restarted from scratch)")
    return "\n".join(lines)


def _async_plan(config: ExperimentConfig, levels: list[float]) -> str:
    spec = config.scheduler
    eta, brackets = spec.reduction_factor, spec.brackets
    probabilities = bracket_probabilities(levels, eta, brackets)
    lines = [f"rung levels {', '.join(f'{v:g}' for v in levels)}; reduction factor {eta:g}"]
    per_trial = 0.0
    for b, p in enumerate(probabilities):
        # Expected share of a bracket-b trial reaching level k (k >= b) is eta**-(k-b).
        cost = levels[b] + sum(eta ** -(k - b) * (levels[k] - levels[k - 1]) for k in range(b + 1, len(levels)))
        per_trial += p * cost
        lines.append(f"bracket {b}: starts at {levels[b]:g}, probability {p:.3f}, expected resource per trial "
                     f"{cost:.4g}")
    return "\n".join(lines + [_per_trials(config, per_trial, "expected, since ASHA is asynchronous")])


def _per_trials(config: ExperimentConfig, per_trial: float, how: str) -> str:
    trials = config.budget.max_trials
    if trials is None:
        return f"{per_trial:.4g} resource per trial ({how}); the total depends on the time budget"
    return f"{trials} trials: total resource {trials * per_trial:.4g} ({how})"
