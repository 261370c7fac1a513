"""Schedulers decide at each report whether a trial continues, stops, pauses or completes."""
from __future__ import annotations

from ..config import ExperimentConfig
from .asha import StoppingAsha
from .base import Decision, Outcome, Scheduler, rung_levels
from .fifo import FifoScheduler

__all__ = ["Decision", "Outcome", "Scheduler", "rung_levels", "make_scheduler", "StoppingAsha",
           "FifoScheduler"]


def make_scheduler(config: ExperimentConfig) -> Scheduler:
    spec, mode, max_t = config.scheduler, config.metric.mode, config.resource.max
    if spec.type == "pbt":
        from .pbt import Pbt
        return Pbt(config.space, max_t, mode, spec.perturbation_interval, spec.population_size,
                   spec.quantile_fraction, spec.resample_probability, seed=config.searcher.seed)
    if spec.type == "fifo":
        return FifoScheduler(max_t=max_t, mode=mode)
    levels = rung_levels(max_t, spec.grace_period, spec.reduction_factor, spec.rung_levels)
    if spec.type == "promotion":
        from .promotion import PromotionAsha
        return PromotionAsha(levels, spec.reduction_factor, mode)
    return StoppingAsha(levels, spec.reduction_factor, mode)
