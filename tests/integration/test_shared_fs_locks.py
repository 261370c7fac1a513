"""Guarantee 6: one driver per experiment even where file locks do not reach between the clients of a
shared filesystem. Two bindfs mounts of one directory stand in for two NFS clients on one machine:
plain mounts do not share flock locks (the lease heartbeat must catch the second driver), mounts with
--enable-lock-forwarding do (the lock itself refuses it). Needs root, bindfs and /dev/fuse."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, cli, synthetic_config, write_config


def _two_mounts(tmp_path: Path, options: list[str]):
    problem = None
    if os.geteuid() != 0:
        problem = "mounting needs root"
    elif shutil.which("bindfs") is None:
        problem = "bindfs is not installed (tests/run.sh installs it as root)"
    elif not Path("/dev/fuse").exists():
        problem = "/dev/fuse is missing"
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the shared-filesystem lock tests: {problem}")
        pytest.skip(problem)
    shared = tmp_path / "shared"
    mounts = [tmp_path / "client_a", tmp_path / "client_b"]
    for directory in (shared, *mounts):
        directory.mkdir()
    for mount in mounts:
        subprocess.run(["bindfs", *options, str(shared), str(mount)], check=True)
    return mounts


@pytest.fixture
def cleanup_mounts(tmp_path: Path):
    yield
    for mount in (tmp_path / "client_a", tmp_path / "client_b"):
        subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True)


@pytest.mark.parametrize("forwarding", [False, True], ids=["plain-mounts", "lock-forwarding"])
def test_a_second_driver_through_another_client_refuses(tmp_path: Path, forwarding: bool, cleanup_mounts) -> None:
    options = ["--multithreaded", "--enable-lock-forwarding"] if forwarding else []
    client_a, client_b = _two_mounts(tmp_path, options)
    config = synthetic_config(tmp_path, params={"x": {"type": "uniform", "low": 0.0, "high": 1.0},
                                                "epochs": 9, "sleep": 1.0},
                              scheduler={"type": "fifo"}, budget={"max_trials": 2},
                              execution={"num_parallel_evals": 2})
    path_a = write_config(tmp_path, {**config, "experiment_dir": str(client_a / "exp")}, "a.yaml")
    path_b = write_config(tmp_path, {**config, "experiment_dir": str(client_b / "exp")}, "b.yaml")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    first = subprocess.Popen([sys.executable, "-m", "hpc_hpo.cli", "run", str(path_a)], cwd=tmp_path, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not (client_a / "exp" / "journal.jsonl").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        second = cli("run", str(path_b), cwd=tmp_path)
        assert second.returncode == 2, second.stdout + second.stderr
        assert f"pid {first.pid}" in second.stderr and "Traceback" not in second.stderr
        if forwarding:
            assert "already being run by" in second.stderr
        else:
            assert "do not exclude" in second.stderr and "README" in second.stderr
        assert first.poll() is None, "the first driver must be untouched"
    finally:
        first.kill()
        first.wait(timeout=30)
