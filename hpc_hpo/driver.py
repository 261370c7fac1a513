"""The driver: one thread, one polling loop, the only place where scheduler, searcher and backend meet.

Each sweep: poll the backend once, read the new complete lines of every running trial, let the
scheduler decide, plan new trials, then write everything the sweep learned to the journal in one
append (one fsync) before acting on it: cancel losers, start the planned trials. Acting after
journaling means a crash never leaves an action the journal does not know was intended.
"""
from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from .backends import EXITED, Backend, LaunchSpec
from .config import ExperimentConfig
from .experiment import open_experiment, write_trial_config
from .journal import make_event
from .metrics import LineTail, ReportParser
from .progress import Progress
from .schedulers import Scheduler, make_scheduler
from .searchers import WAIT, Searcher, make_searcher
from .state import CANCELLED, FAILED, FINISHED, PENDING, RUNNING, ExperimentState, TrialState, fold
from .worker import TRIAL_DIR_ENV

# How long a driver that is shutting down waits for cancelled trials to go.
SHUTDOWN_WAIT_S = 30.0


@dataclass
class LiveTrial:
    """What the driver keeps about a running trial besides its journaled state."""

    trial: TrialState
    tail: LineTail
    parser: ReportParser
    complete_deadline: float | None = None  # when a completed trial that has not exited gets cancelled


