"""Searchers propose configurations. Pure: no I/O, no clock; the same events give the same configs.

The driver tells a searcher about every trial as it is created (so model-based searchers can
account for configs still running), every report the scheduler processed, and every trial's end;
on a resumed run it replays the journal through the same calls. Values reach searchers as
losses: lower is better, whatever the metric's mode (the driver flips 'max' metrics).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Final

from ..space import Scalar


class _Wait:
    def __repr__(self) -> str:
        return "WAIT"


# suggest() answers WAIT when it can propose more only after results come in (a genetic
# generation, a grid chunk); the driver asks again next sweep. None means exhausted for good.
WAIT: Final[Any] = _Wait()


class Searcher(ABC):
    @abstractmethod
    def suggest(self, trial_index: int) -> dict[str, Scalar] | None | Any:
        """The config of the trial with this index (0, 1, ...), WAIT, or None when exhausted.

        Draw randomness from a generator seeded by (seed, trial_index) so that a resumed
        driver, which replays history but not earlier suggest() calls, proposes the same.
        """

    def on_trial_created(self, trial_id: str, config: dict[str, Scalar]) -> None:
        """A trial now exists with this config (also called while replaying the journal)."""

    def on_report(self, trial_id: str, resource: float, loss: float) -> None:
        """A report the scheduler processed; `loss` is lower-is-better."""

    def on_trial_end(self, trial_id: str) -> None:
        """The trial is gone (completed, stopped, failed or cancelled)."""
