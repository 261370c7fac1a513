"""Guarantee 1 in PBS allocation mode: a driver killed with SIGKILL and started again inside the same
PBS job takes its launchers back (found by the run tag in their environment), reads how the runs
that ended meanwhile ended from their exit markers, never starts a run twice, and never hands the
hosts of a run that still goes to another one.

No PBS server can be installed here: the allocation is a fake PBS_JOBID and PBS_NODEFILE, and the
stand-in launchers in launchers/ run each trial on this machine (see test_pbs_allocation.py).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pbs_helpers import (HERE, allocation_env, check_nothing_lost_or_doubled, cli, driver_env, ended, journal,
                         kill_restart_cycles, launches, pbs_config, read_export)


def overlapping_runs_share_no_host(tmp_path: Path) -> None:
    records = launches(tmp_path)
    assert records, "no launcher recorded a run: nothing was checked"
    for record in records:
        for other in records:
            if other is not record and other["started"] < record["ended"] and record["started"] < other["ended"]:
                assert not set(other["hosts"]) & set(record["hosts"]), f"two runs on one host: {record} {other}"


def still_running(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return " Z " not in stat.read_text()
    except OSError:
        return False


def test_twenty_random_driver_kills_in_an_allocation_lose_nothing_and_start_nothing_twice(tmp_path: Path) -> None:
    path = pbs_config(tmp_path, {"mode": "allocation", "nodes_per_eval": 2},
                      params={"x": {"type": "uniform", "low": 0.0, "high": 1.0}, "epochs": 9, "sleep": 0.15},
                      budget={"max_trials": 16}, execution={"num_parallel_evals": 0})
    env = allocation_env(tmp_path)
    kill_restart_cycles([sys.executable, "-m", "hpc_hpo.cli", "run", str(path)], tmp_path, driver_env(env),
                        tmp_path / "exp" / "journal.jsonl", cycles=20, seed=int.from_bytes(os.urandom(2), "big"))
    final = cli("run", str(path), cwd=tmp_path, env=env)
    assert final.returncode == 0, final.stderr
    check_nothing_lost_or_doubled(tmp_path / "exp", read_export(tmp_path), max_resource=9)
    overlapping_runs_share_no_host(tmp_path)
    for starts in (tmp_path / "exp" / "trials").glob("*/starts"):
        for line in starts.read_text().splitlines():
            assert not still_running(int(line.split()[1])), f"{line} outlived the experiment"


def wait_for(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def reported(trial_dir: Path) -> bool:
    try:
        return bool((trial_dir / "metrics.jsonl").read_text().strip())
    except OSError:
        return False


def started_runs(tmp_path: Path) -> int:
    """trial_started events in the journal so far (complete lines only: the driver may be appending)."""
    data = (tmp_path / "exp" / "journal.jsonl").read_bytes()
    return sum(json.loads(line)["type"] == "trial_started" for line in data[: data.rfind(b"\n") + 1].splitlines())


def read_hosts(trial_dir: Path) -> set[str]:
    return {host for path in trial_dir.glob("*.nodes") for host in path.read_text().split()}


@pytest.mark.parametrize("handles_journaled", [True, False], ids=["handles-journaled", "killed-before-journaling"])
def test_a_restarted_driver_adopts_live_launchers_and_reads_the_markers_of_ended_ones(
        tmp_path: Path, handles_journaled: bool) -> None:
    """Two runs on 2 hosts each (of 5); the driver is killed; one run ends (exit 3) while no driver
    watches. The next driver follows the other, still running, to its end, takes exit 3 from the
    marker, and starts the third trial on the one host group that is free."""
    path = pbs_config(tmp_path, {"mode": "allocation", "nodes_per_eval": 2},
                      command=[sys.executable, str(HERE / "gated_trial.py")],
                      params={"x": {"type": "uniform", "low": 0.0, "high": 1.0}},
                      resource={"name": "epoch", "max": 2}, scheduler={"type": "fifo"}, budget={"max_trials": 3},
                      execution={"num_parallel_evals": 0})
    env = allocation_env(tmp_path)
    trials = tmp_path / "exp" / "trials"
    first, second, third = trials / "0000", trials / "0001", trials / "0002"
    driver = subprocess.Popen([sys.executable, "-m", "hpc_hpo.cli", "run", str(path)], cwd=tmp_path,
                              env=driver_env(env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: reported(first) and reported(second), "both trials to report epoch 1")
        wait_for(lambda: started_runs(tmp_path) == 2, "both handles journaled")
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    pids = {d.name: int((d / "pid").read_text()) for d in (first, second)}
    assert all(still_running(pid) for pid in pids.values()), "the runs went down with the driver"

    (second / "go").write_text("3\n")
    wait_for(lambda: [p.read_text() for p in second.glob("*.exit")] == ["3\n"], "trial 0001's exit marker")
    wait_for(lambda: not still_running(pids["0001"]), "trial 0001 to end")
    if not handles_journaled:
        # As if the driver died between starting the launchers and journaling their handles.
        lines = (tmp_path / "exp" / "journal.jsonl").read_text().splitlines(keepends=True)
        (tmp_path / "exp" / "journal.jsonl").write_text(
            "".join(line for line in lines if json.loads(line)["type"] != "trial_started"))

    resumed = subprocess.Popen([sys.executable, "-m", "hpc_hpo.cli", "run", str(path)], cwd=tmp_path,
                               env=driver_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: reported(third), "trial 0002 to start")
        # The adopted run still holds its hosts: the new one got the other group.
        assert len(read_hosts(first)) == 2 and len(read_hosts(third)) == 2
        assert not read_hosts(first) & read_hosts(third), (read_hosts(first), read_hosts(third))
        assert still_running(pids["0000"]), "the adopted run was ended instead of followed"
        for trial_dir in (first, third):
            (trial_dir / "go").write_text("0\n")
        stdout, stderr = resumed.communicate(timeout=120)
    finally:
        if resumed.poll() is None:
            resumed.kill()
    assert resumed.returncode == 0, stderr
    assert stdout.count("adopted") == 2, stdout

    # Each run started once, the first one followed in the same process to its end.
    for trial_dir in (first, second, third):
        assert len((trial_dir / "starts").read_text().splitlines()) == 1, trial_dir.name
    assert int((first / "pid").read_text()) == pids["0000"]
    events = journal(tmp_path)
    assert sorted(e["trial_id"] for e in events if e["type"] == "trial_started") == ["0000", "0001", "0002"]
    results = ended(tmp_path)
    assert {t: (e["state"], e["exit_code"]) for t, e in results.items()} == {
        "0000": ("finished", 0), "0001": ("failed", 3), "0002": ("finished", 0)}
    overlapping_runs_share_no_host(tmp_path)
