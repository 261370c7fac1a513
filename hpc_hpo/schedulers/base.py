"""What every scheduler shares: decisions, rung levels and the cutoff quantile. Pure: no I/O, no clock."""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import Enum
from fractions import Fraction
from typing import Any, Sequence


class Decision(str, Enum):
    """What the scheduler decided at one report; the names are the export's `decision` column."""

    CONTINUE = "continue"
    STOP = "stop"
    PAUSE = "pause"
    PROMOTE = "promote"
    COMPLETE = "complete"


@dataclass(frozen=True)
class Outcome:
    """A decision and why: the rung it was taken at and the cutoff the value was compared with.

    For PROMOTE, `target` is the resource the trial now runs to without stopping.
    """

    decision: Decision
    rung: float | None = None
    cutoff: float | None = None
    target: float | None = None


@dataclass(frozen=True)
class StartNew:
    """Start a new config, running it up to `target` (its first milestone; max_t when it runs through)."""

    target: float
    bracket: int = 0


@dataclass(frozen=True)
class Resume:
    """Resume a paused trial from its checkpoint at `resume_from`, running it up to `target`."""

    trial_id: str
    resume_from: float
    target: float


@dataclass(frozen=True)
class Branch:
    """PBT's exploit and explore: a new trial with `config` (a perturbed copy of the parent's) starts
    from the parent's checkpoint at `resume_from`, replacing the poor trial `replaces`, which stops."""

    parent_id: str
    replaces: str
    config: dict[str, Any]
    resume_from: float
    target: float


class _Signal:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


WAIT = _Signal("WAIT")  # nothing to start now; ask again when something changes
DONE = _Signal("DONE")  # the scheduler will start nothing more (e.g. a finished Hyperband plan)
Action = StartNew | Resume | Branch | _Signal


class Scheduler(ABC):
    """Decides at each report whether a trial goes on, and what runs on a free slot.

    Pure: given the same calls in the same order, the same answers. The driver journals each
    call's cause, so a restarted driver rebuilds the scheduler by replaying the same calls:
    on_start for every trial_created / trial_resumed event, on_report for every report,
    on_paused for every trial_paused, on_trial_end for every trial_ended.
    """

    def __init__(self, max_t: float, mode: str) -> None:
        self.max_t = max_t
        self.mode = mode

    def next_action(self, trial_index: int) -> Action:
        """A slot is free: start a new trial (with index `trial_index`), resume one, WAIT or DONE.

        A query only: nothing changes until the driver commits the answer with on_start. Any
        randomness (a bracket draw) comes from a generator seeded by (seed, trial_index).
        """
        return StartNew(target=self.max_t)

    # PBT copies a parent's checkpoint as it was at a pause: the driver keeps a snapshot per pause.
    snapshots_at_pause = False

    @property
    def may_start_new(self) -> bool:
        """Whether a trial starting from nothing may still come: it would pause at every level and may
        look for a parent's snapshot at each (so no snapshot may go yet)."""
        return True

    def on_start(self, trial_id: str, action: StartNew | Resume | Branch) -> None:
        """The driver acted on `action` for this trial (a new trial, or a resumed one)."""

    def on_trial_created(self, trial_id: str, config: dict[str, Any]) -> None:
        """A trial now exists with this config (PBT copies configs of good trials)."""

    @abstractmethod
    def on_report(self, trial_id: str, resource: float, value: float) -> Outcome:
        """One report of a trial, resources strictly increasing per trial (the driver deduplicates)."""

    def on_paused(self, trial_id: str) -> None:
        """A trial told to PAUSE has exited cleanly, its checkpoint saved: it may now be resumed."""

    def on_trial_end(self, trial_id: str) -> None:
        """The trial is gone for good (finished, failed, stopped, cancelled): never resume it."""


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


# Level ratios are taken as the nearest fraction with a denominator up to this: levels are numbers users
# write (or grace * eta**k in floats), so 0.30000000000000004 / 0.1 must be exactly 3, not 3 + 3e-16.
RATIO_DENOMINATOR = 10 ** 6


def promotion_quantiles(levels: Sequence[float]) -> list[Fraction]:
    """q_j = r_j / r_{j+1} for every rung below max_t (the last level): the share of a rung that goes on.

    The seed's rule (AutoGluon's HyperbandScheduler): for geometric levels it is 1/eta, but the rung
    below max_t keeps r_last / max_t (rungs 1, 3, 9 with max_t 20 keep 1/3, 1/3, 9/20). Exact
    fractions, so that floor(q_j * n) is the integer floor(n / eta) for geometric levels.
    """
    return [(Fraction(low) / Fraction(high)).limit_denominator(RATIO_DENOMINATOR)
            for low, high in zip(levels, levels[1:])]


def kept_count(n: int, quantile: Fraction) -> int:
    """floor(quantile * n) in exact integer arithmetic: how many of the n values at a rung may go on."""
    return n * quantile.numerator // quantile.denominator


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
