"""Searchers propose configurations. Pure: no I/O, no clock; same events in, same configs out."""
from __future__ import annotations

from abc import ABC, abstractmethod

from ..space import Scalar


class Searcher(ABC):
    @abstractmethod
    def suggest(self, trial_index: int) -> dict[str, Scalar] | None:
        """The configuration of the trial with this index (0, 1, ...), or None when the search is exhausted."""

    def on_report(self, trial_id: str, resource: float, value: float) -> None:
        """A report the scheduler processed; model-based searchers learn from it."""

    def on_trial_end(self, trial_id: str) -> None:
        """The trial is gone."""
