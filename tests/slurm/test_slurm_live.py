"""Trials on the live Slurm cluster: steps in an allocation, the driver as a batch job, multi-node
trials, one job per trial in sbatch mode, losers cancelled. Every job here is real."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from live import PROGRAMS, hpc_hpo_command, journal, run, sacct, slurm_config, write_config

pytestmark = pytest.mark.usefixtures("slurm_cluster")
REPO = Path(__file__).resolve().parents[2]


def asha_config(tmp_path: Path, slurm: dict, **overrides) -> dict:
    """ASHA over 12 trials of about 3 s: with eta 3 most lose at the first rungs and are cancelled."""
    return slurm_config(tmp_path, slurm, params={"x": {"type": "uniform", "low": 0.0, "high": 1.0},
                                                 "epochs": 9, "sleep": 0.3},
                        budget={"max_trials": 12}, **overrides)


def outcomes(experiment: Path) -> dict[str, str]:
    """trial id -> how it ended: 'stop' when the scheduler stopped it, else its final state."""
    events = journal(experiment)
    stopped = {e["trial_id"] for e in events if e["type"] == "report" and e["decision"] == "stop"}
    ended = {e["trial_id"]: e["state"] for e in events if e["type"] == "trial_ended"}
    return {t: ("stop" if t in stopped else state) for t, state in ended.items()}


def tags(experiment: Path) -> dict[str, str]:
    """trial id -> the Slurm name of its (only) run."""
    from hpc_hpo.experiment import experiment_id
    digest = experiment_id(experiment)[:8]
    name = yaml.safe_load((experiment / "experiment.yaml").read_text())["name"][:8]
    return {e["trial_id"]: f"{name}-{digest}-{e['trial_id']}-{e['run']}"
            for e in journal(experiment) if e["type"] == "trial_started"}


def assert_losers_cancelled_and_survivors_completed(experiment: Path, by_name: dict[str, dict[str, str]]) -> None:
    ends = outcomes(experiment)
    assert "stop" in ends.values(), f"ASHA stopped no trial: {ends}"
    assert any(state == "finished" for state in ends.values()), ends
    for trial_id, tag in tags(experiment).items():
        assert tag in by_name, f"trial {trial_id} ({tag}) is not in sacct: {sorted(by_name)}"
        expected = "CANCELLED" if ends[trial_id] == "stop" else "COMPLETED"
        assert by_name[tag]["state"] == expected, (trial_id, ends[trial_id], by_name[tag])


@pytest.mark.parametrize("how", ["salloc", "launcher"])
def test_steps_under_salloc_cancel_losers_and_complete_survivors(tmp_path: Path, how: str) -> None:
    path = write_config(tmp_path, asha_config(tmp_path, {"mode": "steps"}))
    if how == "salloc":
        argv = ["salloc", "-N4", "--exclusive", sys.executable, "-m", "hpc_hpo.cli", "run", str(path)]
    else:  # launchers/salloc_driver.sh, with HPC_HPO naming this checkout's CLI
        argv = ["env", f"HPC_HPO={hpc_hpo_command(tmp_path)}", "bash", str(REPO / "launchers" / "salloc_driver.sh"),
                "4", str(path)]
    done = run(argv, tmp_path)
    assert done.returncode == 0, done.stderr + done.stdout
    experiment = tmp_path / "exp"
    handles = {e["handle"] for e in journal(experiment) if e["type"] == "trial_started"}
    job_ids = {h.split(":")[0] for h in handles}
    assert len(job_ids) == 1, f"steps of one allocation, got {job_ids}"
    assert "4 at a time" in done.stdout  # num_parallel_evals 0: 4 nodes / 1 node per trial
    rows = sacct(sorted(job_ids), steps=True, names=set(tags(experiment).values()))
    assert_losers_cancelled_and_survivors_completed(experiment, rows)


def test_steps_under_the_driver_batch_template(tmp_path: Path) -> None:
    path = write_config(tmp_path, asha_config(tmp_path, {"mode": "auto"}))
    env_script = hpc_hpo_command(tmp_path)
    # --time well above driver.sbatch's USR1@600: with less, the "allocation ends soon" warning is due at once
    # and arrives whenever slurmctld next checks, stopping the driver mid-test.
    done = run(["sbatch", "--wait", f"--export=ALL,HPC_HPO={env_script}", "--time=30:00",
                str(REPO / "slurm_templates" / "driver.sbatch"), str(path)], tmp_path)
    outputs = list(tmp_path.glob("hpc-hpo-driver-*.out"))
    log = outputs[0].read_text() if outputs else "(no driver output file)"
    assert done.returncode == 0, done.stderr + log
    assert "slurm-steps" in log, log
    experiment = tmp_path / "exp"
    job_ids = sorted({e["handle"].split(":")[0] for e in journal(experiment) if e["type"] == "trial_started"})
    rows = sacct(job_ids, steps=True, names=set(tags(experiment).values()))
    assert_losers_cancelled_and_survivors_completed(experiment, rows)


def test_two_node_trials_get_two_distinct_nodes_and_at_most_two_run_at_once(tmp_path: Path) -> None:
    config = slurm_config(tmp_path, {"mode": "steps", "nodes_per_eval": 2},
                          command=[sys.executable, str(PROGRAMS / "node_trial.py")],
                          params={"x": {"type": "uniform", "low": 0.0, "high": 1.0}, "epochs": 3, "sleep": 0.7},
                          resource={"name": "epoch", "max": 3}, scheduler={"type": "fifo"}, budget={"max_trials": 5})
    path = write_config(tmp_path, config)
    done = run(["salloc", "-N4", "--exclusive", sys.executable, "-m", "hpc_hpo.cli", "run", str(path)], tmp_path)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "2 at a time" in done.stdout
    spans = []
    for trial_dir in sorted((tmp_path / "exp" / "trials").iterdir()):
        tasks = [json.loads(p.read_text()) for p in trial_dir.glob("task.*.json")]
        assert len(tasks) == 2, f"{trial_dir.name}: {len(tasks)} tasks"
        nodes = {t["SLURMD_NODENAME"] for t in tasks}
        assert len(nodes) == 2, f"{trial_dir.name} ran on {nodes}"
        # The trial sees its own two nodes (not the whole allocation) in SLURM_JOB_NODELIST.
        for task in tasks:
            listed = subprocess.run(["scontrol", "show", "hostnames", task["SLURM_JOB_NODELIST"]],
                                    capture_output=True, text=True, check=True).stdout.split()
            assert set(listed) == nodes, (trial_dir.name, task)
        spans.append((min(t["started"] for t in tasks), max(t["ended"] for t in tasks)))
    assert len(spans) == 5
    for start, _ in spans:
        running = sum(1 for s, e in spans if s <= start < e)
        assert running <= 2, f"{running} two-node trials at once on 4 nodes: {spans}"
    assert max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans) == 2, "never ran two at once"


def test_sbatch_mode_one_job_per_trial_and_losers_gone_within_seconds(tmp_path: Path) -> None:
    config = asha_config(tmp_path, {"mode": "sbatch", "squeue_interval": 1},
                         execution={"num_parallel_evals": 4})
    path = write_config(tmp_path, config)
    done = run([sys.executable, "-m", "hpc_hpo.cli", "run", str(path)], tmp_path)
    assert done.returncode == 0, done.stderr + done.stdout
    experiment = tmp_path / "exp"
    started = [e for e in journal(experiment) if e["type"] == "trial_started"]
    job_ids = [e["handle"] for e in started]
    assert len(job_ids) == len(set(job_ids)) == len({e["trial_id"] for e in started}), "one job per trial"
    rows = sacct(job_ids, names=set(tags(experiment).values()))
    assert_losers_cancelled_and_survivors_completed(experiment, rows)
    run_tags = tags(experiment)
    # Each loser's job ended within seconds of the report that lost (sacct's End has 1 s resolution).
    stop_time = {e["trial_id"]: e["t"] for e in journal(experiment) if e["type"] == "report" and e["decision"] == "stop"}
    for event in started:
        if event["trial_id"] in stop_time:
            from datetime import datetime
            end = datetime.fromisoformat(rows[run_tags[event["trial_id"]]]["end"]).timestamp()
            assert end - stop_time[event["trial_id"]] < 5.0, (event["trial_id"], end, stop_time[event["trial_id"]])


def test_python_function_trials_run_as_slurm_jobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sys.path.insert(0, str(PROGRAMS))
    import function_trials

    import hpc_hpo
    monkeypatch.setenv("PYTHONPATH", f"{PROGRAMS}:{REPO}")
    for name in [k for k in __import__("os").environ if k.startswith("SLURM_") and k != "SLURM_CONF"]:
        monkeypatch.delenv(name)
    best = hpc_hpo.tune(function_trials.quadratic,
                        {"x": {"type": "uniform", "low": 0.0, "high": 1.0}, "epochs": 3, "sleep": 0.2},
                        metric={"name": "loss", "mode": "min"}, resource={"name": "epoch", "max": 3},
                        scheduler={"type": "fifo"}, budget={"max_trials": 3},
                        execution={"backend": "slurm", "num_parallel_evals": 3, "poll_interval": 0.2},
                        experiment_dir=tmp_path / "exp", quiet=True)
    started = [e for e in journal(tmp_path / "exp") if e["type"] == "trial_started"]
    assert len(started) == 3 and all(e["backend"] == "slurm-sbatch" for e in started)
    ran_in = [(tmp_path / "exp" / "trials" / e["trial_id"] / "ran_in").read_text().split() for e in started]
    assert sorted(job for _, job in ran_in) == sorted(e["handle"] for e in started), "each trial its own Slurm job"
    rows = sacct([e["handle"] for e in started], names=set(tags(tmp_path / "exp").values()))
    assert len(rows) == 3 and {r["state"] for r in rows.values()} == {"COMPLETED"}, rows
    assert best is not None and best["trial_id"] in {e["trial_id"] for e in started}


@pytest.mark.parametrize("mode", ["steps", "sbatch"])
def test_promotion_asha_pauses_trials_and_resumes_them_as_new_slurm_runs(tmp_path: Path, mode: str) -> None:
    """A paused trial exits 0 on its own (the decision file), and a promotion is a new step or job
    that resumes from the trial's checkpoint: the trial program checks the epoch it finds there."""
    config = slurm_config(tmp_path, {"mode": mode, "squeue_interval": 1},
                          params={"x": {"type": "uniform", "low": 0.0, "high": 1.0}, "epochs": 9, "sleep": 0.1},
                          resource={"name": "epoch", "max": 9, "max_resource_attr": "epochs"},
                          scheduler={"type": "promotion", "grace_period": 1, "reduction_factor": 3},
                          budget={"max_trials": 9}, execution={"num_parallel_evals": 4})
    path = write_config(tmp_path, config)
    argv = [sys.executable, "-m", "hpc_hpo.cli", "run", str(path)]
    done = run(["salloc", "-N4", "--exclusive", *argv] if mode == "steps" else argv, tmp_path)
    assert done.returncode == 0, done.stderr + done.stdout
    events = journal(tmp_path / "exp")
    resumes = [e for e in events if e["type"] == "trial_resumed"]
    assert resumes, "nobody was promoted"
    assert not [e for e in events if e["type"] == "trial_ended" and e["state"] == "failed"], "a resume failed"
    runs: dict[str, list[str]] = {}
    for event in events:
        if event["type"] == "trial_started":
            runs.setdefault(event["trial_id"], []).append(event["handle"])
    promoted = {e["trial_id"] for e in resumes}
    for trial_id in promoted:
        assert len(runs[trial_id]) == len(set(runs[trial_id])) >= 2, f"{trial_id}: one Slurm run per resume"
    # Paused runs ended by themselves: their steps or jobs completed, none was cancelled.
    digest_tags = tags(tmp_path / "exp")
    rows = sacct(sorted({h.split(":")[0] for h in sum(runs.values(), [])}), steps=(mode == "steps"))
    paused_runs = [name for name, row in rows.items() if name.rsplit("-", 1)[0] in
                   {tag.rsplit("-", 1)[0] for t, tag in digest_tags.items() if t in promoted}]
    assert paused_runs and all(rows[name]["state"] == "COMPLETED" for name in paused_runs), rows
