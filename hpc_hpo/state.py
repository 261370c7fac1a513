"""Experiment state as a fold over journal events: the driver, `status`, `best` and `export` all use it."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .journal import iter_events

# Trial states. A trial whose stop/complete decision is taken keeps that state when its process ends.
PENDING, RUNNING, PAUSED = "pending", "running", "paused"
# Its run was ended by a graceful stop, a budget, the allocation's end or a cluster fault: nothing is
# charged to the trial, and the next run resumes it first (from its checkpoint when it saved one).
INTERRUPTED = "interrupted"
STOPPED, COMPLETED, FINISHED, FAILED, CANCELLED = "stopped", "completed", "finished", "failed", "cancelled"
ENDED_STATES = (STOPPED, COMPLETED, FINISHED, FAILED, CANCELLED)


@dataclass(slots=True)  # slots: a long experiment keeps many of these
class TrialState:
    trial_id: str
    index: int
    config: dict[str, Any]
    state: str = PENDING
    handle: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    reason: str | None = None
    last_resource: float | None = None
    best_value: float | None = None
    best_resource: float | None = None
    decided: bool = False  # a stop/complete decision was taken: later lines are not fed to the scheduler
    process_ended: bool = False
    num_reports: int = 0
    bracket: int = 0
    target: float | None = None  # the resource the current run goes to
    runs: int = 0  # processes started for this trial: 1, then one more per resume
    resume_from: float = 0
    failures: int = 0  # runs that failed and were retried
    requeues: int = 0  # runs the cluster ended (preempted, node failure, time limit) and that were resubmitted


@dataclass(slots=True)
class ReportRow:
    trial_id: str
    resource: float
    value: float
    elapsed_s: float
    decision: str
    components: dict[str, float] | None = None  # values of combined metrics, when the objective combines


@dataclass
class ExperimentState:
    name: str = ""
    metric: str = ""
    mode: str = "min"
    resource: str = "epoch"
    param_names: list[str] = field(default_factory=list)
    combined: list[str] = field(default_factory=list)  # metrics the objective is a weighted sum of
    created_at: float | None = None
    trials: dict[str, TrialState] = field(default_factory=dict)
    rows: list[ReportRow] = field(default_factory=list)
    ended: str | None = None  # why the last run ended
    finished: bool = False  # the experiment is over; a new run has nothing to do
    closed_runs_s: float = 0.0
    run_start: float | None = None
    last_t: float | None = None
    allocation_end: float | None = None  # when the latest run's allocation ends (unix seconds), if it has an end

    def apply(self, event: dict[str, Any]) -> None:
        handler = getattr(self, "_on_" + str(event.get("type")), None)
        if handler is not None:
            handler(event)
        self.last_t = event.get("t", self.last_t)

    def time_used(self) -> float:
        """Seconds the driver has run this experiment, over all runs (what budget.max_time limits)."""
        open_run = (self.last_t - self.run_start) if self.run_start is not None and self.last_t else 0.0
        return self.closed_runs_s + open_run

    def _on_experiment_created(self, e: dict[str, Any]) -> None:
        self.name, self.metric, self.mode = e["name"], e["metric"], e["mode"]
        self.resource, self.param_names = e["resource"], list(e["params"])
        self.combined = list(e.get("combined", []))
        self.created_at = e["t"]

    def _on_run_started(self, e: dict[str, Any]) -> None:
        if self.run_start is not None and self.last_t is not None:
            self.closed_runs_s += self.last_t - self.run_start
        self.run_start = e["t"]
        self.ended, self.finished, self.allocation_end = None, False, None

    def _on_trial_created(self, e: dict[str, Any]) -> None:
        self.trials[e["trial_id"]] = TrialState(e["trial_id"], e["index"], e["config"], bracket=e.get("bracket", 0),
                                                target=e.get("target"), resume_from=e.get("resume_from", 0))

    def _on_trial_resumed(self, e: dict[str, Any]) -> None:
        trial = self.trials[e["trial_id"]]
        trial.state, trial.process_ended = PENDING, False
        trial.resume_from, trial.target = e["resume_from"], e["target"]

    def _on_trial_started(self, e: dict[str, Any]) -> None:
        trial = self.trials[e["trial_id"]]
        trial.state, trial.handle, trial.process_ended = RUNNING, e["handle"], False
        trial.runs += 1
        if trial.started_at is None:
            trial.started_at = e["t"]

    def _on_trial_adopted(self, e: dict[str, Any]) -> None:
        """A restarted driver follows the same run under another handle (found by its tag)."""
        self.trials[e["trial_id"]].handle = e["handle"]

    def _on_trial_retry(self, e: dict[str, Any]) -> None:
        trial = self.trials[e["trial_id"]]
        trial.state = PENDING
        if e.get("requeue"):
            trial.requeues += 1
        else:
            trial.failures += 1
        trial.exit_code, trial.reason = e.get("exit_code"), e.get("reason")

    def _on_trial_interrupted(self, e: dict[str, Any]) -> None:
        trial = self.trials[e["trial_id"]]
        trial.state, trial.process_ended = INTERRUPTED, True
        trial.exit_code, trial.reason = e.get("exit_code"), e.get("reason")

    def _on_trial_paused(self, e: dict[str, Any]) -> None:
        trial = self.trials[e["trial_id"]]
        trial.state, trial.process_ended, trial.exit_code = PAUSED, True, e.get("exit_code")

    def _on_report(self, e: dict[str, Any]) -> None:
        trial = self.trials[e["trial_id"]]
        value, resource = float(e["value"]), float(e["resource"])
        self.rows.append(ReportRow(trial.trial_id, e["resource"], value, e["elapsed_s"], e["decision"],
                                   e.get("metrics")))
        trial.last_resource = resource
        trial.num_reports += 1
        # At an equal value the later (higher) resource counts: "the one that got further".
        if self.is_better(value, trial.best_value) or (value == trial.best_value):
            trial.best_value, trial.best_resource = value, e["resource"]
        if e["decision"] in ("stop", "complete"):
            trial.decided = True
            trial.state = STOPPED if e["decision"] == "stop" else COMPLETED
        elif e["decision"] == "promote":
            trial.target = e["target"]

    def _on_trial_ended(self, e: dict[str, Any]) -> None:
        trial = self.trials[e["trial_id"]]
        trial.process_ended, trial.ended_at = True, e["t"]
        trial.exit_code, trial.reason = e.get("exit_code"), e.get("reason")
        if not trial.decided:
            trial.state = e["state"]

    def _on_allocation_end(self, e: dict[str, Any]) -> None:
        self.allocation_end = e["end"]

    def _on_experiment_ended(self, e: dict[str, Any]) -> None:
        self.ended, self.finished = e["reason"], bool(e.get("final", True))

    def is_better(self, value: float, than: float | None) -> bool:
        if math.isnan(value):
            return False
        if than is None:
            return True
        return value < than if self.mode == "min" else value > than

    def best_trial(self) -> TrialState | None:
        """The trial with the best value at any report; at equal values the one that got further."""
        best = None
        for trial in self.trials.values():
            if trial.best_value is None:
                continue
            if best is None or self.is_better(trial.best_value, best.best_value) or (
                    trial.best_value == best.best_value
                    and (trial.best_resource or 0) > (best.best_resource or 0)):
                best = trial
        return best

    def count(self, *states: str) -> int:
        return sum(1 for t in self.trials.values() if t.state in states)


def fold(events: Iterable[dict[str, Any]]) -> ExperimentState:
    state = ExperimentState()
    for event in events:
        state.apply(event)
    return state


def load_state(experiment_dir: Path) -> ExperimentState:
    return fold(iter_events(experiment_dir / "journal.jsonl"))
