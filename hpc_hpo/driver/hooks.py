"""Hooks: the commands of the config's `hooks:` section, run when a trial ends, a new best appears, or a
driver run ends the experiment.

The runner never blocks the driver's loop: it sees the events each sweep journaled (one call, after the
journal append: a hook never announces what the journal does not hold), queues the hooks they call for,
and at the same call reaps the hooks that ended, kills those past `hooks.timeout` (their whole process
group: SIGTERM, then SIGKILL) and starts queued ones while fewer than `hooks.max_running` run. A burst of
trial ends therefore queues, it does not fork hundreds of processes. A failing, unstartable or timed-out
hook is warned about once per hook and kind of failure, never fatal. When the driver leaves, `close`
gives the remaining hooks (on_experiment_end first) at most `hooks.timeout` more.

Each hook gets the driver's environment plus HPC_HPO_* variables (HOOK_ENV_DOC) and a JSON file
(HPC_HPO_HOOK_FILE) holding the event, the trial's config and last report, the best trial, and for
on_experiment_end why it ended; the file is deleted when the hook ends. Output goes to
EXP/hooks/<hook>.log.
"""
from __future__ import annotations

import collections
import json
import logging
import math
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..config import ExperimentConfig
from ..state import ENDED_STATES, ExperimentState, NewBest, ReportRow, TrialState
from .common import path_with_hpc_hpo

log = logging.getLogger("hpc_hpo")
HOOKS_DIR = "hooks"
KILL_AFTER_S = 2.0  # after SIGTERM at the timeout, SIGKILL this much later
MAX_QUEUED = 1000  # hooks waiting for a turn; beyond that new ones are dropped (and said so once)
CLOSE_POLL_S = 0.05
# The variables every hook gets, besides the driver's own environment (documented in the README).
HOOK_ENV_DOC = {
    "HPC_HPO_HOOK_EVENT": "trial_end, new_best or experiment_end",
    "HPC_HPO_HOOK_FILE": "the JSON file with everything below and the trial's config",
    "HPC_HPO_EXPERIMENT_NAME": "the experiment's name",
    "HPC_HPO_EXPERIMENT_DIR": "the experiment directory",
    "HPC_HPO_METRIC_NAME": "the metric's name; HPC_HPO_METRIC_MODE: min or max",
    "HPC_HPO_RESOURCE_NAME": "the resource's name (epoch, ...)",
    "HPC_HPO_TRIAL_ID": "the trial the event is about (on_experiment_end: the best trial; empty if none)",
    "HPC_HPO_TRIAL_DIR": "its directory (metrics.jsonl, stdout, stderr, checkpoint/)",
    "HPC_HPO_TRIAL_STATE": "its state: completed, stopped, finished, failed, cancelled, running, ...",
    "HPC_HPO_METRIC": "the value of the report the event is about: the trial's last report (trial_end), the "
                      "new best (new_best), the best trial's best (experiment_end); empty if none",
    "HPC_HPO_RESOURCE": "the resource of that report",
    "HPC_HPO_BEST_TRIAL_ID": "the experiment's best trial so far; HPC_HPO_BEST_METRIC: its value",
    "HPC_HPO_END_REASON": "experiment_end only: why the driver run ended; HPC_HPO_FINAL: 1 for good, 0 resumable",
}
EVENT_OF_HOOK = {"on_trial_end": "trial_end", "on_new_best": "new_best", "on_experiment_end": "experiment_end"}


@dataclass
class _Call:
    hook: str  # on_trial_end, ...
    env: dict[str, str]
    payload: dict[str, Any]


@dataclass
class _Running:
    call: _Call
    process: subprocess.Popen[bytes]
    file: Path
    deadline: float
    terminated_at: float | None = None


