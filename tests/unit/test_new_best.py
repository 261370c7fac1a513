"""`new best` is said for a strict improvement only: a tie, even by a trial that got further, is no news."""
from __future__ import annotations

import io

from hpc_hpo.journal import make_event
from hpc_hpo.progress import Progress
from hpc_hpo.state import ExperimentState


def report(state: ExperimentState, trial_id: str, resource: float, value: float) -> None:
    state.apply(make_event("report", trial_id, resource=resource, value=value, decision="continue", elapsed_s=1.0))


def test_new_best_only_for_a_strict_improvement() -> None:
    state = ExperimentState()
    state.apply(make_event("experiment_created", name="t", metric="loss", mode="min", resource="epoch", params=["x"]))
    for trial_id in ("0000", "0001", "0002"):
        state.apply(make_event("trial_created", trial_id, index=int(trial_id), config={"x": 1}))
    out = io.StringIO()
    progress = Progress(state, out)
    report(state, "0000", 1, 0.5)
    progress.maybe_new_best()
    report(state, "0001", 3, 0.5)  # ties, further: best_trial() moves to it, but it is no better
    progress.maybe_new_best()
    report(state, "0002", 1, 0.4)
    progress.maybe_new_best()
    lines = [line for line in out.getvalue().splitlines() if "new best" in line]
    assert len(lines) == 2 and "0000" in lines[0] and "0002" in lines[1], lines
