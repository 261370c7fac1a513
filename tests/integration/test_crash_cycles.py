"""Guarantee 1 of the README: kill -9 the driver at any moment, run it again, and nothing is lost or run twice."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from conftest import REPO, check_nothing_lost_or_doubled, cli, kill_restart_cycles, read_export, synthetic_config, write_config


def test_twenty_random_kills_of_the_driver_lose_nothing_and_run_nothing_twice(tmp_path: Path) -> None:
    config = synthetic_config(tmp_path, params={"x": {"type": "uniform", "low": 0.0, "high": 1.0},
                                                "shape": {"type": "choice", "values": ["fast", "slow"]},
                                                "epochs": 9, "sleep": 0.15},
                              budget={"max_trials": 30}, execution={"num_parallel_evals": 3})
    path = write_config(tmp_path, config)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    kill_restart_cycles([sys.executable, "-m", "hpc_hpo.cli", "run", str(path)], tmp_path, env,
                        tmp_path / "exp" / "journal.jsonl", cycles=20, seed=int.from_bytes(os.urandom(2), "big"))
    final = cli("run", str(path), cwd=tmp_path)
    assert final.returncode == 0, final.stderr
    check_nothing_lost_or_doubled(tmp_path / "exp", read_export(tmp_path), max_resource=9)
    # No process of any run outlives the experiment.
    for starts in (tmp_path / "exp" / "trials").glob("*/starts"):
        for line in starts.read_text().splitlines():
            stat = Path(f"/proc/{line.split()[1]}/stat")
            assert not stat.exists() or " Z " in stat.read_text(), f"{line} still runs"
