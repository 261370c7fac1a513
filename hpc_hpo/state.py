"""Experiment state as a fold over journal events: the driver, `status`, `best` and `export` all use it."""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from .journal import iter_events

log = logging.getLogger(__name__)

# Trial states. A trial whose stop/complete decision is taken keeps that state when its process ends.
PENDING, RUNNING, PAUSED = "pending", "running", "paused"
# Its run was ended by a graceful stop, a budget, the allocation's end or a cluster fault: nothing is
# charged to the trial, and the next run resumes it first (from its checkpoint when it saved one).
INTERRUPTED = "interrupted"
STOPPED, COMPLETED, FINISHED, FAILED, CANCELLED = "stopped", "completed", "finished", "failed", "cancelled"
ENDED_STATES = (STOPPED, COMPLETED, FINISHED, FAILED, CANCELLED)
TRIAL_STATES = (PENDING, RUNNING, PAUSED, INTERRUPTED, *ENDED_STATES)
DECISIONS = ("continue", "stop", "pause", "promote", "complete")


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
    # (kind code, t) of each event folded into this trial besides its creation and reports, flat: an exact
    # repeat of a line is recognised by these. A few per trial; reports need none (their resource says it).
    marks: tuple[Any, ...] = ()
    # The driver whose run this is, or who took the trial on to run it next (several drivers may share an
    # experiment, README "Elastic experiments"); None while nobody does (paused, interrupted, ended).
    driver: str | None = None
    # Where the trial stands in the experiment's creation order (the journal's): at equal best values and
    # resources the earlier trial is the experiment's best (ExperimentState.best_trial).
    position: int = 0


@dataclass(slots=True)
class ReportRow:
    trial_id: str
    resource: float
    value: float
    elapsed_s: float
    decision: str
    components: dict[str, float] | None = None  # values of combined metrics (or of every objective), if several
    t: float | None = field(default=None, compare=False)  # when the driver processed it (unix seconds)


