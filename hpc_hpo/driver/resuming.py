"""How a driver picks up an experiment: the journal replayed into state, scheduler and searcher, then
the runs a previous driver left reconciled with what the backend still has."""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Iterable

from ..journal import make_event
from ..schedulers.base import Branch, Decision, Resume, StartNew
from ..state import INTERRUPTED, PAUSED, PENDING, TrialState
from .common import RUN_OVER, LiveTrial


class Resuming:
    """Part of Driver (core.py): replay and reconciliation after any stop or crash."""

    def _replay(self, events: Iterable[dict[str, Any]]) -> None:
        """Rebuild state, scheduler and searcher from the journal by making the same calls in the same order."""
        for event in events:
            if not self.state.apply(event):
                continue  # damaged or repeated (state warned once per kind): scheduler and searcher must not see it
            self._remember_plan(event)
            kind, trial_id = event["type"], event.get("trial_id", "")
            if kind == "trial_created":
                self.scheduler.on_trial_created(trial_id, event["config"])
                self.scheduler.on_start(trial_id, self._created_action(event))
                self.searcher.on_trial_created(trial_id, event["config"])
            elif kind == "trial_resumed":
                self.scheduler.on_start(trial_id, Resume(trial_id, event["resume_from"], event["target"]))
            elif kind == "report":
                self.scheduler.on_report(trial_id, float(event["resource"]), self.config.metric.scheduled(
                    float(event["value"]), event.get("metrics")))  # all objectives, as the run saw them
                self.searcher.on_report(trial_id, float(event["resource"]), self._loss(float(event["value"])))
            elif kind == "trial_paused":
                self.scheduler.on_paused(trial_id)
            elif kind == "trial_ended":
                self.scheduler.on_trial_end(trial_id)
                self.searcher.on_trial_end(trial_id)

    def _remember_plan(self, event: dict[str, Any]) -> None:
        """Replay: what the trial's next run is for, and the last decision its current run got."""
        kind, trial_id = event["type"], event.get("trial_id", "")
        if kind == "trial_created":
            self.replayed_plans[trial_id] = self._created_action(event)
        elif kind in ("trial_resumed", "trial_retry", "trial_interrupted") and "resume_from" in event:
            target = event.get("target", self.state.trials[trial_id].target or self.config.resource.max)
            self.replayed_plans[trial_id] = Resume(trial_id, event["resume_from"], target)
        elif kind == "trial_interrupted" and "target" in event:  # starts over, to the target it had
            self.replayed_plans[trial_id] = dataclasses.replace(self.replayed_plans[trial_id],
                                                                target=event["target"])
        elif kind == "trial_started":
            self.replayed_decisions.pop(trial_id, None)
        elif kind == "report" and event["decision"] != Decision.CONTINUE.value:
            self.replayed_decisions[trial_id] = event

    def _reconcile_runs(self) -> None:
        """Pick up where a previous driver stopped, before anything new is planned.

        Runs it left going are re-adopted by their tag (a run submitted just before a crash, its handle
        never journaled, is found the same way), so no attempt is run twice; runs it planned but never
        submitted are submitted now; a run that left no trace counts as a lost attempt.
        """
        interrupted = []
        lost: set[str] = set()
        for trial in list(self.state.trials.values()):
            if self._owner_alive(trial):
                continue  # another driver of this experiment runs it (README "Elastic experiments")
            if trial.driver is not None and trial.driver != self.driver_id and trial.driver not in lost:
                lost.add(trial.driver)  # its process is gone (its member lock is free): say so once
                self._apply(make_event("driver_lost", driver=trial.driver), self.pending_events)
            trial_dir = self._trial_dir(trial.trial_id)
            plan = self.replayed_plans[trial.trial_id]
            if trial.state in (PENDING, INTERRUPTED):
                # A run submitted just before a crash has no trial_started yet: found by its tag.
                handle = self.backend.adopt(None, self._run_tag(trial.trial_id, trial.runs + 1), trial_dir)
                if handle is None:
                    (interrupted if trial.state == INTERRUPTED else self.to_launch).append((trial, plan))
                    # Taken on by this driver: another one joining now leaves it alone.
                    self._apply(make_event("trial_claimed", trial.trial_id, driver=self.driver_id),
                                self.pending_events)
                    continue
                self._apply(make_event("trial_started", trial.trial_id, handle=handle, backend=self.backend.name,
                                       run=trial.runs + 1, adopted=True, driver=self.driver_id), self.pending_events)
            elif trial.runs and not trial.process_ended and trial.state != PAUSED:
                handle = self.backend.adopt(trial.handle, self._run_tag(trial.trial_id, trial.runs), trial_dir)
                if handle is not None and (handle != trial.handle or trial.driver != self.driver_id):
                    self._apply(make_event("trial_adopted", trial.trial_id, handle=handle, driver=self.driver_id),
                                self.pending_events)
            else:
                continue
            live = self._watch(trial, plan)
            if handle is None:
                self._read_reports(live, self.pending_events)
                self._drain_reports(live, self.pending_events)
                self._run_ended(live, None, "the run was lost while no driver watched it", self.pending_events,
                                resubmit=True)
                if trial.state == PENDING and trial.driver != self.driver_id:
                    # Requeued for this driver to launch: the takeover of its lost driver (next sweep) leaves it
                    # alone, instead of judging that driver gone a second time and interrupting the trial.
                    self._apply(make_event("trial_claimed", trial.trial_id, driver=self.driver_id),
                                self.pending_events)
                continue
            self.progress.say(f"adopted   {trial.trial_id}  (run {trial.runs}, {handle}) from the previous driver")
            self._repeat_decision(live)
        if interrupted:  # the longest-running, most promising trials: they go on before anything new
            self.progress.say(f"resuming {len(interrupted)} interrupted trials first")
            self.to_launch[:0] = interrupted

    def _repeat_decision(self, live: LiveTrial) -> None:
        """The adopted run may have been told nothing yet: tell it again (the decision file is idempotent)."""
        trial = live.trial
        last = self.replayed_decisions.get(trial.trial_id)
        if last is None:
            return
        decision = Decision(last["decision"])
        self._tell_trial(trial, float(last["resource"]), decision, last.get("target"))
        if decision in RUN_OVER:
            live.run_over = decision
        if decision == Decision.STOP:
            self.actions.append(lambda: self.backend.cancel(trial.handle or ""))
        elif decision in (Decision.COMPLETE, Decision.PAUSE):
            live.exit_deadline = time.monotonic() + self.config.execution.stop_grace_period

    def _created_action(self, event: dict[str, Any]) -> StartNew | Branch:
        """The action a trial_created event recorded: a new config, or a PBT child of a parent."""
        target = event.get("target", self.config.resource.max)
        if "parent" in event:
            return Branch(event["parent"], event["replaces"], event["config"], event["resume_from"], target)
        return StartNew(target=target, bracket=event.get("bracket", 0))

    def _resume_plan(self, trial: TrialState, plan: StartNew | Resume | Branch) -> StartNew | Resume | Branch:
        """How an interrupted or requeued run goes on: from its checkpoint at its last report (programs save
        before they report), else its attempt over, to the target it had (a promotion may have raised it)."""
        target = trial.target if trial.target is not None else plan.target
        checkpoint = self._trial_dir(trial.trial_id) / "checkpoint"
        if trial.last_resource and checkpoint.is_dir() and any(checkpoint.iterdir()):
            return Resume(trial.trial_id, trial.last_resource, target)
        return dataclasses.replace(plan, target=target)