class Driver:
    def __init__(self, config: ExperimentConfig, backend: Backend, progress_out: Any = None,
                 quiet: bool = False) -> None:
        self.config = config
        self.backend = backend
        self.scheduler: Scheduler = make_scheduler(config)
        self.searcher: Searcher = make_searcher(config)
        self.state = ExperimentState()
        self.progress = Progress(self.state, progress_out, quiet)
        self.live: dict[str, LiveTrial] = {}
        self.to_start: list[TrialState] = []
        self.pending_events: list[dict[str, Any]] = []
        self.exhausted = False
        self.stop_reason: str | None = None

    # ------------------------------------------------------------------ public

    def run(self) -> ExperimentState:
        """Run (or resume) the experiment until its budget is spent or every trial has ended."""
        self.journal, resumed = open_experiment(self.config)
        self._replay(self.journal.read())
        if self.state.finished:
            self.progress.say(f"experiment {self.config.name} already ended ({self.state.ended})")
            return self.state
        self.run_started = time.time()
        self.time_used_before = self.state.time_used()
        self._apply(make_event("run_started", host=os.uname().nodename, pid=os.getpid(), resumed=resumed),
                    self.pending_events)
        self._emit(self.pending_events)
        self.pending_events = []
        self.progress.say(f"{'resumed' if resumed else 'started'} experiment {self.config.name} in "
                          f"{self.config.experiment_dir} ({self.backend.name}, "
                          f"{self.config.execution.num_parallel_evals} at a time)")
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            self._loop()
        except KeyboardInterrupt:
            self._shutdown("interrupted")
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
            self.backend.shutdown()
        return self.state

    # ------------------------------------------------------------------ the loop

    def _loop(self) -> None:
        while True:
            events: list[dict[str, Any]] = self.pending_events
            self.pending_events = []
            self._sweep_trials(events)
            self._check_budget(events)
            self._plan_new_trials(events)
            done = not self.live and not self.to_start and self._no_more_trials()
            if done:
                self._apply(make_event("experiment_ended", reason=self.stop_reason or "all trials ended",
                                       final=True), events)
            self._emit(events)
            self._act()
            self.progress.maybe_summary()
            if done:
                self.progress.maybe_summary(force=True)
                return
            time.sleep(self.config.execution.poll_interval)

    def _sweep_trials(self, events: list[dict[str, Any]]) -> None:
        """Read every running trial's new reports; record the trials whose process has ended."""
        statuses = self.backend.poll([lt.trial.handle for lt in self.live.values() if lt.trial.handle])
        for trial_id, live in list(self.live.items()):
            status = statuses.get(live.trial.handle or "")
            # Read after polling: lines written before the exit are all there now.
            self._read_reports(live, events)
            if status is not None and status.state == EXITED:
                self._trial_ended(live, status.exit_code, status.reason, events)
            elif live.complete_deadline is not None and time.monotonic() > live.complete_deadline:
                self.backend.cancel(live.trial.handle or "")

    def _read_reports(self, live: LiveTrial, events: list[dict[str, Any]]) -> None:
        trial = live.trial
        lines = live.tail.read_lines()
        for report in live.parser.parse(lines):
            if trial.decided:
                break  # lines after a stop/complete decision stay in the file but are not fed
            if trial.last_resource is not None and report.resource <= trial.last_resource:
                continue  # a repeated or out-of-order line, e.g. after a requeue
            outcome = self.scheduler.on_report(trial.trial_id, report.resource, report.value)
            self.searcher.on_report(trial.trial_id, report.resource, self._loss(report.value))
            started = trial.started_at or time.time()
            elapsed = (report.time if report.time is not None else time.time()) - started
            event = make_event("report", trial.trial_id, resource=_plain_number(report.resource),
                               value=report.value, elapsed_s=round(max(elapsed, 0.0), 3),
                               decision=outcome.decision.value)
            if outcome.cutoff is not None:
                event["cutoff"] = outcome.cutoff
            if report.components is not None:
                event["metrics"] = report.components
            self._apply(event, events)
            if outcome.decision.value in ("stop", "complete"):
                self.progress.decided(trial, outcome.decision.value, report.resource, report.value, outcome.cutoff)
                self._on_decided(live, outcome.decision.value)
        self.progress.maybe_new_best()

    def _on_decided(self, live: LiveTrial, decision: str) -> None:
        if decision == "stop":
            self.backend.cancel(live.trial.handle or "")
        else:
            # Completed: give the program time to save and exit on its own before cancelling it.
            live.complete_deadline = time.monotonic() + self.config.execution.stop_grace_period

    def _trial_ended(self, live: LiveTrial, exit_code: int | None, reason: str | None,
                     events: list[dict[str, Any]]) -> None:
        trial = live.trial
        state = FINISHED if exit_code == 0 else FAILED
        if self.stop_reason is not None and not trial.decided:
            state = CANCELLED
        fields: dict[str, Any] = {"state": state, "exit_code": exit_code}
        if reason:
            fields["reason"] = reason
        elif state == FAILED:
            fields["reason"] = _tail_of(self._trial_dir(trial.trial_id) / "stderr")
        self._apply(make_event("trial_ended", trial.trial_id, **fields), events)
        self.scheduler.on_trial_end(trial.trial_id)
        self.searcher.on_trial_end(trial.trial_id)
        del self.live[trial.trial_id]
        self.progress.ended(trial, str(self._trial_dir(trial.trial_id)))

    def _check_budget(self, events: list[dict[str, Any]]) -> None:
        max_time = self.config.budget.max_time
        if self.stop_reason is None and max_time is not None and self._time_used() >= max_time:
            self.stop_reason = f"max_time ({max_time:g} s) reached"
            self.progress.say(f"{self.stop_reason}: cancelling {len(self.live)} running trials")
            self.to_start.clear()
            for live in self.live.values():
                self.backend.cancel(live.trial.handle or "")

    def _plan_new_trials(self, events: list[dict[str, Any]]) -> None:
        """Journal the intent to start trials for every free slot; they start after the append."""
        free = self.config.execution.num_parallel_evals - len(self.live) - len(self.to_start)
        while free > 0 and not self._no_more_trials():
            index = len(self.state.trials)
            config = self.searcher.suggest(index)
            if config is WAIT:
                break  # the searcher needs results first; ask again next sweep
            if config is None:
                self.exhausted = True
                break
            trial_id = f"{index:04d}"
            self._apply(make_event("trial_created", trial_id, index=index, config=config), events)
            self.searcher.on_trial_created(trial_id, config)
            self.to_start.append(self.state.trials[trial_id])
            free -= 1

    def _no_more_trials(self) -> bool:
        limit = self.config.budget.max_trials
        return self.stop_reason is not None or self.exhausted or (
            limit is not None and len(self.state.trials) >= limit)

    def _act(self) -> None:
        """Start the trials planned in this sweep; their start events go into the next append."""
        for trial in self.to_start:
            self._start(trial)
        self.to_start.clear()

    def _start(self, trial: TrialState) -> None:
        trial_dir = self._trial_dir(trial.trial_id)
        write_trial_config(trial_dir, trial.config)
        spec = LaunchSpec(trial_id=trial.trial_id,
                          argv=tuple(self.config.command) + tuple(self.config.space.argv(trial.config)),
                          cwd=Path.cwd(), trial_dir=trial_dir,
                          env={TRIAL_DIR_ENV: str(trial_dir), "HPC_HPO_TRIAL_ID": trial.trial_id,
                               "HPC_HPO_EXPERIMENT_DIR": str(self.config.experiment_dir)})
        handle = self.backend.submit(spec)
        source = trial_dir / ("stdout" if self.config.metric_regex is not None else "metrics.jsonl")
        parser = ReportParser(self.config.metric.name, self.config.resource.name, self.config.metric_regex,
                              label=f"trial {trial.trial_id}", objective=self.config.metric)
        self._apply(make_event("trial_started", trial.trial_id, handle=handle, backend=self.backend.name,
                               attempt=1), self.pending_events)
        self.live[trial.trial_id] = LiveTrial(trial, LineTail(source), parser)
        self.progress.started(trial)

    # ------------------------------------------------------------------ shutdown and resume

    def _shutdown(self, reason: str) -> None:
        """Cancel every running trial, wait for them to go, and leave the journal consistent."""
        self.stop_reason = reason
        self.progress.say(f"{reason}: cancelling {len(self.live)} running trials")
        for live in self.live.values():
            self.backend.cancel(live.trial.handle or "")
        events = self.pending_events
        self.pending_events = []
        deadline = time.monotonic() + SHUTDOWN_WAIT_S
        while self.live and time.monotonic() < deadline:
            self._sweep_trials(events)
            if self.live:
                time.sleep(0.05)
        for live in list(self.live.values()):
            self._trial_ended(live, None, "did not end after cancel", events)
        # Not final: running `hpc-hpo run` again resumes the experiment.
        self._apply(make_event("experiment_ended", reason=reason, final=False), events)
        self._emit(events)

    def _replay(self, events: list[dict[str, Any]]) -> None:
        """Rebuild state, scheduler and searcher from the journal, in the order things happened."""
        for event in events:
            self.state.apply(event)
            if event["type"] == "trial_created":
                self.searcher.on_trial_created(event["trial_id"], event["config"])
            elif event["type"] == "report":
                self.scheduler.on_report(event["trial_id"], float(event["resource"]), float(event["value"]))
                self.searcher.on_report(event["trial_id"], float(event["resource"]), self._loss(float(event["value"])))
            elif event["type"] == "trial_ended":
                self.scheduler.on_trial_end(event["trial_id"])
                self.searcher.on_trial_end(event["trial_id"])
        # Trials the previous driver left behind: not re-adopted yet, so they are recorded as cancelled.
        orphans = [t for t in self.state.trials.values() if t.state in (PENDING, RUNNING) or
                   (t.decided and not t.process_ended)]
        lost = [make_event("trial_ended", t.trial_id, state=CANCELLED, exit_code=None,
                           reason="the driver that ran it stopped") for t in orphans]
        for event in lost:
            self.state.apply(event)
            self.scheduler.on_trial_end(event["trial_id"])
            self.searcher.on_trial_end(event["trial_id"])
        self.pending_events.extend(lost)

    def _time_used(self) -> float:
        return self.time_used_before + time.time() - self.run_started

    # ------------------------------------------------------------------ helpers

    def _loss(self, value: float) -> float:
        return value if self.config.metric.mode == "min" else -value

    def _apply(self, event: dict[str, Any], events: list[dict[str, Any]]) -> None:
        self.state.apply(event)
        events.append(event)

    def _emit(self, events: list[dict[str, Any]]) -> None:
        self.journal.append(events)

    def _trial_dir(self, trial_id: str) -> Path:
        return self.config.experiment_dir / "trials" / trial_id


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _plain_number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def _tail_of(path: Path, max_bytes: int = 2000) -> str:
    """The end of a failed trial's stderr, for `status`."""
    try:
        with open(path, "rb") as handle:
            handle.seek(max(handle.seek(0, 2) - max_bytes, 0))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = [line for line in text.splitlines() if line.strip()]
    return "\n".join(lines[-5:])
