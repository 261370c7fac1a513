"""Local guarantees of issue 3 that the driver alone provides: one driver per experiment, retries."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import PROGRAMS, cli, read_export, synthetic_config, write_config


def journal(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "exp" / "journal.jsonl").read_text().splitlines()]


def test_second_driver_refuses_and_a_dead_drivers_lease_is_taken_over(tmp_path: Path) -> None:
    config = synthetic_config(tmp_path, params={"x": {"type": "uniform", "low": 0.0, "high": 1.0},
                                                "epochs": 9, "sleep": 0.3},
                              scheduler={"type": "fifo"}, budget={"max_trials": 4},
                              execution={"num_parallel_evals": 2})
    path = write_config(tmp_path, config)
    first = subprocess.Popen([sys.executable, "-m", "hpc_hpo.cli", "run", str(path)], cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lease = tmp_path / "exp" / "driver.json"
    deadline = time.monotonic() + 30
    while not (lease.exists() and lease.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    second = cli("run", str(path), cwd=tmp_path)
    assert second.returncode == 2
    assert f"pid {first.pid}" in second.stderr and "host" in second.stderr and "since" in second.stderr
    assert "Traceback" not in second.stderr

    first.send_signal(signal.SIGKILL)  # the lease dies with the driver
    first.wait(timeout=30)
    third = cli("run", str(path), cwd=tmp_path)
    assert third.returncode == 0, third.stderr
    assert journal(tmp_path)[-1]["type"] == "experiment_ended"
    assert json.loads(lease.read_text())["pid"] != first.pid


def test_failed_runs_are_retried_then_marked_failed(tmp_path: Path) -> None:
    config = synthetic_config(tmp_path, command=[sys.executable, str(PROGRAMS / "flaky_trial.py")],
                              params={"x": {"type": "uniform", "low": 0.0, "high": 1.0},
                                      "succeed_on": {"type": "choice", "values": [2, 5]}},
                              resource={"name": "epoch", "max": 3}, scheduler={"type": "fifo"},
                              searcher={"points_to_evaluate": [{"succeed_on": 2}, {"succeed_on": 5}]},
                              budget={"max_trials": 2}, execution={"num_retries": 2, "num_parallel_evals": 2})
    result = cli("run", str(write_config(tmp_path, config)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    events = journal(tmp_path)
    configs = {e["trial_id"]: e["config"] for e in events if e["type"] == "trial_created"}
    ends = {e["trial_id"]: e for e in events if e["type"] == "trial_ended"}
    retries = [e for e in events if e["type"] == "trial_retry"]
    assert sorted(c["succeed_on"] for c in configs.values()) == [2, 5]
    for trial_id, config in configs.items():
        mine = [e for e in retries if e["trial_id"] == trial_id]
        if config["succeed_on"] == 2:  # fails once, succeeds on attempt 2
            assert [e["attempt"] for e in mine] == [2]
            assert ends[trial_id]["state"] == "finished"
        else:  # fails on attempts 1, 2, 3: two retries, then failed
            assert [e["attempt"] for e in mine] == [2, 3]
            assert ends[trial_id]["state"] == "failed"
            assert "flaky failure on attempt 3" in ends[trial_id]["reason"]
    # Each retry re-reports epoch 1; it is processed once per trial.
    rows = read_export(tmp_path)
    for trial_id in configs:
        resources = [r["resource"] for r in rows if r["trial_id"] == trial_id]
        assert resources == sorted(set(resources), key=float)


@pytest.mark.parametrize("handles_journaled", [True, False], ids=["handles-journaled", "killed-before-journaling"])
def test_runs_left_by_a_killed_driver_are_re_adopted_on_resume(tmp_path: Path, handles_journaled: bool) -> None:
    """kill -9 of the driver leaves its trials running; the next driver follows those same processes
    to their end (found by the run tag even when their handles never reached the journal)."""
    config = synthetic_config(tmp_path, params={"x": {"type": "uniform", "low": 0.0, "high": 1.0},
                                                "epochs": 9, "sleep": 0.5},
                              scheduler={"type": "fifo"}, budget={"max_trials": 2},
                              execution={"num_parallel_evals": 2})
    path = write_config(tmp_path, config)
    driver = subprocess.Popen([sys.executable, "-m", "hpc_hpo.cli", "run", str(path)], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pid_files = [tmp_path / "exp" / "trials" / t / "pid" for t in ("0000", "0001")]
    deadline = time.monotonic() + 30
    while not all(p.exists() and p.read_text() for p in pid_files) and time.monotonic() < deadline:
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    pids = [int(p.read_text()) for p in pid_files]
    assert all(Path(f"/proc/{pid}").exists() for pid in pids), "trials run in their own session"
    if not handles_journaled:
        # As if the driver died between starting the processes and journaling their pids.
        lines = (tmp_path / "exp" / "journal.jsonl").read_text().splitlines(keepends=True)
        (tmp_path / "exp" / "journal.jsonl").write_text(
            "".join(line for line in lines if json.loads(line)["type"] != "trial_started"))
    resumed = cli("run", str(path), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.count("adopted") == 2, resumed.stdout
    # The same processes ran on to the end: no trial was started a second time.
    assert [int(p.read_text()) for p in pid_files] == pids
    events = journal(tmp_path)
    ends = {e["trial_id"]: e for e in events if e["type"] == "trial_ended"}
    assert {t: e["state"] for t, e in ends.items()} == {"0000": "finished", "0001": "finished"}
    starts = [e["trial_id"] for e in events if e["type"] == "trial_started"]
    assert sorted(starts) == ["0000", "0001"]
    assert [e["trial_id"] for e in events if e["type"] == "trial_created"] == ["0000", "0001"]
    rows = read_export(tmp_path)
    for trial_id in ("0000", "0001"):
        assert [int(r["resource"]) for r in rows if r["trial_id"] == trial_id] == list(range(1, 10))


def test_usr1_before_the_allocation_ends_stops_cleanly_and_a_rerun_resumes(tmp_path: Path) -> None:
    """`--signal=B:USR1@<s>` in driver.sbatch: the driver ends its runs, exits 0, and resumes later."""
    config = synthetic_config(tmp_path, params={"x": {"type": "uniform", "low": 0.0, "high": 1.0},
                                                "epochs": 9, "sleep": 0.5},
                              scheduler={"type": "fifo"}, budget={"max_trials": 4},
                              execution={"num_parallel_evals": 2})
    path = write_config(tmp_path, config)
    driver = subprocess.Popen([sys.executable, "-m", "hpc_hpo.cli", "run", str(path)], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pid_files = [tmp_path / "exp" / "trials" / t / "pid" for t in ("0000", "0001")]
    deadline = time.monotonic() + 30
    while not all(p.exists() and p.read_text() for p in pid_files) and time.monotonic() < deadline:
        time.sleep(0.05)
    driver.send_signal(signal.SIGUSR1)
    stdout, stderr = driver.communicate(timeout=60)
    assert driver.returncode == 0, stderr
    assert "allocation is ending" in stdout and "resume" in stdout and "Traceback" not in stderr
    for pid_file in pid_files:
        assert not Path(f"/proc/{int(pid_file.read_text())}").exists(), "a trial outlived the driver"
    events = journal(tmp_path)
    assert events[-1]["type"] == "experiment_ended" and events[-1]["final"] is False
    resumed = cli("run", str(path), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert journal(tmp_path)[-1]["final"] is True


def test_a_journal_naming_a_trial_outside_the_experiment_is_refused(tmp_path: Path) -> None:
    """Trial ids cannot escape the experiment directory, even from an edited journal."""
    config = synthetic_config(tmp_path, scheduler={"type": "fifo"}, budget={"max_trials": 1})
    path = write_config(tmp_path, config)
    assert cli("run", str(path), cwd=tmp_path).returncode == 0
    journal_path = tmp_path / "exp" / "journal.jsonl"
    events = journal(tmp_path)
    events[-1]["final"] = False  # as if the run had been interrupted
    escaped = {**[e for e in events if e["type"] == "trial_created"][0], "trial_id": "../../escaped", "index": 1}
    journal_path.write_text("".join(json.dumps(e) + "\n" for e in [*events, escaped]))
    resumed = cli("run", str(path), cwd=tmp_path)
    assert resumed.returncode == 2 and "not a trial id" in resumed.stderr and "Traceback" not in resumed.stderr
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "exp" / "escaped").exists()


def test_the_experiment_directory_is_owner_only(tmp_path: Path) -> None:
    config = synthetic_config(tmp_path, scheduler={"type": "fifo"}, budget={"max_trials": 1})
    assert cli("run", str(write_config(tmp_path, config)), cwd=tmp_path).returncode == 0
    for directory in (tmp_path / "exp", tmp_path / "exp" / "trials", tmp_path / "exp" / "trials" / "0000"):
        assert directory.stat().st_mode & 0o077 == 0, oct(directory.stat().st_mode)