@dataclass
class ExperimentState:
    name: str = ""
    metric: str = ""
    mode: str = "min"
    resource: str = "epoch"
    param_names: list[str] = field(default_factory=list)
    combined: list[str] = field(default_factory=list)  # metrics the objective is a weighted sum of
    # Several objectives (a Pareto front), names and modes; the first is `metric` and `mode`. Empty for one.
    objectives: list[str] = field(default_factory=list)
    modes: list[str] = field(default_factory=list)
    created_at: float | None = None
    trials: dict[str, TrialState] = field(default_factory=dict)
    # trial id -> the driver running it or that took it on (several drivers, README "Elastic experiments"):
    # what a sweep looks at to know what others run, without walking every trial ever created.
    owners: dict[str, str] = field(default_factory=dict)
    # Trial ids in the order their ends were folded: what checkpoint retention looks at since its last look.
    ended_ids: list[str] = field(default_factory=list)
    interrupted_ids: list[str] = field(default_factory=list)  # the same for interrupts: what a driver may resume
    # Every report as a row, for status, export and plot. A driver decides on far less and does not keep them
    # (keep_rows=False: 2.4 KiB per finished trial otherwise): it counts them, and who wants each new row as it
    # is folded (the hooks, for a trial's last report) sets on_row.
    rows: list[ReportRow] = field(default_factory=list)
    keep_rows: bool = True
    num_reports: int = 0
    on_row: Callable[[ReportRow], None] | None = field(default=None, repr=False, compare=False)
    ended: str | None = None  # why the last run ended
    finished: bool = False  # the experiment is over; a new run has nothing to do
    closed_runs_s: float = 0.0
    run_start: float | None = None
    last_t: float | None = None
    allocation_end: float | None = None  # when the latest run's allocation ends (unix seconds), if it has an end
    # Damaged and repeated journal lines: each kind is warned about once, and how many were skipped.
    warned: set[str] = field(default_factory=set)
    skipped: int = 0
    # (type, t) of the events that name no trial (runs, ends, config changes): few, kept to spot repeats.
    seen: set[tuple[str, float]] = field(default_factory=set)
    # The best trial, kept up to date as reports are folded (best_trial() is asked every sweep), and the mode it
    # was kept for: a state whose mode changes afterwards looks for it again once.
    _best: TrialState | None = field(default=None, repr=False, compare=False)
    _best_mode: str | None = field(default=None, repr=False, compare=False)

    def apply(self, event: Any) -> bool:
        """Fold one event in. A damaged event (a field missing or of the wrong type, an unknown trial) or a
        repeated one (the same line again, a second trial_created, a report at a resource the trial has)
        changes nothing and returns False, with one warning per kind: the journal is read by every
        command and every resume, so one bad line must never stop them."""
        problem = _problem(event)
        if problem is not None:
            return self._skip(problem, "skipped a damaged journal event", event)
        kind, t, trial_id = event["type"], event["t"], event.get("trial_id")
        trial = self.trials.get(trial_id) if kind in _TRIAL_EVENTS else None
        if kind == "trial_created":
            if trial is not None:
                return self._skip("trial_created for a trial that exists", "ignored a repeated journal event", event)
        elif kind == "report":
            if trial is None:
                return self._skip("report for a trial the journal never created", "skipped a journal event", event)
            if trial.last_resource is not None and float(event["resource"]) <= trial.last_resource:
                return self._skip("report at a resource the trial has", "ignored a repeated journal event", event)
        elif kind in _TRIAL_EVENTS:
            if trial is None:
                return self._skip(f"{kind} for a trial the journal never created", "skipped a journal event", event)
            code = _TRIAL_EVENTS[kind]
            marks = trial.marks
            if any(marks[i] == code and marks[i + 1] == t for i in range(0, len(marks), 2)):
                return self._skip(f"repeated {kind}", "ignored a repeated journal event", event)
            trial.marks = marks + (code, t)
        elif kind == "experiment_created" and self.created_at is not None:  # an experiment is created once
            return self._skip("a second experiment_created", "ignored a journal event", event)
        else:
            key = (kind, t)
            if key in self.seen:
                return self._skip(f"repeated {kind}", "ignored a repeated journal event", event)
            self.seen.add(key)
        handler = getattr(self, "_on_" + kind, None)
        if handler is not None:
            handler(event)
        self.last_t = t
        return True

    def _skip(self, kind: str, what: str, event: Any) -> bool:
        self.skipped += 1
        if kind not in self.warned:
            self.warned.add(kind)
            shown = repr(event)
            log.warning("journal: %s (%s): %s; such events are left out of the state",
                        what, kind, shown if len(shown) <= 200 else shown[:197] + "...")
        return False

    def time_used(self) -> float:
        """Seconds the driver has run this experiment, over all runs (what budget.max_time limits)."""
        open_run = (self.last_t - self.run_start) if self.run_start is not None and self.last_t else 0.0
        return self.closed_runs_s + open_run

    def _on_experiment_created(self, e: dict[str, Any]) -> None:
        self.name, self.metric, self.mode = e["name"], e["metric"], e["mode"]
        self.resource, self.param_names = e["resource"], list(e["params"])
        self.combined = list(e.get("combined", []))
        self.objectives, self.modes = list(e.get("objectives", [])), list(e.get("modes", []))
        self.created_at = e["t"]
        self._best_mode = None  # the mode is known now: the best is looked for again when asked

    def _on_run_started(self, e: dict[str, Any]) -> None:
        if self.run_start is not None and self.last_t is not None:
            self.closed_runs_s += self.last_t - self.run_start
        self.run_start = e["t"]
        self.ended, self.finished, self.allocation_end = None, False, None

    def _on_trial_created(self, e: dict[str, Any]) -> None:
        index, position = e["index"], len(self.trials)
        self.trials[e["trial_id"]] = TrialState(e["trial_id"], index, e["config"], bracket=e.get("bracket", 0),
                                                target=e.get("target"), resume_from=e.get("resume_from", 0),
                                                position=index if index == position else position)  # one int less
        self._set_driver(self.trials[e["trial_id"]], e.get("driver"))

    def _on_trial_resumed(self, e: dict[str, Any]) -> None:
        trial = self.trials[e["trial_id"]]
        trial.state, trial.process_ended = PENDING, False
        trial.resume_from, trial.target = e["resume_from"], e["target"]
        self._set_driver(trial, e.get("driver"))

    def _on_trial_started(self, e: dict[str, Any]) -> None:
        trial = self.trials[e["trial_id"]]
        trial.state, trial.handle, trial.process_ended = RUNNING, e["handle"], False
        trial.runs += 1
        self._set_driver(trial, e.get("driver", trial.driver))
        if trial.started_at is None:
            trial.started_at = e["t"]

    def _on_trial_adopted(self, e: dict[str, Any]) -> None:
        """A restarted driver follows the same run under another handle (found by its tag)."""
        trial = self.trials[e["trial_id"]]
        trial.handle = e["handle"]
        self._set_driver(trial, e.get("driver", trial.driver))

    def _on_trial_claimed(self, e: dict[str, Any]) -> None:
        """A driver took an interrupted trial on: its next run is that driver's (no other starts it)."""
        self._set_driver(self.trials[e["trial_id"]], e["driver"])

    def _set_driver(self, trial: TrialState, driver: str | None) -> None:
        trial.driver = driver
        if driver is None:
            self.owners.pop(trial.trial_id, None)
        else:
            self.owners[trial.trial_id] = driver

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
        self._set_driver(trial, None)  # anyone's to resume now
        self.interrupted_ids.append(trial.trial_id)

    def _on_trial_paused(self, e: dict[str, Any]) -> None:
        trial = self.trials[e["trial_id"]]
        trial.state, trial.process_ended, trial.exit_code = PAUSED, True, e.get("exit_code")
        self._set_driver(trial, None)

    def _on_report(self, e: dict[str, Any]) -> None:
        trial = self.trials[e["trial_id"]]
        value, resource = float(e["value"]), float(e["resource"])
        self.num_reports += 1
        if self.keep_rows or self.on_row is not None:
            row = ReportRow(trial.trial_id, e["resource"], value, e["elapsed_s"], e["decision"], e.get("metrics"),
                            e["t"])
            if self.keep_rows:
                self.rows.append(row)
            if self.on_row is not None:
                self.on_row(row)
        trial.last_resource = resource
        trial.num_reports += 1
        # At an equal value the later (higher) resource counts: "the one that got further".
        if self.is_better(value, trial.best_value) or (value == trial.best_value):
            trial.best_value, trial.best_resource = value, e["resource"]
            self._keep_best(trial)
        if e["decision"] in ("stop", "complete"):
            trial.decided = True
            trial.state = STOPPED if e["decision"] == "stop" else COMPLETED
        elif e["decision"] == "promote":
            trial.target = e["target"]

    def _on_trial_ended(self, e: dict[str, Any]) -> None:
        trial = self.trials[e["trial_id"]]
        trial.process_ended, trial.ended_at = True, e["t"]
        trial.exit_code, trial.reason = e.get("exit_code"), e.get("reason")
        self._set_driver(trial, None)
        self.ended_ids.append(trial.trial_id)
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
        """The trial with the best value at any report; at equal values the one that got further; at equal
        values and resources the one created first."""
        if self._best_mode != self.mode:
            self._best, self._best_mode = scan_best(self), self.mode
        return self._best

    def _keep_best(self, trial: TrialState) -> None:
        """The trial's best just moved on (a better value, or the same further on): is it the experiment's?
        A trial's (value, resource) only ever moves on, so the best so far is all there is to compare with."""
        if self._best_mode != self.mode:  # not kept yet for this mode: best_trial() looks once
            return
        best = self._best
        if best is None or best is trial or _ahead(self, trial, best):
            self._best = trial

    def count(self, *states: str) -> int:
        return sum(1 for t in self.trials.values() if t.state in states)


