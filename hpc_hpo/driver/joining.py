"""Several drivers on one experiment (README "Elastic experiments"): catching up with the journal, taking over
the trials of drivers that are gone, and when a driver may leave.

Every decision is taken under the journal lock on the journal as it is at that moment: the sweep takes the
lock, reads the events other drivers appended since this one last read (one read of the new bytes, from the
offset it keeps), feeds them to state, scheduler and searcher exactly as a replay would, decides, appends, and
only then lets go. So the journal's order is the order in which every driver made the scheduler's calls, and a
single driver replaying it takes the same decisions. Trial ids come from the caught-up state: never twice.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

from ..experiment import LeaseLost, experiment_id
from ..journal import make_event
from ..membership import Members, lock_is_free, MEMBERS_DIR
from ..schedulers.base import Decision
from ..state import INTERRUPTED, PENDING, TrialState
from .common import LiveTrial


class Joining:
    """Part of Driver (core.py)."""

    def _catch_up(self) -> None:
        """Fold in what other drivers journaled since this one last read. The caller holds the journal lock."""
        events, self.journal_offset = self.journal.read_from(self.journal_offset)
        for event in events:
            if event.get("type") == "driver_lost" and event.get("driver") == self.driver_id:
                self.member.lose(f"another driver judged this one gone (its heartbeat stopped) and took its trials "
                                 f"over at {time.strftime('%H:%M:%S', time.localtime(event.get('t', 0)))}")
        if events:
            self._replay(events)

    def _check_membership(self) -> None:
        """Before writing: a driver whose trials another took over, or that could not beat for long enough
        that another may have, writes nothing more."""
        if self.member.lost is None and self.member.silent_too_long():
            self.member.lose("its heartbeat was silent too long (the driver was stopped or stalled), so another "
                             "driver may have taken its trials over")
        if self.member.lost is not None:
            self.detached = True
            raise LeaseLost(f"this driver stopped without writing anything more: {self.member.lost}")

    def _owned_by_others(self) -> list[TrialState]:
        """Trials another driver runs or has taken on. The journal clears a trial's driver when its run ends
        (paused, interrupted, ended), so a run decided on (complete, stop) whose process has not yet exited
        still counts: the experiment is not over before it is."""
        return [self.state.trials[trial_id] for trial_id, driver in self.state.owners.items() if driver != self.driver_id]

    def _take_over_lost_drivers(self, events: list[dict[str, Any]]) -> None:
        """Trials of drivers that are gone (kill -9, a node or allocation that died, a stall) become interrupted,
        for any driver to resume from their checkpoints; their runs are adopted when this driver can follow
        them (a local run on this host), else ended (a step of another allocation)."""
        owners = {t.driver for t in self._owned_by_others()}
        if not owners:
            return
        for gone in sorted(self.members.gone(owners)):
            self._apply(make_event("driver_lost", driver=gone), events)
            trials = [t for t in self._owned_by_others() if t.driver == gone]
            self.progress.say(f"driver {gone} is gone: its {len(trials)} trials go on elsewhere")
            for trial in trials:
                self._take_over(trial, events)

    def _take_over(self, trial: TrialState, events: list[dict[str, Any]]) -> None:
        plan = self.replayed_plans[trial.trial_id]
        trial_dir = self._trial_dir(trial.trial_id)
        if trial.handle and not trial.process_ended:
            handle = self.backend.adopt(trial.handle, self._run_tag(trial.trial_id, trial.runs), trial_dir)
            if handle is not None:
                self._apply(make_event("trial_adopted", trial.trial_id, handle=handle, driver=self.driver_id), events)
                live = self._watch(trial, plan)
                self._repeat_decision(live)
                return
        elif trial.state == PENDING:  # planned; its run may have been submitted just before the driver died
            handle = self.backend.adopt(None, self._run_tag(trial.trial_id, trial.runs + 1), trial_dir)
            if handle is not None:  # launches are journaled once per sweep: found by its tag, as on a resume
                self._apply(make_event("trial_started", trial.trial_id, handle=handle, backend=self.backend.name,
                                       run=trial.runs + 1, adopted=True, driver=self.driver_id), events)
                self._watch(trial, plan)
                return
        reason = f"its driver {trial.driver} is gone"
        last = self.replayed_decisions.get(trial.trial_id, {}).get("decision")
        if last == Decision.PAUSE.value:  # it reported at its rung (programs save before they report)
            self._apply(make_event("trial_paused", trial.trial_id, exit_code=None), events)
            self.scheduler.on_paused(trial.trial_id)
        elif trial.decided:  # stopped or completed already: only its process's end was not journaled
            self._apply(make_event("trial_ended", trial.trial_id, state=trial.state, exit_code=None, reason=reason),
                        events)
            self.scheduler.on_trial_end(trial.trial_id)
            self.searcher.on_trial_end(trial.trial_id)
        else:
            self._interrupt(LiveTrial(trial, plan), None, reason, events, requeue=False)

    def _claim_interrupted(self, free: int, events: list[dict[str, Any]]) -> int:
        """Interrupted trials nobody has taken on go first, before anything new; returns the slots left. Looks
        only at trials interrupted since the last look and those still waiting: not at every trial."""
        self.unclaimed.update(self.state.interrupted_ids[self.interrupted_seen:])
        self.interrupted_seen = len(self.state.interrupted_ids)
        for trial_id in sorted(self.unclaimed, key=lambda t: self.state.trials[t].index):
            trial = self.state.trials[trial_id]
            if trial.state != INTERRUPTED or trial.driver is not None:
                self.unclaimed.discard(trial_id)  # resumed, claimed or ended meanwhile
                continue
            if free <= 0:
                break
            plan = self._resume_plan(trial, self.replayed_plans[trial.trial_id])
            if self._hold_for_end(trial.trial_id, plan):
                break  # its next stage does not fit before this allocation ends: another driver's, or the next run's
            self._apply(make_event("trial_claimed", trial.trial_id, driver=self.driver_id), events)
            self.to_launch.append((trial, plan))
            self.unclaimed.discard(trial_id)
            free -= 1
        return free

    def _owner_alive(self, trial: TrialState) -> bool:
        """At start: whether another driver holds this trial now (its member lock is held)."""
        if trial.driver is None or trial.driver == self.driver_id:
            return False
        return not lock_is_free(self.config.experiment_dir / MEMBERS_DIR, trial.driver)

    def _others_busy(self) -> bool:
        return bool(self._owned_by_others())

    def _others_watched(self) -> bool:
        """Whether a driver that runs trials is seen alive, to take over from any other that stops: only then
        may an idle driver leave. (A stalled driver still looks busy; its trials need someone to stay.)"""
        return self.members.watched_alive({t.driver for t in self._owned_by_others() if t.driver})

    def _may_get_work(self) -> bool:
        """Whether work may still come to an idle driver while others run trials: a pause to promote, a
        barrier to pass, a new trial. Stopping ASHA and FIFO that can start no new trial have none to give
        (only a driver that dies would), so the driver leaves its allocation to the queue."""
        if self.stop_reason is not None:
            return False
        limit = self.config.budget.max_trials
        exhausted = self.no_new_trials or (limit is not None and len(self.state.trials) >= limit)
        return not (exhausted and self.config.scheduler.type in ("asha", "fifo"))

    def _leave_or_end(self, events: list[dict[str, Any]]) -> None:
        """Nothing runs here: the last driver ends the experiment; one that leaves others running says so."""
        if self._others_busy():
            self._apply(make_event("driver_left", driver=self.driver_id), events)
            self.progress.say(f"this driver leaves: {len({t.driver for t in self._owned_by_others()})} other "
                              "driver(s) go on with the experiment")
            return
        self._end_experiment(events)

    def _make_members(self) -> None:
        self.members = Members(self.config.experiment_dir, self.driver_id)
        self.interrupted_seen = 0  # how many of state.interrupted_ids _claim_interrupted has looked at
        self.unclaimed: set[str] = set()  # interrupted trials it saw that nobody had taken on yet


class SharedLease:
    """What a joining driver holds instead of the one-driver lease (experiment.DriverLease): nothing exclusive.
    Its member lease (membership.py) says it lives; the journal lock orders its decisions with the others'."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._id: str | None = None

    def acquire(self) -> None:
        """Nothing to take: any number of joining drivers run at once."""

    def release(self) -> None:
        """Nothing to free."""

    def check(self, on_lost: Callable[[], None] | None = None) -> None:
        """Never lost this way: Joining._check_membership judges a joining driver."""

    @property
    def experiment_id(self) -> str:
        if self._id is None:
            self._id = experiment_id(self.directory)
        return self._id


class SweepClock:
    """A benchmark's probe (benchmarks/elastic_drivers.py): with HPC_HPO_SWEEP_TIMES set to a file, each sweep
    that journaled something appends "lock_wait_s catch_up_s decide_s events" to it. Off otherwise: no cost."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.marks = [0.0, 0.0, 0.0]

    @classmethod
    def from_environment(cls) -> "SweepClock":
        return cls(os.environ.get("HPC_HPO_SWEEP_TIMES") or None)

    def lock_asked(self) -> None:
        if self.path:
            self.marks[0] = time.perf_counter()

    def lock_taken(self) -> None:
        if self.path:
            self.marks[1] = time.perf_counter()

    def caught_up(self) -> None:
        if self.path:
            self.marks[2] = time.perf_counter()

    def decided(self, events: int) -> None:
        if not self.path or not events:
            return
        asked, taken, caught = self.marks
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(f"{taken - asked:.6f} {caught - taken:.6f} {time.perf_counter() - caught:.6f} {events}\n")
