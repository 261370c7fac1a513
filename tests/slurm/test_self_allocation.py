"""A driver started outside any allocation makes its own (execution.slurm.allocation), on the live cluster:
trials run as steps in it, a new one is asked for when it ends before the experiment, and every allocation
is given back, at the end and on Ctrl-C."""
from __future__ import annotations

import getpass
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from live import driver_env, journal, run, write_config
from test_allocation_lifecycle import check_finished_and_nothing_charged, long_config

from hpc_hpo.state import load_state

pytestmark = pytest.mark.usefixtures("slurm_cluster")
CLI = [sys.executable, "-m", "hpc_hpo.cli"]
GRANTED = re.compile(r"allocation (\d+) granted \(.*job name (\S+)\)")


def own_allocation_config(tmp_path: Path, trials: int, time_limit: Any) -> dict[str, Any]:
    config = long_config(tmp_path, trials)
    config["execution"]["slurm"] = {"mode": "steps", "allocation": {"nodes": 2, "time": time_limit}}
    return config


def queued(names: set[str]) -> str:
    """What squeue lists of this user's jobs with these names (pending, running or completing)."""
    out = subprocess.run(["squeue", "-h", f"--user={getpass.getuser()}", f"--name={','.join(names)}",
                          "-o", "%i %j %T"], capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.strip()


@pytest.mark.slow
def test_a_driver_on_a_login_node_goes_on_in_a_second_allocation_of_its_own(tmp_path: Path) -> None:
    """Allocations of 2 nodes for 1 minute, 10 trials of 18 s on whole nodes: more than one allocation
    holds. The same driver process gets a second allocation and finishes; nothing is charged; no
    allocation is left."""
    trials = 10
    path = write_config(tmp_path, own_allocation_config(tmp_path, trials, 1))
    done = run([*CLI, "run", str(path)], tmp_path, timeout=900)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "Traceback" not in done.stderr
    granted = GRANTED.findall(done.stderr)
    job_ids = [job_id for job_id, _ in granted]
    assert len(set(job_ids)) >= 2, done.stderr  # the experiment outlived its first allocation
    names = {name for _, name in granted}
    assert len(names) == 1 and next(iter(names)).startswith("synthetic"), names  # the experiment's name
    assert "asking for the next one" in done.stderr
    for job_id in job_ids:
        assert f"allocation {job_id} given back" in done.stderr, done.stderr
    experiment = tmp_path / "exp"
    check_finished_and_nothing_charged(experiment, trials)
    # Trials ran as steps of the driver's allocations, and of more than one.
    started = [e for e in journal(experiment) if e["type"] == "trial_started"]
    assert {e["handle"].partition(":")[0] for e in started} <= set(job_ids)
    assert len({e["handle"].partition(":")[0] for e in started}) >= 2
    assert {e["backend"] for e in started} == {"slurm-steps"}
    # Paused for each allocation's end, or cut by it: never charged, resumed first by the next allocation.
    interrupted = [e for e in journal(experiment) if e["type"] == "trial_interrupted"]
    print(f"allocations {job_ids}, interrupted runs {len(interrupted)}")
    assert queued(names) == ""


def test_an_allocation_revoked_under_the_driver_is_followed_by_the_next(tmp_path: Path) -> None:
    """scancel of the driver's allocation while its trials run (as a time limit cuts them): the trials are
    interrupted, not charged, the same driver gets a new allocation and resumes them there from their
    checkpoints, and the experiment finishes."""
    trials = 4
    path = write_config(tmp_path, own_allocation_config(tmp_path, trials, "10:00"))
    driver = subprocess.Popen([*CLI, "run", str(path)], cwd=tmp_path, env=driver_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    experiment = tmp_path / "exp"
    try:
        first, _ = _own_allocation(driver, "RUNNING")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and _reports(experiment) < 6:
            assert driver.poll() is None, driver.communicate()
            time.sleep(0.2)
        subprocess.run(["scancel", first], check=True)
        out, err = driver.communicate(timeout=600)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, err + out
    assert "Traceback" not in err
    job_ids = [job_id for job_id, _ in GRANTED.findall(err)]
    assert job_ids[0] == first and len(job_ids) == 2, err
    check_finished_and_nothing_charged(experiment, trials)
    events = journal(experiment)
    resumed = [e for e in events if e["type"] == "trial_interrupted" and "resume_from" in e]
    assert resumed, "no trial cut by the allocation's end went on from its checkpoint"
    # Resumed in the second allocation, by the same driver process.
    second_runs = {e["trial_id"] for e in events if e["type"] == "trial_started"
                   and e["handle"].startswith(job_ids[1] + ":")}
    assert {e["trial_id"] for e in resumed} <= second_runs
    assert len({e["pid"] for e in events if e["type"] == "run_started"}) == 1
    assert queued({name for _, name in GRANTED.findall(err)}) == ""


def test_ctrl_c_gives_the_allocation_back(tmp_path: Path) -> None:
    """SIGINT to a driver running trials in its own allocation: the trials are interrupted (resumable) and
    the allocation is gone from squeue within seconds of the driver's exit."""
    path = write_config(tmp_path, own_allocation_config(tmp_path, 8, "10:00"))
    driver = subprocess.Popen([*CLI, "run", str(path)], cwd=tmp_path, env=driver_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    experiment = tmp_path / "exp"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not _reports(experiment):
            assert driver.poll() is None, driver.communicate()
            time.sleep(0.2)
        assert _reports(experiment), "no trial reported within 300 s"
        driver.send_signal(signal.SIGINT)
        out, err = driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
    ended = time.monotonic()
    assert driver.returncode == 130, err
    assert "Traceback" not in err
    granted = GRANTED.findall(err)
    assert len(granted) == 1, err
    job_id, name = granted[0]
    assert f"allocation {job_id} given back" in err
    while queued({name}) and time.monotonic() < ended + 10:
        time.sleep(0.5)
    assert queued({name}) == "", f"allocation {job_id} still listed {time.monotonic() - ended:.0f} s after the exit"
    state = load_state(experiment)
    assert not state.finished
    assert {t.state for t in state.trials.values()} <= {"interrupted", "pending", "completed"}, \
        {t.trial_id: t.state for t in state.trials.values()}


def test_sigterm_while_waiting_in_the_queue_withdraws_the_request(tmp_path: Path) -> None:
    """A request that cannot be granted now (more nodes than the cluster has free: --begin in the future
    keeps it pending) is withdrawn when the driver is told to go."""
    config = own_allocation_config(tmp_path, 2, 5)
    config["execution"]["slurm"]["allocation"]["args"] = ["--begin=now+1hour"]
    path = write_config(tmp_path, config)
    driver = subprocess.Popen([*CLI, "run", str(path)], cwd=tmp_path, env=driver_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        _, name = _own_allocation(driver, "PENDING", wait_s=60)
        driver.send_signal(signal.SIGTERM)
        out, err = driver.communicate(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 130, err
    assert "Traceback" not in err
    assert queued({name}) == "", err


def _own_allocation(driver: subprocess.Popen[str], state: str, wait_s: float = 300) -> tuple[str, str]:
    """The job id and name of the driver's allocation once squeue lists it in this state."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        out = subprocess.run(["squeue", "-h", f"--user={getpass.getuser()}", f"--states={state}", "-o", "%i %j"],
                             capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()
        mine = [line.split() for line in out if line.split()[1].startswith("synthetic.hpo-alloc.")]
        if mine:
            return mine[0][0], mine[0][1]
        assert driver.poll() is None, driver.communicate()
        time.sleep(0.3)
    raise AssertionError(f"the driver's allocation never showed up as {state}")


def _reports(experiment: Path) -> int:
    try:
        return sum(1 for e in journal(experiment) if e["type"] == "report")
    except (OSError, ValueError):
        return 0