def _ahead(state: ExperimentState, trial: TrialState, of: TrialState) -> bool:
    """Whether trial comes before `of` as the best: a better value, the same further on, or both the same and
    created earlier."""
    value, resource = trial.best_value, trial.best_resource or 0
    if value is None:
        return False
    if of.best_value is None or state.is_better(value, of.best_value):
        return True
    if value != of.best_value:
        return False
    other = of.best_resource or 0
    return resource > other or (resource == other and trial.position < of.position)


def scan_best(state: ExperimentState) -> TrialState | None:
    """best_trial() by a look at every trial (once per mode: the fold keeps the answer as reports come)."""
    best = None
    for trial in state.trials.values():
        if trial.best_value is None:
            continue
        if best is None or state.is_better(trial.best_value, best.best_value) or (
                trial.best_value == best.best_value
                and (trial.best_resource or 0) > (best.best_resource or 0)):
            best = trial
    return best


_BIG = 2 ** 1000  # an integer beyond this does not fit in a float


def _number(value: Any) -> bool:
    """A number JSON holds (not a bool; numpy's float64 is a float); NaN and infinities included: a diverged
    trial reports them."""
    if isinstance(value, float):
        return True
    return isinstance(value, int) and not isinstance(value, bool) and -_BIG < value < _BIG


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return value - value == 0
    return isinstance(value, int) and not isinstance(value, bool) and -_BIG < value < _BIG


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _text(value: Any) -> bool:
    return isinstance(value, str)


