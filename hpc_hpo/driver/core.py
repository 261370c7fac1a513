"""The driver: one thread, one polling loop, the only place where scheduler, searcher and backend meet.

Each sweep: poll the backend once, read the new complete lines of every running trial, let the
scheduler decide, check the stop rules, plan what runs on free slots, then write everything the
sweep learned to the journal in one append (one fsync) and only then act on it: tell trials their
decisions, cancel losers, start and resume trials. Acting after journaling means a crash never
leaves an action that the journal does not know was intended.

The Driver class is assembled from parts, each a module of this package: core.py (the loop, reports,
planning, launching), stopping.py (signals, budgets, interrupted trials), allocation.py (the
allocation's end) and resuming.py (replay and reconciliation); common.py holds what they share.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any, Callable

from ..backends import EXITED, Backend, JobStatus, LaunchSpec
from .. import walltime
from ..backends.base import SubmitLater
from ..config import ExperimentConfig
from ..errors import HpoError
from ..experiment import DriverLease, check_experiment_dir, make_experiment_dir, open_experiment, write_trial_config
from ..journal import BlockingFlock, make_event
from ..membership import MemberLease, live_members
from ..metrics import LineTail, Report, ReportParser
from ..progress import Progress
from ..schedulers import Scheduler, make_scheduler
from ..schedulers.base import DONE, WAIT, Branch, Decision, Resume, StartNew, rung_levels
from ..searchers import WAIT as SEARCHER_WAIT
from ..searchers import Searcher, make_searcher
from ..space import flag_argv
from ..state import ENDED_STATES, FAILED, FINISHED, STOPPED, ExperimentState, TrialState
from ..worker import DECISION_FILE, INTERRUPT_FILE, TRIAL_DIR_ENV
from .allocation import AllocationEnd
from .common import (ENDING_CHECK_S, RUN_OVER, SUBMIT_WAIT_MAX_S, SUBMIT_WAIT_S, TRIAL_ID, LiveTrial, log,
                     path_with_hpc_hpo, plain_number, stderr_tail, write_atomically)
from .resuming import Resuming
from .retention import CheckpointRetention
from .stopping import Stopping
from .hooks import HookRunner
from .joining import Joining, SharedLease, SweepClock
from .requests import StopRequests
from .workdir import trial_workdir


class NoRoomYet(Exception):
    """The backend has no room for this run's shape now: it stays planned until runs end."""


