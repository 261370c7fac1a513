"""What a running driver prints: one line per trial event, a summary now and then, the result at the end."""
from __future__ import annotations

import sys
import time
from typing import TextIO

from .space import format_value
from .state import FAILED, RUNNING, ExperimentState, NewBest, TrialState

SUMMARY_EVERY_S = 15.0


class Progress:
    def __init__(self, state: ExperimentState, out: TextIO | None = None, quiet: bool = False) -> None:
        self.state, self.out, self.quiet = state, out or sys.stdout, quiet
        self.start = time.monotonic()
        self.last_summary = self.start
        self.new_best = NewBest()

    def say(self, text: str) -> None:
        if not self.quiet:
            minutes, seconds = divmod(int(time.monotonic() - self.start), 60)
            print(f"[{minutes:3d}:{seconds:02d}] {text}", file=self.out, flush=True)

    def started(self, trial: TrialState) -> None:
        self.say(f"started   {trial.trial_id}  {describe_config(trial.config)}")

    def resumed(self, trial: TrialState, resume_from: float, target: float) -> None:
        self.say(f"resumed   {trial.trial_id}  from {self.state.resource} {resume_from:g} to {target:g}")

    def decided(self, trial: TrialState, decision: str, resource: float, value: float,
                cutoff: float | None, target: float | None = None) -> None:
        metric = f"{self.state.metric}={value:.6g}"
        if decision == "pause":
            self.say(f"paused    {trial.trial_id}  at {self.state.resource} {resource:g}: {metric}")
        elif decision == "promote":
            self.say(f"promoted  {trial.trial_id}  at {self.state.resource} {resource:g}: {metric}; "
                     f"runs on to {target:g}")
        if decision == "stop":
            self.say(f"stopped   {trial.trial_id}  at {self.state.resource} {resource:g}: {metric} "
                     f"is worse than the rung cutoff {cutoff:.6g}" if cutoff is not None
                     else f"stopped   {trial.trial_id}  at {self.state.resource} {resource:g}: {metric}")
        elif decision == "complete":
            self.say(f"completed {trial.trial_id}  at {self.state.resource} {resource:g}: {metric}")

    def ended(self, trial: TrialState, trial_dir: str) -> None:
        if trial.state == FAILED:
            self.say(f"failed    {trial.trial_id}  exit code {trial.exit_code}; see {trial_dir}/stderr")
        elif not trial.decided:
            self.say(f"{trial.state:<9} {trial.trial_id}  exit code {trial.exit_code}")

    def maybe_new_best(self) -> None:
        """Said once per strict improvement (state.NewBest)."""
        best = self.new_best.news(self.state)
        if best is None:
            return
        self.say(f"new best  {best.trial_id}  {self.state.metric}={best.best_value:.6g} "
                 f"at {self.state.resource} {best.best_resource:g}")

    def maybe_summary(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_summary < SUMMARY_EVERY_S:
            return
        self.last_summary = now
        counts = {name: 0 for name in ("running", "paused", "interrupted", "stopped", "completed", "finished",
                                       "failed", "cancelled")}
        for trial in self.state.trials.values():
            counts[trial.state] = counts.get(trial.state, 0) + 1
        text = ", ".join(f"{n} {name}" for name, n in counts.items() if n or name == RUNNING)
        best = self.state.best_trial()
        if best is not None:
            text += f"; best {self.state.metric}={best.best_value:.6g} ({best.trial_id})"
        self.say(f"{len(self.state.trials)} trials: {text}")


def describe_config(config: dict[str, object]) -> str:
    """Short form for progress lines: floats to 4 significant digits."""
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={format_value(v)}"  # type: ignore[arg-type]
                    for k, v in config.items())
