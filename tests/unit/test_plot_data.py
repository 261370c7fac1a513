"""The data `hpc-hpo plot` draws, gathered from hand-written journals and trial directories (no matplotlib)."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from hpc_hpo.config import validate_config
from hpc_hpo.plot import (NodeSpan, RunSpan, best_so_far, busy_share, curves, gather, param_points, pareto,
                          pareto_front, read_journal, rung_counts, rung_levels_of, run_nodes, timeline)

T0 = 1_000.0  # experiment_created


def created(**extra: Any) -> dict[str, Any]:
    return {"type": "experiment_created", "t": T0, "name": "demo", "metric": "loss", "mode": "min",
            "resource": "epoch", "params": ["lr", "kind", "fixed"], **extra}


def trial(trial_id: str, t: float, **config: Any) -> dict[str, Any]:
    return {"type": "trial_created", "t": t, "trial_id": trial_id, "index": int(trial_id), "config": config}


def event(kind: str, trial_id: str, t: float, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "t": t, "trial_id": trial_id, **fields}


def report(trial_id: str, t: float, resource: float, value: float, decision: str = "continue",
           **fields: Any) -> dict[str, Any]:
    return event("report", trial_id, t, resource=resource, value=value, elapsed_s=t - T0, decision=decision, **fields)


def journal() -> list[dict[str, Any]]:
    """Trial 0000 pauses at 3 and runs again (still running); 0001 is stopped at 1; 0002 completes at 9
    with a tie of the best value on the way."""
    return [created(),
            trial("0000", T0 + 1, lr=0.1, kind="a", fixed=9), trial("0001", T0 + 1, lr=0.01, kind="b", fixed=9),
            trial("0002", T0 + 1, lr=0.001, kind="a", fixed=9),
            event("trial_started", "0000", T0 + 2, handle="local:1"),
            event("trial_started", "0001", T0 + 3, handle="local:2"),
            report("0000", T0 + 4, 1, 0.9), report("0001", T0 + 5, 1, 1.5, "stop"),
            event("trial_ended", "0001", T0 + 6, state="finished", exit_code=0),
            event("trial_started", "0002", T0 + 7, handle="local:3"),
            report("0000", T0 + 8, 3, 0.5, "pause"), event("trial_paused", "0000", T0 + 9, exit_code=0),
            report("0002", T0 + 10, 1, 0.5), report("0002", T0 + 11, 3, 0.4), report("0002", T0 + 12, 9, 0.3,
                                                                                      "complete"),
            event("trial_ended", "0002", T0 + 13, state="finished", exit_code=0),
            event("trial_resumed", "0000", T0 + 14, resume_from=3, target=9),
            event("trial_started", "0000", T0 + 15, handle="local:4")]


def test_runs_are_spans_between_start_and_end_events() -> None:
    state, runs = read_journal(journal())
    assert sorted(runs, key=lambda r: (r.trial_id, r.run)) == [
        RunSpan("0000", 1, T0 + 2, T0 + 9), RunSpan("0000", 2, T0 + 15, None),
        RunSpan("0001", 1, T0 + 3, T0 + 6), RunSpan("0002", 1, T0 + 7, T0 + 13)]
    assert len(state.rows) == 6


def test_damaged_events_start_no_run() -> None:
    events = journal()[:5] + [{"type": "trial_started", "t": T0 + 3, "trial_id": "0009", "handle": "x"}]
    _, runs = read_journal(events)
    assert [run.trial_id for run in runs] == ["0000"]


def test_curves_carry_each_trials_state() -> None:
    state, _ = read_journal(journal())
    by_id = {curve.trial_id: curve for curve in curves(state)}
    assert by_id["0002"].resources == [1.0, 3.0, 9.0] and by_id["0002"].values == [0.5, 0.4, 0.3]
    assert {trial_id: curve.state for trial_id, curve in by_id.items()} == {
        "0000": "running", "0001": "stopped", "0002": "completed"}


def test_best_so_far_steps_at_strict_improvements_only() -> None:
    state, _ = read_journal(journal())
    # 0.9 at 4 s, 0.5 at 8 s; 0.5 again at 10 s is a tie (no step), then 0.4 and 0.3.
    assert best_so_far(state, T0) == [(4.0, 0.9), (8.0, 0.5), (11.0, 0.4), (12.0, 0.3)]


def test_best_so_far_skips_nan_and_extends_to_the_last_report() -> None:
    events = journal()[:5] + [report("0000", T0 + 4, 1, math.nan), report("0000", T0 + 5, 2, 2.0),
                              report("0000", T0 + 9, 3, 2.5)]
    state, _ = read_journal(events)
    assert best_so_far(state, T0) == [(5.0, 2.0), (9.0, 2.0)]


def test_rung_counts_count_trials_at_or_beyond_each_level() -> None:
    state, _ = read_journal(journal())
    assert rung_counts(state, [1, 3, 9]) == [(1, 3), (3, 2), (9, 1)]


def test_rung_levels_follow_the_scheduler() -> None:
    def config(**scheduler: Any) -> Any:
        return validate_config({"name": "demo", "command": [sys.executable, "-c", "pass"], "experiment_dir": "/tmp/x",
                                "params": {"lr": {"type": "uniform", "low": 0, "high": 1}},
                                "metric": {"name": "loss", "mode": "min"}, "resource": {"name": "epoch", "max": 9},
                                "scheduler": scheduler, "budget": {"max_trials": 4}})
    assert rung_levels_of(config(type="asha", grace_period=1, reduction_factor=3)) == [1, 3, 9]
    assert rung_levels_of(config(type="asha", rung_levels=[2, 5])) == [2, 5, 9]
    assert rung_levels_of(config(type="fifo")) == [9]
    assert rung_levels_of(config(type="pbt", perturbation_interval=2)) == [2, 4, 6, 8, 9]
    assert rung_levels_of(None) == []


def test_run_nodes_match_the_run_by_its_tag(tmp_path: Path) -> None:
    (tmp_path / "demo-0003-1-0123abcd.nodes").write_text("n1 n2\n")
    (tmp_path / "demo-0003-11-0123abcd.nodes").write_text("n4\n")  # run 11, not run 1
    (tmp_path / "hpo-0123abcd-0003-2.nodes").write_text("n3\n")  # an older driver's tag
    (tmp_path / "demo-0003-3-0123abcd.nodes").write_text("\n")  # a packed step: its node is in .share
    (tmp_path / "demo-0003-3-0123abcd.share").write_text(json.dumps({"node": "n2", "gpus": 1}) + "\n")
    (tmp_path / "demo-0003-4-0123abcd.share").write_text("not json\n")
    assert run_nodes(tmp_path, "0003", 1) == ["n1", "n2"]
    assert run_nodes(tmp_path, "0003", 2) == ["n3"]
    assert run_nodes(tmp_path, "0003", 3) == ["n2"]
    assert run_nodes(tmp_path, "0003", 4) == []
    assert run_nodes(tmp_path, "0003", 11) == ["n4"]
    assert run_nodes(tmp_path / "missing", "0003", 1) == []
    assert run_nodes(tmp_path, "../x", 1) == []


def test_timeline_places_runs_on_their_nodes_relative_to_creation(tmp_path: Path) -> None:
    for trial_id, run, nodes in (("0000", 1, "n1"), ("0000", 2, "n2"), ("0001", 1, "n2"), ("0002", 1, "n1 n2")):
        (tmp_path / trial_id).mkdir(exist_ok=True)
        (tmp_path / trial_id / f"demo-{trial_id}-{run}-0123abcd.nodes").write_text(nodes + "\n")
    _, runs = read_journal(journal())
    spans = timeline(runs, tmp_path, T0, now=T0 + 20)
    assert sorted(spans, key=lambda s: (s.node, s.start)) == [
        NodeSpan("n1", "0000", 2, 9), NodeSpan("n1", "0002", 7, 13),
        NodeSpan("n2", "0001", 3, 6), NodeSpan("n2", "0002", 7, 13),
        NodeSpan("n2", "0000", 15, 20)]  # still running: drawn up to now


def test_local_runs_have_no_timeline(tmp_path: Path) -> None:
    _, runs = read_journal(journal())
    assert timeline(runs, tmp_path, T0, now=T0 + 20) == []


def test_busy_share_counts_overlaps_once() -> None:
    spans = [NodeSpan("a", "0000", 0, 10), NodeSpan("b", "0001", 0, 5), NodeSpan("b", "0002", 2, 4)]
    assert busy_share(spans) == (10 + 5) / (10 * 2)
    assert busy_share([]) == 0.0


def test_pareto_front_follows_each_metrics_mode() -> None:
    points = [(1.0, 5.0), (2.0, 3.0), (2.5, 4.0), (3.0, 1.0), (3.0, 2.0), (4.0, 1.0)]
    assert pareto_front(points, "min", "min") == [(1.0, 5.0), (2.0, 3.0), (3.0, 1.0)]
    assert pareto_front(points, "max", "max") == [(4.0, 1.0), (3.0, 2.0), (2.5, 4.0), (1.0, 5.0)]
    assert pareto_front([], "min", "min") == []


def test_pareto_only_for_combined_metrics() -> None:
    state, _ = read_journal(journal())
    assert pareto(state, {}) is None
    events = [created(combined=["err", "cost"]), trial("0000", T0 + 1, lr=0.1),
              report("0000", T0 + 2, 1, 1.0, metrics={"err": 0.2, "cost": 3.0}),
              report("0000", T0 + 3, 2, 1.0, metrics={"err": 0.1, "cost": math.inf}),  # not drawable
              report("0000", T0 + 4, 3, 1.0, metrics={"err": 0.3, "cost": 1.0})]
    state, _ = read_journal(events)
    result = pareto(state, {"err": "min", "cost": "min"})
    assert result is not None and result.names == ("err", "cost")
    assert result.points == [(0.2, 3.0), (0.3, 1.0)] and result.front == [(0.2, 3.0), (0.3, 1.0)]


def test_param_points_are_each_trials_best_and_skip_constants() -> None:
    events = journal() + [trial("0003", T0 + 16, lr=0.5, fixed=9),  # kind unused (a conditional parameter)
                          event("trial_started", "0003", T0 + 17, handle="local:5"),
                          report("0003", T0 + 18, 1, math.inf)]  # a diverged trial has no point to draw
    state, _ = read_journal(events)
    points = param_points(state)
    assert set(points) == {"lr", "kind"}  # 'fixed' is 9 everywhere
    assert sorted(points["lr"]) == [(0.001, 0.3), (0.01, 1.5), (0.1, 0.5)]
    assert sorted(points["kind"]) == [("a", 0.3), ("a", 0.5), ("b", 1.5)]


def test_gather_reads_a_directory_without_a_readable_config(tmp_path: Path) -> None:
    (tmp_path / "journal.jsonl").write_text("".join(json.dumps(e) + "\n" for e in journal()) + '{"type": "rep')
    data = gather(tmp_path, now=T0 + 20)  # the torn last line (a driver mid-append) is skipped
    assert data.name == "demo" and data.running and data.levels == [] and data.rung_counts == []
    assert len(data.curves) == 3 and data.timeline == [] and data.pareto is None
    assert data.best_so_far[-1] == (12.0, 0.3)


def test_curves_leave_out_values_no_axis_holds() -> None:
    events = journal()[:5] + [report("0000", T0 + 4, 1, 2.0), report("0000", T0 + 5, 2, -math.inf),
                              report("0000", T0 + 6, 3, math.nan), report("0000", T0 + 7, 4, 1.0)]
    state, _ = read_journal(events)
    (curve,) = curves(state)
    assert curve.resources == [1.0, 4.0] and curve.values == [2.0, 1.0]
