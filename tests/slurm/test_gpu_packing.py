"""Trials that take a share of a node, on the live cluster's GPUs (gres.conf: 4 per node, handed out
by Slurm itself, which sets CUDA_VISIBLE_DEVICES per step and per job): steps packed into an
allocation's nodes by the driver's own book, and sbatch jobs shaped as the trial asks."""
from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from live import journal, run, slurm_config, write_config

from hpc_hpo.state import load_state

pytestmark = pytest.mark.usefixtures("slurm_cluster")
CLI = [sys.executable, "-m", "hpc_hpo.cli"]


def gpu_config(tmp_path: Path, slurm: dict[str, Any], trials: int, sleep: float = 1.0, **execution: Any) -> dict[str, Any]:
    config = slurm_config(tmp_path, slurm, scheduler={"type": "fifo"}, budget={"max_trials": trials},
                          params={"x": {"type": "uniform", "low": 0.0, "high": 1.0}, "epochs": 3, "sleep": sleep})
    config["execution"].update({"num_parallel_evals": 0, **execution})
    return config


def places(experiment: Path) -> list[dict[str, Any]]:
    """Every run's node, GPUs and time span, as the trial program recorded them."""
    rows = []
    for trial_dir in sorted((experiment / "trials").iterdir()):
        path = trial_dir / "places"
        for line in path.read_text().splitlines() if path.exists() else []:
            tag, node, gpus, cpus, start, end = line.split()
            rows.append({"trial": trial_dir.name, "node": node, "gpus": [] if gpus == "-" else gpus.split(","),
                         "cpus": cpus, "start": float(start), "end": float(end)})
    return rows


def most_at_once(rows: list[dict[str, Any]]) -> int:
    return max(sum(1 for r in rows if r["start"] <= s["start"] < r["end"]) for s in rows)


def check_no_gpu_shared(rows: list[dict[str, Any]]) -> None:
    """Runs overlapping in time on one node never hold the same GPU."""
    for a in rows:
        for b in rows:
            if a is not b and a["node"] == b["node"] and a["start"] < b["end"] and b["start"] < a["end"]:
                assert not set(a["gpus"]) & set(b["gpus"]), (a, b)


def check_all_completed(experiment: Path, trials: int) -> None:
    state = load_state(experiment)
    assert state.finished and len(state.trials) == trials
    assert {t.state for t in state.trials.values()} == {"completed"}, {t.trial_id: t.state for t in state.trials.values()}


def check_no_step_waited(experiment: Path) -> None:
    for trial_dir in (experiment / "trials").iterdir():
        said = (trial_dir / "srun.log").read_text() if (trial_dir / "srun.log").exists() else ""
        assert "temporarily disabled" not in said and "waiting" not in said.lower(), (trial_dir.name, said)


@pytest.mark.parametrize("nodes", [1, 2])
def test_one_gpu_trials_fill_every_gpu_of_the_allocation(tmp_path: Path, nodes: int) -> None:
    trials = 8 * nodes
    path = write_config(tmp_path, gpu_config(tmp_path, {"mode": "steps"}, trials, sleep=1.5, gpus_per_eval=1))
    done = run(["salloc", f"-N{nodes}", "--exclusive", "--time=5", *CLI, "run", str(path)], tmp_path, timeout=240)
    assert done.returncode == 0, done.stderr + done.stdout
    experiment = tmp_path / "exp"
    check_all_completed(experiment, trials)
    rows = places(experiment)
    assert len(rows) == trials
    assert all(len(r["gpus"]) == 1 for r in rows), rows
    check_no_gpu_shared(rows)
    # Four GPUs per node: 4 * nodes trials ran at once (the driver planned as many as fit), never more.
    assert most_at_once(rows) == 4 * nodes, rows
    by_node: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        by_node[r["node"]].update(r["gpus"])
    assert len(by_node) == nodes and all(gpus == {"0", "1", "2", "3"} for gpus in by_node.values()), by_node
    check_no_step_waited(experiment)


def test_a_two_gpu_trial_and_two_one_gpu_trials_share_a_node(tmp_path: Path) -> None:
    """gpus_per_eval from a hyperparameter: the first three trials ask for 2, 1 and 1 GPUs and run at once
    on the one 4-GPU node; the fourth (2 GPUs) waits for room rather than for Slurm."""
    config = gpu_config(tmp_path, {"mode": "steps"}, 4, sleep=2.0, gpus_per_eval={"param": "gpus"})
    config["params"]["gpus"] = {"type": "choice", "values": [1, 2], "flag": None}
    config["searcher"] = {"type": "random", "points_to_evaluate": [
        {"x": 0.1, "gpus": 2}, {"x": 0.2, "gpus": 1}, {"x": 0.3, "gpus": 1}, {"x": 0.4, "gpus": 2}]}
    path = write_config(tmp_path, config)
    done = run(["salloc", "-N1", "--exclusive", "--time=5", *CLI, "run", str(path)], tmp_path, timeout=240)
    assert done.returncode == 0, done.stderr + done.stdout
    experiment = tmp_path / "exp"
    check_all_completed(experiment, 4)
    rows = {r["trial"]: r for r in places(experiment)}
    assert [len(rows[t]["gpus"]) for t in ("0000", "0001", "0002", "0003")] == [2, 1, 1, 2], rows
    first_three = [rows[t] for t in ("0000", "0001", "0002")]
    assert most_at_once(first_three) == 3, first_three
    check_no_gpu_shared(list(rows.values()))
    assert rows["0003"]["start"] >= min(r["end"] for r in first_three) - 0.5, rows  # it waited for room
    check_no_step_waited(experiment)