def _maybe(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


def _names(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(name, str) for name in value)


_Check = Callable[[Any], bool]
_DECISION_SET, _STATE_SET = frozenset(DECISIONS), frozenset(TRIAL_STATES)
_EXIT: dict[str, _Check] = {"exit_code": _maybe(lambda v: isinstance(v, int) and not isinstance(v, bool)),
                             "reason": _maybe(_text)}
# What the fold and a replaying driver read of each event type: (required fields, optional fields), each with
# the check its value must pass. Every event also needs a finite number `t`; trial events a string trial_id.
_FIELDS: dict[str, tuple[dict[str, _Check], dict[str, _Check]]] = {
    "experiment_created": ({"name": _text, "metric": _text, "mode": lambda v: v in ("min", "max"),
                            "resource": _text, "params": _names},
                           {"combined": _names, "objectives": _names,
                            "modes": lambda v: isinstance(v, list) and all(m in ("min", "max") for m in v)}),
    "trial_created": ({"index": _count, "config": lambda v: isinstance(v, dict)},
                      {"bracket": _count, "target": _maybe(_finite), "resume_from": _finite,
                       "parent": _text, "replaces": _text, "driver": _text}),
    "trial_resumed": ({"resume_from": _finite, "target": _finite}, {"driver": _text}),
    "trial_started": ({"handle": _text}, {"driver": _text}),
    "trial_adopted": ({"handle": _text}, {"driver": _text}),
    "trial_claimed": ({"driver": _text}, {}),
    "driver_lost": ({"driver": _text}, {}),
    "driver_left": ({"driver": _text}, {}),
    "trial_retry": ({}, {**_EXIT, "resume_from": _finite, "target": _finite}),
    "trial_interrupted": ({}, {**_EXIT, "resume_from": _finite, "target": _finite}),
    "trial_paused": ({}, {"exit_code": _EXIT["exit_code"]}),
    "report": ({"resource": lambda v: _finite(v) and v > 0, "value": _number, "elapsed_s": _number,
                "decision": lambda v: isinstance(v, str) and v in _DECISION_SET},
               {"target": _finite, "metrics": _maybe(lambda v: isinstance(v, dict))}),
    "trial_ended": ({"state": lambda v: isinstance(v, str) and v in _STATE_SET}, _EXIT),
    "allocation_end": ({"end": _finite}, {}),
    "experiment_ended": ({"reason": _text}, {"final": lambda v: isinstance(v, bool)}),
}
# Event types about one trial, each with a small code for TrialState.marks.
_TRIAL_EVENTS = {kind: code for code, kind in enumerate(
    ("trial_created", "trial_resumed", "trial_started", "trial_adopted", "trial_retry", "trial_interrupted",
     "trial_paused", "report", "trial_ended", "trial_claimed"))}
_ABSENT: Any = object()
# The same table as one tuple of (field, check, required) per type, walked once per event (a million in a long
# experiment's journal).
_CHECKS: dict[str, tuple[tuple[str, _Check, bool], ...]] = {
    kind: ((("trial_id", _text, True),) if kind in _TRIAL_EVENTS else ())
    + tuple((name, check, True) for name, check in required.items())
    + tuple((name, check, False) for name, check in optional.items())
    for kind, (required, optional) in _FIELDS.items()}


def _sound_report(event: dict[str, Any]) -> bool:
    """A plain report as the driver writes most of them (decision 'continue', no target, no metrics): the
    rules of _CHECKS["report"] for the common case in one expression. False means: check it in full."""
    resource, value, elapsed = event.get("resource"), event.get("value"), event.get("elapsed_s")
    if not isinstance(event.get("trial_id"), str) or event.get("decision") != "continue":
        return False
    if "target" in event or "metrics" in event:
        return False
    return (_finite(resource) and resource > 0) and _number(value) and _number(elapsed)


def _problem(event: Any) -> str | None:
    """What is wrong with an event, as a kind of damage to warn about once; None if the fold can take it."""
    if not isinstance(event, dict):
        return "not a JSON object"
    kind = event.get("type")
    if not isinstance(kind, str):
        return "no event type"
    if not _finite(event.get("t", _ABSENT)):
        return f"{kind} without a time 't'"
    if kind == "report" and _sound_report(event):  # most events are reports: the common case in one go
        return None
    for name, check, required in _CHECKS.get(kind, ()):
        value = event.get(name, _ABSENT)
        if value is _ABSENT:
            if required:
                return f"{kind} without '{name}'"
        elif not check(value):
            return f"{kind} with a bad '{name}'"
    if kind == "trial_created" and "parent" in event and ("replaces" not in event or "resume_from" not in event):
        return "trial_created of a PBT child without 'replaces' or 'resume_from'"
    if kind == "experiment_created" and len(event.get("objectives", ())) != len(event.get("modes", ())):
        return "experiment_created whose objectives and modes differ in number"
    if kind == "report" and event["decision"] == "promote" and "target" not in event:
        return "report promoting without 'target'"
    return None


def fold(events: Iterable[dict[str, Any]]) -> ExperimentState:
    state = ExperimentState()
    for event in events:
        state.apply(event)
    return state


def load_state(experiment_dir: Path) -> ExperimentState:
    return fold(iter_events(experiment_dir / "journal.jsonl"))


@dataclass
class NewBest:
    """Whether the best trial is news: another trial became the best with a strictly better value. A tie
    (even by a trial that got further) and a trial bettering its own best are not. The driver's "new best"
    line and the on_new_best hook ask the same question."""

    trial_id: str | None = None
    value: float | None = None

    def known(self, state: ExperimentState) -> None:
        """What is already known (after a replay) is no news."""
        best = state.best_trial()
        if best is not None:
            self.trial_id, self.value = best.trial_id, best.best_value

    def news(self, state: ExperimentState) -> TrialState | None:
        best = state.best_trial()
        if best is None or best.best_value is None or best.trial_id == self.trial_id:
            return None
        if self.value is not None and not state.is_better(best.best_value, self.value):
            return None
        self.trial_id, self.value = best.trial_id, best.best_value
        return best
