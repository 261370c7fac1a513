"""Several drivers on one experiment (hpc-hpo run --join), local backend: each driver runs its own trial
processes, all share one journal, one rung system and one searcher state (README "Elastic experiments").

Checked at the end of every run, on the journal: no trial id twice, no promotion twice, every trial ended at
most once and in a final state, and the decisions are the ones a single scheduler takes when the journal's
reports are fed to it in the journal's order (the oracle)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hpc_hpo.backends import make_backend
from hpc_hpo.backends.base import DelegatingBackend
from hpc_hpo.config import load_config
from hpc_hpo.driver import Driver
from hpc_hpo.journal import read_events
from hpc_hpo.state import fold

from conftest import REPO, check_shared_journal, cli, synthetic_config, write_config


def start_driver(config: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-m", "hpc_hpo.cli", "run", str(config), *extra], cwd=config.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finish(drivers: list[subprocess.Popen[str]], timeout: float = 240) -> list[tuple[int, str]]:
    out = []
    for driver in drivers:
        stdout, stderr = driver.communicate(timeout=timeout)
        out.append((driver.returncode, stdout + stderr))
    return out


def one_joined_driver(tmp_path: Path) -> tuple[Path, subprocess.Popen[str]]:
    """A joined driver of a few slow trials, once its member file is there."""
    config = write_config(tmp_path, synthetic_config(
        tmp_path, params={"x": {"type": "uniform", "low": 0.0, "high": 1.0}, "shape": "slow", "epochs": 9,
                          "sleep": 0.3}, budget={"max_trials": 4}, execution={"num_parallel_evals": 2}))
    joined = start_driver(config, "--join")
    members = tmp_path / "exp" / "drivers"
    deadline = time.monotonic() + 30
    while not any(members.glob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.1)
    return config, joined


def drivers_of(events: list[dict[str, Any]]) -> set[str]:
    return {e["driver"] for e in events if e["type"] == "trial_started" and "driver" in e}


def test_four_joined_drivers_run_one_promotion_experiment(tmp_path: Path) -> None:
    config = write_config(tmp_path, synthetic_config(
        tmp_path, scheduler={"type": "promotion"}, searcher={"type": "random"},  # no seed: adopted from the first
        budget={"max_trials": 27}, execution={"num_parallel_evals": 2}))
    drivers = [start_driver(config, "--join") for _ in range(4)]
    results = finish(drivers)
    assert all(code == 0 for code, _ in results), results
    events = check_shared_journal(config, ("completed", "stopped", "paused"))
    assert len(drivers_of(events)) >= 2, "the trials all ran under one driver: nobody joined"
    assert sum(e["type"] == "trial_created" for e in events) == 27


def test_a_killed_driver_loses_its_trials_to_the_others(tmp_path: Path) -> None:
    config = write_config(tmp_path, synthetic_config(
        tmp_path, params={"x": {"type": "uniform", "low": 0.0, "high": 1.0}, "shape": "slow", "epochs": 9,
                          "sleep": 0.3},
        searcher={"type": "random"}, budget={"max_trials": 12}, execution={"num_parallel_evals": 2}))
    drivers = [start_driver(config, "--join") for _ in range(4)]
    journal = tmp_path / "exp" / "journal.jsonl"
    victim = None
    deadline = time.monotonic() + 60
    while victim is None and time.monotonic() < deadline:  # kill a driver while it runs trials
        time.sleep(0.2)
        events = read_events(journal) if journal.exists() else []
        running = {t.driver for t in fold(events).trials.values() if t.driver and not t.process_ended and t.handle}
        started = {e["driver"]: e["pid"] for e in events if e["type"] == "run_started" and "driver" in e}
        if sum(e["type"] == "trial_started" for e in events) >= 4:  # mid-run, not at the start
            victim = next((started[d] for d in sorted(running) if d in started), None)
    assert victim is not None, "no driver started a trial within 60 s"
    killed_at = time.time()
    os.kill(victim, signal.SIGKILL)
    results = finish(drivers)
    codes = {driver.pid: code for driver, (code, _) in zip(drivers, results)}
    assert codes.pop(victim) == -signal.SIGKILL
    assert all(code == 0 for code in codes.values()), results
    events = check_shared_journal(config, ("completed", "stopped"))
    lost = [e for e in events if e["type"] == "driver_lost"]
    assert len(lost) == 1
    # The member lock freed with the process: the others noticed within a sweep or two, not a heartbeat timeout.
    assert lost[0]["t"] - killed_at < 5.0
    taken = [e for e in events if e["t"] >= lost[0]["t"] and e["type"] in ("trial_adopted", "trial_interrupted")]
    assert taken, "the lost driver's trials were neither adopted nor interrupted"


class StepsGoneWithTheirAllocation(DelegatingBackend):
    """The local backend, except that a run started by another driver cannot be found: as Slurm steps of an
    allocation that ended with its driver (the local backend would find their exit or their processes)."""

    def adopt(self, handle: str | None, tag: str, trial_dir: Path) -> str | None:
        return None


def test_a_driver_joining_after_another_died_with_its_runs_takes_them_over_once(tmp_path: Path) -> None:
    """The next driver to join requeues the lost runs and launches them itself; its sweeps do not judge the
    same driver gone again and interrupt those trials (the live array test once saw that)."""
    config, first = one_joined_driver(tmp_path)
    journal = tmp_path / "exp" / "journal.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and sum(e["type"] == "report" for e in read_events(journal)) < 2:
        time.sleep(0.1)
    first.kill()
    first.wait(timeout=30)
    for handle in {e["handle"] for e in read_events(journal) if e["type"] == "trial_started"}:
        try:
            os.killpg(int(handle), signal.SIGKILL)  # each run's wrapper leads its process group
        except ProcessLookupError:
            pass
    spec = load_config(config)
    driver = Driver(spec, StepsGoneWithTheirAllocation(make_backend(spec)), quiet=True, join=True)
    driver.run()
    assert driver.exit_code == 0
    events = check_shared_journal(config, ("completed", "stopped"))
    assert [e["type"] for e in events].count("driver_lost") == 1, [e for e in events if e["type"] == "driver_lost"]
    assert [e for e in events if e["type"] == "trial_retry" and e.get("requeue")], "no lost run was requeued"
    assert not [e for e in events if e["type"] == "trial_interrupted"], "a requeued trial was taken over again"


def test_joining_a_finished_experiment_says_so(tmp_path: Path) -> None:
    config = write_config(tmp_path, synthetic_config(tmp_path, budget={"max_trials": 3}))
    first = cli("run", str(config), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    again = cli("run", str(config), "--join", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "already ended" in again.stdout + again.stderr


def test_joining_with_another_space_is_refused(tmp_path: Path) -> None:
    config = synthetic_config(tmp_path, budget={"max_trials": 3})
    path = write_config(tmp_path, config)
    assert cli("run", str(path), cwd=tmp_path).returncode == 0
    config["params"]["x"]["high"] = 2.0
    other = write_config(tmp_path, config, name="other.yaml")
    refused = cli("run", str(other), "--join", cwd=tmp_path)
    assert refused.returncode != 0
    assert "params" in refused.stderr and "Traceback" not in refused.stderr


def test_a_lone_driver_is_refused_while_joined_drivers_run(tmp_path: Path) -> None:
    config, joined = one_joined_driver(tmp_path)
    alone = cli("run", str(config), cwd=tmp_path)
    status = cli("status", str(tmp_path / "exp"), cwd=tmp_path)
    finish([joined])
    assert alone.returncode != 0
    assert "--join" in alone.stderr
    # status names the joined driver: its id, host and pid
    assert "drivers (1): " in status.stdout and f"pid {joined.pid}" in status.stdout, status.stdout


def test_a_stalled_driver_loses_its_trials_and_writes_nothing_when_it_comes_back(tmp_path: Path) -> None:
    """SIGSTOP holds the member lock but silences the heartbeat: after 5 s the other driver takes the trials over
    (adopting the runs it can follow on this host); the stalled driver, continued, stops without writing."""
    config = write_config(tmp_path, synthetic_config(
        tmp_path, params={"x": {"type": "uniform", "low": 0.0, "high": 1.0}, "shape": "slow", "epochs": 9,
                          "sleep": 0.4},
        # Enough trials that the second driver still has work while the first is stalled (an idle driver
        # leaves when the others look alive; README "Elastic experiments", Leaving).
        searcher={"type": "random"}, budget={"max_trials": 30}, execution={"num_parallel_evals": 2}))
    first = start_driver(config, "--join")
    journal = tmp_path / "exp" / "journal.jsonl"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (journal.exists() and any(
            e["type"] == "trial_started" for e in read_events(journal))):
        time.sleep(0.1)
    second = start_driver(config, "--join")
    time.sleep(1.0)
    first.send_signal(signal.SIGSTOP)
    stopped_at = time.time()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(e["type"] == "driver_lost" for e in read_events(journal)):
        time.sleep(0.2)
    lines_before = len(journal.read_bytes().splitlines())
    first.send_signal(signal.SIGCONT)
    (code, out), (second_code, second_out) = finish([first, second])
    assert code == 2 and "without writing" in out and "Traceback" not in out, out
    assert second_code == 0, second_out
    events = check_shared_journal(config, ("completed", "stopped"))
    lost = [e for e in events if e["type"] == "driver_lost"]
    first_id = next(e["driver"] for e in events if e["type"] == "run_started" and e["pid"] == first.pid)
    assert [e["driver"] for e in lost] == [first_id]
    assert 5.0 <= lost[0]["t"] - stopped_at < 10.0
    # Nothing after the verdict came from the stalled driver.
    later = read_events(journal)[lines_before:]
    assert all(e.get("driver") != first_id for e in later if e["type"] != "driver_lost")


def test_status_says_whether_drivers_run_the_experiment(tmp_path: Path) -> None:
    """What driver.sbatch and driver.pbs ask before chaining a next allocation (README "Elastic experiments")."""
    config, joined = one_joined_driver(tmp_path)
    running = cli("status", str(tmp_path / "exp"), "--has-drivers", cwd=tmp_path)
    finish([joined])
    after = cli("status", str(tmp_path / "exp"), "--has-drivers", cwd=tmp_path)
    assert (running.returncode, after.returncode) == (0, 1), (running.stderr, after.stderr)
