"""Cluster faults on the live cluster: a node goes down under a trial, a trial job hits its time limit,
an administrator cancels a trial, sbatch refuses jobs over a submit limit. None of it is the trial's
fault: each resumes from its checkpoint within max_requeues, without using up num_retries."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from live import driver_env, journal, run, slurm_config, write_config

from hpc_hpo.state import load_state

pytestmark = pytest.mark.usefixtures("slurm_cluster")
CLI = [sys.executable, "-m", "hpc_hpo.cli"]


def fault_config(tmp_path: Path, slurm: dict[str, Any], trials: int, epochs: int = 9, sleep: float = 1.0,
                 **execution: Any) -> dict[str, Any]:
    config = slurm_config(tmp_path, {"mode": "steps", "squeue_interval": 1, **slurm}, scheduler={"type": "fifo"},
                          params={"x": {"type": "uniform", "low": 0.0, "high": 1.0}, "epochs": epochs,
                                  "sleep": sleep},
                          resource={"name": "epoch", "max": epochs}, budget={"max_trials": trials})
    config["execution"].update({"num_retries": 0, "max_requeues": 5, **execution})
    return config


def wait_for_reports(experiment: Path, trial_id: str, count: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            events = journal(experiment)
        except (OSError, ValueError):
            events = []
        if sum(1 for e in events if e["type"] == "report" and e["trial_id"] == trial_id) >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"trial {trial_id} did not report {count} times in {timeout} s")


def check_requeued_from_checkpoint(experiment: Path, trial_id: str, epochs: int) -> dict[str, Any]:
    """The trial completed, was resubmitted by a requeue (not a retry) that resumed from its checkpoint,
    and trained each epoch once, but for at most the one in progress."""
    state = load_state(experiment)
    assert state.finished and {t.state for t in state.trials.values()} == {"completed"}, \
        {t.trial_id: (t.state, t.reason) for t in state.trials.values()}
    requeues = [e for e in journal(experiment) if e["type"] == "trial_retry" and e["trial_id"] == trial_id]
    assert requeues and all(e.get("requeue") for e in requeues), requeues
    assert "resume_from" in requeues[0], requeues[0]
    trained = [int(x) for x in (experiment / "trials" / trial_id / "epochs_trained").read_text().split()]
    assert sorted(set(trained)) == list(range(1, epochs + 1)) and len(trained) - epochs <= len(requeues), trained
    return requeues[0]


def test_a_node_that_fails_under_a_trial_resumes_it_elsewhere_and_leaves_the_pool(tmp_path: Path) -> None:
    path = write_config(tmp_path, fault_config(tmp_path, {}, trials=6))
    experiment = tmp_path / "exp"
    driver = subprocess.Popen(["salloc", "-N4", "--exclusive", "--no-kill", *CLI, "run", str(path)], cwd=tmp_path,
                              env=driver_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    down = None
    try:
        wait_for_reports(experiment, "0001", 3)
        node = (experiment / "trials" / "0001").glob("*.nodes")
        down = next(node).read_text().split()[0]
        subprocess.run(["scontrol", "update", f"nodename={down}", "state=down", "reason=hpc_hpo test"], check=True)
        out, err = driver.communicate(timeout=300)
    finally:
        if down is not None:  # later tests need every node
            subprocess.run(["scontrol", "update", f"nodename={down}", "state=resume"])
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, out + err
    requeue = check_requeued_from_checkpoint(experiment, "0001", 9)
    assert f"node failure on {down}" in requeue["reason"], requeue
    assert "3 trials at a time from now on" in out, out
    later = [e for e in journal(experiment) if e["type"] == "trial_started" and e["t"] > requeue["t"]]
    for event in later:  # no run went to the failed node again
        nodes = (experiment / "trials" / event["trial_id"] / f"{_tag(experiment, event)}.nodes").read_text()
        assert down not in nodes.split(), (event, nodes)


def test_an_administrators_scancel_of_a_step_resumes_the_trial_from_its_checkpoint(tmp_path: Path) -> None:
    path = write_config(tmp_path, fault_config(tmp_path, {}, trials=2))
    experiment = tmp_path / "exp"
    driver = subprocess.Popen(["salloc", "-N2", "--exclusive", *CLI, "run", str(path)], cwd=tmp_path,
                              env=driver_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_reports(experiment, "0000", 4)
    tag = _tag(experiment, next(e for e in journal(experiment) if e["type"] == "trial_started"))
    steps = subprocess.run(["squeue", "-h", "--steps", f"--name={tag}", "-o", "%i"], capture_output=True,
                           text=True).stdout.split()
    assert steps, "the trial's step is not in squeue"
    subprocess.run(["scancel", *steps], check=True)
    out, err = driver.communicate(timeout=300)
    assert driver.returncode == 0, out + err
    requeue = check_requeued_from_checkpoint(experiment, "0000", 9)
    assert "cancelled from outside" in requeue["reason"], requeue


@pytest.mark.slow
def test_a_trial_job_over_its_time_limit_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    """sbatch mode, time_limit one minute, a trial of 6 x 20 s: Slurm ends the job (TIMEOUT) between 60 and
    90 s (it checks limits every half minute), the job script's exit marker says 143, the driver reads
    slurmstepd's words and resubmits from the checkpoint, within max_requeues and without a retry."""
    config = fault_config(tmp_path, {"mode": "sbatch", "time_limit": "1"}, trials=1, epochs=6, sleep=20.0,
                          num_parallel_evals=1)
    path = write_config(tmp_path, config)
    done = run([*CLI, "run", str(path)], tmp_path, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    requeue = check_requeued_from_checkpoint(tmp_path / "exp", "0000", 6)
    assert "TIMEOUT" in requeue["reason"], requeue


def test_a_submit_limit_is_waited_out(tmp_path: Path) -> None:
    """A stand-in sbatch first in PATH answers with the QOS submit limit three times, then hands over to
    the real sbatch: the driver waits, tries again, and the experiment completes (no exit 2)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    counter = tmp_path / "refusals"
    real = subprocess.run(["which", "sbatch"], capture_output=True, text=True, check=True).stdout.strip()
    (bin_dir / "sbatch").write_text(
        "#!/bin/bash\n"
        f"n=$(cat {counter} 2>/dev/null || echo 0)\n"
        f"if [ \"$n\" -lt 3 ]; then echo $((n + 1)) > {counter}\n"
        "  echo 'sbatch: error: QOSMaxSubmitJobPerUserLimit' >&2\n"
        "  echo 'sbatch: error: Batch job submission failed: Job violates accounting/QOS policy "
        "(job submit limit, user'\"'\"'s size and/or time limits)' >&2\n  exit 1\nfi\n"
        f"exec {real} \"$@\"\n")
    (bin_dir / "sbatch").chmod(0o755)
    config = fault_config(tmp_path, {"mode": "sbatch"}, trials=3, epochs=3, sleep=0.2, num_parallel_evals=3)
    path = write_config(tmp_path, config)
    env = {**driver_env(), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run([*CLI, "run", str(path)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "QOSMaxSubmitJobPerUserLimit" in done.stdout and "waiting for the queue to drain" in done.stdout
    assert counter.read_text().strip() == "3"
    state = load_state(tmp_path / "exp")
    assert {t.state for t in state.trials.values()} == {"completed"} and len(state.trials) == 3


def test_status_shows_srun_errors_when_the_trial_wrote_no_stderr(tmp_path: Path) -> None:
    config = fault_config(tmp_path, {"launch_args": ["--constraint=no_such_feature"]}, trials=1, epochs=2,
                          sleep=0.1)
    path = write_config(tmp_path, config)
    done = run(["salloc", "-N1", "--exclusive", *CLI, "run", str(path)], tmp_path)
    status = run([*CLI, "status", str(tmp_path / "exp")], tmp_path)
    assert "failed" in status.stdout and "(srun.log) srun: error" in status.stdout, status.stdout + done.stdout


def _tag(experiment: Path, started: dict[str, Any]) -> str:
    """The run tag of a trial_started event, from the run's exit-marker-side .nodes file name."""
    trial_dir = experiment / "trials" / started["trial_id"]
    names = sorted(p.name[:-len(".nodes")] for p in trial_dir.glob("*.nodes"))
    return next(n for n in names if n.endswith(f"-{started['run']}"))
