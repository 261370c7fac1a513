"""FIFO: every trial runs to the maximum resource; nothing is stopped early."""
from __future__ import annotations

from .base import Decision, Outcome, Scheduler


class FifoScheduler(Scheduler):
    def on_report(self, trial_id: str, resource: float, value: float) -> Outcome:
        if resource >= self.max_t:
            return Outcome(Decision.COMPLETE, rung=self.max_t)
        return Outcome(Decision.CONTINUE)
