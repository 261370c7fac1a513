"""`hpc-hpo stop` on the live cluster, sbatch mode: each trial is its own job, and SIGTERM would leave them
running for the next driver; a stop pauses them instead (as Ctrl-C does): the trial jobs end, the trials
are interrupted, and the next run finishes the experiment."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from live import driver_env, journal, run, slurm_config, write_config

pytestmark = pytest.mark.usefixtures("slurm_cluster")


@pytest.mark.slow
def test_stop_pauses_sbatch_trial_jobs_and_the_next_run_finishes(tmp_path: Path) -> None:
    config = slurm_config(tmp_path, {"mode": "sbatch", "squeue_interval": 1, "time_limit": "00:05:00"},
                          execution={"num_parallel_evals": 2}, budget={"max_trials": 3}, scheduler={"type": "fifo"})
    config["params"] = {"x": {"type": "uniform", "low": 0.0, "high": 1.0}, "epochs": 9, "sleep": 1.0}
    path = write_config(tmp_path, config)
    experiment = tmp_path / "exp"
    driver = subprocess.Popen([sys.executable, "-m", "hpc_hpo.cli", "run", str(path)], cwd=tmp_path,
                              env=driver_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while not (experiment / "journal.jsonl").exists() or \
                len({e["trial_id"] for e in journal(experiment) if e["type"] == "report"}) < 2:
            assert time.monotonic() < deadline and driver.poll() is None, "two trials never reported"
            time.sleep(0.5)
        asked = run([sys.executable, "-m", "hpc_hpo.cli", "stop", str(experiment), "--wait", "--timeout", "120"],
                    tmp_path, timeout=180)
        assert asked.returncode == 0 and "has stopped" in asked.stdout, asked.stdout + asked.stderr
        out, err = driver.communicate(timeout=60)
    finally:
        driver.kill()
    assert driver.returncode == 143, out + err
    events = journal(experiment)
    assert events[-1]["type"] == "experiment_ended" and events[-1]["final"] is False
    interrupted = {e["trial_id"] for e in events if e["type"] == "trial_interrupted"}
    assert interrupted, "no running trial job was interrupted"
    jobs = [e["handle"] for e in events if e["type"] == "trial_started"]
    queued = subprocess.run(["squeue", "-h", "-o", "%i", "-j", ",".join(jobs)], capture_output=True, text=True,
                            env=driver_env(), timeout=30).stdout.split()
    assert not queued, f"trial jobs left running after the stop: {queued}"
    again = run([sys.executable, "-m", "hpc_hpo.cli", "run", str(path)], tmp_path, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    from hpc_hpo.state import load_state
    states = {t.trial_id: t.state for t in load_state(experiment).trials.values()}
    assert len(states) == 3 and set(states.values()) == {"completed"}, states
