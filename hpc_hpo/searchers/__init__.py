"""Searchers propose the configuration of each new trial."""
from __future__ import annotations

from ..config import ExperimentConfig
from .base import Searcher
from .random_search import RandomSearcher

__all__ = ["Searcher", "RandomSearcher", "make_searcher"]


def make_searcher(config: ExperimentConfig) -> Searcher:
    spec = config.searcher
    return RandomSearcher(config.space, spec.seed, spec.points_to_evaluate)