@dataclass
class HookRunner:
    config: ExperimentConfig
    state: ExperimentState
    queue: collections.deque[_Call] = field(default_factory=collections.deque)
    running: list[_Running] = field(default_factory=list)
    new_best: NewBest = field(default_factory=NewBest)  # the best last announced, or known at the start
    # Each trial's last report folded since begin(), while the trial may still end (the driver's state keeps no
    # rows); entries of trials that ended are dropped once there are twice as many as after the last clean-up.
    last_report: dict[str, ReportRow] = field(default_factory=dict)
    kept_reports: int = 0
    warned: set[tuple[str, str]] = field(default_factory=set)
    failures: collections.Counter[str] = field(default_factory=collections.Counter)
    started: collections.Counter[str] = field(default_factory=collections.Counter)
    dropped: int = 0
    serial: int = 0

    @property
    def active(self) -> bool:
        hooks = self.config.hooks
        return any((hooks.on_trial_end, hooks.on_new_best, hooks.on_experiment_end))

    def begin(self) -> None:
        """After the journal's replay: reports from now on are noted (the driver marks the best so far as known
        once it has also caught up with other drivers)."""
        if not self.active:
            return
        self.state.on_row = self._note_report

    # ------------------------------------------------------------------ each sweep

    def saw(self, events: list[dict[str, Any]]) -> None:
        """The events the driver just journaled: queue the hooks they call for, then run the queue."""
        if not self.active:
            return
        hooks = self.config.hooks
        reported = False
        for event in events:
            kind = event.get("type")
            if kind == "trial_ended" and hooks.on_trial_end:
                trial = self.state.trials.get(event.get("trial_id", ""))
                if trial is not None:
                    self._queue("on_trial_end", trial, self._last(trial), {"exit_code": event.get("exit_code"),
                                                                           "reason": event.get("reason")})
            elif kind == "report":
                reported = True
            elif kind == "experiment_ended" and hooks.on_experiment_end:
                leader = self.state.best_trial()
                self._queue("on_experiment_end", leader, self._best_row(leader),
                            {"reason": event.get("reason"), "final": bool(event.get("final", True))}, first=True)
        if reported and hooks.on_new_best:
            self._maybe_new_best()
        self._forget_ended()
        self.pump()

    def _maybe_new_best(self) -> None:
        """As the driver's "new best" line (state.NewBest), at most once per sweep."""
        best = self.new_best.news(self.state)
        if best is None:
            return
        self._queue("on_new_best", best, self._best_row(best), {})

    def pump(self) -> None:
        """Reap the hooks that ended, end the ones past their time, start queued ones while there is room."""
        now = time.monotonic()
        still: list[_Running] = []
        for run in self.running:
            code = run.process.poll()
            if code is not None:
                self._finished(run, code)
                continue
            if run.terminated_at is None and now > run.deadline:
                self._signal(run, signal.SIGTERM)
                run.terminated_at = now
            elif run.terminated_at is not None and now > run.terminated_at + KILL_AFTER_S:
                self._signal(run, signal.SIGKILL)
            still.append(run)
        self.running = still
        while self.queue and len(self.running) < self.config.hooks.max_running:
            self._start(self.queue.popleft())

    def close(self, cut_short: Callable[[], bool] = lambda: False) -> None:
        """The driver leaves: give what is queued or running at most hooks.timeout (and the kill's grace) to
        end, then kill what still runs and drop what never started. cut_short(): a signal to leave now."""
        if not self.active:
            return
        deadline = time.monotonic() + self.config.hooks.timeout + KILL_AFTER_S
        while (self.queue or self.running) and time.monotonic() < deadline and not cut_short():
            self.pump()
            if self.queue or self.running:
                time.sleep(CLOSE_POLL_S)
        for run in self.running:
            self._signal(run, signal.SIGKILL)
            run.process.wait()
            self._finished(run, None)
        self.running = []
        if self.queue or self.dropped:
            log.warning("hooks: %d hooks were not run (the driver left, or they fell behind: raise "
                        "hooks.max_running or make them quicker)", len(self.queue) + self.dropped)
        self.queue.clear()
        for hook, count in sorted(self.failures.items()):
            log.warning("hooks: %s failed %d of %d times; see %s", hook, count, self.started[hook],
                        self._log_path(hook))

    # ------------------------------------------------------------------ building a call

    def _note_report(self, row: ReportRow) -> None:
        """Each report as the state folds it (this driver's and, caught up, other drivers')."""
        self.last_report[row.trial_id] = row

    def _forget_ended(self) -> None:
        """The last reports of trials that ended for good (their on_trial_end was queued when their end was
        journaled): memory follows the trials that may still end, not all there were."""
        if len(self.last_report) <= 2 * self.kept_reports + 64:
            return
        trials = self.state.trials
        self.last_report = {trial_id: row for trial_id, row in self.last_report.items()
                            if not (trials[trial_id].process_ended and trials[trial_id].state in ENDED_STATES)}
        self.kept_reports = len(self.last_report)

    def _last(self, trial: TrialState) -> ReportRow | None:
        return self.last_report.get(trial.trial_id)

    def _best_row(self, trial: TrialState | None) -> ReportRow | None:
        if trial is None or trial.best_value is None or trial.best_resource is None:
            return None
        return ReportRow(trial.trial_id, trial.best_resource, trial.best_value, 0.0, "")

    def _queue(self, hook: str, trial: TrialState | None, report: ReportRow | None, extra: dict[str, Any],
               first: bool = False) -> None:
        if len(self.queue) >= MAX_QUEUED:
            self.dropped += 1
            self._warn_once(hook, "dropped", f"hooks: {hook} fell behind ({MAX_QUEUED} waiting); later calls "
                            "are dropped until it catches up")
            return
        call = self._call(hook, trial, report, extra)
        if first:
            self.queue.appendleft(call)
        else:
            self.queue.append(call)

    def _call(self, hook: str, trial: TrialState | None, report: ReportRow | None,
              extra: dict[str, Any]) -> _Call:
        event = EVENT_OF_HOOK[hook]
        config, state = self.config, self.state
        best = state.best_trial()
        trial_dir = config.experiment_dir / "trials" / trial.trial_id if trial is not None else None
        env = {"HPC_HPO_HOOK_EVENT": event, "HPC_HPO_EXPERIMENT_NAME": config.name,
               "HPC_HPO_EXPERIMENT_DIR": str(config.experiment_dir), "HPC_HPO_METRIC_NAME": config.metric.name,
               "HPC_HPO_METRIC_MODE": config.metric.mode, "HPC_HPO_RESOURCE_NAME": config.resource.name,
               "HPC_HPO_TRIAL_ID": trial.trial_id if trial else "", "HPC_HPO_TRIAL_DIR": str(trial_dir or ""),
               "HPC_HPO_TRIAL_STATE": trial.state if trial else "",
               "HPC_HPO_METRIC": _number_text(report.value if report else None),
               "HPC_HPO_RESOURCE": _number_text(report.resource if report else None),
               "HPC_HPO_BEST_TRIAL_ID": best.trial_id if best else "",
               "HPC_HPO_BEST_METRIC": _number_text(best.best_value if best else None)}
        if event == "experiment_end":
            env["HPC_HPO_END_REASON"] = str(extra.get("reason") or "")
            env["HPC_HPO_FINAL"] = "1" if extra.get("final") else "0"
        payload = {"event": event, "time": time.time(),
                   "experiment": {"name": config.name, "dir": str(config.experiment_dir),
                                  "metric": config.metric.name, "mode": config.metric.mode,
                                  "resource": config.resource.name, "trials": len(state.trials),
                                  "reports": state.num_reports},
                   "trial": _trial_data(trial, trial_dir), "last_report": _report_data(report),
                   "best": None if best is None else {"trial_id": best.trial_id, "value": best.best_value,
                                                      "resource": best.best_resource, "config": best.config}}
        if event == "trial_end":
            payload["trial"].update(extra)
        elif event == "experiment_end":
            payload["end"] = extra
        return _Call(hook, env, _json_safe(payload))

    # ------------------------------------------------------------------ processes

    def _start(self, call: _Call) -> None:
        argv = getattr(self.config.hooks, call.hook)
        directory = self.config.experiment_dir / HOOKS_DIR
        self.serial += 1
        self.started[call.hook] += 1
        file = directory / f"{call.hook}-{os.getpid()}-{self.serial}.json"
        try:
            directory.mkdir(mode=0o700, exist_ok=True)
            descriptor = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                json.dump(call.payload, handle, indent=2)
            with open(self._log_path(call.hook), "ab") as output:
                env = {**os.environ, **path_with_hpc_hpo(os.environ.get("PATH", "")), **call.env,
                       "HPC_HPO_HOOK_FILE": str(file)}
                # A session of its own: the terminal's Ctrl-C is the driver's to handle, and a timeout
                # kills the hook's children with it.
                process = subprocess.Popen(list(argv), env=env, stdin=subprocess.DEVNULL, stdout=output,
                                           stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            self.failures[call.hook] += 1
            file.unlink(missing_ok=True)
            self._warn_once(call.hook, "start", f"hooks: {call.hook} could not be started ({exc.strerror or exc}): "
                            f"{' '.join(argv)}")
            return
        self.running.append(_Running(call, process, file, time.monotonic() + self.config.hooks.timeout))

    def _finished(self, run: _Running, code: int | None) -> None:
        run.file.unlink(missing_ok=True)
        hook = run.call.hook
        if run.terminated_at is not None or code is None:
            self.failures[hook] += 1
            self._warn_once(hook, "timeout", f"hooks: {hook} ran longer than hooks.timeout "
                            f"({self.config.hooks.timeout:g} s) and was killed; see {self._log_path(hook)}")
        elif code != 0:
            self.failures[hook] += 1
            self._warn_once(hook, "failed", f"hooks: {hook} failed (exit code {code}); see {self._log_path(hook)}")

    def _signal(self, run: _Running, signum: int) -> None:
        try:
            os.killpg(run.process.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def _warn_once(self, hook: str, kind: str, message: str) -> None:
        if (hook, kind) not in self.warned:
            self.warned.add((hook, kind))
            log.warning("%s (said once per hook)", message)

    def _log_path(self, hook: str) -> Path:
        return self.config.experiment_dir / HOOKS_DIR / f"{hook}.log"


def _trial_data(trial: TrialState | None, trial_dir: Path | None) -> dict[str, Any] | None:
    if trial is None:
        return None
    return {"trial_id": trial.trial_id, "state": trial.state, "config": trial.config, "dir": str(trial_dir),
            "best_value": trial.best_value, "best_resource": trial.best_resource, "reports": trial.num_reports,
            "runs": trial.runs}


def _report_data(row: ReportRow | None) -> dict[str, Any] | None:
    if row is None:
        return None
    data: dict[str, Any] = {"resource": row.resource, "value": row.value}
    if row.decision:
        data.update(elapsed_s=row.elapsed_s, decision=row.decision)
    if row.components:
        data["metrics"] = row.components
    return data


def _number_text(value: float | None) -> str:
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) and not float(value).is_integer() else f"{value:g}"


def _json_safe(value: Any) -> Any:
    """JSON has no NaN or infinity: a diverged trial's value is written "nan", "inf" or "-inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value
