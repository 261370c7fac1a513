"""An experiment outlives its allocations, on the live cluster: allocations with a time limit, an
allocation revoked under the driver, and a chain of driver.sbatch jobs. No trial is charged for any of
it: trials caught by an allocation's end are interrupted and resumed from their checkpoints."""
from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from live import REPO, hpc_hpo_command, journal, run, slurm_config, write_config

from hpc_hpo.state import load_state

pytestmark = pytest.mark.usefixtures("slurm_cluster")
CLI = [sys.executable, "-m", "hpc_hpo.cli"]
EPOCH_S = 2.0  # every epoch of these trials takes this long


def long_config(tmp_path: Path, trials: int, scheduler: str = "fifo", **overrides: Any) -> dict[str, Any]:
    """Trials of 9 epochs of EPOCH_S each, no seed (resumes must reuse the frozen one)."""
    config = slurm_config(tmp_path, {"mode": "steps"}, scheduler={"type": scheduler},
                          params={"x": {"type": "uniform", "low": 0.0, "high": 1.0}, "epochs": 9, "sleep": EPOCH_S},
                          budget={"max_trials": trials}, **overrides)
    config["searcher"] = {"type": "random"}
    config["execution"]["num_parallel_evals"] = 0
    return config


def epochs_trained(experiment: Path) -> dict[str, list[int]]:
    trained = {}
    for trial_dir in (experiment / "trials").iterdir():
        path = trial_dir / "epochs_trained"
        trained[trial_dir.name] = [int(x) for x in path.read_text().split()] if path.exists() else []
    return trained


def check_finished_and_nothing_charged(experiment: Path, trials: int) -> dict[str, list[int]]:
    """Every trial completed or stopped by the scheduler, none failed or cancelled; each epoch up to its
    last report trained at least once."""
    state = load_state(experiment)
    assert state.finished, state.ended
    assert len(state.trials) == trials
    assert {t.state for t in state.trials.values()} <= {"completed", "stopped"}, \
        {t.trial_id: t.state for t in state.trials.values()}
    events = journal(experiment)
    assert not [e for e in events if e["type"] == "trial_retry" and not e.get("requeue")]
    trained = epochs_trained(experiment)
    for trial_id, epochs in trained.items():
        last = int(state.trials[trial_id].last_resource or 0)
        assert set(range(1, last + 1)) <= set(epochs), (trial_id, epochs)
    return trained