class Driver(Stopping, AllocationEnd, Resuming, StopRequests, Joining):
    def __init__(self, config: ExperimentConfig, backend: Backend, progress_out: Any = None,
                 quiet: bool = False, join: bool = False) -> None:
        self.config = config
        # Join an experiment other drivers may be running (README "Elastic experiments"), else run it alone.
        self.join = join or config.execution.join
        self.journal_offset = 0  # how far this driver has read the journal (driver/joining.py)
        self.sweep_clock = SweepClock.from_environment()
        self.backend = backend
        self.scheduler: Scheduler = make_scheduler(config)
        self.searcher: Searcher = make_searcher(config)
        # Its decisions need no report rows (status and export read them from the journal); the Pareto front of
        # several objectives printed at the end does (results.best_text).
        self.state = ExperimentState(keep_rows=bool(config.metric.objectives))
        self.progress = Progress(self.state, progress_out, quiet)
        self.live: dict[str, LiveTrial] = {}
        self.early_exits: dict[str, JobStatus] = {}  # exits seen between sweeps, for the next sweep
        # Trial files are read across runs: a resumed trial appends to the same metrics file.
        self.readers: dict[str, tuple[LineTail, ReportParser]] = {}
        self.readers_kept = 0  # readers left after the last clean-up (_forget_ended_readers)
        self.to_launch: list[tuple[TrialState, StartNew | Resume | Branch]] = []
        self.actions: list[Callable[[], None]] = []  # carried out after the sweep's journal append
        self.pending_events: list[dict[str, Any]] = []
        # From the journal, for runs a previous driver left: what each trial's next or current run is
        # for, and the last decision its current run was told.
        self.replayed_plans: dict[str, StartNew | Resume | Branch] = {}
        self.replayed_decisions: dict[str, dict[str, Any]] = {}
        self.no_new_trials = False
        self.parallel = backend.slots(config.execution.num_parallel_evals)
        # A stop under way: why, whether it ends the experiment for good, and when what is still
        # running after the grace period is cancelled.
        self.stop_reason: str | None = None
        self.stop_final = True
        self.stop_deadline: float | None = None
        self.stop_cancelled = False
        self.cancelled_at: float | None = None  # when the stop's cancel went out
        self.signals: list[int] = []  # stop signals received, handled by the loop (not in the handler)
        self.detached = False  # left runs that hold their own allocations going for the next driver
        self.exit_code = 0
        self.closing_line: str | None = None  # what the user should do next, printed last
        self.parser_warnings: set[str] = set()  # each kind of bad metrics line is warned about once
        # Wall time: when the allocation ends (None: no end known), seconds per unit resource of each
        # trial's latest run, and whether a stage was held back this sweep because it would not fit.
        self.allocation_end: float | None = None
        self.allocation_checked = float("-inf")
        self.paces = walltime.RecentPaces()
        self.held_for_end = False
        spec = config.scheduler
        # A submit limit was hit: when to try again, and how many refusals in a row (the pause doubles).
        self.submit_again_at = 0.0
        self.submit_refusals = 0
        self.levels = rung_levels(config.resource.max, spec.grace_period, spec.reduction_factor, spec.rung_levels)
        self.hooks = HookRunner(config, self.state)  # hooks: commands run on events (driver/hooks.py)
        self.retention = CheckpointRetention(config.experiment_dir / "trials", config.execution.keep_checkpoints,
                                             config.execution.keep_best, self.scheduler.snapshots_at_pause)

    # ------------------------------------------------------------------ public

    def run(self) -> ExperimentState:
        """Run (or resume) the experiment until a budget or stop rule ends it or nothing is left to run."""
        # From the first moment: a signal during creation or replay stops the run once it is consistent.
        previous = self._catch_stop_signals()
        try:
            # The lease first: two drivers started at once must not both create or resume the experiment.
            directory = self.config.experiment_dir
            check_experiment_dir(directory)
            make_experiment_dir(directory)
            self.lease = SharedLease(directory) if self.join else DriverLease(directory)
            self.lease.acquire()
            self.member = MemberLease(directory)
            try:
                if not self.join:
                    self._refuse_if_joined()
                # Under the journal lock: drivers of a job array starting at once create the experiment once.
                with BlockingFlock(directory / "journal.lock"):
                    self.journal, resumed, reopened = open_experiment(self.config)
                    self.member.acquire()
                self.driver_id = self.member.driver_id
                self._make_members()
                return self._run_holding_lease(resumed, reopened)
            finally:
                self.member.release()
                self.lease.release()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _refuse_if_joined(self) -> None:
        others = live_members(self.config.experiment_dir)
        if others:
            where = ", ".join(f"{o.get('host')} pid {o.get('pid')}" for o in others[:3])
            raise HpoError(f"experiment '{self.config.experiment_dir}' is being run by {len(others)} driver(s) that "
                           f"joined it ({where}); add this one with 'hpc-hpo run CONFIG --join', or wait for them")

    def _run_holding_lease(self, resumed: bool, reopened: bool = False) -> ExperimentState:
        read_to: list[int] = [0]
        self._replay(self.journal.iter(read_to))
        self.journal_offset = read_to[0]
        self.hooks.begin()
        self.retention.clean_leftovers()
        with self.journal.lock:  # other drivers may be at work: start on the journal as it is now
            self._catch_up()
            # The best so far, replayed or caught up from other drivers, is no news to say or to hook.
            self.progress.new_best.known(self.state)
            self.hooks.new_best.known(self.state)
            if self.state.finished and not reopened:  # a budget changed since it ended: go on, or end again
                self.progress.say(f"experiment {self.config.name} already ended ({self.state.ended})")
                return self.state
            self.run_started = time.time()
            self.time_used_before = self.state.time_used()
            self._apply(make_event("run_started", host=os.uname().nodename, pid=os.getpid(), resumed=resumed,
                                   driver=self.driver_id, joined=self.join), self.pending_events)
            self.progress.say(f"{'resumed' if resumed else 'started'} experiment {self.config.name} in "
                              f"{self.config.experiment_dir} ({self.backend.name}, {self.config.scheduler.type}, "
                              f"{self.parallel} at a time)"
                              + (f"; {self.backend.chosen_because}" if self.backend.chosen_because else "")
                              + (f"; joined as driver {self.driver_id}" if self.join else ""))
            self._reconcile_runs()
            events, self.pending_events = self.pending_events, []
            self._append(events)
        try:
            self._loop()
        except KeyboardInterrupt:  # outside the main thread no handler catches SIGINT
            self._stop_at_once("interrupted (SIGINT)")
            self.exit_code = 130
        except OSError as exc:  # the experiment's filesystem failed us: full, over quota, gone
            self._stop_on_filesystem_error(exc)
        finally:
            if not self.detached:
                self.backend.shutdown()
            self.hooks.close(cut_short=lambda: bool(self.signals))  # on_experiment_end, at most hooks.timeout
        return self.state

    # ------------------------------------------------------------------ the loop

    def _loop(self) -> None:
        while True:
            if self.signals and self._handle_signals():
                return
            self._check_stop_request()  # hpc-hpo stop (driver/requests.py)
            statuses = self._poll_runs()  # outside the lock: other drivers decide meanwhile
            self.sweep_clock.lock_asked()
            with self.journal.lock:  # decisions on the journal as it is now (driver/joining.py)
                self.sweep_clock.lock_taken()
                self._catch_up()
                self.sweep_clock.caught_up()
                if self.state.finished and not self.live:  # another driver ended the experiment
                    return
                events, self.pending_events = self.pending_events, []
                self._check_allocation_end(events)
                self._take_over_lost_drivers(events)
                self._sweep_trials(events, statuses)
                self._check_stop_rules()
                self._plan(events)
                done = not self.live and not self.to_launch
                if done and self._others_busy() and (self._may_get_work() or not self._others_watched()):
                    # Idle, but a pause to promote or a barrier to pass may come, or nobody else would notice
                    # a driver that stops now: stay.
                    done = False
                if done:
                    self._leave_or_end(events)
                self._append(events)
                self.sweep_clock.decided(len(events))
            self._act()
            self.retention.prune(self.state, final=done and self.state.finished,
                                 new_trials_may_start=self.scheduler.may_start_new and not self.no_new_trials)
            self.progress.maybe_summary()
            if done:
                self.retention.wait()
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
        while not self.signals:
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

    # ------------------------------------------------------------------ stopping

    def _poll_runs(self) -> dict[str, JobStatus]:
        """The statuses of this driver's runs: one backend poll (exits seen between sweeps included)."""
        early, self.early_exits = self.early_exits, {}
        statuses = self.backend.poll([lt.trial.handle for lt in self.live.values()
                                      if lt.trial.handle and lt.trial.handle not in early])
        statuses.update(early)
        return statuses

    def _sweep_trials(self, events: list[dict[str, Any]], statuses: dict[str, JobStatus]) -> None:
        """Read every running trial's new reports; record the trials whose process has ended."""
        gone = next((status for status in statuses.values() if status.allocation_gone), None)
        if gone is not None:  # before any exit is judged: runs it ended are interrupted, not failed
            self._allocation_gone(gone)
        now = time.monotonic()
        for live in list(self.live.values()):
            status = statuses.get(live.trial.handle or "")
            # Read after polling: the lines written before an exit are all there now.
            self._read_reports(live, events)
            if status is not None and status.state == EXITED:
                self._drain_reports(live, events)
                self._run_ended(live, status.exit_code, status.reason, events, status.resubmit)
            elif live.exit_deadline is not None and now > live.exit_deadline:
                live.exit_deadline = None
                self.actions.append(lambda handle=live.trial.handle: self.backend.cancel(handle or ""))
        self._enforce_stop_deadlines(now, events)
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

    def _drain_reports(self, live: LiveTrial, events: list[dict[str, Any]]) -> None:
        """The run ended: read the rest of its file. A sweep reads at most metrics.READ_MAX bytes of a file (a
        gigabyte of output is never held at once), so a burst written just before the exit takes a few reads."""
        tail = self.readers[live.trial.trial_id][0]
        while tail.more and live.run_over is None:
            self._read_reports(live, events)

    def _process_report(self, live: LiveTrial, report: Report, events: list[dict[str, Any]]) -> None:
        trial = live.trial
        self._measure_pace(live, report.resource, trial.last_resource)
        # With several objectives the scheduler ranks the tuple of their values (MO-ASHA), else the value.
        outcome = self.scheduler.on_report(trial.trial_id, report.resource,
                                           self.config.metric.scheduled(report.value, report.components))
        self.searcher.on_report(trial.trial_id, report.resource, self._loss(report.value))
        started = trial.started_at or time.time()
        elapsed = (report.time if report.time is not None else time.time()) - started
        event = make_event("report", trial.trial_id, resource=plain_number(report.resource),
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

    def _tell_trial(self, trial: TrialState, resource: float, decision: Decision, target: float | None) -> None:
        """The decision file a trial's report() waits for at its target (written after journaling)."""
        message = {"resource": plain_number(resource), "decision": decision.value}
        if target is not None:
            message["target"] = plain_number(target)
        self.actions.append(lambda: write_atomically(self._trial_dir(trial.trial_id) / DECISION_FILE,
                                                      json.dumps(message)))

    def _run_ended(self, live: LiveTrial, exit_code: int | None, reason: str | None,
                   events: list[dict[str, Any]], resubmit: bool = False) -> None:
        trial = live.trial
        del self.live[trial.trial_id]
        self._warn_if_nothing_matched(trial)
        # A run told to pause is paused if it exited cleanly, or by a signal: we cancel it after the grace period.
        ended_well = exit_code is not None and exit_code <= 0
        if live.run_over == Decision.PAUSE and ended_well:
            self._apply(make_event("trial_paused", trial.trial_id, exit_code=exit_code), events)
            self.scheduler.on_paused(trial.trial_id)
            if self.scheduler.snapshots_at_pause:
                self.actions.append(lambda: self._snapshot(trial))
            return
        if not trial.decided and (self.stop_reason is not None or live.interrupt_asked
                                  or (resubmit and self._requeues_left(trial))):
            requeue = self.stop_reason is None and not live.interrupt_asked
            self._interrupt(live, exit_code, reason or ("paused for the allocation's end" if live.interrupt_asked
                                                        else None), events, requeue=requeue)
            return
        state = FINISHED if exit_code == 0 and not resubmit else FAILED
        fields: dict[str, Any] = {"state": state, "exit_code": exit_code}
        if reason:
            fields["reason"] = reason
        elif state == FAILED:
            fields["reason"] = self._failure_text(trial.trial_id)
        if state == FAILED and not trial.decided and not resubmit \
                and trial.failures < self.config.execution.num_retries:
            plan = live.plan
            self._apply(make_event("trial_retry", trial.trial_id, attempt=trial.failures + 2, **fields), events)
            self.progress.say(f"retrying  {trial.trial_id}  after exit code {exit_code}: retry {trial.failures} "
                              f"of {self.config.execution.num_retries}")
            self.to_launch.append((trial, plan))
            return
        self._apply(make_event("trial_ended", trial.trial_id, **fields), events)
        self.scheduler.on_trial_end(trial.trial_id)
        self.searcher.on_trial_end(trial.trial_id)
        self.progress.ended(trial, str(self._trial_dir(trial.trial_id)))
        if state == FAILED and not trial.decided:
            self._check_failure_budget(fields.get("reason") or "")

    def _failure_text(self, trial_id: str) -> str:
        """The end of the trial's stderr, else of what srun or the batch job said (srun.log, slurm.out)."""
        trial_dir = self._trial_dir(trial_id)
        for name in ("stderr", "srun.log", "slurm.out"):
            text = stderr_tail(trial_dir / name)
            if text:
                return text if name == "stderr" else f"({name}) {text}"
        return ""

    def _warn_if_nothing_matched(self, trial: TrialState) -> None:
        """A trial that wrote lines but not one report: say once per experiment what was expected and seen."""
        parser = self.readers[trial.trial_id][1]
        if parser.count or parser.unmatched is None or "nothing-matched" in self.parser_warnings:
            return
        self.parser_warnings.add("nothing-matched")
        wanted = (f"a line matching metric_regex {self.config.metric_regex.pattern!r}" if self.config.metric_regex
                  else f"a JSON line with {', '.join(parser.needed)} and {self.config.resource.name}")
        where = "stdout" if self.config.metric_regex else "metrics.jsonl"
        log.warning("trial %s wrote to its %s but no report: expected %s, got e.g. %r", trial.trial_id, where,
                    wanted, parser.unmatched)

    def _requeues_left(self, trial: TrialState) -> bool:
        return trial.requeues < self.config.execution.max_requeues

    # ------------------------------------------------------------------ planning free slots

    def _plan(self, events: list[dict[str, Any]]) -> None:
        """Fill free slots with what the scheduler wants: a resumed trial or a new one; journaled now, launched after."""
        free = self.parallel - len(self.live) - len(self.to_launch)
        if self.stop_reason is None and not self.held_for_end:
            free = self._claim_interrupted(free, events)
        while free > 0 and self.stop_reason is None and not self.held_for_end:
            index = len(self.state.trials)
            action = self.scheduler.next_action(index)
            if action is WAIT or action is DONE:
                break
            if self._hold_for_end(action.trial_id if isinstance(action, Resume) else action.parent_id
                                  if isinstance(action, Branch) else None, action):
                break
            if isinstance(action, Resume):
                trial = self.state.trials[action.trial_id]
                self._apply(make_event("trial_resumed", trial.trial_id, resume_from=plain_number(action.resume_from),
                                       target=plain_number(action.target), driver=self.driver_id), events)
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
                               target=plain_number(action.target), driver=self.driver_id), events)
        self.searcher.on_trial_created(trial_id, config)
        self.scheduler.on_trial_created(trial_id, config)
        return self.state.trials[trial_id]

    def _branch(self, index: int, action: Branch, events: list[dict[str, Any]]) -> TrialState:
        """PBT: the poor trial stops; a child of the good one starts from its checkpoint with a perturbed config."""
        trial_id = f"{index:04d}"
        self._apply(make_event("trial_ended", action.replaces, state=STOPPED, exit_code=0,
                               reason=f"replaced by trial {trial_id}, a perturbed copy of {action.parent_id}"), events)
        self._apply(make_event("trial_created", trial_id, index=index, config=action.config, parent=action.parent_id,
                               replaces=action.replaces, resume_from=plain_number(action.resume_from),
                               target=plain_number(action.target), driver=self.driver_id), events)
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
        self._follow_lost_nodes()
        # After a restart, adopted runs and runs never submitted may together exceed the slots: the rest wait.
        launching, self.to_launch = self.to_launch, []
        self.held_for_end = False
        # The sweep's runs are submitted, then journaled in one append (one fsync, not one per run). A driver
        # killed in between leaves runs without trial_started: the next one finds them by their tags
        # (Resuming._reconcile_runs), as it did with one run in that gap.
        started: list[tuple[TrialState, StartNew | Resume | Branch, dict[str, Any]]] = []
        try:
            for trial, plan in launching:
                if self._hold_for_end(trial.trial_id, plan):
                    continue  # journaled as pending or interrupted: the next allocation's run starts it
                if len(self.live) + len(started) < self.parallel and time.monotonic() >= self.submit_again_at:
                    self._launch_or_wait(trial, plan, started)
                else:
                    self.to_launch.append((trial, plan))
        finally:  # a submit that failed still leaves the runs submitted before it journaled
            if started:
                self._append([event for _, _, event in started])
                for trial, plan, event in started:
                    self._follow_launch(trial, plan, event)
        self._forget_ended_readers()

    def _launch_or_wait(self, trial: TrialState, plan: StartNew | Resume | Branch,
                        started: list[tuple[TrialState, StartNew | Resume | Branch, dict[str, Any]]]) -> None:
        """A submit limit (too many jobs queued for this user) is waited out with growing pauses: the
        run stays planned and the queue drains as other jobs end."""
        try:
            started.append((trial, plan, self._launch(trial, plan)))
        except NoRoomYet:
            self.to_launch.append((trial, plan))  # runs of other shapes hold what it needs: next sweep
            return
        except SubmitLater as exc:
            self.to_launch.append((trial, plan))
            pause = min(SUBMIT_WAIT_MAX_S, SUBMIT_WAIT_S * 2 ** self.submit_refusals)
            self.submit_refusals += 1
            self.submit_again_at = time.monotonic() + pause
            if self.submit_refusals == 1:
                self.progress.say(f"{exc.message}: waiting for the queue to drain, trying again in {pause:g} s")
            return
        if self.submit_refusals:
            self.progress.say(f"submitting again after {self.submit_refusals} refusals")
            self.submit_refusals = 0

    def _follow_lost_nodes(self) -> None:
        """Nodes that failed have left the backend's pool: run fewer trials at once, or, with none left,
        treat the allocation as gone."""
        usable = self.backend.usable_slots()
        if usable is None or usable >= self.parallel:
            return
        self.parallel = usable
        if usable == 0:
            self._allocation_gone(JobStatus(EXITED, None, "no usable node is left in it"))
        else:
            self.progress.say(f"nodes failed: {usable} trials at a time from now on")

    def _launch(self, trial: TrialState, plan: StartNew | Resume | Branch) -> dict[str, Any]:
        """Submit the run; its trial_started event, for the sweep's launches' append."""
        trial_dir = self._trial_dir(trial.trial_id)
        if not isinstance(plan, Resume):
            write_trial_config(trial_dir, trial.config)
        if isinstance(plan, Branch):
            source = self._snapshot_dir(plan.parent_id, plan.resume_from)
            shutil.rmtree(trial_dir / "checkpoint", ignore_errors=True)
            shutil.copytree(source, trial_dir / "checkpoint")
        (trial_dir / DECISION_FILE).unlink(missing_ok=True)  # no stale decision for the new run
        (trial_dir / INTERRUPT_FILE).unlink(missing_ok=True)  # nor a stale request to stop
        resume_from = plan.resume_from if isinstance(plan, (Resume, Branch)) else 0
        spec = LaunchSpec(trial_id=trial.trial_id, argv=self._argv(trial, plan.target, resume_from),
                          cwd=trial_workdir(self.config, trial_dir, trial.trial_id, trial.runs == 0),
                          trial_dir=trial_dir, env=self._env(trial, plan.target, resume_from),
                          tag=self._run_tag(trial.trial_id, trial.runs + 1), **self._shape(trial))
        if not self.backend.has_room(spec):
            raise NoRoomYet()
        handle = self.backend.submit(spec)
        return make_event("trial_started", trial.trial_id, handle=handle, backend=self.backend.name,
                          run=trial.runs + 1, driver=self.driver_id)

    def _follow_launch(self, trial: TrialState, plan: StartNew | Resume | Branch, started: dict[str, Any]) -> None:
        """A submitted run, journaled: watched from now on, its pace measured from its submission."""
        self.state.apply(started)
        live = self._watch(trial, plan)
        live.launched_at = started["t"]
        live.from_resource = plan.resume_from if isinstance(plan, (Resume, Branch)) else 0
        if isinstance(plan, (Resume, Branch)):
            self.progress.resumed(trial, plan.resume_from, plan.target)
        else:
            self.progress.started(trial)

    def _shape(self, trial: TrialState) -> dict[str, int | None]:
        """What this trial's run asks for: nodes_per_eval whole nodes, or a share of one node (an amount
        may be one of the trial's hyperparameters)."""
        shape = self.config.execution.shape
        nodes = self.backend.nodes_per_eval
        nodes_param = self.backend.nodes_param
        if nodes_param is not None:
            nodes = int(trial.config[nodes_param])
        return {"nodes": nodes, "gpus": shape.gpus.of(trial.config), "cpus": shape.cpus.of(trial.config),
                "mem_mb": shape.mem_mb.of(trial.config), "tasks": shape.tasks.of(trial.config)}

    def _watch(self, trial: TrialState, plan: StartNew | Resume | Branch) -> LiveTrial:
        """Follow a started run: its reports are read from the trial's files at every sweep."""
        if trial.trial_id not in self.readers:
            trial_dir = self._trial_dir(trial.trial_id)
            source = trial_dir / ("stdout" if self.config.metric_regex is not None else "metrics.jsonl")
            self.readers[trial.trial_id] = (LineTail(source), ReportParser(
                self.config.metric.name, self.config.resource.name, self.config.metric_regex,
                label=f"trial {trial.trial_id}", objective=self.config.metric, warned=self.parser_warnings))
        live = self.live[trial.trial_id] = LiveTrial(trial, plan, launched_at=time.time(),
                                                     from_resource=trial.last_resource or 0.0)
        return live

    def _forget_ended_readers(self) -> None:
        """A trial that ended for good is read no more: its reader goes (one per trial ever would grow without
        end). Looked at once the readers doubled since the last look, so a sweep costs nothing per trial. Should
        a trial run again after all (an experiment extended), a new reader skips the reports it had."""
        if len(self.readers) <= 2 * self.readers_kept + 64:
            return
        trials = self.state.trials
        self.readers = {trial_id: reader for trial_id, reader in self.readers.items()
                        if trial_id in self.live or trials[trial_id].state not in ENDED_STATES}
        self.readers_kept = len(self.readers)

    def _snapshot(self, trial: TrialState) -> None:
        """Keep the checkpoint as it is at this pause: a PBT child may start from it after the trial moved on."""
        level = trial.last_resource or 0
        target = self._snapshot_dir(trial.trial_id, level)
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(self._trial_dir(trial.trial_id) / "checkpoint", target)

    def _snapshot_dir(self, trial_id: str, level: float) -> Path:
        return self._trial_dir(trial_id) / "snapshots" / f"{plain_number(level)}"

    def _argv(self, trial: TrialState, target: float, resume_from: float) -> tuple[str, ...]:
        """The command, the hyperparameter flags (the max_resource_attr one set to this run's target),
        and for a resumed run the resume flags."""
        config = dict(trial.config)
        attr = self.config.resource.max_resource_attr
        if attr is not None and attr in config:
            config[attr] = plain_number(target)
        argv = list(self.config.command) + self.config.space.argv(config)
        if resume_from:
            flags = self.config.execution.resume_flags
            values = {"resume_from": plain_number(resume_from),
                      "checkpoint_dir": str(self._trial_dir(trial.trial_id) / "checkpoint")}
            for name, flag in flags.items():
                argv += flag_argv(flag, values[name])
        return tuple(argv)

    def _env(self, trial: TrialState, target: float, resume_from: float) -> dict[str, str]:
        trial_dir = self._trial_dir(trial.trial_id)
        return {TRIAL_DIR_ENV: str(trial_dir), "HPC_HPO_TRIAL_ID": trial.trial_id,
                "HPC_HPO_EXPERIMENT_DIR": str(self.config.experiment_dir),
                "HPC_HPO_CHECKPOINT_DIR": str(trial_dir / "checkpoint"),
                "HPC_HPO_RESUME_FROM": str(plain_number(resume_from)),
                "HPC_HPO_TARGET_RESOURCE": str(plain_number(target)),
                "HPC_HPO_MAX_RESOURCE": str(plain_number(self.config.resource.max)),
                "HPC_HPO_RESOURCE_NAME": self.config.resource.name,
                "HPC_HPO_RUN": str(trial.runs + 1), "HPC_HPO_ATTEMPT": str(trial.failures + 1),
                **path_with_hpc_hpo(os.environ.get("PATH", ""))}

    # ------------------------------------------------------------------ helpers

    def _append(self, events: list[dict[str, Any]]) -> None:
        """Journal events while this driver still holds the lease. Another driver may have taken over (this
        one was stopped, and locks need not reach between clients): then nothing more is written or
        cancelled here (LeaseLost), the runs are that driver's now."""
        with self.journal.lock:
            self._catch_up()  # what other drivers wrote comes before this in everyone's replay
            self.lease.check(on_lost=lambda: setattr(self, "detached", True))
            self._check_membership()
            end = self.journal.append(events)
            if end >= 0:
                self.journal_offset = end
        self.hooks.saw(events)  # after the append: a hook never announces what the journal lacks

    def _loss(self, value: float) -> float:
        return value if self.config.metric.mode == "min" else -value

    def _apply(self, event: dict[str, Any], events: list[dict[str, Any]]) -> None:
        self.state.apply(event)
        self._remember_plan(event)  # as a replay would: any driver may have to resume any trial (joining.py)
        events.append(event)

    def _run_tag(self, trial_id: str, run: int) -> str:
        """The run's name for the batch system and its processes: the experiment's name first (its first 8
        characters are what a default squeue shows), then the experiment's id, trial and run, which make it
        unique and end it as before (PBS's shortened names keep a tag's end). By the id, not the path, so
        that a driver reaching the experiment through another mount point finds the runs again. A run an
        older driver started carries the tag of its day, hpo-<id>-<trial>-<run>, and keeps it: its files in
        the trial directory (exit marker, nodes, job script) or its journaled process say so."""
        experiment_id = self.lease.experiment_id[:8]
        old = f"hpo-{experiment_id}-{trial_id}-{run}"
        try:
            if any(name.startswith(old + ".") for name in os.listdir(self._trial_dir(trial_id))):
                return old
        except OSError:  # no trial directory yet: a run never started
            pass
        trial = self.state.trials.get(trial_id)
        pid = (trial.handle or "").rpartition(":")[2] if trial is not None and trial.runs == run else ""
        if pid.isdigit():  # a local run leaves no file before it ends; its process carries its tag
            from ..backends.base import processes_tagged
            if processes_tagged(old, [int(pid)]):
                return old
        label = self.config.name if self.config.name[0].isalpha() else f"e{self.config.name}"  # PBS: a letter first
        return f"{label[:8]}-{experiment_id}-{trial_id}-{run}"

    def _trial_dir(self, trial_id: str) -> Path:
        # Ids come from the journal, a file on a shared filesystem: one that is not a number could point anywhere.
        if not TRIAL_ID.fullmatch(trial_id):
            raise HpoError(f"the journal names a trial {trial_id!r}, which is not a trial id hpc-hpo makes; "
                           "the journal was edited or damaged: restore it, or start a new experiment_dir")
        return self.config.experiment_dir / "trials" / trial_id
