"""Guarantee 5: a full disk (a small tmpfs holding the experiment) stops the run cleanly with one message,
loses no journaled event, and the run resumes once there is space again. Needs root to mount the tmpfs."""
from __future__ import annotations

import os
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
