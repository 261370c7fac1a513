"""The driver: one thread, one polling loop, the only place where scheduler, searcher and backend meet.

Each sweep: poll the backend once, read the new complete lines of every running trial, let the
scheduler decide, check the stop rules, plan what runs on free slots, then write everything the
sweep learned to the journal in one append (one fsync) and only then act on it: tell trials their
decisions, cancel losers, start and resume trials. Acting after journaling means a crash never
leaves an action that the journal does not know was intended.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Callable, Iterable

from .backends import EXITED, Backend, JobStatus, LaunchSpec
from .config import ExperimentConfig
from .errors import HpoError
from .experiment import DriverLease, check_experiment_dir, make_experiment_dir, open_experiment, write_trial_config
from .journal import make_event
from .metrics import LineTail, Report, ReportParser
from .progress import Progress
from .schedulers import Scheduler, make_scheduler
from .schedulers.base import DONE, WAIT, Branch, Decision, Resume, StartNew
from .searchers import WAIT as SEARCHER_WAIT
from .searchers import Searcher, make_searcher
from .space import flag_argv
from .state import CANCELLED, FAILED, FINISHED, PAUSED, PENDING, STOPPED, ExperimentState, TrialState
from .worker import DECISION_FILE, TRIAL_DIR_ENV

TRIAL_ID = re.compile(r"\d{4,9}")
# How long a driver that is shutting down waits for cancelled trials to go.
SHUTDOWN_WAIT_S = 30.0
# Decisions after which a run's further lines are not fed to the scheduler.
RUN_OVER = (Decision.STOP, Decision.COMPLETE, Decision.PAUSE)
# How often, between sweeps, the driver looks whether a run it told to end is gone: its node idles till then.
ENDING_CHECK_S = 0.05


@dataclass
class LiveTrial:
    """What the driver keeps about a running trial besides its journaled state."""

    trial: TrialState
    plan: StartNew | Resume | Branch  # what this run was started for: a retry runs it again
    run_over: Decision | None = None  # STOP, COMPLETE or PAUSE taken for the current run
    exit_deadline: float | None = None  # when a run told to end that has not exited gets cancelled


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
        self.early_exits: dict[str, JobStatus] = {}  # exits seen between sweeps, for the next sweep
        # Trial files are read across runs: a resumed trial appends to the same metrics file.
        self.readers: dict[str, tuple[LineTail, ReportParser]] = {}
        self.to_launch: list[tuple[TrialState, StartNew | Resume | Branch]] = []
        self.actions: list[Callable[[], None]] = []  # carried out after the sweep's journal append
        self.pending_events: list[dict[str, Any]] = []
        # From the journal, for runs a previous driver left: what each trial's next or current run is
        # for, and the last decision its current run was told.
        self.replayed_plans: dict[str, StartNew | Resume | Branch] = {}
        self.replayed_decisions: dict[str, dict[str, Any]] = {}
        self.no_new_trials = False
        self.allocation_ending = False
        self.parallel = backend.slots(config.execution.num_parallel_evals)
        self.stop_reason: str | None = None

    # ------------------------------------------------------------------ public

    def run(self) -> ExperimentState:
        """Run (or resume) the experiment until a budget or stop rule ends it or nothing is left to run."""
        # The lease first: two drivers started at once must not both create or resume the experiment.
        check_experiment_dir(self.config.experiment_dir)
        make_experiment_dir(self.config.experiment_dir)
        self.lease = DriverLease(self.config.experiment_dir)
        self.lease.acquire()
        try:
            self.journal, resumed = open_experiment(self.config)
            return self._run_holding_lease(resumed)
        finally:
            self.lease.release()

    def _run_holding_lease(self, resumed: bool) -> ExperimentState:
        self._replay(self.journal.iter())
        if self.state.finished:
            self.progress.say(f"experiment {self.config.name} already ended ({self.state.ended})")
            return self.state
        self.run_started = time.time()
        self.time_used_before = self.state.time_used()
        self._apply(make_event("run_started", host=os.uname().nodename, pid=os.getpid(), resumed=resumed),
                    self.pending_events)
        self.progress.say(f"{'resumed' if resumed else 'started'} experiment {self.config.name} in "
                          f"{self.config.experiment_dir} ({self.backend.name}, {self.config.scheduler.type}, "
                          f"{self.parallel} at a time)")
        self._reconcile_runs()
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        # Slurm's --signal=B:USR1@<seconds> warns that the allocation ends soon: stop cleanly, resume later.
        previous_usr1 = signal.signal(signal.SIGUSR1, self._allocation_ending)
        try:
            self._loop()
        except KeyboardInterrupt:
            self._shutdown("interrupted")
            raise
        except OSError as exc:  # the experiment's filesystem failed us: full, over quota, gone
            self._stop_on_filesystem_error(exc)
        finally:
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGUSR1, previous_usr1)
            self.backend.shutdown()
        return self.state

    # ------------------------------------------------------------------ the loop

    def _allocation_ending(self, signum: int, frame: FrameType | None) -> None:
        self.allocation_ending = True

    def _loop(self) -> None:
        while True:
            if self.allocation_ending:
                self._shutdown("the allocation is ending (SIGUSR1)")
                self.progress.say("stopped before the allocation ends; run the same command again to resume")
                return
            events, self.pending_events = self.pending_events, []
            self._sweep_trials(events)
            self._check_stop_rules()
            self._plan(events)
            done = not self.live and not self.to_launch
            if done:
                self._apply(make_event("experiment_ended", reason=self.stop_reason or self._why_done(),
                                       final=True), events)
            self.journal.append(events)
            self._act()
            self.progress.maybe_summary()
            self.lease.beat()
            if done:
                self.progress.maybe_summary(force=True)
                return
            self._wait_for_next_sweep()

    def _wait_for_next_sweep(self) -> None:
        """Sleep poll_interval, but sweep as soon as a run the driver told to end (a stop, pause or
        completion, or every run once a stop rule fired) is gone: its node would idle until the next
        sweep otherwise (about poll_interval per decided run, docs/benchmarks.md "Live Slurm:
        allocation utilisation"). Meanwhile only those runs' statuses are looked at, every
        ENDING_CHECK_S; the trials' metric files are read once per sweep, as ever, which matters on a
        parallel filesystem with hundreds of trials."""
        deadline = time.monotonic() + self.config.execution.poll_interval
        while True:
            ending = [live.trial.handle for live in self.live.values()
                      if live.trial.handle and (live.run_over is not None or self.stop_reason is not None)]
            left = deadline - time.monotonic()
            if not ending or left <= ENDING_CHECK_S:
                time.sleep(max(left, 0.0))
                return
            time.sleep(ENDING_CHECK_S)
            # A backend reports an exit once: keep it for the sweep it brings forward.
            exited = {h: s for h, s in self.backend.poll(ending).items() if s.state == EXITED}
            if exited:
                self.early_exits.update(exited)
                return

    def _sweep_trials(self, events: list[dict[str, Any]]) -> None:
        """Read every running trial's new reports; record the trials whose process has ended."""
        early, self.early_exits = self.early_exits, {}
        statuses = self.backend.poll([lt.trial.handle for lt in self.live.values()
                                      if lt.trial.handle and lt.trial.handle not in early])
        statuses.update(early)
        now = time.monotonic()
        for live in list(self.live.values()):
            status = statuses.get(live.trial.handle or "")
            # Read after polling: the lines written before an exit are all there now.
            self._read_reports(live, events)
            if status is not None and status.state == EXITED:
                self._run_ended(live, status.exit_code, status.reason, events, status.resubmit)
            elif live.exit_deadline is not None and now > live.exit_deadline:
                live.exit_deadline = None
                self.actions.append(lambda handle=live.trial.handle: self.backend.cancel(handle or ""))
        self.progress.maybe_new_best()

    def _read_reports(self, live: LiveTrial, events: list[dict[str, Any]]) -> None:
        trial = live.trial
        tail, parser = self.readers[trial.trial_id]
        for report in parser.parse(tail.read_lines()):
            if live.run_over is not None:
                break  # lines after a stop/complete/pause decision stay in the file but are not fed
            if trial.last_resource is not None and report.resource <= trial.last_resource:
                continue  # a repeated or out-of-order line, e.g. after a requeue or a resume
            self._process_report(live, report, events)

    def _process_report(self, live: LiveTrial, report: Report, events: list[dict[str, Any]]) -> None:
        trial = live.trial
        outcome = self.scheduler.on_report(trial.trial_id, report.resource, report.value)
        self.searcher.on_report(trial.trial_id, report.resource, self._loss(report.value))
        started = trial.started_at or time.time()
        elapsed = (report.time if report.time is not None else time.time()) - started
        event = make_event("report", trial.trial_id, resource=_plain_number(report.resource),
                           value=report.value, elapsed_s=round(max(elapsed, 0.0), 3),
                           decision=outcome.decision.value)
        for name, value in (("cutoff", outcome.cutoff), ("target", outcome.target), ("metrics", report.components)):
            if value is not None:
                event[name] = value
        self._apply(event, events)
        self._check_threshold(trial, report.value)
        if outcome.decision == Decision.CONTINUE:
            return
        self.progress.decided(trial, outcome.decision.value, report.resource, report.value, outcome.cutoff,
                              outcome.target)
        self._tell_trial(trial, report.resource, outcome.decision, outcome.target)
        if outcome.decision in RUN_OVER:
            live.run_over = outcome.decision
        if outcome.decision == Decision.STOP:
            self.actions.append(lambda: self.backend.cancel(trial.handle or ""))
        elif outcome.decision in (Decision.COMPLETE, Decision.PAUSE):
            # Give the program time to save its checkpoint and exit on its own before cancelling it.
            live.exit_deadline = time.monotonic() + self.config.execution.stop_grace_period

    def _retry_plan(self, trial: TrialState, plan: StartNew | Resume | Branch, resubmit: bool
                    ) -> StartNew | Resume | Branch:
        """A run the cluster ended (preempted, node failure, time limit) goes on from its checkpoint, if it
        saved one after its last report; a run that failed on its own starts its attempt over."""
        checkpoint = self._trial_dir(trial.trial_id) / "checkpoint"
        if resubmit and trial.last_resource and checkpoint.is_dir() and any(checkpoint.iterdir()):
            return Resume(trial.trial_id, trial.last_resource, plan.target)
        return plan

    def _tell_trial(self, trial: TrialState, resource: float, decision: Decision, target: float | None) -> None:
        """The decision file a trial's report() waits for at its target (written after journaling)."""
        message = {"resource": _plain_number(resource), "decision": decision.value}
        if target is not None:
            message["target"] = _plain_number(target)
        self.actions.append(lambda: _write_atomically(self._trial_dir(trial.trial_id) / DECISION_FILE,
                                                      json.dumps(message)))

    def _run_ended(self, live: LiveTrial, exit_code: int | None, reason: str | None,
                   events: list[dict[str, Any]], resubmit: bool = False) -> None:
        trial = live.trial
        del self.live[trial.trial_id]
        # A run told to pause is paused if it exited cleanly, or by a signal: we cancel it after the grace period.
        ended_well = exit_code is not None and exit_code <= 0
        if live.run_over == Decision.PAUSE and self.stop_reason is None and ended_well:
            self._apply(make_event("trial_paused", trial.trial_id, exit_code=exit_code), events)
            self.scheduler.on_paused(trial.trial_id)
            if self.scheduler.snapshots_at_pause:
                self.actions.append(lambda: self._snapshot(trial))
            return
        state = FINISHED if exit_code == 0 and not resubmit else FAILED
        if self.stop_reason is not None and not trial.decided:
            state = CANCELLED
        fields: dict[str, Any] = {"state": state, "exit_code": exit_code}
        if reason:
            fields["reason"] = reason
        elif state == FAILED:
            fields["reason"] = _tail_of(self._trial_dir(trial.trial_id) / "stderr")
        if state == FAILED and not trial.decided and trial.failures < self.config.execution.num_retries:
            plan = self._retry_plan(trial, live.plan, resubmit)
            if isinstance(plan, Resume):  # a replaying driver must resume it the same way
                fields.update(resume_from=_plain_number(plan.resume_from), target=_plain_number(plan.target))
            self._apply(make_event("trial_retry", trial.trial_id, attempt=trial.failures + 2, **fields), events)
            self.progress.say(f"retrying  {trial.trial_id}  after exit code {exit_code}: retry {trial.failures} "
                              f"of {self.config.execution.num_retries}")
            self.to_launch.append((trial, plan))
            return
        self._apply(make_event("trial_ended", trial.trial_id, **fields), events)
        self.scheduler.on_trial_end(trial.trial_id)
        self.searcher.on_trial_end(trial.trial_id)
        self.progress.ended(trial, str(self._trial_dir(trial.trial_id)))

    # ------------------------------------------------------------------ stop rules and budget

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
        """A stop rule fired: start nothing more and cancel every running trial."""
        self.stop_reason = reason
        self.progress.say(f"{reason}: cancelling {len(self.live)} running trials")
        for live in self.live.values():
            self.actions.append(lambda handle=live.trial.handle: self.backend.cancel(handle or ""))

    def _resource_used(self) -> float:
        """Resource spent over all trials: each trial's furthest report (resumed runs continue from checkpoints)."""
        return sum(t.last_resource or 0 for t in self.state.trials.values())

    def _time_used(self) -> float:
        return self.time_used_before + time.time() - self.run_started

    def _why_done(self) -> str:
        limit = self.config.budget.max_trials
        if limit is not None and len(self.state.trials) >= limit:
            return f"max_trials ({limit}) reached and every trial ended"
        return "nothing more to run"

    # ------------------------------------------------------------------ planning free slots

    def _plan(self, events: list[dict[str, Any]]) -> None:
        """Fill free slots with what the scheduler wants: a resumed trial or a new one; journaled now, launched after."""
        free = self.parallel - len(self.live) - len(self.to_launch)
        while free > 0 and self.stop_reason is None:
            index = len(self.state.trials)
            action = self.scheduler.next_action(index)
            if action is WAIT or action is DONE:
                break
            if isinstance(action, Resume):
                trial = self.state.trials[action.trial_id]
                self._apply(make_event("trial_resumed", trial.trial_id, resume_from=_plain_number(action.resume_from),
                                       target=_plain_number(action.target)), events)
            elif isinstance(action, Branch):
                trial = self._branch(index, action, events)
            else:
                trial = self._new_trial(index, action, events)
                if trial is None:
                    break
            self.scheduler.on_start(trial.trial_id, action)
            self.to_launch.append((trial, action))
            free -= 1

    def _new_trial(self, index: int, action: StartNew, events: list[dict[str, Any]]) -> TrialState | None:
        limit = self.config.budget.max_trials
        if self.no_new_trials or (limit is not None and index >= limit):
            return None
        config = self.searcher.suggest(index)
        if config is SEARCHER_WAIT:
            return None  # the searcher needs results first; ask again next sweep
        if config is None:
            self.no_new_trials = True
            return None
        trial_id = f"{index:04d}"
        self._apply(make_event("trial_created", trial_id, index=index, config=config, bracket=action.bracket,
                               target=_plain_number(action.target)), events)
        self.searcher.on_trial_created(trial_id, config)
        self.scheduler.on_trial_created(trial_id, config)
        return self.state.trials[trial_id]

    def _branch(self, index: int, action: Branch, events: list[dict[str, Any]]) -> TrialState:
        """PBT: the poor trial stops; a child of the good one starts from its checkpoint with a perturbed config."""
        trial_id = f"{index:04d}"
        self._apply(make_event("trial_ended", action.replaces, state=STOPPED, exit_code=0,
                               reason=f"replaced by trial {trial_id}, a perturbed copy of {action.parent_id}"), events)
        self._apply(make_event("trial_created", trial_id, index=index, config=action.config, parent=action.parent_id,
                               replaces=action.replaces, resume_from=_plain_number(action.resume_from),
                               target=_plain_number(action.target)), events)
        self.searcher.on_trial_end(action.replaces)
        self.searcher.on_trial_created(trial_id, action.config)
        self.scheduler.on_trial_created(trial_id, action.config)
        self.progress.say(f"exploit   {action.replaces} -> {trial_id}: copy of {action.parent_id} at "
                          f"{self.config.resource.name} {action.resume_from:g}, perturbed")
        return self.state.trials[trial_id]

    # ------------------------------------------------------------------ acting after the append

    def _act(self) -> None:
        actions, self.actions = self.actions, []
        for action in actions:
            action()
        # After a restart, adopted runs and runs never submitted may together exceed the slots: the rest wait.
        launching, self.to_launch = self.to_launch, []
        for trial, plan in launching:
            if len(self.live) < self.parallel:
                self._launch(trial, plan)
            else:
                self.to_launch.append((trial, plan))

    def _launch(self, trial: TrialState, plan: StartNew | Resume) -> None:
        trial_dir = self._trial_dir(trial.trial_id)
        if not isinstance(plan, Resume):
            write_trial_config(trial_dir, trial.config)
        if isinstance(plan, Branch):
            source = self._snapshot_dir(plan.parent_id, plan.resume_from)
            shutil.rmtree(trial_dir / "checkpoint", ignore_errors=True)
            shutil.copytree(source, trial_dir / "checkpoint")
        (trial_dir / DECISION_FILE).unlink(missing_ok=True)  # no stale decision for the new run
        resume_from = plan.resume_from if isinstance(plan, (Resume, Branch)) else 0
        spec = LaunchSpec(trial_id=trial.trial_id, argv=self._argv(trial, plan.target, resume_from),
                          cwd=Path.cwd(), trial_dir=trial_dir, env=self._env(trial, plan.target, resume_from),
                          tag=self._run_tag(trial.trial_id, trial.runs + 1),
                          nodes=self.backend.nodes_per_eval)
        handle = self.backend.submit(spec)
        # Journaled at once, not with the next sweep: a driver killed now must find this handle.
        started = make_event("trial_started", trial.trial_id, handle=handle, backend=self.backend.name,
                             run=trial.runs + 1)
        self.journal.append([started])
        self.state.apply(started)
        self._watch(trial, plan)
        if isinstance(plan, (Resume, Branch)):
            self.progress.resumed(trial, plan.resume_from, plan.target)
        else:
            self.progress.started(trial)

    def _watch(self, trial: TrialState, plan: StartNew | Resume | Branch) -> LiveTrial:
        """Follow a started run: its reports are read from the trial's files at every sweep."""
        if trial.trial_id not in self.readers:
            trial_dir = self._trial_dir(trial.trial_id)
            source = trial_dir / ("stdout" if self.config.metric_regex is not None else "metrics.jsonl")
            self.readers[trial.trial_id] = (LineTail(source), ReportParser(
                self.config.metric.name, self.config.resource.name, self.config.metric_regex,
                label=f"trial {trial.trial_id}", objective=self.config.metric))
        live = self.live[trial.trial_id] = LiveTrial(trial, plan)
        return live

    def _snapshot(self, trial: TrialState) -> None:
        """Keep the checkpoint as it is at this pause: a PBT child may start from it after the trial moved on."""
        level = trial.last_resource or 0
        target = self._snapshot_dir(trial.trial_id, level)
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(self._trial_dir(trial.trial_id) / "checkpoint", target)

    def _snapshot_dir(self, trial_id: str, level: float) -> Path:
        return self._trial_dir(trial_id) / "snapshots" / f"{_plain_number(level)}"

    def _argv(self, trial: TrialState, target: float, resume_from: float) -> tuple[str, ...]:
        """The command, the hyperparameter flags (the max_resource_attr one set to this run's target),
        and for a resumed run the resume flags."""
        config = dict(trial.config)
        attr = self.config.resource.max_resource_attr
        if attr is not None and attr in config:
            config[attr] = _plain_number(target)
        argv = list(self.config.command) + self.config.space.argv(config)
        if resume_from:
            flags = self.config.execution.resume_flags
            values = {"resume_from": _plain_number(resume_from),
                      "checkpoint_dir": str(self._trial_dir(trial.trial_id) / "checkpoint")}
            for name, flag in flags.items():
                argv += flag_argv(flag, values[name])
        return tuple(argv)

    def _env(self, trial: TrialState, target: float, resume_from: float) -> dict[str, str]:
        trial_dir = self._trial_dir(trial.trial_id)
        return {TRIAL_DIR_ENV: str(trial_dir), "HPC_HPO_TRIAL_ID": trial.trial_id,
                "HPC_HPO_EXPERIMENT_DIR": str(self.config.experiment_dir),
                "HPC_HPO_CHECKPOINT_DIR": str(trial_dir / "checkpoint"),
                "HPC_HPO_RESUME_FROM": str(_plain_number(resume_from)),
                "HPC_HPO_TARGET_RESOURCE": str(_plain_number(target)),
                "HPC_HPO_MAX_RESOURCE": str(_plain_number(self.config.resource.max)),
                "HPC_HPO_RESOURCE_NAME": self.config.resource.name,
                "HPC_HPO_RUN": str(trial.runs + 1), "HPC_HPO_ATTEMPT": str(trial.failures + 1)}

    # ------------------------------------------------------------------ shutdown and resume

    def _shutdown(self, reason: str) -> None:
        """Cancel every running trial, wait for them to go, and leave the journal consistent."""
        self.stop_reason = reason
        self.progress.say(f"{reason}: cancelling {len(self.live)} running trials")
        for live in self.live.values():
            self.backend.cancel(live.trial.handle or "")
        events, self.pending_events = self.pending_events, []
        self.to_launch.clear()  # journaled as created/resumed but never started: replay treats them as lost
        deadline = time.monotonic() + SHUTDOWN_WAIT_S
        while self.live and time.monotonic() < deadline:
            self._sweep_trials(events)
            if self.live:
                time.sleep(0.05)
        for live in list(self.live.values()):
            self._run_ended(live, None, "did not end after cancel", events)
        # Not final: running `hpc-hpo run` again resumes the experiment.
        self._apply(make_event("experiment_ended", reason=reason, final=False), events)
        self.journal.append(events)

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

    def _replay(self, events: Iterable[dict[str, Any]]) -> None:
        """Rebuild state, scheduler and searcher from the journal by making the same calls in the same order."""
        for event in events:
            self.state.apply(event)
            self._remember_plan(event)
            kind, trial_id = event["type"], event.get("trial_id", "")
            if kind == "trial_created":
                self.scheduler.on_trial_created(trial_id, event["config"])
                self.scheduler.on_start(trial_id, self._created_action(event))
                self.searcher.on_trial_created(trial_id, event["config"])
            elif kind == "trial_resumed":
                self.scheduler.on_start(trial_id, Resume(trial_id, event["resume_from"], event["target"]))
            elif kind == "report":
                self.scheduler.on_report(trial_id, float(event["resource"]), float(event["value"]))
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
        elif kind == "trial_resumed" or (kind == "trial_retry" and "resume_from" in event):
            target = event.get("target", self.state.trials[trial_id].target or self.config.resource.max)
            self.replayed_plans[trial_id] = Resume(trial_id, event["resume_from"], target)
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
        for trial in list(self.state.trials.values()):
            trial_dir = self._trial_dir(trial.trial_id)
            plan = self.replayed_plans[trial.trial_id]
            if trial.state == PENDING:
                handle = self.backend.adopt(None, self._run_tag(trial.trial_id, trial.runs + 1), trial_dir)
                if handle is None:
                    self.to_launch.append((trial, plan))
                    continue
                self._apply(make_event("trial_started", trial.trial_id, handle=handle, backend=self.backend.name,
                                       run=trial.runs + 1, adopted=True), self.pending_events)
            elif trial.runs and not trial.process_ended and trial.state != PAUSED:
                handle = self.backend.adopt(trial.handle, self._run_tag(trial.trial_id, trial.runs), trial_dir)
                if handle is not None and handle != trial.handle:
                    self._apply(make_event("trial_adopted", trial.trial_id, handle=handle), self.pending_events)
            else:
                continue
            live = self._watch(trial, plan)
            if handle is None:
                self._read_reports(live, self.pending_events)
                self._run_ended(live, None, "the run was lost while no driver watched it", self.pending_events,
                                resubmit=True)
                continue
            self.progress.say(f"adopted   {trial.trial_id}  (run {trial.runs}, {handle}) from the previous driver")
            self._repeat_decision(live)

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

    # ------------------------------------------------------------------ helpers

    def _loss(self, value: float) -> float:
        return value if self.config.metric.mode == "min" else -value

    def _apply(self, event: dict[str, Any], events: list[dict[str, Any]]) -> None:
        self.state.apply(event)
        events.append(event)

    def _run_tag(self, trial_id: str, run: int) -> str:
        """Unique to this experiment directory, trial and run; short and plain enough for a Slurm job name."""
        where = hashlib.sha1(str(self.config.experiment_dir.resolve()).encode()).hexdigest()[:8]
        return f"hpo-{where}-{trial_id}-{run}"

    def _trial_dir(self, trial_id: str) -> Path:
        # Ids come from the journal, a file on a shared filesystem: one that is not a number could point anywhere.
        if not TRIAL_ID.fullmatch(trial_id):
            raise HpoError(f"the journal names a trial {trial_id!r}, which is not a trial id hpc-hpo makes; "
                           "the journal was edited or damaged: restore it, or start a new experiment_dir")
        return self.config.experiment_dir / "trials" / trial_id


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _plain_number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def _write_atomically(path: Path, text: str) -> None:
    """Readers see the old file or the new one, never half of one."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


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
