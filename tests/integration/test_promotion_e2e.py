"""Promotion ASHA end to end: trials pause at rungs and the best resume from their own checkpoints."""
from __future__ import annotations

import json
from pathlib import Path

from conftest import read_export


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
