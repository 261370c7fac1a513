"""`hpc-hpo stop`: a real local driver, stopped from another process through the experiment directory only.

Its running trials are interrupted (not failed or cancelled), it exits as on SIGTERM, and a later run
finishes the experiment; `--final` ends the experiment for good; a stale request never stops a later run.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from conftest import REPO, cli, synthetic_config, write_config

CLI = [sys.executable, "-m", "hpc_hpo.cli"]


def journal(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "exp" / "journal.jsonl"
    if not path.exists():
        return []
    data = path.read_bytes()
    return [json.loads(line) for line in data[: data.rfind(b"\n") + 1].splitlines() if line.strip()]


def start_driver(config_path: Path, cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([*CLI, "run", str(config_path)], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for_reports(tmp_path: Path, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len({e["trial_id"] for e in journal(tmp_path) if e["type"] == "report"}) >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"fewer than {count} trials reported within {timeout} s")


def slow_config(tmp_path: Path, max_trials: int) -> dict[str, Any]:
    config = synthetic_config(tmp_path, budget={"max_trials": max_trials}, scheduler={"type": "fifo"})
    config["params"] = {"x": {"type": "uniform", "low": 0.0, "high": 1.0}, "epochs": 9, "sleep": 0.4}
    config["execution"]["stop_grace_period"] = 5
    return config


def states(tmp_path: Path) -> dict[str, str]:
    from hpc_hpo.state import load_state
    return {t.trial_id: t.state for t in load_state(tmp_path / "exp").trials.values()}


def test_stop_from_another_process_interrupts_trials_and_a_later_run_finishes(tmp_path: Path) -> None:
    path = write_config(tmp_path, slow_config(tmp_path, max_trials=6))
    driver = start_driver(path, tmp_path)
    try:
        wait_for_reports(tmp_path, 2)
        asked = cli("stop", str(tmp_path / "exp"), cwd=tmp_path, timeout=60)
        assert asked.returncode == 0, asked.stdout + asked.stderr
        assert "asked the driver on host" in asked.stdout and f"pid {driver.pid}" in asked.stdout
        out, err = driver.communicate(timeout=60)
    finally:
        driver.kill()
    assert driver.returncode == 143, (out, err)  # as on SIGTERM
    assert "Traceback" not in err
    assert "stopped by hpc-hpo stop" in out
    assert "run the same command again to resume" in err
    events = journal(tmp_path)
    assert events[-1]["type"] == "experiment_ended" and events[-1]["final"] is False
    assert "stopped by hpc-hpo stop" in events[-1]["reason"]
    interrupted = [e for e in events if e["type"] == "trial_interrupted"]
    assert interrupted, "the stop interrupted no running trial"
    assert not set(states(tmp_path).values()) & {"failed", "cancelled", "running"}, states(tmp_path)
    assert not (tmp_path / "exp" / "stop_request.json").exists(), "the driver left its request behind"

    again = cli("run", str(path), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    final = states(tmp_path)
    assert len(final) == 6 and set(final.values()) <= {"completed", "stopped"}, final
    resumed = {e["trial_id"] for e in journal(tmp_path) if e["type"] == "trial_resumed"}
    assert {e["trial_id"] for e in interrupted} <= resumed | {e["trial_id"] for e in journal(tmp_path)
                                                              if e["type"] == "trial_started" and e["run"] > 1}


def test_stop_final_ends_the_experiment_for_good_and_wait_returns_when_the_driver_is_gone(tmp_path: Path) -> None:
    path = write_config(tmp_path, slow_config(tmp_path, max_trials=6))
    driver = start_driver(path, tmp_path)
    try:
        wait_for_reports(tmp_path, 2)
        started = time.monotonic()
        asked = cli("stop", str(path), "--final", "--wait", "--timeout", "60", cwd=tmp_path, timeout=90)
        waited = time.monotonic() - started
        assert asked.returncode == 0, asked.stdout + asked.stderr
        assert "has stopped" in asked.stdout, asked.stdout
        # --wait returned after the driver left: it has exited (or is exiting) by now.
        out, err = driver.communicate(timeout=10)
    finally:
        driver.kill()
    assert driver.returncode == 0, (out, err)
    assert waited < 30, f"--wait took {waited:.1f} s"
    events = journal(tmp_path)
    assert events[-1]["type"] == "experiment_ended" and events[-1]["final"] is True
    assert "--final" in events[-1]["reason"]
    assert cli("status", str(tmp_path / "exp"), "--is-finished", cwd=tmp_path).returncode == 0
    again = cli("run", str(path), cwd=tmp_path)
    assert again.returncode == 0 and "already ended" in again.stdout, again.stdout + again.stderr
    assert not {"failed", "cancelled"} & set(states(tmp_path).values())


def test_stop_without_a_driver_says_so_in_one_line(tmp_path: Path) -> None:
    path = write_config(tmp_path, synthetic_config(tmp_path, budget={"max_trials": 2}))
    assert cli("run", str(path), cwd=tmp_path).returncode == 0
    result = cli("stop", str(tmp_path / "exp"), cwd=tmp_path)
    assert result.returncode == 1
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) == 1 and "no driver is running" in lines[0], lines
    assert not (tmp_path / "exp" / "stop_request.json").exists()


def test_a_stale_request_does_not_stop_the_next_run(tmp_path: Path) -> None:
    """A request whose driver ended before taking it (its lease token is not the new driver's) is dropped."""
    path = write_config(tmp_path, synthetic_config(tmp_path, budget={"max_trials": 8}))
    assert cli("run", str(path), "--experiment-dir", str(tmp_path / "exp"), cwd=tmp_path).returncode == 0
    lease = json.loads((tmp_path / "exp" / "driver.json").read_text())
    (tmp_path / "exp" / "stop_request.json").write_text(json.dumps({"token": lease["token"], "final": False,
                                                                     "who": "someone earlier"}))
    config = synthetic_config(tmp_path, budget={"max_trials": 16})  # raised: the next run has work to do
    path = write_config(tmp_path, config)
    result = cli("run", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "stopped by hpc-hpo stop" not in result.stdout
    assert len(states(tmp_path)) == 16
    assert journal(tmp_path)[-1]["final"] is True
    assert not (tmp_path / "exp" / "stop_request.json").exists(), "the stale request was not cleared"
