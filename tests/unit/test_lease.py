"""The driver lease: when a lease file left by another driver means a live driver, and when it may be taken."""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from hpc_hpo.experiment import HEARTBEAT_S, _still_running


def write(path: Path, info: dict) -> None:
    path.write_text(json.dumps(info) + "\n")


def test_a_dead_pid_on_this_host_is_taken_over_at_once(tmp_path: Path) -> None:
    holder = {"host": os.uname().nodename, "pid": 2**22 + 7, "since": "x", "beat": 3}
    write(tmp_path / "driver.json", holder)
    started = time.monotonic()
    assert _still_running(holder, tmp_path / "driver.json") is False
    assert time.monotonic() - started < 1.0


def test_another_hosts_driver_whose_heartbeat_goes_on_is_running(tmp_path: Path) -> None:
    holder = {"host": "elsewhere", "pid": 1234, "since": "x", "beat": 1, "slurm_job_id": None}
    write(tmp_path / "driver.json", holder)
    stop = threading.Event()

    def beat() -> None:
        count = 1
        while not stop.wait(HEARTBEAT_S / 2):
            count += 1
            write(tmp_path / "driver.json", {**holder, "beat": count})
    thread = threading.Thread(target=beat)
    thread.start()
    try:
        assert _still_running(holder, tmp_path / "driver.json") is True
    finally:
        stop.set()
        thread.join()


def test_another_hosts_driver_with_a_silent_heartbeat_is_taken_over(tmp_path: Path) -> None:
    holder = {"host": "elsewhere", "pid": 1234, "since": "x", "beat": 9, "slurm_job_id": None}
    write(tmp_path / "driver.json", holder)
    started = time.monotonic()
    assert _still_running(holder, tmp_path / "driver.json") is False
    assert time.monotonic() - started >= HEARTBEAT_S * 2  # it watched for a few beats first
