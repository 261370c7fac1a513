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
        levels = rung_levels(config.resource.max, config.scheduler.grace_period,
                             config.scheduler.reduction_factor, config.scheduler.rung_levels)
        return KdeSearcher(**common, rung_levels=levels, searcher_data=spec.searcher_data, **spec.options)
    from .genetic import GeneticSearcher
    return GeneticSearcher(**common, **spec.options)
