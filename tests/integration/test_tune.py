"""hpc_hpo.tune: Python-function trials as local processes (on Slurm: tests/slurm/test_tune_slurm.py)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

PROGRAMS = Path(__file__).resolve().parents[1] / "programs"
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROGRAMS))
import function_trials  # noqa: E402

import hpc_hpo  # noqa: E402


@pytest.fixture(autouse=True)
def importable_in_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The trial processes import the function by name (the driver's sys.path goes with it; this is for the
    drivers these tests start as scripts)."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(PROGRAMS), str(REPO), os.environ.get("PYTHONPATH", "")]))


def events(experiment: Path) -> list[dict]:
    return [json.loads(line) for line in (experiment / "journal.jsonl").read_text().splitlines()]


def test_a_function_is_tuned_with_asha_and_the_best_is_returned(tmp_path: Path) -> None:
    best = hpc_hpo.tune(function_trials.quadratic,
                        {"x": {"type": "uniform", "low": 0.0, "high": 1.0}, "epochs": 9, "sleep": 0.05},
                        metric={"name": "loss", "mode": "min"}, resource={"name": "epoch", "max": 9},
                        scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 3},
                        searcher={"type": "random", "seed": 3}, budget={"max_trials": 9},
                        execution={"backend": "local", "num_parallel_evals": 2, "poll_interval": 0.05},
                        experiment_dir=tmp_path / "exp", quiet=True)
    log = events(tmp_path / "exp")
    ended = {e["trial_id"]: e["state"] for e in log if e["type"] == "trial_ended"}
    stopped = {e["trial_id"] for e in log if e["type"] == "report" and e["decision"] == "stop"}
    assert len(ended) == 9 and stopped, ended
    assert all(state == "finished" for t, state in ended.items() if t not in stopped), ended
    configs = {e["trial_id"]: e["config"] for e in log if e["type"] == "trial_created"}
    finished_losses = {t: min(e["value"] for e in log if e["type"] == "report" and e["trial_id"] == t)
                       for t, state in ended.items() if state == "finished"}
    winner = min(finished_losses, key=finished_losses.get)
    assert best["trial_id"] == winner and best["config"]["x"] == configs[winner]["x"]
    # Each trial ran in its own process, not in the driver.
    pids = {(tmp_path / "exp" / "trials" / t / "ran_in").read_text().split()[0] for t in ended}
    assert len(pids) == 9 and str(os.getpid()) not in pids


def test_a_raising_function_fails_its_trial_with_the_traceback(tmp_path: Path) -> None:
    hpc_hpo.tune(function_trials.broken, {"x": {"type": "uniform", "low": 0.0, "high": 1.0}},
                 metric={"name": "loss", "mode": "min"}, resource={"name": "epoch", "max": 3},
                 scheduler={"type": "fifo"}, budget={"max_trials": 2},
                 execution={"backend": "local", "num_parallel_evals": 2, "poll_interval": 0.05},
                 experiment_dir=tmp_path / "exp", quiet=True)
    ended = [e for e in events(tmp_path / "exp") if e["type"] == "trial_ended"]
    assert [e["state"] for e in ended] == ["failed", "failed"]
    assert all("broken on purpose" in e["reason"] for e in ended), ended[0]["reason"]


def test_cancelled_function_trials_end_without_a_traceback(tmp_path: Path) -> None:
    """ASHA's losers are cancelled mid-epoch (SIGTERM): they end as a program does, printing nothing."""
    hpc_hpo.tune(function_trials.quadratic,
                 {"x": {"type": "uniform", "low": 0.0, "high": 1.0}, "epochs": 9, "sleep": 0.3},
                 metric={"name": "loss", "mode": "min"}, resource={"name": "epoch", "max": 9},
                 scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 3},
                 searcher={"type": "random", "seed": 3}, budget={"max_trials": 9},
                 execution={"backend": "local", "num_parallel_evals": 3, "poll_interval": 0.05},
                 experiment_dir=tmp_path / "exp", quiet=True)
    log = events(tmp_path / "exp")
    stopped = {e["trial_id"] for e in log if e["type"] == "report" and e["decision"] == "stop"}
    killed = {e["trial_id"] for e in log if e["type"] == "trial_ended" and e["exit_code"] == -signal.SIGTERM}
    assert killed and killed <= stopped, (killed, stopped)
    for trial_id in killed:
        assert (tmp_path / "exp" / "trials" / trial_id / "stderr").read_text() == ""


KILLED_DRIVER = """
import sys
sys.path.insert(0, {programs!r})
import function_trials, hpc_hpo
hpc_hpo.tune(function_trials.quadratic,
             {{"x": {{"type": "uniform", "low": 0.0, "high": 1.0}}, "epochs": 6, "sleep": 0.4}},
             metric={{"name": "loss", "mode": "min"}}, resource={{"name": "epoch", "max": 6}},
             scheduler={{"type": "fifo"}}, searcher={{"type": "random", "seed": 3}}, budget={{"max_trials": 4}},
             execution={{"backend": "local", "num_parallel_evals": 2, "poll_interval": 0.05}},
             experiment_dir={experiment!r}, quiet=True)
"""


def test_a_tune_driver_killed_with_sigkill_is_resumed_by_the_next_call(tmp_path: Path) -> None:
    """The runs the killed driver left are adopted by the next tune() call, not failed or run again."""
    script = tmp_path / "driver.py"
    script.write_text(KILLED_DRIVER.format(programs=str(PROGRAMS), experiment=str(tmp_path / "exp")))
    first = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, start_new_session=True)
    deadline = time.monotonic() + 60
    while not ((tmp_path / "exp" / "journal.jsonl").exists()
               and len({e["trial_id"] for e in events(tmp_path / "exp") if e["type"] == "report"}) == 2):
        assert first.poll() is None and time.monotonic() < deadline, "the first driver's trials never reported"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)  # the driver only: its trials run in their own process groups
    first.wait(timeout=30)
    running = {e["trial_id"]: e["handle"] for e in events(tmp_path / "exp") if e["type"] == "trial_started"}
    assert len(running) == 2 and not [e for e in events(tmp_path / "exp") if e["type"] == "trial_ended"]

    again = subprocess.run([sys.executable, str(script)], cwd=tmp_path, timeout=120, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    log = events(tmp_path / "exp")
    ended = {e["trial_id"]: e["state"] for e in log if e["type"] == "trial_ended"}
    assert len(ended) == 4 and set(ended.values()) == {"finished"}, ended
    assert not [e for e in log if e["type"] in ("trial_retry", "trial_interrupted")]
    for trial_id, handle in running.items():
        assert [e["handle"] for e in log if e["type"] == "trial_started" and e["trial_id"] == trial_id] == [handle]
        lines = (tmp_path / "exp" / "trials" / trial_id / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4, 5, 6]
