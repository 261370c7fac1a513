"""Guarantee 5: a full disk (a small tmpfs holding the experiment) stops the run cleanly with one message,
loses no journaled event, and the run resumes once there is space again. Needs root to mount the tmpfs."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, cli, read_journal, synthetic_config, write_config


@pytest.fixture
def small_disk(tmp_path: Path):
    if os.geteuid() != 0:
        reason = "mounting a tmpfs needs root"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the full-disk test: {reason}")
        pytest.skip(reason)
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount_point)], check=True)
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(directory: Path) -> Path:
    """Write zeros until the filesystem refuses: afterwards not one more byte fits."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as handle:
        for size in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    handle.write(b"\0" * size)
            except OSError:
                continue
    return filler


def test_a_full_disk_stops_the_run_cleanly_and_a_rerun_resumes(tmp_path: Path, small_disk: Path) -> None:
    config = synthetic_config(tmp_path, experiment_dir=str(small_disk / "exp"),
                              params={"x": {"type": "uniform", "low": 0.0, "high": 1.0}, "epochs": 9, "sleep": 0.2},
                              budget={"max_trials": 10}, execution={"num_parallel_evals": 2, "num_retries": 3})
    path = write_config(tmp_path, config)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    driver = subprocess.Popen([sys.executable, "-m", "hpc_hpo.cli", "run", str(path)], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    journal = small_disk / "exp" / "journal.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if journal.exists() and sum(e["type"] == "report" for e in read_journal(journal)) >= 6:
            break
        time.sleep(0.05)
    filler = fill(small_disk)
    acknowledged = read_journal(journal)
    stdout, stderr = driver.communicate(timeout=120)

    assert driver.returncode == 2, stdout + stderr
    assert "Traceback" not in stderr and "No space left on device" in stderr and "resume" in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    after = read_journal(journal)
    assert after[:len(acknowledged)] == acknowledged, "an acknowledged event was lost"

    filler.unlink()
    resumed = cli("run", str(path), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    final = read_journal(journal)
    assert final[:len(acknowledged)] == acknowledged
    assert final[-1]["type"] == "experiment_ended" and final[-1]["final"] is True
    created = [e["trial_id"] for e in final if e["type"] == "trial_created"]
    assert len(created) == 10 and {e["trial_id"] for e in final if e["type"] == "trial_ended"} == set(created)


def test_creating_an_experiment_on_a_full_disk_says_so_in_one_line_and_a_later_run_creates_it(
        tmp_path: Path, small_disk: Path) -> None:
    config = synthetic_config(tmp_path, experiment_dir=str(small_disk / "exp"), scheduler={"type": "fifo"},
                              params={"x": {"type": "uniform", "low": 0.0, "high": 1.0}, "epochs": 3},
                              resource={"name": "epoch", "max": 3}, budget={"max_trials": 3})
    path = write_config(tmp_path, config)
    filler = fill(small_disk)
    refused = cli("run", str(path), cwd=tmp_path)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "Traceback" not in refused.stderr and "No space left on device" in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert cli("status", str(small_disk / "exp"), cwd=tmp_path).returncode == 2  # no experiment yet

    filler.unlink()
    created = cli("run", str(path), cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    events = read_journal(small_disk / "exp" / "journal.jsonl")
    assert events[0]["type"] == "experiment_created" and events[-1]["type"] == "experiment_ended"
    assert sum(e["type"] == "report" for e in events) == 9


def test_resuming_on_a_full_disk_says_so_in_one_line_and_loses_nothing(tmp_path: Path, small_disk: Path) -> None:
    config = synthetic_config(tmp_path, experiment_dir=str(small_disk / "exp"),
                              params={"x": {"type": "uniform", "low": 0.0, "high": 1.0}, "epochs": 9, "sleep": 0.2},
                              budget={"max_trials": 6}, execution={"num_parallel_evals": 2})
    path = write_config(tmp_path, config)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    driver = subprocess.Popen([sys.executable, "-m", "hpc_hpo.cli", "run", str(path)], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    journal = small_disk / "exp" / "journal.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if journal.exists() and sum(e["type"] == "report" for e in read_journal(journal)) >= 4:
            break
        time.sleep(0.05)
    driver.send_signal(signal.SIGTERM)  # a graceful stop: the experiment waits to be resumed
    driver.communicate(timeout=120)
    stopped = journal.read_bytes()
    assert read_journal(journal)[-1]["final"] is False
    trial_files = {p: p.read_bytes() for p in (small_disk / "exp" / "trials").rglob("*") if p.is_file()}

    filler = fill(small_disk)
    for _ in range(2):  # and again: a refused resume leaves nothing that makes the next one worse
        refused = cli("run", str(path), cwd=tmp_path)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "Traceback" not in refused.stderr and "No space left on device" in refused.stderr, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert read_journal(journal) == read_journal_bytes(stopped)
        assert {p: p.read_bytes() for p in trial_files} == trial_files
    status = cli("status", str(small_disk / "exp"), cwd=tmp_path)
    assert status.returncode == 0 and "run it again to resume" in status.stdout, status.stdout + status.stderr

    filler.unlink()
    resumed = cli("run", str(path), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    final = read_journal(journal)
    assert final[:len(read_journal_bytes(stopped))] == read_journal_bytes(stopped)
    assert final[-1]["type"] == "experiment_ended" and final[-1]["final"] is True
    created = [e["trial_id"] for e in final if e["type"] == "trial_created"]
    assert len(created) == 6 and {e["trial_id"] for e in final if e["type"] == "trial_ended"} == set(created)


def read_journal_bytes(data: bytes) -> list:
    import json
    return [json.loads(line) for line in data[: data.rfind(b"\n") + 1].splitlines() if line.strip()]
