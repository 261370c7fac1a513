"""End to end in local mode: the real CLI runs real trial processes; the results are checked against the rule."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import PROGRAMS, cli, read_export, synthetic_config, write_config


def expected_decisions(rows: list[dict[str, str]], levels: list[float], eta: float, mode: str,
                       metric: str) -> list[str]:
    """DESIGN.md's stopping-ASHA rule stated independently, with numpy.quantile, for trials that
    report every epoch (so each rung level is hit exactly)."""
    max_t = levels[-1]
    rungs: dict[float, list[float]] = {level: [] for level in levels[:-1]}
    decisions = []
    for row in rows:
        resource, value = float(row["resource"]), float(row[metric])
        if resource >= max_t:
            decisions.append("complete")
        elif resource in rungs:
            previous = rungs[resource]
            if not previous:
                decisions.append("continue")
            elif mode == "min":
                decisions.append("stop" if value > np.quantile(previous, 1 / eta) else "continue")
            else:
                decisions.append("stop" if value < np.quantile(previous, 1 - 1 / eta) else "continue")
            previous.append(value)
        else:
            decisions.append("continue")
    return decisions


def test_asha_decisions_match_the_rule(tmp_path: Path, run_experiment) -> None:
    result = run_experiment()
    assert result.returncode == 0, result.stderr
    rows = read_export(tmp_path)
    assert rows, "no reports were exported"
    decisions = [row["decision"] for row in rows]
    assert decisions == expected_decisions(rows, [1, 3, 9], 3, "min", "loss")
    # The run exercised every branch of the rule, ties included.
    assert {"continue", "stop", "complete"} <= set(decisions)
    stopped = {row["trial_id"] for row in rows if row["decision"] == "stop"}
    assert len(stopped) >= 5
    # Nothing is processed after a trial's stop or complete decision; resources increase per trial.
    seen_end: set[str] = set()
    last: dict[str, float] = {}
    for row in rows:
        trial = row["trial_id"]
        assert trial not in seen_end
        assert float(row["resource"]) > last.get(trial, 0)
        last[trial] = float(row["resource"])
        if row["decision"] in ("stop", "complete"):
            seen_end.add(trial)
    # Export columns: the fixed ones, one per hyperparameter, then the times (added at the end).
    assert list(rows[0]) == ["trial_id", "resource", "loss", "elapsed_s", "decision", "x", "shape", "epochs",
                            "experiment_s", "unix_time"]
    assert all(float(row["elapsed_s"]) >= 0 for row in rows)


def test_stopped_trials_are_killed_early(tmp_path: Path, run_experiment) -> None:
    result = run_experiment(params={"x": {"type": "uniform", "low": 0.0, "high": 1.0},
                                    "shape": {"type": "choice", "values": ["fast", "slow"]},
                                    "epochs": 9, "sleep": 0.3},
                            budget={"max_trials": 8})
    assert result.returncode == 0, result.stderr
    rows = read_export(tmp_path)
    stopped = [row for row in rows if row["decision"] == "stop"]
    assert stopped
    for row in stopped:
        lines = (tmp_path / "exp" / "trials" / row["trial_id"] / "metrics.jsonl").read_text().splitlines()
        # Stopped at epoch r and cancelled at once: it never got near the 9 epochs it would have run.
        assert len(lines) <= float(row["resource"]) + 2
        pid = int((tmp_path / "exp" / "trials" / row["trial_id"] / "pid").read_text())
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_first_trial_uses_defaults_and_trial_dir_contract(tmp_path: Path, run_experiment) -> None:
    result = run_experiment(params={"x": {"type": "uniform", "low": 0.0, "high": 1.0, "default": 0.25},
                                    "shape": {"type": "choice", "values": ["slow", "fast"]}, "epochs": 9},
                            budget={"max_trials": 3})
    assert result.returncode == 0, result.stderr
    trial = tmp_path / "exp" / "trials" / "0000"
    assert json.loads((trial / "config.json").read_text()) == {"x": 0.25, "shape": "slow", "epochs": 9}
    for name in ("metrics.jsonl", "stdout", "stderr", "checkpoint"):
        assert (trial / name).exists(), name
    assert (tmp_path / "exp" / "experiment.yaml").exists()
    assert os.stat(tmp_path / "exp").st_mode & 0o077 == 0, "experiment directory must be owner-only"
    assert "best trial" in result.stdout


def test_status_best_and_json_agree_with_export(tmp_path: Path, run_experiment) -> None:
    assert run_experiment(budget={"max_trials": 10}).returncode == 0
    rows = read_export(tmp_path)
    best_row = min(rows, key=lambda r: float(r["loss"]))
    best = cli("best", str(tmp_path / "exp"), "--json", cwd=tmp_path)
    assert best.returncode == 0, best.stderr
    data = json.loads(best.stdout)
    assert data["value"] == float(best_row["loss"])
    assert data["config"]["x"] == float(next(r for r in rows if r["trial_id"] == data["trial_id"])["x"])
    status = cli("status", str(tmp_path / "exp.yaml"), cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    for trial_id in {row["trial_id"] for row in rows}:
        assert trial_id in status.stdout
    assert "last epoch" in status.stdout and "best loss" in status.stdout
    text = cli("best", str(tmp_path / "exp"), cwd=tmp_path)
    assert data["trial_id"] in text.stdout


def test_failed_trial_shows_stderr_tail_and_the_experiment_goes_on(tmp_path: Path, run_experiment) -> None:
    result = run_experiment(params={"x": {"type": "uniform", "low": 0.0, "high": 1.0},
                                    "fail_above": 0.5, "epochs": 9},
                            scheduler={"type": "fifo"}, budget={"max_trials": 6})
    assert result.returncode == 0, result.stderr
    status = cli("status", str(tmp_path / "exp"), cwd=tmp_path).stdout
    configs = [json.loads(p.read_text()) for p in sorted((tmp_path / "exp" / "trials").glob("*/config.json"))]
    failing = sum(1 for c in configs if c["x"] > 0.5)
    assert failing >= 1 and failing < len(configs)
    assert status.count("failed (exit code 1)") == failing
    assert "synthetic failure: x is too large" in status
    rows = read_export(tmp_path)
    assert sum(1 for r in rows if r["decision"] == "complete") == len(configs) - failing


def test_metric_regex_reads_stdout_of_unmodified_programs(tmp_path: Path) -> None:
    config = synthetic_config(tmp_path, command=[sys.executable, str(PROGRAMS / "regex_trial.py")],
                              params={"x": {"type": "uniform", "low": 0.0, "high": 1.0}},
                              metric={"name": "fom", "mode": "min"}, resource={"name": "epoch", "max": 5},
                              scheduler={"type": "fifo"}, budget={"max_trials": 3}, metric_regex=r"FoM: (\S+)")
    result = cli("run", str(write_config(tmp_path, config)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = read_export(tmp_path)
    assert [r["resource"] for r in rows if r["trial_id"] == "0000"] == ["1", "2", "3", "4", "5"]
    first = [float(r["fom"]) for r in rows if r["trial_id"] == "0000"]
    assert first == [round(abs(0.5 - 0.5) + 1.0 / e, 4) for e in range(1, 6)]  # x defaults to the midpoint


def test_report_command_from_a_shell_program(tmp_path: Path) -> None:
    config = synthetic_config(tmp_path, command=["sh", str(PROGRAMS / "shell_trial.sh")],
                              params={"x": {"type": "uniform", "low": 0.0, "high": 1.0}},
                              metric={"name": "score", "mode": "max"}, resource={"name": "epoch", "max": 3},
                              scheduler={"type": "fifo"}, budget={"max_trials": 2})
    result = cli("run", str(write_config(tmp_path, config)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = read_export(tmp_path)
    assert len(rows) == 6
    assert [r["decision"] for r in rows if r["trial_id"] == "0001"] == ["continue", "continue", "complete"]
    assert all(float(r["score"]) == float(r["x"]) for r in rows)


def test_report_outside_a_trial_is_a_no_op_with_a_warning(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HPC_HPO_TRIAL_DIR"}
    import subprocess
    result = subprocess.run([sys.executable, "-m", "hpc_hpo.cli", "report", "epoch=1", "loss=0.5"],
                            cwd=tmp_path, capture_output=True, text=True, env=env)
    assert result.returncode == 0
    assert result.stderr.startswith("hpc-hpo: report outside a trial") and "Warning" not in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_report_into_a_missing_trial_directory_is_one_line(tmp_path: Path) -> None:
    import subprocess
    missing = tmp_path / "gone"
    result = subprocess.run([sys.executable, "-m", "hpc_hpo.cli", "report", "epoch=1", "loss=0.5"], cwd=tmp_path,
                            capture_output=True, text=True, env={**os.environ, "HPC_HPO_TRIAL_DIR": str(missing)})
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith(f"hpc-hpo: error: the trial directory {missing}") and not missing.exists()


def test_max_time_interrupts_running_trials(tmp_path: Path, run_experiment) -> None:
    """The budget is the user's stop, not the trials' fault: they are interrupted, resumable if it is raised."""
    result = run_experiment(params={"x": {"type": "uniform", "low": 0.0, "high": 1.0},
                                    "epochs": 9, "sleep": 1.0},
                            scheduler={"type": "fifo"}, budget={"max_trials": 50, "max_time": 2})
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in (tmp_path / "exp" / "journal.jsonl").read_text().splitlines()]
    ended = [e for e in events if e["type"] == "experiment_ended"]
    assert ended and "max_time" in ended[-1]["reason"]
    trial_ends = [e for e in events if e["type"] == "trial_ended"]
    assert not trial_ends, trial_ends
    interrupted = [e for e in events if e["type"] == "trial_interrupted"]
    assert len(interrupted) == 4
    created = [e for e in events if e["type"] == "trial_created"]
    assert len(created) == 4  # no new trial after the budget ran out



@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_interrupt_ends_trials_resumably_and_a_rerun_resumes(tmp_path: Path, signal_name: str) -> None:
    """Ctrl-C or SIGTERM (scancel of the driver's job) ends the trials at their next report, leaves them
    interrupted (not cancelled) and the journal consistent."""
    import signal
    import subprocess
    import time

    config = synthetic_config(tmp_path, params={"x": {"type": "uniform", "low": 0.0, "high": 1.0},
                                                "epochs": 9, "sleep": 0.5},
                              scheduler={"type": "fifo"}, budget={"max_trials": 6},
                              execution={"num_parallel_evals": 2})
    path = write_config(tmp_path, config)
    driver = subprocess.Popen([sys.executable, "-m", "hpc_hpo.cli", "run", str(path)], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pid_files = [tmp_path / "exp" / "trials" / t / "pid" for t in ("0000", "0001")]
    deadline = time.monotonic() + 30
    while not all(p.exists() and p.read_text() for p in pid_files) and time.monotonic() < deadline:
        time.sleep(0.05)
    driver.send_signal(getattr(signal, signal_name))
    _, stderr = driver.communicate(timeout=60)
    assert driver.returncode == {"SIGINT": 130, "SIGTERM": 143}[signal_name], stderr
    assert "Traceback" not in stderr and "resume" in stderr
    for pid_file in pid_files:
        pid = int(pid_file.read_text())
        assert not Path(f"/proc/{pid}").exists(), "a trial outlived the interrupted driver"
    events = [json.loads(line) for line in (tmp_path / "exp" / "journal.jsonl").read_text().splitlines()]
    assert events[-1]["type"] == "experiment_ended" and events[-1]["final"] is False
    assert not [e for e in events if e["type"] == "trial_ended"]
    assert {e["trial_id"] for e in events if e["type"] == "trial_interrupted"} == {"0000", "0001"}

    resumed = cli("run", str(path), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed experiment" in resumed.stdout
    events = [json.loads(line) for line in (tmp_path / "exp" / "journal.jsonl").read_text().splitlines()]
    created = [e["trial_id"] for e in events if e["type"] == "trial_created"]
    assert len(created) == len(set(created)) == 6
    assert events[-1]["type"] == "experiment_ended" and events[-1]["final"] is True
    again = cli("run", str(path), cwd=tmp_path)
    assert again.returncode == 0 and "already ended" in again.stdout


def test_changed_config_is_refused_on_resume(tmp_path: Path, run_experiment) -> None:
    assert run_experiment(budget={"max_trials": 2}).returncode == 0
    result = run_experiment(budget={"max_trials": 3}, scheduler={"reduction_factor": 2})
    assert result.returncode == 2
    assert "different config" in result.stderr and "scheduler" in result.stderr


def test_weighted_sum_of_metrics_is_the_objective(tmp_path: Path) -> None:
    # The synthetic trial reports 'loss'; the shell trial 'score'. Use the regex program's FoM twice over:
    # a program printing two metrics, combined as loss + 0.5 * (-(speed)) with speed to maximise.
    program = tmp_path / "two_metrics.py"
    program.write_text(
        "import sys\nfrom hpc_hpo import report\n"
        "x = float(sys.argv[sys.argv.index('--x') + 1])\n"
        "for epoch in range(1, 4):\n"
        "    report(epoch=epoch, error=round(x / epoch, 3), speed=round(10 * x, 3))\n")
    config = synthetic_config(
        tmp_path, command=[sys.executable, str(program)],
        params={"x": {"type": "uniform", "low": 0.0, "high": 1.0}},
        metric={"name": "objective", "mode": "min",
                "combine": [{"name": "error", "mode": "min", "weight": 1.0},
                            {"name": "speed", "mode": "max", "weight": 0.5}]},
        resource={"name": "epoch", "max": 3}, scheduler={"type": "fifo"}, budget={"max_trials": 3})
    result = cli("run", str(write_config(tmp_path, config)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = read_export(tmp_path)
    assert list(rows[0]) == ["trial_id", "resource", "objective", "elapsed_s", "decision", "x", "error", "speed",
                            "experiment_s", "unix_time"]
    assert len(rows) == 9
    for row in rows:
        expected = float(row["error"]) - 0.5 * float(row["speed"])  # speed is maximised: it enters negated
        assert abs(float(row["objective"]) - expected) < 1e-12
    best = json.loads(cli("best", str(tmp_path / "exp"), "--json", cwd=tmp_path).stdout)
    assert best["value"] == min(float(r["objective"]) for r in rows)


def test_pbt_exploits_good_checkpoints_and_explores(tmp_path: Path, run_experiment) -> None:
    result = run_experiment(params={"x": {"type": "uniform", "low": 0.0, "high": 1.0},
                                    "shape": {"type": "choice", "values": ["fast", "slow"]}, "epochs": 9},
                            scheduler={"type": "pbt", "perturbation_interval": 3, "population_size": 8,
                                       "quantile_fraction": 0.25, "resample_probability": 0.25},
                            budget={}, execution={"num_parallel_evals": 4, "stop_grace_period": 5})
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in (tmp_path / "exp" / "journal.jsonl").read_text().splitlines()]
    children = [e for e in events if e["type"] == "trial_created" and "parent" in e]
    assert children, "no trial was ever exploited"
    configs = {e["trial_id"]: e["config"] for e in events if e["type"] == "trial_created"}
    rows = read_export(tmp_path)
    for child in children:
        # The child starts from the parent's checkpoint at the pause level: its first report is one past it,
        # and the synthetic trial checked the checkpoint's epoch equals resume_from (else it exits 1).
        first = min(float(r["resource"]) for r in rows if r["trial_id"] == child["trial_id"])
        assert first == child["resume_from"] + 1
        assert child["config"] != configs[child["parent"]]  # explored
        assert 0.0 <= child["config"]["x"] <= 1.0
        replaced = [e for e in events if e["type"] == "trial_ended" and e["trial_id"] == child["replaces"]]
        assert replaced and replaced[0]["state"] == "stopped"
    assert not [e for e in events if e["type"] == "trial_ended" and e["state"] == "failed"]
    # Every member of the final population reached the maximum resource.
    completed = {r["trial_id"] for r in rows if r["decision"] == "complete"}
    assert len(completed) == 8
    assert max(float(r["resource"]) for r in rows) == 9



def test_bayesopt_runs_end_to_end(tmp_path: Path, run_experiment) -> None:
    result = run_experiment(searcher={"type": "bayesopt", "seed": 3, "num_init_random": 3, "num_candidates": 200},
                            scheduler={"type": "fifo"}, budget={"max_trials": 8},
                            execution={"num_parallel_evals": 2})
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in (tmp_path / "exp" / "journal.jsonl").read_text().splitlines()]
    configs = [e["config"] for e in events if e["type"] == "trial_created"]
    assert len(configs) == 8
    assert all(0.0 <= c["x"] <= 1.0 and c["shape"] in ("fast", "slow") and c["epochs"] == 9 for c in configs)
    assert len({(c["x"], c["shape"]) for c in configs}) == 8  # the model never proposes a config twice
