"""Graceful stops pause, they do not cancel: SIGUSR1, SIGTERM and SIGINT (and the budget) leave the running
trials interrupted, the next run resumes them first from their checkpoints, and nothing is charged to them.

Seedless configs on purpose: a resume must reuse the seed frozen at creation.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from conftest import REPO, cli, synthetic_config, write_config

CLI = [sys.executable, "-m", "hpc_hpo.cli"]


def journal(tmp_path: Path) -> list[dict[str, Any]]:
    lines = (tmp_path / "exp" / "journal.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def final_states(tmp_path: Path) -> dict[str, str]:
    result = cli("status", str(tmp_path / "exp"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    from hpc_hpo.state import load_state
    return {t.trial_id: t.state for t in load_state(tmp_path / "exp").trials.values()}


def epochs_trained(tmp_path: Path, trial_id: str) -> list[int]:
    path = tmp_path / "exp" / "trials" / trial_id / "epochs_trained"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def start_driver(config_path: Path, cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([*CLI, "run", str(config_path)], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def runs_started(tmp_path: Path) -> int:
    path = tmp_path / "exp" / "journal.jsonl"
    return sum(1 for e in journal(tmp_path) if e["type"] == "run_started") if path.exists() else 0


def wait_for_running(tmp_path: Path, count: int, runs_before: int, timeout: float = 60) -> None:
    """Until `count` trials have reported in the driver's run that came after `runs_before` earlier ones."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if runs_started(tmp_path) > runs_before:
            events = journal(tmp_path)
            last_run = max(i for i, e in enumerate(events) if e["type"] == "run_started")
            reported = {e["trial_id"] for e in events[last_run:] if e["type"] == "report"}
            if len(reported) >= count:
                return
        time.sleep(0.1)
    raise AssertionError(f"fewer than {count} trials reported within {timeout} s")


