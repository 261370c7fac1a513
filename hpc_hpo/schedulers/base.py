"""What every scheduler shares: decisions, rung levels and the cutoff quantile. Pure: no I/O, no clock."""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import Enum
from typing import Sequence


class Decision(str, Enum):
    """What the scheduler decided at one report; the names are the export's `decision` column."""

    CONTINUE = "continue"
    STOP = "stop"
    PAUSE = "pause"
    PROMOTE = "promote"
    COMPLETE = "complete"


@dataclass(frozen=True)
class Outcome:
    """A decision and why: the rung it was taken at and the cutoff the value was compared with."""

    decision: Decision
    rung: float | None = None
    cutoff: float | None = None


class Scheduler(ABC):
    """Decides, report by report, whether a trial goes on. Given the same reports, the same decisions."""

    def __init__(self, max_t: float, mode: str) -> None:
        self.max_t = max_t
        self.mode = mode

    @abstractmethod
    def on_report(self, trial_id: str, resource: float, value: float) -> Outcome:
        """One report of a trial, resources strictly increasing per trial (the driver deduplicates)."""

    def on_trial_end(self, trial_id: str) -> None:
        """The trial is gone (finished, failed, stopped); schedulers that track running trials forget it."""


def rung_levels(max_t: float, grace_period: float, reduction_factor: float,
                explicit: Sequence[float] | None = None) -> list[float]:
    """grace * eta**k while below max_t, then max_t; or the explicit levels, ending with max_t."""
    if explicit:
        levels = [level for level in explicit if level < max_t]
    else:
        levels = []
        level = grace_period
        while level < max_t:
            levels.append(level)
            level = level * reduction_factor
    return [_tidy(level) for level in levels] + [_tidy(max_t)]


def _tidy(level: float) -> float:
    """Whole levels as ints, so that 3.0 prints and serialises as 3."""
    return int(level) if float(level).is_integer() else level


def quantile_sorted(values: Sequence[float], q: float) -> float:
    """numpy.quantile(values, q) for sorted `values` (method 'linear'), computed in O(1) lookups.

    The same float arithmetic as numpy, so that ties at the cutoff decide exactly as
    DESIGN.md's statement of the rule (which is written in numpy terms) says.
    """
    n = len(values)
    virtual = (n - 1) * q
    if virtual >= n - 1:
        return float(values[n - 1])
    below = math.floor(virtual)
    a, b = float(values[below]), float(values[below + 1])
    gamma = virtual - below
    if gamma >= 0.5:
        return b - (b - a) * (1 - gamma)
    return a + (b - a) * gamma