def test_cpu_trials_in_a_gpu_allocation_take_no_gpu_and_pack_by_cpus(tmp_path: Path) -> None:
    path = write_config(tmp_path, gpu_config(tmp_path, {"mode": "steps"}, 4, sleep=1.5, cpus_per_eval=2))
    done = run(["salloc", "-N1", "--exclusive", "--time=5", *CLI, "run", str(path)], tmp_path, timeout=240)
    assert done.returncode == 0, done.stderr + done.stdout
    rows = places(tmp_path / "exp")
    assert all(r["gpus"] == [] for r in rows), rows
    assert most_at_once(rows) == 2, rows  # 4 CPUs, 2 per trial
    check_all_completed(tmp_path / "exp", 4)


def test_a_shape_larger_than_any_node_is_one_clear_line(tmp_path: Path) -> None:
    path = write_config(tmp_path, gpu_config(tmp_path, {"mode": "steps"}, 2, gpus_per_eval=8))
    done = run(["salloc", "-N1", "--exclusive", "--time=2", *CLI, "run", str(path)], tmp_path, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "execution.gpus_per_eval" in done.stderr and "4 GPUs" in done.stderr and "Traceback" not in done.stderr


def test_sbatch_jobs_of_whole_nodes_spread_and_one_gpu_jobs_get_one_gpu_each(tmp_path: Path) -> None:
    """Whole-node trial jobs ask for --exclusive: four at once land on four nodes. One-GPU trial jobs ask
    for --gres=gpu:1: Slurm gives each its own device."""
    whole = tmp_path / "whole"
    whole.mkdir()
    config = gpu_config(whole, {"mode": "sbatch", "squeue_interval": 1}, 4, sleep=3.0)
    config["execution"]["num_parallel_evals"] = 4
    done = run([*CLI, "run", str(write_config(whole, config))], whole, timeout=240)
    assert done.returncode == 0, done.stderr + done.stdout
    rows = places(whole / "exp")
    assert most_at_once(rows) == 4 and len({r["node"] for r in rows}) == 4, rows
    shared = tmp_path / "shared"
    shared.mkdir()
    config = gpu_config(shared, {"mode": "sbatch", "squeue_interval": 1}, 4, sleep=3.0, gpus_per_eval=1,
                        cpus_per_eval=1)
    config["execution"]["num_parallel_evals"] = 4
    done = run([*CLI, "run", str(write_config(shared, config))], shared, timeout=240)
    assert done.returncode == 0, done.stderr + done.stdout
    rows = places(shared / "exp")
    assert all(len(r["gpus"]) == 1 for r in rows), rows
    check_no_gpu_shared(rows)
    check_all_completed(shared / "exp", 4)


def test_nodes_per_eval_from_a_hyperparameter_gives_each_trial_its_own_node_count(tmp_path: Path) -> None:
    """CrayAI's nodes_per_eval as a hyperparameter: trials of 2 and 1 nodes share a 4-node allocation,
    each on as many nodes as it asks, none sharing a node with another running at the same time."""
    config = gpu_config(tmp_path, {"mode": "steps", "nodes_per_eval": {"param": "nodes"}}, 5, sleep=1.5)
    config["params"]["nodes"] = {"type": "choice", "values": [1, 2], "flag": None}
    config["searcher"] = {"type": "random", "points_to_evaluate": [
        {"x": 0.1, "nodes": 2}, {"x": 0.2, "nodes": 1}, {"x": 0.3, "nodes": 2}, {"x": 0.4, "nodes": 1},
        {"x": 0.5, "nodes": 1}]}
    path = write_config(tmp_path, config)
    done = run(["salloc", "-N4", "--exclusive", "--time=5", *CLI, "run", str(path)], tmp_path, timeout=240)
    assert done.returncode == 0, done.stderr + done.stdout
    experiment = tmp_path / "exp"
    check_all_completed(experiment, 5)
    wanted = {"0000": 2, "0001": 1, "0002": 2, "0003": 1, "0004": 1}
    held = {}
    for trial_id, count in wanted.items():
        [nodes_file] = (experiment / "trials" / trial_id).glob("*.nodes")
        held[trial_id] = nodes_file.read_text().split()
        assert len(held[trial_id]) == count, (trial_id, held[trial_id])
    rows = {r["trial"]: r for r in places(experiment)}
    for a in rows:
        for b in rows:
            if a < b and rows[a]["start"] < rows[b]["end"] and rows[b]["start"] < rows[a]["end"]:
                assert not set(held[a]) & set(held[b]), (a, b, held)
