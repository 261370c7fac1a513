"""Runs named the old way are still found: a driver of the previous version tagged runs hpo-<id>-<trial>-<run>;
runs it left going when it died are re-adopted by the new driver (which names its own runs
<name>-<id>-<trial>-<run>), not started a second time. Real local processes, a real kill -9."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO, cli, read_journal, synthetic_config, write_config

# The previous version's driver: the same code with the old tag format.
OLD_DRIVER = """\
import sys
from hpc_hpo import cli
from hpc_hpo.driver import core
core.Driver._run_tag = lambda self, trial_id, run: f"hpo-{self.lease.experiment_id[:8]}-{trial_id}-{run}"
sys.exit(cli.main(sys.argv[1:]))
"""


def starts(trial_dir: Path) -> list[tuple[str, int]]:
    """(run tag, pid) of every process the trial's program was started as (synthetic_trial.py writes them)."""
    lines = (trial_dir / "starts").read_text().splitlines() if (trial_dir / "starts").exists() else []
    return [(tag, int(pid)) for tag, pid in (line.split() for line in lines)]


def test_runs_an_old_driver_tagged_the_old_way_are_re_adopted_and_new_runs_get_the_new_name(tmp_path: Path) -> None:
    config = synthetic_config(tmp_path, params={"x": {"type": "uniform", "low": 0.0, "high": 1.0},
                                                "epochs": 9, "sleep": 0.5},
                              scheduler={"type": "fifo"}, budget={"max_trials": 3},
                              execution={"num_parallel_evals": 2})
    path = write_config(tmp_path, config)
    old_driver = tmp_path / "old_driver.py"
    old_driver.write_text(OLD_DRIVER)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    driver = subprocess.Popen([sys.executable, str(old_driver), "run", str(path)], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    trials = tmp_path / "exp" / "trials"
    deadline = time.monotonic() + 60
    while not all(starts(trials / t) for t in ("0000", "0001")):
        assert time.monotonic() < deadline, "the old driver's trials never started"
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    old_tags = {t: starts(trials / t)[0][0] for t in ("0000", "0001")}
    assert all(tag.startswith("hpo-") for tag in old_tags.values()), old_tags

    resumed = cli("run", str(path), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.count("adopted") == 2, resumed.stdout
    for trial_id, tag in old_tags.items():
        assert [t for t, _ in starts(trials / trial_id)] == [tag], f"trial {trial_id} was started again"
    events = read_journal(tmp_path / "exp" / "journal.jsonl")
    ended = {e["trial_id"]: e["state"] for e in events if e["type"] == "trial_ended"}
    assert ended == {"0000": "finished", "0001": "finished", "0002": "finished"}, ended
    # The run the new driver started carries the experiment's name first.
    [(new_tag, _)] = starts(trials / "0002")
    assert new_tag.startswith("syntheti-") and new_tag.endswith("-0002-1"), new_tag