@pytest.mark.slow
def test_an_allocation_time_limit_pauses_trials_and_a_new_allocation_finishes(tmp_path: Path) -> None:
    """salloc --time=1 around more work than fits: the driver starts nothing that cannot reach its next
    rung, pauses trials that go on towards a rung at their last report that fits, exits 0; the same
    command again finishes the experiment. Stopping ASHA, rungs 1, 3, 9."""
    trials = 72  # ASHA stops most at rungs 1 and 3: still more than one 1-minute, 4-node allocation holds
    path = write_config(tmp_path, long_config(tmp_path, trials, scheduler="asha"))
    argv = ["salloc", "-N4", "--exclusive", "--time=1", *CLI, "run", str(path)]
    experiment = tmp_path / "exp"
    allocations: list[float] = []
    paused_here: list[int] = []  # trials paused for each allocation's end
    for _ in range(5):
        started = time.monotonic()
        done = run(argv, tmp_path, timeout=240)
        allocations.append(time.monotonic() - started)
        assert done.returncode == 0, done.stderr + done.stdout
        assert "Traceback" not in done.stderr
        if load_state(experiment).finished:
            break
        assert "new allocation to resume" in done.stderr, done.stderr
        events = journal(experiment)
        assert events[-1]["type"] == "experiment_ended" and events[-1]["final"] is False
        assert any(e["type"] == "allocation_end" for e in events)
        states = {t.state for t in load_state(experiment).trials.values()}
        assert not states & {"failed", "cancelled"}, states
        # The driver left before Slurm's limit: no step was cut by the time limit.
        reasons = {e.get("reason") for e in events if e["type"] == "trial_interrupted"}
        assert reasons <= {"paused for the allocation's end"}, reasons
        paused_here.append(sum(1 for t in load_state(experiment).trials.values() if t.state == "interrupted"))
        status = subprocess.run([*CLI, "status", str(experiment)], capture_output=True, text=True, cwd=tmp_path,
                                env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
        assert "allocation ends" in status.stdout, status.stdout
        assert ("resumed first by the next run" in status.stdout) == (paused_here[-1] > 0), status.stdout
    assert len(allocations) >= 2, "the experiment fit into one allocation: the test tested nothing"
    # Whether a trial is mid-stage at the end depends on timing (stages may happen to line up with it);
    # what must hold either way is that nothing was cut, checked below. Resuming from a checkpoint after
    # an allocation's end is pinned by the revoked-allocation test.
    print(f"trials paused for each allocation's end: {paused_here}")
    trained = check_finished_and_nothing_charged(experiment, trials)
    # Work cut by an allocation's end is what was trained twice: the share of the node-seconds held.
    repeated = sum(len(epochs) - len(set(epochs)) for epochs in trained.values())
    held_node_s = 4 * sum(allocations)
    lost_share = repeated * EPOCH_S / held_node_s
    print(f"allocations {len(allocations)}, held {held_node_s:.0f} node-s, epochs trained twice {repeated}, "
          f"lost to cut work {100 * lost_share:.2f}%")
    assert lost_share < 0.02, (repeated, held_node_s)


def test_an_allocation_revoked_under_the_driver_interrupts_its_trials(tmp_path: Path) -> None:
    """The allocation ends without notice (scancel of the job): srun says so, the driver stops launching,
    its trials are interrupted (not failed), it exits 75 with one line; a new allocation finishes it."""
    trials = 8
    first = _no_shell_allocation()
    config = long_config(tmp_path, trials)
    config["execution"]["slurm"]["alloc_jobid"] = first
    path = write_config(tmp_path, config)
    driver = subprocess.Popen([*CLI, "run", str(path)], cwd=tmp_path, env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    experiment = tmp_path / "exp"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and sum(1 for e in _journal_or_empty(experiment) if e["type"] == "report") < 6:
        time.sleep(0.2)
    subprocess.run(["scancel", first], check=True)
    out, err = driver.communicate(timeout=120)
    assert driver.returncode == 75, out + err
    assert "the allocation ended" in err and "new allocation to resume" in err and "Traceback" not in err
    state = load_state(experiment)
    assert not state.finished
    assert {t.state for t in state.trials.values()} <= {"interrupted", "pending"}, \
        {t.trial_id: t.state for t in state.trials.values()}
    assert any(t.state == "interrupted" for t in state.trials.values())
    # A new allocation: alloc_jobid is how the experiment runs, not what it is; the change is journaled.
    second = _no_shell_allocation()
    try:
        config["execution"]["slurm"]["alloc_jobid"] = second
        path = write_config(tmp_path, config)
        done = run([*CLI, "run", str(path)], tmp_path, timeout=300)
        assert done.returncode == 0, done.stderr + done.stdout
    finally:
        subprocess.run(["scancel", second])
    assert any(e["type"] == "config_changed" for e in journal(experiment))
    check_finished_and_nothing_charged(experiment, trials)
    resumed = [e for e in journal(experiment) if e["type"] == "trial_interrupted" and "resume_from" in e]
    assert resumed, "no interrupted trial went on from its checkpoint"


@pytest.mark.slow
def test_chained_driver_batch_jobs_finish_an_experiment_over_three_allocations(tmp_path: Path) -> None:
    # Stopping ASHA: trials of uneven length, so allocations end in the middle of some (with FIFO's even
    # waves the stages can line up with the end, and nothing is interrupted). About 160 s of work on 4 nodes:
    # 120 trials fit in two 1-minute allocations once the cluster scheduled without delays (47 s of the second).
    trials = 180
    path = write_config(tmp_path, long_config(tmp_path, trials, scheduler="asha"))
    # A site's copy of the template, as the README asks, without the SIGUSR1 fallback: Slurm may send it up
    # to a minute early, which in a 1-minute allocation is at once. The driver's own wall-time awareness
    # has to do the work.
    template = (REPO / "slurm_templates" / "driver.sbatch").read_text()
    script = tmp_path / "driver.sbatch"
    script.write_text("\n".join(line for line in template.splitlines() if "--signal" not in line) + "\n")
    done = run(["sbatch", "--wait", "--time=1",
                f"--export=ALL,HPC_HPO={hpc_hpo_command(tmp_path)},HPC_HPO_CHAIN=6,HPC_HPO_CHAIN_ARGS=--time=1",
                str(script), str(path)], tmp_path, timeout=400)
    assert done.returncode == 0, done.stderr
    experiment = tmp_path / "exp"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and not _finished_and_no_driver(experiment):
        time.sleep(2)
    logs = sorted(tmp_path.glob("hpc-hpo-driver-*.out"))
    text = "\n".join(f"== {p.name}\n{p.read_text()}" for p in logs)
    assert load_state(experiment).finished, text
    assert len(logs) >= 3, text
    assert "the chain stops here" in logs[-1].read_text(), text
    for log in logs[:-1]:  # each earlier allocation ended by the driver's choice, nothing cut
        assert "no trial stage fits before it" in log.read_text() and "submitted job" in log.read_text(), text
    check_finished_and_nothing_charged(experiment, trials)
    runs = Counter(e["trial_id"] for e in journal(experiment) if e["type"] == "trial_started")
    resumed = [e for e in journal(experiment) if e["type"] == "trial_interrupted" and "resume_from" in e]
    # Usually some trial is paused mid-stage and goes on in the next allocation; with stages that happen
    # to line up with the ends none is, and nothing was cut either (checked above).
    print(f"trials resumed from checkpoints in a later allocation: {len(resumed)}, most runs of one "
          f"trial: {max(runs.values())}")


def _finished_and_no_driver(experiment: Path) -> bool:
    if not (experiment / "journal.jsonl").exists() or not load_state(experiment).finished:
        return False
    queue = subprocess.run(["squeue", "-h", "--name=hpc-hpo-driver"], capture_output=True, text=True).stdout
    return not queue.strip()


def _no_shell_allocation() -> str:
    # The nodes of a just-cancelled allocation take a while to be released (KillWait, epilog): wait for them.
    out = subprocess.run(["salloc", "--no-shell", "-N4", "--exclusive", "--time=10"], capture_output=True,
                         text=True, timeout=300, env=_env())
    for line in out.stderr.splitlines():
        if "Granted job allocation" in line:
            return line.split()[-1]
    raise AssertionError(out.stderr)


def _env() -> dict[str, str]:
    from live import driver_env
    return driver_env()


def _journal_or_empty(experiment: Path) -> list[dict[str, Any]]:
    try:
        return journal(experiment)
    except (OSError, ValueError):
        return []


@pytest.mark.parametrize("signum", ["SIGTERM", "SIGUSR1"])
def test_sbatch_mode_driver_leaves_trial_jobs_running_and_the_next_adopts_them(tmp_path: Path, signum: str) -> None:
    """In sbatch mode each trial holds its own allocation: a driver told to go leaves the jobs running,
    and the next driver takes them back; no trial is started twice, interrupted or cancelled."""
    import signal
    config = slurm_config(tmp_path, {"mode": "sbatch", "squeue_interval": 1}, scheduler={"type": "fifo"},
                          params={"x": {"type": "uniform", "low": 0.0, "high": 1.0}, "epochs": 6, "sleep": 2.0},
                          resource={"name": "epoch", "max": 6}, budget={"max_trials": 6},
                          execution={"num_parallel_evals": 3})
    config["searcher"] = {"type": "random"}
    path = write_config(tmp_path, config)
    experiment = tmp_path / "exp"
    driver = subprocess.Popen([*CLI, "run", str(path)], cwd=tmp_path, env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and sum(1 for e in _journal_or_empty(experiment) if e["type"] == "report") < 3:
        time.sleep(0.2)
    driver.send_signal(getattr(signal, signum))
    out, err = driver.communicate(timeout=60)
    assert driver.returncode == {"SIGTERM": 143, "SIGUSR1": 0}[signum], out + err
    assert "takes back the trial jobs still running" in err
    jobs = [e["handle"] for e in journal(experiment) if e["type"] == "trial_started"]
    queued = subprocess.run(["squeue", "-h", "-o", "%i", f"--jobs={','.join(jobs)}"], capture_output=True,
                            text=True).stdout.split()
    assert queued, "the trial jobs did not outlive the driver"
    # Nothing was ended by the driver's going: no trial interrupted, cancelled or failed (some may have
    # completed on their own before the signal).
    ends = [e for e in journal(experiment) if e["type"] in ("trial_interrupted", "trial_ended")]
    assert all(e["type"] == "trial_ended" and e["state"] == "finished" for e in ends), ends
    done = run([*CLI, "run", str(path)], tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "adopted" in done.stdout
    state = load_state(experiment)
    assert state.finished and {t.state for t in state.trials.values()} == {"completed"}, state.trials
    for trial_id in state.trials:
        starts = (experiment / "trials" / trial_id / "starts").read_text().splitlines()
        assert len(starts) == 1, (trial_id, starts)  # taken back, never started again
