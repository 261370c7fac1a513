"""One driver per experiment, and the experiment's own identity, where the filesystem does not help:

- a driver stopped (SIGSTOP) past the takeover window while another one takes over through another client
  of a shared filesystem (two bindfs mounts; locks do not reach between them) notices when it wakes and
  stops without writing anything more;
- the same experiment reached through another mount point re-adopts its runs (run tags name the
  experiment by its id, not its path), also for an experiment created before ids existed;
- a run whose wrapper (record_exit.py) died is ended before it is run again;
- runs left by a dead driver end once no driver has beaten for the orphan timeout.

The mount tests need root, bindfs and /dev/fuse (tests/run.sh installs bindfs).
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import pytest

from hpc_hpo.state import load_state
from conftest import (PROGRAMS, REPO, check_nothing_lost_or_doubled, cli, read_export, read_journal,
                      synthetic_config, write_config)
from test_shared_fs_locks import _two_mounts

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


@pytest.fixture
def mounts(tmp_path: Path):
    """Two bindfs mounts of one directory without lock forwarding: two NFS clients whose locks do not meet.

    Without caching, as NFS's close-to-open consistency has it (a file opened after its writer closed it
    shows what was written): by default FUSE keeps a file's size for 1 s, and a driver on the other mount
    could see a run's exit marker before its last report."""
    yield _two_mounts(tmp_path, ["-o", "attr_timeout=0,entry_timeout=0"])
    for mount in (tmp_path / "client_a", tmp_path / "client_b"):
        subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True)


def start_driver(config: Path, cwd: Path, log: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """`hpc-hpo run` in the background, its output in files (a pipe nobody reads could block it)."""
    return subprocess.Popen([sys.executable, "-m", "hpc_hpo.cli", "run", str(config)], cwd=cwd, env=env or ENV,
                            stdout=open(cwd / f"{log}.out", "wb"), stderr=open(cwd / f"{log}.err", "wb"))


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"after {timeout:g} s: {what}")
        time.sleep(0.05)


