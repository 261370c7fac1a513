"""The driver and its allocation's end: when it comes, which stages still fit, and when a running trial
should save and exit (the rules themselves are pure, in hpc_hpo/walltime.py)."""
from __future__ import annotations

import time
from typing import Any

from .. import walltime
from ..journal import make_event
from ..schedulers.base import Branch, Resume, StartNew
from ..state import INTERRUPTED
from .common import ALLOCATION_CHECK_S, LiveTrial


class AllocationEnd:
    """Part of Driver (core.py): wall-time-aware starting and pausing inside an allocation."""

    def _check_allocation_end(self, events: list[dict[str, Any]]) -> None:
        """Ask the backend when the allocation ends, now and then; a moved end is journaled (status shows it)."""
        now = time.monotonic()
        if now - self.allocation_checked < ALLOCATION_CHECK_S:
            return
        self.allocation_checked = now
        end = self.backend.allocation_end()
        if end is not None and (self.allocation_end is None or abs(end - self.allocation_end) > 5):
            self._apply(make_event("allocation_end", end=round(end, 1)), events)
        self.allocation_end = end

    def _seconds_left(self) -> float | None:
        """Seconds until the allocation ends, less the time trials need to save and exit."""
        if self.allocation_end is None:
            return None
        return self.allocation_end - time.time() - self.config.execution.stop_grace_period

    def _stage_fits(self, trial_id: str | None, plan: StartNew | Resume | Branch) -> bool:
        """Whether a run for this plan reaches its next rung (or target) before the allocation ends."""
        left = self._seconds_left()
        if left is None:
            return True
        start = plan.resume_from if isinstance(plan, (Resume, Branch)) else 0.0
        until = walltime.stage_end(self.levels, self.config.resource.max, start, plan.target)
        pace = self.paces.of(trial_id)
        whole_run = (self.allocation_end or 0) - self.run_started
        return walltime.stage_fits(pace, start, until, left, whole_run)

    def _hold_for_end(self, trial_id: str | None, plan: StartNew | Resume | Branch) -> bool:
        """True (and remembered for this sweep) when a stage does not fit before the allocation ends."""
        if self._stage_fits(trial_id, plan):
            return False
        self.held_for_end = True
        return True

    def _measure_pace(self, live: LiveTrial, resource: float, previous: float | None) -> None:
        """After a report: the run's pace, and at its last report that fits, a request to save and exit."""
        pace = walltime.pace(live.launched_at, live.from_resource, time.time(), resource)
        if pace is None:
            return
        self.paces.record(live.trial.trial_id, pace)
        left = self._seconds_left()
        if left is None or live.run_over is not None or live.interrupt_asked or self.stop_reason is not None:
            return
        step = resource - previous if previous is not None and resource > previous else resource - live.from_resource
        if walltime.last_report_that_fits(pace, step, left):
            live.interrupt_asked = True
            self._request_interrupt(live.trial, "the allocation ends")
            self.progress.say(f"pausing   {live.trial.trial_id}  at its next report: the one after would "
                              f"come after the allocation's end")

    def _ending_for_allocation(self) -> str:
        end = time.strftime("%H:%M:%S", time.localtime(self.allocation_end or 0))
        paused = sum(1 for t in self.state.trials.values() if t.state == INTERRUPTED)
        self.closing_line = (f"the allocation ends at {end} and no trial stage fits before it; {paused} trials "
                             "are paused for it. Run the same command in a new allocation to resume")
        return f"the allocation ends at {end}: no trial stage fits before it"
