"""The driver lease: when a lease file left by another driver means a live driver, and when it may be taken."""
from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from hpc_hpo.experiment import (HEARTBEAT_S, TAKEOVER_S, DriverLease, LeaseLost, _still_running, experiment_id,
                                identity_line)

REPO = Path(__file__).resolve().parents[2]


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


# --------------------------------------------------------------------------- the holder's side


def test_the_heartbeat_beats_on_its_own_while_the_driver_is_busy(tmp_path: Path) -> None:
    """A resume replaying a large journal (or a long sweep) calls nothing for seconds: the lease must beat anyway."""
    lease = DriverLease(tmp_path)
    lease.acquire()
    try:
        first = json.loads((tmp_path / "driver.json").read_text())["beat"]
        busy_until = time.monotonic() + TAKEOVER_S
        while time.monotonic() < busy_until:  # the main thread computes, never sleeps
            sum(range(1000))
        assert json.loads((tmp_path / "driver.json").read_text())["beat"] >= first + 3
        lease.check()  # still held
    finally:
        lease.release()


def test_a_lease_another_driver_took_over_is_noticed_and_never_written_again(tmp_path: Path) -> None:
    lease = DriverLease(tmp_path)
    lease.acquire()
    other = {"host": "elsewhere", "pid": 4321, "since": "later", "beat": 1, "token": "another-driver"}
    write(tmp_path / "driver.json", other)
    time.sleep(HEARTBEAT_S * 2.5)  # a few beats' time: none may overwrite the other driver's lease
    assert json.loads((tmp_path / "driver.json").read_text()) == other
    left: list[bool] = []
    with pytest.raises(LeaseLost, match="host elsewhere, pid 4321"):
        lease.check(on_lost=lambda: left.append(True))
    assert left == [True]
    lease.release()
    assert json.loads((tmp_path / "driver.json").read_text()) == other


HOLDER = """\
import sys, time
from pathlib import Path
from hpc_hpo.experiment import DriverLease, LeaseLost
lease = DriverLease(Path(sys.argv[1]))
lease.acquire()
print("ready", flush=True)
try:
    while True:
        lease.check()
        time.sleep(0.05)
except LeaseLost as exc:
    print(exc, flush=True)
    lease.release()
    sys.exit(3)
"""


def test_a_driver_stopped_past_the_takeover_window_knows_it_may_have_lost_its_lease(tmp_path: Path) -> None:
    """Another driver may have taken over meanwhile (its file locks need not reach this one): stop, write nothing."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        holder.send_signal(signal.SIGSTOP)
        time.sleep(TAKEOVER_S + 0.5)
        before = (tmp_path / "driver.json").read_text()
    finally:
        holder.send_signal(signal.SIGCONT)
    try:
        assert holder.wait(timeout=10) == 3
    finally:
        holder.kill()
    assert "stopped" in holder.stdout.read()
    assert (tmp_path / "driver.json").read_text() == before, "a driver that lost its lease wrote to it"


# --------------------------------------------------------------------------- the experiment's id


def test_an_experiment_is_named_by_its_id_not_by_its_path(tmp_path: Path) -> None:
    directory = tmp_path / "exp"
    directory.mkdir()
    (directory / "experiment.yaml").write_text(identity_line() + "name: x\n")
    frozen = experiment_id(directory)
    assert re.fullmatch(r"[0-9a-f]{32}", frozen)
    assert yaml.safe_load((directory / "experiment.yaml").read_text()) == {"name": "x"}  # still the config
    moved = tmp_path / "elsewhere"
    directory.rename(moved)
    assert experiment_id(moved) == frozen
    assert identity_line() != identity_line()


def test_an_experiment_made_without_an_id_keeps_its_run_tags_and_then_its_id(tmp_path: Path) -> None:
    """The id derived once, from the path the older version's run tags hashed: runs it left are still found."""
    directory = tmp_path / "exp"
    directory.mkdir()
    (directory / "experiment.yaml").write_text("name: x\n")
    derived = experiment_id(directory)
    assert derived[:8] == hashlib.sha1(str(directory.resolve()).encode()).hexdigest()[:8]
    moved = tmp_path / "elsewhere"
    directory.rename(moved)
    assert experiment_id(moved) == derived
