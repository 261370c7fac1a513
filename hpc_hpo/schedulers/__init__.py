"""Schedulers decide at each report whether a trial continues, stops, pauses or completes."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import ExperimentConfig

from .asha import StoppingAsha
from .base import Decision, Outcome, Scheduler, rung_levels
from .fifo import FifoScheduler
from .promotion import Pasha, PromotionAsha

__all__ = ["Decision", "Outcome", "Scheduler", "rung_levels", "make_scheduler", "StoppingAsha",
           "FifoScheduler", "PromotionAsha", "Pasha"]


def make_scheduler(config: ExperimentConfig) -> Scheduler:
    spec, mode, max_t = config.scheduler, config.metric.mode, config.resource.max
    if spec.type == "pbt":
        from .pbt import Pbt
        return Pbt(config.space, max_t, mode, spec.perturbation_interval, spec.population_size,
                   spec.quantile_fraction, spec.resample_probability, seed=config.searcher.seed)
    if spec.type == "fifo":
        return FifoScheduler(max_t=max_t, mode=mode)
    levels = rung_levels(max_t, spec.grace_period, spec.reduction_factor, spec.rung_levels)
    eta, seed = spec.reduction_factor, config.searcher.seed
    if spec.type == "promotion":
        return PromotionAsha(levels, eta, mode, spec.brackets, spec.rung_system_per_bracket, seed=seed)
    if spec.type == "pasha":
        return Pasha(levels, eta, mode, spec.ranking_epsilon, seed=seed)
    if spec.type == "sync_hyperband":
        from .sync_hyperband import SyncHyperband
        return SyncHyperband(levels, eta, mode, repeat=spec.repeat)
    if spec.type != "asha":
        raise ValueError(f"scheduler type {spec.type!r} is not known to make_scheduler")
    if config.metric.objectives:  # several objectives: MO-ASHA ranks Pareto fronts at each rung
        from .mo_asha import MoAsha
        return MoAsha(levels, [o.mode for o in config.metric.objectives])
    return StoppingAsha(levels, eta, mode, spec.brackets, spec.rung_system_per_bracket, seed=seed)
