"""How the driver stops: signals, budgets, failure budgets, the allocation ending under it, a full disk.

A stop pauses, it does not cancel: running trials are asked to save and exit at their next report
and become interrupted, resumed first by the next run."""
from __future__ import annotations

import errno
import json
import signal
import threading
import time
from types import FrameType
from typing import Any

from ..backends import EXITED, JobStatus
from ..errors import HpoError
from ..journal import make_event
from ..schedulers.base import Resume
from ..state import FAILED, INTERRUPTED, PAUSED, TrialState
from ..worker import INTERRUPT_FILE
from .common import (BROKEN_PROGRAM_FAILURES, EXIT_ALLOCATION_GONE, EXIT_FAILED, SHUTDOWN_WAIT_S, STOP_SIGNALS, LiveTrial,
                     plain_number, write_atomically)


class Stopping:
    """Part of Driver (core.py): every way a run of the driver ends, and what becomes of its trials."""

    def _catch_stop_signals(self) -> dict[int, Any]:
        """SIGINT, SIGTERM, SIGHUP and SIGUSR1 (Slurm's --signal=B:USR1@<seconds>: the allocation ends soon)
        start a graceful stop; the handler only records the signal, the loop acts on it between sweeps."""
        if threading.current_thread() is not threading.main_thread():
            return {}  # signal handlers can only be set from the main thread
        return {signum: signal.signal(signum, self._on_stop_signal) for signum in STOP_SIGNALS}

    def _on_stop_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals.append(signum)

    def _handle_signals(self) -> bool:
        """Act on stop signals received since the last sweep; True when the driver should leave at once."""
        signals, self.signals = self.signals, []
        for signum in signals:
            name = signal.Signals(signum).name
            if self.stop_reason is not None:
                if signum != signal.SIGUSR1 and not self.stop_cancelled:
                    # A second Ctrl-C (or SIGTERM) in the grace period: cancel now; trials stay resumable.
                    self.progress.say(f"{name} again: cancelling the {len(self.live)} running trials now")
                    self._cancel_running()
                continue
            self.exit_code = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}.get(signum, 0)
            if self.backend.runs_outlive_driver and signum in (signal.SIGTERM, signal.SIGUSR1):
                self._detach(name)
                return True
            why = "the allocation is ending (SIGUSR1)" if signum == signal.SIGUSR1 else f"stopped by {name}"
            self._begin_stop(why, final=False)
        return False

    def _detach(self, name: str) -> None:
        """Leave: the trial jobs hold their own allocations and keep running; the next driver re-adopts them."""
        self.detached = True
        events, self.pending_events = self.pending_events, []
        self.to_launch.clear()  # journaled but not submitted: the next driver submits them
        reason = f"driver stopped by {name}; {len(self.live)} trial jobs left running for the next driver"
        if self._others_busy():  # the other drivers go on; whichever is last ends the experiment
            self._apply(make_event("driver_left", driver=self.driver_id), events)
        else:
            self._apply(make_event("experiment_ended", reason=reason, final=False), events)
        self._append(events)
        self.progress.say(reason)
        self.closing_line = "run the same command again to resume: it takes back the trial jobs still running"

    def _begin_stop(self, reason: str, final: bool) -> None:
        """Start nothing more; ask every running trial to save and exit at its next report, and cancel
        what is still running after stop_grace_period. The trials it ends become interrupted: the next
        run (or, for a final stop, an extended budget) resumes them."""
        self.stop_reason, self.stop_final = reason, final
        grace = self.config.execution.stop_grace_period
        self.stop_deadline = time.monotonic() + grace
        self.to_launch.clear()  # journaled as created or resumed but not started: the next run starts them
        asked = [live for live in self.live.values() if live.run_over is None]
        for live in asked:
            self._request_interrupt(live.trial, reason)
        self.progress.say(f"{reason}: asking {len(asked)} running trials to save and exit at their next "
                          f"report (cancelled after {grace:g} s)")

    def _request_interrupt(self, trial: TrialState, reason: str) -> None:
        try:
            write_atomically(self._trial_dir(trial.trial_id) / INTERRUPT_FILE, json.dumps({"reason": reason}))
        except OSError:  # a full disk: the cancel after the grace period still ends the run
            pass

    def _cancel_running(self) -> None:
        self.stop_cancelled, self.cancelled_at = True, time.monotonic()
        for live in self.live.values():
            self.actions.append(lambda handle=live.trial.handle: self.backend.cancel(handle or ""))

    def _enforce_stop_deadlines(self, now: float, events: list[dict[str, Any]]) -> None:
        """A stop's grace period over: cancel what still runs; runs that outlive even the cancel are let go."""
        if self.stop_deadline is None or not self.live:
            return
        if not self.stop_cancelled and now > self.stop_deadline:
            self.progress.say(f"cancelling {len(self.live)} trials still running after the grace period")
            self._cancel_running()
        elif self.cancelled_at is not None and now > self.cancelled_at + SHUTDOWN_WAIT_S:
            for live in list(self.live.values()):
                self._run_ended(live, None, "did not end after cancel", events)

    def _allocation_gone(self, status: JobStatus) -> None:
        """The allocation ended or was revoked under the driver: nothing more can start in it. Not the
        trials' fault and not the experiment's end: they are interrupted, and a new allocation resumes."""
        if self.stop_reason is not None and not self.stop_final:
            return
        self.exit_code = EXIT_ALLOCATION_GONE
        self.closing_line = (f"the allocation ended ({status.reason or 'gone'}); run the same command in a new "
                             "allocation to resume")
        self._begin_stop("the allocation ended", final=False)

    def _interrupt(self, live: LiveTrial, exit_code: int | None, reason: str | None, events: list[dict[str, Any]],
                   requeue: bool) -> None:
        """The run was ended by a stop or by the cluster, not by the program: nothing is charged to the trial.
        A cluster-caused end is resubmitted now (within max_requeues); a stop leaves the trial interrupted
        for the next run. Either way it goes on from its checkpoint if it saved one after its last report."""
        trial = live.trial
        plan = self._resume_plan(trial, live.plan)
        fields: dict[str, Any] = {"exit_code": exit_code, "target": plain_number(plan.target)}
        if reason:
            fields["reason"] = reason
        if isinstance(plan, Resume):  # a replaying driver must resume it the same way
            fields["resume_from"] = plain_number(plan.resume_from)
        if requeue:
            self._apply(make_event("trial_retry", trial.trial_id, requeue=True, **fields), events)
            self.progress.say(f"requeued  {trial.trial_id}  ({reason or 'ended by the cluster'}): requeue "
                              f"{trial.requeues} of {self.config.execution.max_requeues}")
            self.to_launch.append((trial, plan))
            return
        self._apply(make_event("trial_interrupted", trial.trial_id, **fields), events)
        where = f"from {self.config.resource.name} {plan.resume_from:g}" if isinstance(plan, Resume) \
            else "from the start (no checkpoint after its last report)"
        self.progress.say(f"interrupted {trial.trial_id}  at {self.config.resource.name} "
                          f"{trial.last_resource or 0:g}; resumes {where}")

    def _check_failure_budget(self, last_reason: str) -> None:
        """Stop the experiment when max_failures trials have failed, or when a program fails its first
        trials without a single report (a broken command fails every trial within seconds)."""
        failed = self.state.count(FAILED)
        limit = self.config.execution.max_failures
        broken = failed >= BROKEN_PROGRAM_FAILURES and not self.state.num_reports
        if self.stop_reason is not None or not (broken or (limit is not None and failed >= limit)):
            return
        why = (f"{failed} trials failed without a single report" if broken
               else f"max_failures ({limit}) reached: {failed} trials failed")
        tail = last_reason.strip().splitlines()[-3:]
        self.exit_code = EXIT_FAILED
        self.closing_line = f"{why}; the last failure's stderr ends:\n    " + "\n    ".join(tail or ["(empty)"])
        self._begin_stop(why, final=True)

    def _check_threshold(self, trial: TrialState, value: float) -> None:
        threshold = self.config.budget.metric_threshold
        if threshold is None or self.stop_reason is not None:
            return
        if (value <= threshold) if self.config.metric.mode == "min" else (value >= threshold):
            self._stop_experiment(f"metric_threshold reached: trial {trial.trial_id} "
                                  f"{self.config.metric.name}={value:.6g}")

    def _check_stop_rules(self) -> None:
        budget = self.config.budget
        if self.stop_reason is not None:
            return
        if budget.max_time is not None and self._time_used() >= budget.max_time:
            self._stop_experiment(f"max_time ({budget.max_time:g} s) reached")
        elif budget.max_resource is not None and self._resource_used() >= budget.max_resource:
            self._stop_experiment(f"max_resource ({budget.max_resource:g}) spent")

    def _stop_experiment(self, reason: str) -> None:
        """A stop rule fired: the experiment ends once the running trials have saved and exited. They are
        interrupted, not cancelled: a later run with a raised budget resumes them."""
        self._begin_stop(reason, final=True)

    def _resource_used(self) -> float:
        """Resource spent over all trials: each trial's furthest report (resumed runs continue from checkpoints)."""
        return sum(t.last_resource or 0 for t in self.state.trials.values())

    def _time_used(self) -> float:
        return self.time_used_before + time.time() - self.run_started

    def _why_done(self) -> str:
        limit = self.config.budget.max_trials
        if limit is not None and len(self.state.trials) >= limit:
            paused = self.state.count(PAUSED)
            if not paused:
                return f"max_trials ({limit}) reached and every trial ended"
            # A pausing scheduler (promotion ASHA, Hyperband) waits for more trials to promote the paused ones.
            resource = self.config.resource
            reached = any((t.last_resource or 0) >= resource.max for t in self.state.trials.values())
            none = "" if reached else f", none reached {resource.name} {resource.max:g}"
            return (f"max_trials ({limit}) reached; every trial ended or is paused at a rung ({paused} paused{none}; "
                    "raise budget.max_trials and run again to promote them)")
        return "nothing more to run"

    def _stop_at_once(self, reason: str) -> None:
        """Cancel every running trial now, wait for them to go, and leave the journal consistent; the trials
        are interrupted, and running the same command again resumes them."""
        if self.stop_reason is None:
            self.stop_reason, self.stop_final = reason, False
        self.progress.say(f"{reason}: cancelling {len(self.live)} running trials")
        for live in self.live.values():
            self.backend.cancel(live.trial.handle or "")
        events, self.pending_events = self.pending_events, []
        self.to_launch.clear()  # journaled as created or resumed but not started: the next run starts them
        deadline = time.monotonic() + SHUTDOWN_WAIT_S
        while self.live and time.monotonic() < deadline:
            self._sweep_trials(events, self._poll_runs())
            if self.live:
                time.sleep(0.05)
        for live in list(self.live.values()):
            self._run_ended(live, None, "did not end after cancel", events)
        self._leave_or_end(events)
        self._append(events)

    def _stop_on_filesystem_error(self, exc: OSError) -> None:
        """Nothing more can be journaled, so nothing more may happen: cancel the runs and stop with one message.

        What the journal acknowledged stays; a batch that did not reach it was not acted on, and the
        next run picks up from the journal (re-adopting or resubmitting the runs cancelled here).
        """
        for live in self.live.values():
            self.backend.cancel(live.trial.handle or "")
        deadline = time.monotonic() + SHUTDOWN_WAIT_S
        handles = [live.trial.handle for live in self.live.values() if live.trial.handle]
        while handles and time.monotonic() < deadline:
            statuses = self.backend.poll(handles)
            handles = [handle for handle in handles if statuses[handle].state != EXITED]
            time.sleep(0.05)
        where = exc.filename or self.config.experiment_dir
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        raise HpoError(f"cannot write '{where}': {exc.strerror}; the run stopped and its running trials were "
                       f"cancelled. {'Free some space (or quota) there, then r' if full else 'R'}un the same command "
                       "again to resume: nothing the journal recorded is lost") from None

    def _end_experiment(self, events: list[dict[str, Any]]) -> None:
        """Nothing runs and nothing waits to: journal why it ended, and whether a new run may go on with it."""
        # Trials paused for the allocation's end are still to run, even when no new trial may start any more
        # (max_trials reached): the experiment waits for the next allocation, it has not ended.
        paused_for_end = any(t.state == INTERRUPTED for t in self.state.trials.values())
        if self.stop_reason is None and (self.held_for_end or paused_for_end):
            self.stop_reason, self.stop_final = self._ending_for_allocation(), False
        final = self.stop_final if self.stop_reason is not None else True
        reason = self.stop_reason or self._why_done()
        self._apply(make_event("experiment_ended", reason=reason, final=final), events)
        if final and not self.state.num_reports and self.exit_code == 0:
            self.exit_code = EXIT_FAILED
            self.closing_line = ("no trial reported anything: check the trials' stderr (hpc-hpo status shows it) "
                                 "and that the program reports the metric and the resource")
        elif not final and self.closing_line is None:
            self.closing_line = "run the same command again to resume: interrupted trials go on first"
        elif self.stop_reason is None and self.closing_line is None and self.state.count(PAUSED):
            self.closing_line = f"ended: {reason}"  # the best trial printed next may be a paused one
