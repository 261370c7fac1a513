"""Guarantee 1 on the live cluster: the driver is killed (-9) twenty times at random moments, in steps
mode inside an allocation and in sbatch mode; every run is re-adopted by its Slurm name, no job or
step is submitted twice for one attempt, and no report is lost or counted twice."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from live import (check_nothing_lost_or_doubled, driver_env, kill_restart_cycles, read_export, run, slurm_config,
                  write_config)

pytestmark = pytest.mark.usefixtures("slurm_cluster")


@pytest.fixture
def allocation():
    """A 4-node allocation with no shell: the driver runs outside it and names it with alloc_jobid."""
    made = run(["salloc", "-N4", "--exclusive", "--no-shell", "--job-name=crash-test-alloc"], Path.cwd(), timeout=120)
    assert made.returncode == 0, made.stderr
    job_id = next(word for word in made.stderr.replace(".", " ").split() if word.isdigit())
    yield job_id
    subprocess.run(["scancel", job_id], check=False)


@pytest.mark.parametrize("mode", ["steps", "sbatch"])
def test_twenty_random_driver_kills_on_slurm_lose_nothing_and_submit_nothing_twice(
        tmp_path: Path, mode: str, request: pytest.FixtureRequest) -> None:
    slurm = {"mode": mode, "squeue_interval": 1}
    if mode == "steps":
        slurm["alloc_jobid"] = request.getfixturevalue("allocation")
    config = slurm_config(tmp_path, slurm, params={"x": {"type": "uniform", "low": 0.0, "high": 1.0},
                                                   "epochs": 9, "sleep": 0.3},
                          budget={"max_trials": 16}, execution={"num_parallel_evals": 3})
    path = write_config(tmp_path, config)
    argv = [sys.executable, "-m", "hpc_hpo.cli", "run", str(path)]
    kill_restart_cycles(argv, tmp_path, driver_env(), tmp_path / "exp" / "journal.jsonl", cycles=20,
                        seed=int.from_bytes(os.urandom(2), "big"), alive_s=(0.8, 3.0))
    final = run(argv, tmp_path, timeout=600)
    assert final.returncode == 0, final.stderr + final.stdout
    experiment = tmp_path / "exp"
    check_nothing_lost_or_doubled(experiment, read_export(tmp_path), max_resource=9)

    # One Slurm job (sbatch) or step (steps) per journaled run, counted in accounting by name.
    names = Counter(line.split()[0] for starts in (experiment / "trials").glob("*/starts")
                    for line in starts.read_text().splitlines())
    accounted = accounted_names(slurm.get("alloc_jobid"), set(names))
    doubled = {name: n for name, n in accounted.items() if n > 1}
    assert not doubled, f"submitted more than once: {doubled}"
    assert set(accounted) == set(names), f"runs missing from accounting: {set(names) - set(accounted)}"
    listed = subprocess.run(["squeue", "-h", "--steps" if mode == "steps" else "--me", "-o", "%j"],
                            capture_output=True, text=True, check=True).stdout.split()
    assert not [n for n in listed if n in names], f"runs outlived the experiment: {listed}"


def accounted_names(allocation: str | None, expected: set[str]) -> Counter[str]:
    """How often each run name appears in sacct: steps of the allocation, or this user's jobs of the last hour."""
    if allocation:
        argv = ["sacct", "-n", "-P", f"--jobs={allocation}", "-o", "JobName"]
    else:
        argv = ["sacct", "-n", "-P", "-X", "--starttime=now-3600", f"--name={','.join(sorted(expected))}", "-o", "JobName"]
    deadline = time.monotonic() + 30
    while True:  # slurmdbd records runs a little late
        out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout
        counts = Counter(name for name in out.split() if name in expected)
        if set(counts) >= expected or time.monotonic() > deadline:
            return counts
        time.sleep(0.5)
