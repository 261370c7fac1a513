"""Searchers propose the configuration of each new trial."""
from __future__ import annotations

from ..config import ExperimentConfig
from ..schedulers.base import rung_levels
from .base import WAIT, Searcher
from .random_search import RandomSearcher

__all__ = ["WAIT", "Searcher", "RandomSearcher", "make_searcher"]


def make_searcher(config: ExperimentConfig) -> Searcher:
    """Every searcher takes the space, the seed, the initial points and its own validated options;
    multi-fidelity ones also take the rung levels and which reports to learn from."""
    spec, space = config.searcher, config.space
    common = dict(space=space, seed=spec.seed, points_to_evaluate=spec.points_to_evaluate)
    if spec.type == "random":
        return RandomSearcher(**common)
    if spec.type == "grid":
        from .grid import GridSearcher
        return GridSearcher(**common, **spec.options)
    if spec.type == "bayesopt":
        from .bayesopt import BayesOptSearcher
        return BayesOptSearcher(**common, **spec.options)
    if spec.type == "kde":
        from .kde import KdeSearcher
        return KdeSearcher(**common, rung_levels=_levels(config), searcher_data=spec.searcher_data, **spec.options)
    if spec.type == "mobster":
        from .mobster import MobsterSearcher
        return MobsterSearcher(**common, rung_levels=_levels(config), searcher_data=spec.searcher_data,
                               **spec.options)
    from .genetic import GeneticSearcher
    return GeneticSearcher(**common, **spec.options)


def _levels(config: ExperimentConfig) -> list[float]:
    """The scheduler's rung levels (resource.max last): the budgets multi-fidelity searchers learn at."""
    scheduler = config.scheduler
    return rung_levels(config.resource.max, scheduler.grace_period, scheduler.reduction_factor, scheduler.rung_levels)
