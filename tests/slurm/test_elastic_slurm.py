"""Several allocations on one experiment, on the live cluster (README "Elastic experiments"): a Slurm job
array of one-node drivers, each running its trials as steps in its own allocation, all joining one ASHA
experiment; and one of them killed with SIGKILL while its trials run."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from live import REPO, _helpers, hpc_hpo_command, journal, run, slurm_config, write_config

from hpc_hpo.state import fold

pytestmark = pytest.mark.usefixtures("slurm_cluster")
check_shared_journal = _helpers.check_shared_journal


def array_config(tmp_path: Path, max_trials: int, sleep: float) -> Path:
    return write_config(tmp_path, slurm_config(
        tmp_path, {"mode": "steps"}, params={"x": {"type": "uniform", "low": 0.0, "high": 1.0}, "epochs": 9,
                                             "sleep": sleep},
        searcher={"type": "random"}, budget={"max_trials": max_trials}))


def submit_array(tmp_path: Path, config: Path, elements: int, wait: bool) -> subprocess.CompletedProcess[str]:
    argv = ["sbatch", "--parsable", f"--array=1-{elements}", "-N1", "--exclusive", "--time=30:00",
            f"--export=ALL,HPC_HPO={hpc_hpo_command(tmp_path)},HPC_HPO_CHAIN=0",
            f"--output={tmp_path}/driver-%A_%a.out", str(REPO / "slurm_templates" / "driver.sbatch"), str(config)]
    return run(["sbatch", "--wait", *argv[1:]] if wait else argv, tmp_path, timeout=400)


def allocations(experiment: Path) -> set[str]:
    return {e["handle"].split(":")[0] for e in journal(experiment) if e["type"] == "trial_started"}


def test_a_job_array_of_four_drivers_runs_one_asha_experiment(tmp_path: Path) -> None:
    config = array_config(tmp_path, max_trials=16, sleep=0.3)
    done = submit_array(tmp_path, config, 4, wait=True)
    logs = "\n".join(p.read_text() for p in sorted(tmp_path.glob("driver-*.out")))
    assert done.returncode == 0, done.stderr + logs
    check_shared_journal(config, ("completed", "stopped", "finished"))
    assert len(allocations(tmp_path / "exp")) >= 2, f"the trials ran in one allocation only:\n{logs}"
    assert logs.count("joined as driver") == 4, logs


@pytest.mark.slow
def test_a_driver_killed_in_its_allocation_loses_its_trials_to_the_others(tmp_path: Path) -> None:
    config = array_config(tmp_path, max_trials=12, sleep=0.6)
    submitted = submit_array(tmp_path, config, 4, wait=False)
    assert submitted.returncode == 0, submitted.stderr
    array_id = submitted.stdout.strip().split(";")[0]
    experiment = tmp_path / "exp"
    victim, deadline = None, time.monotonic() + 120
    while victim is None and time.monotonic() < deadline:  # a driver with running trials, mid-run
        time.sleep(0.3)
        events = journal(experiment) if (experiment / "journal.jsonl").exists() else []
        if sum(e["type"] == "trial_started" for e in events) < 4:
            continue
        busy = {t.driver for t in fold(events).trials.values() if t.driver and t.handle and not t.process_ended}
        victim = next((e for e in events if e["type"] == "run_started" and e.get("driver") in busy), None)
    assert victim is not None, "no driver ran trials within 120 s"
    # The driver is a process of its batch job (the cluster's nodes are on this machine): SIGKILL it, as a crash
    # or the OOM killer would; its batch script then ends, and with it the allocation and its steps.
    os.kill(victim["pid"], signal.SIGKILL)
    killed_at = time.time()
    finished = run(["bash", "-c", f"while squeue -h -j {array_id} | grep -q .; do sleep 1; done"], tmp_path,
                   timeout=300)
    assert finished.returncode == 0
    events = check_shared_journal(config, ("completed", "stopped", "finished"))
    lost = [e for e in events if e["type"] == "driver_lost"]
    assert [e["driver"] for e in lost] == [victim["driver"]]
    # Taken over within the heartbeat timeout and a sweep of another driver.
    assert lost[0]["t"] - killed_at < 5.0 + 2.0
    taken = {e["trial_id"] for e in events if e["type"] == "trial_interrupted" and e["t"] >= lost[0]["t"]}
    assert taken, "the killed driver's trials were not interrupted for the others to resume"
    resumed = {e["trial_id"] for e in events if e["type"] == "trial_claimed" and e["t"] >= lost[0]["t"]}
    assert taken <= resumed

