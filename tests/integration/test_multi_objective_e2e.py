"""Two objectives end to end in local mode: MO-ASHA stops trials, `best` prints the Pareto front, `export`
keeps both objectives' columns, and a resumed driver takes the same decisions as one that never stopped."""
from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from conftest import cli, read_export, write_config

# loss and latency trade off through x; y only makes both worse, so trials with a large y are dominated.
PROGRAM = textwrap.dedent("""
    import argparse
    from hpc_hpo import report
    parser = argparse.ArgumentParser()
    parser.add_argument("--x", type=float)
    parser.add_argument("--y", type=float)
    parser.add_argument("--epochs", type=int)
    args = parser.parse_args()
    for epoch in range(1, args.epochs + 1):
        report(epoch=epoch, loss=round(args.x + args.y + 1.0 / epoch, 4),
               latency=round(1.0 - args.x + args.y + 0.5 / epoch, 4))
""")


def config(tmp_path: Path, max_trials: int) -> dict[str, Any]:
    program = tmp_path / "two_objectives.py"
    program.write_text(PROGRAM)
    return {
        "name": "pareto", "command": [sys.executable, str(program)], "experiment_dir": str(tmp_path / "exp"),
        "params": {"x": {"type": "uniform", "low": 0.0, "high": 1.0},
                   "y": {"type": "uniform", "low": 0.0, "high": 1.0}, "epochs": 9},
        "metric": {"name": ["loss", "latency"], "mode": ["min", "min"]},
        "resource": {"name": "epoch", "max": 9},
        "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 3},
        "searcher": {"type": "random", "seed": 3},
        "budget": {"max_trials": max_trials},
        "execution": {"backend": "local", "num_parallel_evals": 3, "poll_interval": 0.05},
    }


def journal(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / "exp" / "journal.jsonl").read_text().splitlines()]


def dominated(p: tuple[float, float], q: tuple[float, float]) -> bool:
    """q dominates p (both minimised): written here again, not imported, so the test checks the code."""
    return q[0] <= p[0] and q[1] <= p[1] and q != p


@pytest.fixture(scope="module")
def resumed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An experiment run to 10 trials, then resumed with the budget raised to 24."""
    tmp_path = tmp_path_factory.mktemp("mo")
    for max_trials in (10, 24):
        path = write_config(tmp_path, config(tmp_path, max_trials))
        result = cli("run", str(path), cwd=tmp_path, timeout=120)
        assert result.returncode == 0, result.stderr
    return tmp_path


def test_the_journal_records_every_objective(resumed: Path) -> None:
    events = journal(resumed)
    created = events[0]
    assert created["type"] == "experiment_created"
    assert created["objectives"] == ["loss", "latency"] and created["modes"] == ["min", "min"]
    reports = [e for e in events if e["type"] == "report"]
    assert reports and all(set(e["metrics"]) == {"loss", "latency"} and e["value"] == e["metrics"]["loss"]
                           for e in reports)
    assert sum(1 for e in events if e["type"] == "run_started") == 2
    assert len({e["trial_id"] for e in events if e["type"] == "trial_created"}) == 24


def test_a_resumed_driver_decides_as_one_that_never_stopped(resumed: Path) -> None:
    """Every journaled decision, before and after the resume, is what one MO-ASHA fed the journal's reports in
    order decides: the resumed driver rebuilt its rungs from both objectives of the replayed reports."""
    from hpc_hpo.schedulers.mo_asha import MoAsha

    scheduler = MoAsha([1, 3, 9], ["min", "min"])
    events = journal(resumed)
    resume_at = [i for i, e in enumerate(events) if e["type"] == "run_started"][1]
    decided_after_resume = 0
    for i, event in enumerate(events):
        if event["type"] == "report":
            values = (event["metrics"]["loss"], event["metrics"]["latency"])
            decision = scheduler.on_report(event["trial_id"], event["resource"], values).decision.value
            assert decision == event["decision"], event
            decided_after_resume += i > resume_at and event["resource"] in (1, 3)
        elif event["type"] == "trial_ended":
            scheduler.on_trial_end(event["trial_id"])
    assert decided_after_resume > 0
    decisions = [e["decision"] for e in events if e["type"] == "report"]
    assert "stop" in decisions and "complete" in decisions  # MO-ASHA stopped some, others ran through


def test_best_prints_the_pareto_front_of_the_completed_trials(resumed: Path) -> None:
    rows = read_export(resumed)
    final = {r["trial_id"]: (float(r["loss"]), float(r["latency"])) for r in rows if r["resource"] == "9"}
    front = sorted(t for t, p in final.items() if not any(dominated(p, q) for q in final.values()))
    assert 0 < len(front) < len(final)

    result = cli("best", str(resumed / "exp"), cwd=resumed)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"Pareto front: {len(front)} of the {len(final)} trials at epoch 9")
    assert lines[1].split()[:4] == ["trial", "state", "loss", "latency"]
    shown = {line.split()[0]: line.split() for line in lines[2:]}
    assert sorted(shown) == front
    for trial_id, cells in shown.items():
        assert cells[1] == "completed"
        assert (float(cells[2]), float(cells[3])) == pytest.approx(final[trial_id])

    as_json = json.loads(cli("best", str(resumed / "exp"), "--json", cwd=resumed).stdout)
    assert as_json["objectives"] == [{"name": "loss", "mode": "min"}, {"name": "latency", "mode": "min"}]
    assert sorted(item["trial_id"] for item in as_json["front"]) == front
    losses = [item["values"]["loss"] for item in as_json["front"]]
    assert losses == sorted(losses)  # best first in the first objective


def test_export_keeps_both_objectives_columns(resumed: Path) -> None:
    rows = read_export(resumed)
    assert list(rows[0])[:5] == ["trial_id", "resource", "loss", "elapsed_s", "decision"]
    assert "latency" in rows[0] and list(rows[0]).count("loss") == 1
    reports = [e for e in journal(resumed) if e["type"] == "report"]
    assert len(rows) == len(reports)
    for row, event in zip(rows, reports):
        assert float(row["loss"]) == event["metrics"]["loss"]
        assert float(row["latency"]) == event["metrics"]["latency"]


def test_plot_draws_the_front(resumed: Path) -> None:
    pytest.importorskip("matplotlib")
    from hpc_hpo.plot import gather

    data = gather(resumed / "exp")
    assert data.pareto is not None and data.pareto.names == ("loss", "latency")
    assert data.pareto.label == "trials at epoch 9"
    completed = [r for r in read_export(resumed) if r["resource"] == "9"]
    assert len(data.pareto.points) == len(completed)
    out = resumed / "plot.svg"
    result = cli("plot", str(resumed / "exp"), "-o", str(out), cwd=resumed)
    assert result.returncode == 0, result.stderr
    assert "Pareto front" in out.read_text()
