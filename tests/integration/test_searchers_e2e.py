"""Grid and genetic search end to end in local mode: the real CLI, real trial processes, the journal checked."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import cli, synthetic_config, write_config

PARAMS = {"x": {"type": "uniform", "low": 0.0, "high": 1.0},
          "shape": {"type": "choice", "values": ["fast", "slow"]},
          "epochs": 3}


def journal(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / "exp" / "journal.jsonl").read_text().splitlines()]


def run(tmp_path: Path, searcher: dict[str, Any]) -> list[dict[str, Any]]:
    config = synthetic_config(tmp_path, params=PARAMS, resource={"name": "epoch", "max": 3},
                              scheduler={"type": "fifo"}, searcher=searcher, budget={"max_trials": 100},
                              execution={"num_parallel_evals": 4, "poll_interval": 0.05})
    result = cli("run", str(write_config(tmp_path, config)), cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    events = journal(tmp_path)
    assert events[-1]["type"] == "experiment_ended" and events[-1]["final"] is True
    assert "max_trials" not in events[-1]["reason"]  # the searcher ran out, not the budget
    return events


def in_space(config: dict[str, Any]) -> bool:
    return (set(config) == {"x", "shape", "epochs"} and type(config["x"]) is float and 0.0 <= config["x"] <= 1.0
            and config["shape"] in ("fast", "slow") and config["epochs"] == 3)


def test_genetic_runs_its_generations_in_order(tmp_path: Path) -> None:
    population, demes, generations = 4, 2, 3
    events = run(tmp_path, {"type": "genetic", "population_size": population, "num_demes": demes,
                            "generations": generations, "seed": 1})
    created = [e for e in events if e["type"] == "trial_created"]
    width = population * demes
    assert len(created) == width * generations
    assert [e["trial_id"] for e in created] == [f"{i:04d}" for i in range(len(created))]
    assert all(in_space(e["config"]) for e in created)
    ended = [e for e in events if e["type"] == "trial_ended"]
    assert len(ended) == len(created) and {e["state"] for e in ended} == {"finished"}

    # Generations are synchronous: a generation's first trial is created after the previous one all ended.
    position = {(e["type"], e.get("trial_id")): n for n, e in enumerate(events)}
    for generation in range(1, generations):
        first = position[("trial_created", f"{generation * width:04d}")]
        assert all(position[("trial_ended", f"{i:04d}")] < first
                   for i in range((generation - 1) * width, generation * width))

    # Elitism through the real pipeline: each deme's first slot is a best trial of that deme before.
    fitness: dict[str, float] = {}
    for e in events:
        if e["type"] == "report":
            fitness[e["trial_id"]] = min(fitness.get(e["trial_id"], float("inf")), e["value"])
    configs = [e["config"] for e in created]
    for generation in range(1, generations):
        for deme in range(demes):
            before = [(generation - 1) * width + deme * population + s for s in range(population)]
            best = min(fitness[f"{i:04d}"] for i in before)
            elites = [configs[i] for i in before if fitness[f"{i:04d}"] == best]
            assert configs[generation * width + deme * population] in elites


def test_grid_runs_exactly_the_grid(tmp_path: Path) -> None:
    events = run(tmp_path, {"type": "grid", "grid_size": 3, "seed": 1})
    created = [e["config"] for e in events if e["type"] == "trial_created"]
    # x: 0, 0.5, 1 times shape: fast, slow; the fixed epochs rides along.
    assert created == [{"x": x, "shape": shape, "epochs": 3} for x in (0.0, 0.5, 1.0) for shape in ("fast", "slow")]
    trials = sorted((tmp_path / "exp" / "trials").glob("*/config.json"))
    assert [json.loads(p.read_text()) for p in trials] == created
    assert {e["state"] for e in events if e["type"] == "trial_ended"} == {"finished"}
    assert sum(1 for e in events if e["type"] == "report" and e["decision"] == "complete") == 6


def test_kde_searcher_runs_under_asha_and_proposes_valid_configs(tmp_path: Path) -> None:
    config = synthetic_config(tmp_path, params=PARAMS, resource={"name": "epoch", "max": 3},
                              scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 3},
                              searcher={"type": "kde", "seed": 2, "searcher_data": "rungs_and_last",
                                        "min_points_in_model": 3, "num_init_random": 3},
                              budget={"max_trials": 14},
                              execution={"num_parallel_evals": 2, "poll_interval": 0.05})
    result = cli("run", str(write_config(tmp_path, config)), cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    created = [e["config"] for e in journal(tmp_path) if e["type"] == "trial_created"]
    assert len(created) == 14 and all(in_space(c) for c in created)
    assert len({(c["x"], c["shape"]) for c in created}) == 14, "a config was proposed twice"


def test_mobster_searcher_runs_under_asha_and_proposes_distinct_valid_configs(tmp_path: Path) -> None:
    config = synthetic_config(tmp_path, params=PARAMS, resource={"name": "epoch", "max": 3},
                              scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 3},
                              searcher={"type": "mobster", "seed": 2, "num_init_random": 3, "num_candidates": 100},
                              budget={"max_trials": 10},
                              execution={"num_parallel_evals": 2, "poll_interval": 0.05})
    result = cli("run", str(write_config(tmp_path, config)), cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    events = journal(tmp_path)
    created = [e["config"] for e in events if e["type"] == "trial_created"]
    assert len(created) == 10 and all(in_space(c) for c in created)
    assert len({(c["x"], c["shape"]) for c in created}) == 10, "a config was proposed twice"
    # Model-based suggestions came after reports at rung levels 1 and 3 existed.
    assert {e["resource"] for e in events if e["type"] == "report"} >= {1, 3}
