"""Wall-time-aware scheduling inside an allocation: pure arithmetic, no I/O and no clock of its own.

Inside an allocation with an end, work cut off by that end is lost: a trial killed mid-epoch trains
that epoch again, and a run started too late to reach its next rung spends node time on a stage it
cannot finish. So the driver starts (or resumes, or promotes) a run only when its stage fits before
the end, judged from measured seconds per unit of resource, and asks a running trial to save and
exit at its last report that fits. The driver passes the times in.
"""
from __future__ import annotations

import bisect
import statistics
from collections import OrderedDict
from typing import Iterable, Sequence


def clock_seconds(text: str) -> float | None:
    """Seconds of a clock duration, "SS", "MM:SS" or "HH:MM:SS" (hours may exceed 24), the form Slurm, PBS
    and configs write; None for anything else, non-ASCII digits included ('١:00' passes isdigit())."""
    parts = text.strip().split(":")
    if not 1 <= len(parts) <= 3 or not all(p.isascii() and p.isdigit() for p in parts):
        return None
    seconds = 0
    for part in parts:
        seconds = seconds * 60 + int(part)
    return float(seconds)


def pace(started_at: float, from_resource: float, now: float, resource: float) -> float | None:
    """Seconds per unit of resource of one run so far (start-up included), or None before any progress."""
    done = resource - from_resource
    return (now - started_at) / done if done > 0 and now >= started_at else None


def typical_pace(paces: Iterable[float]) -> float | None:
    """The experiment's median pace, for runs that have not measured their own."""
    known = [p for p in paces if p > 0]
    return statistics.median(known) if known else None


class RecentPaces:
    """Each run's latest pace, for the runs measured most recently. A bounded set keeps the typical pace
    (a median, taken at every launch inside an allocation with an end) cheap in an experiment of 100,000
    trials, and follows what runs now rather than what ran hours ago."""

    def __init__(self, limit: int = 256) -> None:
        self.limit = limit
        self._paces: OrderedDict[str, float] = OrderedDict()

    def record(self, trial_id: str, seconds_per_unit: float) -> None:
        self._paces[trial_id] = seconds_per_unit
        self._paces.move_to_end(trial_id)
        if len(self._paces) > self.limit:
            self._paces.popitem(last=False)

    def of(self, trial_id: str | None) -> float | None:
        """The run's own pace when it was measured recently, else the typical pace."""
        own = self._paces.get(trial_id or "")
        return own if own else typical_pace(self._paces.values())


def stage_end(levels: Sequence[float], max_t: float, from_resource: float, target: float | None) -> float:
    """Where a run that starts at from_resource next reaches a point worth reaching: its target when it
    has one below the maximum (a pausing scheduler's rung), else the next rung level, else max_t."""
    if target is not None and from_resource < target < max_t:
        return target
    position = bisect.bisect_right(levels, from_resource)
    return min(levels[position], max_t) if position < len(levels) else max_t


def stage_fits(seconds_per_unit: float | None, from_resource: float, until: float, seconds_left: float,
               whole_run_s: float) -> bool:
    """Whether a run from from_resource reaches `until` before the end. Unknown pace: start (nothing to
    judge by). A stage longer than a whole allocation like this one would never fit: start it anyway, it
    goes on from its checkpoints in the next allocation."""
    if seconds_per_unit is None:
        return True
    needed = (until - from_resource) * seconds_per_unit
    return needed <= seconds_left or needed > whole_run_s


def last_report_that_fits(seconds_per_unit: float, step: float, seconds_left: float) -> bool:
    """At a report: True when the trial should save and exit at its next report, because the one after
    would come too late. (A request written now is seen by the trial at its next report.)"""
    return 2 * step * seconds_per_unit > seconds_left