def slow_config(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    config = synthetic_config(tmp_path, **overrides)
    config["params"] = {"x": {"type": "uniform", "low": 0.0, "high": 1.0}, "epochs": 9, "sleep": 0.4}
    config["searcher"] = {"type": "random"}  # no seed: every resume must find the frozen one
    config["execution"]["stop_grace_period"] = 5
    return config


def test_signals_interrupt_running_trials_and_resume_them(tmp_path: Path) -> None:
    config = slow_config(tmp_path, budget={"max_trials": 10}, scheduler={"type": "fifo"})
    path = write_config(tmp_path, config)
    expected_codes = {signal.SIGUSR1: 0, signal.SIGTERM: 143, signal.SIGINT: 130}
    interruptions: Counter[str] = Counter()
    for number, signum in enumerate(expected_codes):
        before = runs_started(tmp_path)
        driver = start_driver(path, tmp_path)
        wait_for_running(tmp_path, 2, before)
        time.sleep(0.2)  # mid-epoch for most trials
        driver.send_signal(signum)
        out, err = driver.communicate(timeout=60)
        assert driver.returncode == expected_codes[signum], (signum, out, err)
        assert "Traceback" not in err
        assert "run the same command again to resume" in err
        events = journal(tmp_path)
        assert events[-1]["type"] == "experiment_ended" and events[-1]["final"] is False
        stopped = [e for e in events if e["type"] == "trial_interrupted"]
        assert len(stopped) > sum(interruptions.values()), f"{signum.name} interrupted no trial"
        interruptions = Counter(e["trial_id"] for e in stopped)
        states = final_states(tmp_path)
        assert not {s for s in states.values()} & {"cancelled", "failed", "running"}, states
        # Every trial that was running when the signal came is interrupted or decided, never lost.
        assert any(s == "interrupted" for s in states.values())
    result = cli("run", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "resuming" in result.stdout and "interrupted trials first" in result.stdout
    states = final_states(tmp_path)
    assert len(states) == 10, states  # interrupted trials did not count again against max_trials
    assert set(states.values()) <= {"completed", "stopped"}, states
    events = journal(tmp_path)
    assert all(e.get("state") not in ("cancelled", "failed") for e in events if e["type"] == "trial_ended")
    for trial_id in states:
        trained = epochs_trained(tmp_path, trial_id)
        assert sorted(set(trained)) == list(range(1, 10)), (trial_id, trained)
        # At most the epoch in progress is trained again per interruption.
        assert len(trained) - 9 <= interruptions[trial_id], (trial_id, trained, interruptions[trial_id])
    resumed = [e for e in events if e["type"] == "trial_interrupted" and "resume_from" in e]
    assert resumed, "no interrupted trial had saved a checkpoint to resume from"


def test_a_second_ctrl_c_cancels_at_once_and_trials_stay_resumable(tmp_path: Path) -> None:
    config = slow_config(tmp_path, budget={"max_trials": 4}, scheduler={"type": "fifo"})
    config["params"]["sleep"] = 3.0  # epochs longer than the test waits: only the second Ctrl-C ends them
    config["execution"]["stop_grace_period"] = 60
    path = write_config(tmp_path, config)
    driver = start_driver(path, tmp_path)
    wait_for_running(tmp_path, 2, 0)
    driver.send_signal(signal.SIGINT)
    time.sleep(1.0)
    assert driver.poll() is None, "the first Ctrl-C must wait for the trials' next report"
    started = time.monotonic()
    driver.send_signal(signal.SIGINT)
    out, err = driver.communicate(timeout=60)
    assert time.monotonic() - started < 30
    assert driver.returncode == 130, err
    states = final_states(tmp_path)
    assert "cancelled" not in states.values() and "interrupted" in states.values(), states
    config["params"]["sleep"] = 0.01
    # A changed parameter would be a different experiment: resume with the very same config instead.
    result = cli("run", str(path), cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr
    assert set(final_states(tmp_path).values()) <= {"completed", "stopped"}


def test_max_time_interrupts_and_a_raised_budget_resumes(tmp_path: Path) -> None:
    config = slow_config(tmp_path, budget={"max_trials": 6, "max_time": 4}, scheduler={"type": "fifo"})
    config["params"]["sleep"] = 1.0  # 9 s trials: every one is still running when the 4 s budget is spent
    path = write_config(tmp_path, config)
    first = cli("run", str(path), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    events = journal(tmp_path)
    assert events[-1]["type"] == "experiment_ended" and events[-1]["final"] is True
    assert "max_time" in events[-1]["reason"]
    states = final_states(tmp_path)
    assert "interrupted" in states.values() and "cancelled" not in states.values(), states
    again = cli("run", str(path), cwd=tmp_path)
    assert again.returncode == 0 and "already ended" in again.stdout
    config["budget"]["max_time"] = 600
    path = write_config(tmp_path, config)
    extended = cli("run", str(path), cwd=tmp_path)
    assert extended.returncode == 0, extended.stderr
    states = final_states(tmp_path)
    assert len(states) == 6 and set(states.values()) <= {"completed", "stopped"}, states


def test_a_broken_program_stops_the_experiment_early(tmp_path: Path) -> None:
    config = synthetic_config(tmp_path, command=[sys.executable, "-c", "import sys; sys.exit('no such data: /x')"],
                              budget={"max_trials": 500}, execution={"num_parallel_evals": 2})
    config["searcher"] = {"type": "random"}
    result = cli("run", str(write_config(tmp_path, config)), cwd=tmp_path)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert "5 trials failed without a single report" in result.stderr
    assert "no such data: /x" in result.stderr  # the last failure's stderr tail
    states = final_states(tmp_path)
    assert 5 <= len(states) <= 8, len(states)


def test_max_failures_counts_failed_trials_after_their_retries(tmp_path: Path) -> None:
    # x above 0.5 fails after its first report; the experiment has reports, so only max_failures stops it.
    config = synthetic_config(tmp_path, budget={"max_trials": 200}, execution={"max_failures": 3, "num_retries": 1})
    config["params"]["fail_above"] = 0.5
    result = cli("run", str(write_config(tmp_path, config)), cwd=tmp_path)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "max_failures (3) reached" in result.stderr
    assert "synthetic failure: x is too large" in result.stderr
    events = journal(tmp_path)
    # A trial that ASHA stopped at its first report fails nothing when its process then exits 1.
    failed = [t for t, state in final_states(tmp_path).items() if state == "failed"]
    assert len(failed) == 3
    retried = Counter(e["trial_id"] for e in events if e["type"] == "trial_retry")
    assert all(retried[t] == 1 for t in failed)  # each used its own num_retries first
    assert len({e["trial_id"] for e in events if e["type"] == "trial_created"}) < 200


def test_an_experiment_without_a_single_report_exits_non_zero(tmp_path: Path) -> None:
    config = synthetic_config(tmp_path, command=[sys.executable, "-c", "print('training, reporting nothing')"],
                              budget={"max_trials": 3})
    result = cli("run", str(write_config(tmp_path, config)), cwd=tmp_path)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "no trial reported anything" in result.stderr


def test_output_without_a_single_report_is_warned_about_once(tmp_path: Path) -> None:
    program = "import sys\nfor e in range(1, 4):\n    print(f'epoch {e} loss is 0.5', flush=True)\n"
    config = synthetic_config(tmp_path, command=[sys.executable, "-c", program], budget={"max_trials": 3},
                              execution={"num_parallel_evals": 1})
    config["metric_regex"] = r"FoM: (\S+)"
    result = cli("run", str(write_config(tmp_path, config)), cwd=tmp_path)
    assert result.returncode == 1  # no report at all
    warnings = [line for line in result.stderr.splitlines() if "but no report" in line]
    assert len(warnings) == 1, result.stderr  # once per experiment, not once per trial
    assert "FoM: (\\\\S+)" in warnings[0] and "epoch 1 loss is 0.5" in warnings[0], warnings[0]


def test_report_sees_the_interrupt_request_with_one_stat(tmp_path: Path) -> None:
    """report() and `hpc-hpo report` end the run (report(): exit 0; the CLI prints 'pause') once the
    driver asked the trial to save and exit; the line itself is still recorded."""
    trial_dir = tmp_path / "trial"
    trial_dir.mkdir()
    env = {**os.environ, "HPC_HPO_TRIAL_DIR": str(trial_dir),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    before = subprocess.run([*CLI, "report", "epoch=1", "loss=0.5"], env=env, capture_output=True, text=True)
    assert before.returncode == 0 and before.stdout == ""
    (trial_dir / "interrupt").write_text('{"reason": "stopped by SIGTERM"}')
    after = subprocess.run([*CLI, "report", "epoch=2", "loss=0.4"], env=env, capture_output=True, text=True)
    assert after.returncode == 0 and after.stdout.strip() == "pause"
    program = "from hpc_hpo import report\nreport(epoch=3, loss=0.3)\nprint('went on')\n"
    ran = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True)
    assert ran.returncode == 0 and "went on" not in ran.stdout
    lines = [json.loads(line) for line in (trial_dir / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2, 3]