def alive(pid: int) -> bool:
    """Running (a zombie left to an init that does not reap is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


def events_of(journal: Path, kind: str) -> list[dict[str, Any]]:
    return [e for e in read_journal(journal) if e["type"] == kind] if journal.exists() else []


def starts(trial_dir: Path) -> list[tuple[str, int]]:
    """(run tag, pid) of every process the synthetic trial program was started as."""
    return [(tag, int(pid)) for tag, pid in (line.split() for line in (trial_dir / "starts").read_text().splitlines())]


def test_a_driver_stopped_past_the_takeover_window_notices_and_stops_without_writing(
        tmp_path: Path, mounts: list[Path]) -> None:
    client_a, client_b = mounts
    config = synthetic_config(tmp_path, params={"x": {"type": "uniform", "low": 0.0, "high": 1.0},
                                                "shape": {"type": "choice", "values": ["fast", "slow"]},
                                                "epochs": 9, "sleep": 0.4},
                              budget={"max_trials": 8}, execution={"num_parallel_evals": 2})
    path_a = write_config(tmp_path, {**config, "experiment_dir": str(client_a / "exp")}, "a.yaml")
    path_b = write_config(tmp_path, {**config, "experiment_dir": str(client_b / "exp")}, "b.yaml")
    journal = client_b / "exp" / "journal.jsonl"
    first = start_driver(path_a, tmp_path, "first")
    second = None
    try:
        wait_for(lambda: len(events_of(journal, "report")) >= 3, 60, "the first driver's trials never reported")
        first.send_signal(signal.SIGSTOP)
        stopped_at = time.monotonic()
        second = start_driver(path_b, tmp_path, "second")
        # The first one's heartbeat is silent: the second takes over, re-adopts its runs and goes on.
        wait_for(lambda: len(events_of(journal, "run_started")) == 2, 60, "the second driver never took over")
        taken = len(read_journal(journal))
        wait_for(lambda: len(read_journal(journal)) > taken + 2, 60, "the second driver wrote nothing more")
        assert time.monotonic() - stopped_at > 5.0
    finally:
        first.send_signal(signal.SIGCONT)
    try:
        first.wait(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    error = (tmp_path / "first.err").read_text()
    assert first.returncode not in (0, None), error
    assert len(error.strip().splitlines()) == 1 and "Traceback" not in error, error
    assert "lease" in error and f"pid {second.pid}" in error, error
    assert second.wait(timeout=180) == 0, (tmp_path / "second.err").read_text()

    events = read_journal(journal)
    assert [e["pid"] for e in events if e["type"] == "run_started"] == [first.pid, second.pid]
    assert [e["type"] for e in events].count("experiment_ended") == 1, "the stopped driver ended the experiment too"
    reports = Counter((e["trial_id"], e["resource"]) for e in events if e["type"] == "report")
    assert max(reports.values()) == 1, "a report was journaled twice"
    # Trial ids unique and in order, every trial ended (none failed, none lost), one process per
    # journaled run and none started twice, every report exactly once.
    check_nothing_lost_or_doubled(client_b / "exp", read_export(tmp_path, "client_b/exp"), max_resource=9)
    # Every trial's end state (a stop or complete decision is kept when the process ends).
    states = Counter(t.state for t in load_state(client_b / "exp").trials.values())
    assert set(states) <= {"finished", "stopped", "completed"} and sum(states.values()) == 8, states
    lease = json.loads((client_b / "exp" / "driver.json").read_text())
    assert lease["pid"] == second.pid and lease.get("released") is True, "the stopped driver rewrote the lease"


@pytest.mark.parametrize("legacy", [False, True], ids=["id-in-experiment-yaml", "created-without-id"])
def test_a_driver_killed_through_one_mount_is_resumed_through_another_and_re_adopts_its_runs(
        tmp_path: Path, mounts: list[Path], legacy: bool) -> None:
    client_a, client_b = mounts
    config = synthetic_config(tmp_path, params={"x": {"type": "uniform", "low": 0.0, "high": 1.0},
                                                "epochs": 9, "sleep": 0.5},
                              scheduler={"type": "fifo"}, budget={"max_trials": 2},
                              execution={"num_parallel_evals": 2})
    frozen = client_a / "exp" / "experiment.yaml"
    trials = ["0000", "0001"]
    if legacy:
        # An experiment an earlier version made: one trial done, and no id in its experiment.yaml.
        done = cli("run", str(write_config(tmp_path, {**config, "experiment_dir": str(client_a / "exp"),
                                                      "budget": {"max_trials": 1}}, "first.yaml")), cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        lines = frozen.read_text().splitlines(keepends=True)
        assert lines[0].startswith("# experiment_id: ")
        frozen.write_text("".join(lines[1:]))
        config["budget"] = {"max_trials": 3}
        trials = ["0001", "0002"]
    path_a = write_config(tmp_path, {**config, "experiment_dir": str(client_a / "exp")}, "a.yaml")
    path_b = write_config(tmp_path, {**config, "experiment_dir": str(client_b / "exp")}, "b.yaml")
    driver = start_driver(path_a, tmp_path, "a")
    pid_files = [client_a / "exp" / "trials" / t / "pid" for t in trials]
    wait_for(lambda: all(p.exists() and p.read_text() for p in pid_files), 60, "the trials never started")
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    pids = [int(p.read_text()) for p in pid_files]
    assert all(alive(pid) for pid in pids)

    resumed = cli("run", str(path_b), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.count("adopted") == 2, resumed.stdout
    experiment = client_b / "exp"
    events = read_journal(experiment / "journal.jsonl")
    started = Counter(e["trial_id"] for e in events if e["type"] == "trial_started")
    assert {t: started[t] for t in trials} == {t: 1 for t in trials}, "a running trial was started a second time"
    for trial_id, pid in zip(trials, pids):
        assert [pid for _, pid in starts(experiment / "trials" / trial_id)] == [pid]
    ends = {e["trial_id"]: e["state"] for e in events if e["type"] == "trial_ended"}
    assert all(ends[t] == "finished" for t in trials), ends
    rows = read_export(tmp_path, "client_b/exp")
    for trial_id in trials:
        assert [int(r["resource"]) for r in rows if r["trial_id"] == trial_id] == list(range(1, 10))
    # The runs are named by the experiment's id: the one frozen in experiment.yaml, or for an
    # experiment made without one, the id derived once (from the path the older version's tags hashed).
    tags = {tag for t in trials for tag, _ in starts(experiment / "trials" / t)}
    if legacy:
        id8 = hashlib.sha1(str((client_a / "exp").resolve()).encode()).hexdigest()[:8]
    else:
        id8 = frozen.read_text().split()[2][:8]
    assert tags == {f"syntheti-{id8}-{t}-1" for t in trials}  # the experiment's name (8 characters) first


def test_when_an_adopted_runs_wrapper_dies_its_trial_is_ended_before_it_runs_again(tmp_path: Path) -> None:
    config = synthetic_config(tmp_path, params={"x": {"type": "uniform", "low": 0.0, "high": 1.0},
                                                "epochs": 40, "sleep": 0.2},
                              resource={"name": "epoch", "max": 40}, scheduler={"type": "fifo"},
                              budget={"max_trials": 1}, execution={"num_parallel_evals": 1})
    path = write_config(tmp_path, config)
    trial_dir = tmp_path / "exp" / "trials" / "0000"
    journal = tmp_path / "exp" / "journal.jsonl"
    first = start_driver(path, tmp_path, "first")
    wait_for(lambda: (trial_dir / "pid").exists() and (trial_dir / "pid").read_text(), 60, "no trial started")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    second = start_driver(path, tmp_path, "second")
    try:
        wait_for(lambda: len(events_of(journal, "run_started")) == 2, 60, "the second driver never started")
        time.sleep(0.5)  # a few sweeps of the second driver watching the adopted run
        wrapper = int(events_of(journal, "trial_started")[0]["handle"])
        trial = int((trial_dir / "pid").read_text())
        assert alive(wrapper) and alive(trial)
        os.kill(wrapper, signal.SIGKILL)
        wait_for(lambda: not alive(trial), 3, "the trial of the run whose wrapper died still runs")
        assert second.wait(timeout=120) == 0, (tmp_path / "second.err").read_text()
    finally:
        if second.poll() is None:
            second.kill()
    events = read_journal(journal)
    assert [e["state"] for e in events if e["type"] == "trial_ended"] == ["finished"]
    assert [e.get("requeue") for e in events if e["type"] == "trial_retry"] == [True]  # the cluster's, not the trial's
    runs = starts(trial_dir)
    assert [tag.rsplit("-", 1)[1] for tag, _ in runs] == ["1", "2"] and runs[0][1] == trial
    # One writer at a time: every epoch in the metrics file once, none written by the first process
    # after the second one began.
    written = [json.loads(line)["epoch"] for line in (trial_dir / "metrics.jsonl").read_text().splitlines()]
    assert sorted(written) == list(range(1, 41)), written
    assert [int(r["resource"]) for r in read_export(tmp_path)] == list(range(1, 41))


STUBBORN = """\
import runpy, signal, sys
# The trial with the larger x ignores SIGTERM: only SIGKILL ends it.
if float(sys.argv[sys.argv.index("--x") + 1]) > 0.5:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
sys.argv[0] = {program!r}
runpy.run_path({program!r}, run_name="__main__")
"""


def test_runs_end_once_no_driver_has_beaten_for_the_orphan_timeout(tmp_path: Path) -> None:
    program = tmp_path / "stubborn.py"
    program.write_text(STUBBORN.format(program=str(PROGRAMS / "synthetic_trial.py")))
    config = synthetic_config(tmp_path, command=[sys.executable, str(program)],
                              params={"x": {"type": "uniform", "low": 0.0, "high": 1.0}, "epochs": 150, "sleep": 0.1},
                              resource={"name": "epoch", "max": 150}, scheduler={"type": "fifo"},
                              searcher={"points_to_evaluate": [{"x": 0.2}, {"x": 0.8}]},
                              budget={"max_trials": 2}, execution={"num_parallel_evals": 2})
    path = write_config(tmp_path, config)
    env = {**ENV, "HPC_HPO_ORPHAN_TIMEOUT": "2"}
    trial_dirs = [tmp_path / "exp" / "trials" / t for t in ("0000", "0001")]
    driver = start_driver(path, tmp_path, "first", env)
    try:
        wait_for(lambda: all((d / "pid").exists() and (d / "pid").read_text() for d in trial_dirs), 60,
                 "the trials never started")
        time.sleep(3.5)  # longer than the orphan timeout: a driver that beats keeps its runs
        pids = [int((d / "pid").read_text()) for d in trial_dirs]
        assert all(alive(pid) for pid in pids) and not list((tmp_path / "exp" / "trials").glob("*/*.exit"))
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    killed = time.monotonic()
    wait_for(lambda: not any(alive(pid) for pid in pids), 30, "runs left by a dead driver run on")
    assert time.monotonic() - killed > 0.5, "the runs must outlive their driver for the orphan timeout"
    # The wrapper writes its marker after its trial is gone: on a loaded machine a moment later.
    wait_for(lambda: all(list(d.glob("*.exit")) for d in trial_dirs), 30, "a wrapper left no exit marker")
    codes = [int(next(d.glob("*.exit")).read_text()) for d in trial_dirs]
    assert codes == [-signal.SIGTERM, -signal.SIGKILL]  # the stubborn one only to SIGKILL, after the grace period

    resumed = cli("run", str(path), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    events = read_journal(tmp_path / "exp" / "journal.jsonl")
    retries = [e for e in events if e["type"] == "trial_retry"]
    assert sorted(e["trial_id"] for e in retries) == ["0000", "0001"]
    assert all(e.get("requeue") is True and "no driver" in e.get("reason", "") for e in retries), retries
    assert {e["trial_id"]: e["state"] for e in events if e["type"] == "trial_ended"} == {"0000": "finished",
                                                                                       "0001": "finished"}
    rows = read_export(tmp_path)
    for trial_id in ("0000", "0001"):
        assert [int(r["resource"]) for r in rows if r["trial_id"] == trial_id] == list(range(1, 151))
