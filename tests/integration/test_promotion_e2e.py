"""Promotion ASHA end to end: trials pause at rungs and the best resume from their own checkpoints."""
from __future__ import annotations

import json
from pathlib import Path

from conftest import read_export  # noqa: F401  (run_experiment is a fixture)

from hpc_hpo.state import load_state


def test_promotion_mode_pauses_and_resumes_from_checkpoints(tmp_path: Path, run_experiment) -> None:
    result = run_experiment(scheduler={"type": "promotion", "grace_period": 1, "reduction_factor": 3},
                            resource={"name": "epoch", "max": 9, "max_resource_attr": "epochs"},
                            budget={"max_trials": 12})
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in (tmp_path / "exp" / "journal.jsonl").read_text().splitlines()]
    resumes = [e for e in events if e["type"] == "trial_resumed"]
    assert resumes, "nobody was promoted"
    rows = read_export(tmp_path)
    for resume in resumes:
        after = [float(r["resource"]) for r in rows if r["trial_id"] == resume["trial_id"]
                 and float(r["resource"]) > resume["resume_from"]]
        assert after and min(after) == resume["resume_from"] + 1
    # Never promoted twice from the same rung; nobody beyond the maximum; decisions include pause.
    pairs = [(e["trial_id"], e["resume_from"]) for e in resumes]
    assert len(pairs) == len(set(pairs))
    assert max(float(r["resource"]) for r in rows) <= 9
    assert "pause" in {r["decision"] for r in rows}
    assert not [e for e in events if e["type"] == "trial_ended" and e["state"] == "failed"]
    # Trials still paused at the end are not called ended: the closing line says how to promote them.
    paused = sum(1 for t in load_state(tmp_path / "exp").trials.values() if t.state == "paused")
    assert paused and f"every trial ended or is paused at a rung ({paused} paused" in result.stderr + result.stdout


def test_too_few_trials_for_any_promotion_to_the_maximum_is_said_at_the_end(tmp_path: Path, run_experiment) -> None:
    result = run_experiment(scheduler={"type": "promotion", "grace_period": 1, "reduction_factor": 3},
                            resource={"name": "epoch", "max": 9, "max_resource_attr": "epochs"},
                            budget={"max_trials": 4})
    assert result.returncode == 0, result.stderr
    assert "none reached epoch 9; raise budget.max_trials" in result.stderr + result.stdout


def test_pasha_runs_end_to_end_and_never_exceeds_max(tmp_path: Path, run_experiment) -> None:
    result = run_experiment(scheduler={"type": "pasha", "grace_period": 1, "reduction_factor": 3},
                            resource={"name": "epoch", "max": 27, "max_resource_attr": "epochs"},
                            params={"x": {"type": "uniform", "low": 0.0, "high": 1.0},
                                    "shape": {"type": "choice", "values": ["fast", "slow"]}, "epochs": 27},
                            budget={"max_trials": 12})
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in (tmp_path / "exp" / "journal.jsonl").read_text().splitlines()]
    assert not [e for e in events if e["type"] == "trial_ended" and e["state"] == "failed"]
    rows = read_export(tmp_path)
    assert "pause" in {r["decision"] for r in rows}
    assert max(float(r["resource"]) for r in rows) <= 27
    for resume in (e for e in events if e["type"] == "trial_resumed"):
        after = [float(r["resource"]) for r in rows if r["trial_id"] == resume["trial_id"]
                 and float(r["resource"]) > resume["resume_from"]]
        assert not after or min(after) == resume["resume_from"] + 1


def test_asynchronous_hyperband_draws_brackets_and_judges_from_their_first_rung(tmp_path: Path,
                                                                                run_experiment) -> None:
    result = run_experiment(scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 3, "brackets": 2},
                            budget={"max_trials": 16})
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in (tmp_path / "exp" / "journal.jsonl").read_text().splitlines()]
    brackets = {e["trial_id"]: e["bracket"] for e in events if e["type"] == "trial_created"}
    assert set(brackets.values()) == {0, 1}
    rows = read_export(tmp_path)
    for row in rows:
        if brackets[row["trial_id"]] == 1 and float(row["resource"]) < 3:
            assert row["decision"] == "continue"  # bracket 1 starts judging at rung 3
    assert "stop" in {r["decision"] for r in rows}


def test_sync_hyperband_runs_its_plan(tmp_path: Path, run_experiment) -> None:
    result = run_experiment(scheduler={"type": "sync_hyperband", "grace_period": 1, "reduction_factor": 3},
                            resource={"name": "epoch", "max": 9, "max_resource_attr": "epochs"}, budget={})
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in (tmp_path / "exp" / "journal.jsonl").read_text().splitlines()]
    created = [e for e in events if e["type"] == "trial_created"]
    # Levels 1, 3, 9: brackets of 9, 5 and 3 configs; 3+1 resumed in bracket 2, 1 in bracket 1.
    assert sorted(e["bracket"] for e in created) == [0] * 3 + [1] * 5 + [2] * 9
    assert len([e for e in events if e["type"] == "trial_resumed"]) == 5
    rows = read_export(tmp_path)
    assert sum(1 for r in rows if r["decision"] == "complete") == 1 + 1 + 3
