"""Trials inside a PBS allocation: host groups from PBS_NODEFILE, started by the configured launcher.

No PBS server can be installed on the machines these tests run on: the allocation is a fake
PBS_JOBID and PBS_NODEFILE, and launchers/ holds a stand-in mpiexec/mpirun that records the hosts
it was given and runs the trial on this machine.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from pbs_helpers import HERE, HOSTS, allocation_env, cli, ended, journal, launches, pbs_config


@pytest.mark.parametrize("launcher", ["mpiexec", "mpirun", "custom"])
def test_trials_run_on_disjoint_groups_of_hosts(tmp_path: Path, launcher: str) -> None:
    chosen = [str(HERE / "launchers" / "mpiexec"), "--on={hosts}", "--"] if launcher == "custom" else launcher
    path = pbs_config(tmp_path, {"mode": "auto", "nodes_per_eval": 2, "launcher": chosen},
                      params={"x": {"type": "uniform", "low": 0, "high": 1}, "epochs": 3, "sleep": 0.2},
                      scheduler={"type": "fifo"}, budget={"max_trials": 6},
                      execution={"num_parallel_evals": 0})
    result = cli("run", str(path), cwd=tmp_path, env=allocation_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "pbs-allocation" in result.stdout and "2 at a time" in result.stdout
    records = launches(tmp_path)
    assert len(records) == 6
    for record in records:
        assert len(record["hosts"]) == 2 and len(set(record["hosts"])) == 2
        assert set(record["hosts"]) <= set(HOSTS)
    # Runs that overlap in time never share a host (no double booking), and never more than the
    # 5 // 2 = 2 slots run at once. Concurrency is counted at each start (a long run may overlap two
    # short ones that follow each other on the other slot: that is still only two at once).
    for record in records:
        for other in records:
            if other is not record and overlap(record, other):
                assert not set(other["hosts"]) & set(record["hosts"]), (record, other)
    assert max(running_at(records, r["started"]) for r in records) == 2, \
        "never exactly two trials at once: the slots were not tested, or a third ran"
    assert all(e["state"] == "finished" for e in ended(tmp_path).values())


def test_losers_launcher_groups_are_ended(tmp_path: Path) -> None:
    path = pbs_config(tmp_path, {"mode": "allocation", "nodes_per_eval": 1},
                      params={"x": {"type": "uniform", "low": 0, "high": 1}, "epochs": 9, "sleep": 0.3},
                      budget={"max_trials": 8}, execution={"num_parallel_evals": 0})
    result = cli("run", str(path), cwd=tmp_path, env=allocation_env(tmp_path))
    assert result.returncode == 0, result.stderr
    stopped = {e["trial_id"] for e in journal(tmp_path) if e["type"] == "report" and e["decision"] == "stop"}
    assert stopped
    for trial in stopped:
        pid = int((tmp_path / "exp" / "trials" / trial / "pid").read_text())
        assert not Path(f"/proc/{pid}").exists() or " Z " in Path(f"/proc/{pid}/stat").read_text()
        lines = (tmp_path / "exp" / "trials" / trial / "metrics.jsonl").read_text().splitlines()
        assert len(lines) < 9


def test_allocation_mode_outside_a_pbs_job_is_a_clear_error(tmp_path: Path) -> None:
    path = pbs_config(tmp_path, {"mode": "allocation"})
    result = cli("run", str(path), cwd=tmp_path, env={})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "execution.pbs.mode" in result.stderr and "PBS_NODEFILE" in result.stderr


def test_a_launcher_not_on_path_is_a_clear_error(tmp_path: Path) -> None:
    path = pbs_config(tmp_path, {"mode": "allocation", "launcher": "pbsdsh"})
    result = cli("run", str(path), cwd=tmp_path, env=allocation_env(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "execution.pbs.launcher" in result.stderr and "pbsdsh" in result.stderr


def overlap(a: dict, b: dict) -> bool:
    return a["started"] < b["ended"] and b["started"] < a["ended"]


def running_at(records: list[dict], moment: float) -> int:
    """How many recorded runs were going at this moment (a run counts from its start to its end)."""
    return sum(1 for r in records if r["started"] <= moment < r["ended"])
