"""hpc_hpo.load() and the export's time columns, on a real local experiment."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import hpc_hpo
from hpc_hpo.errors import HpoError
from conftest import REPO, cli, read_export, read_journal, synthetic_config, write_config

# The stable columns, in their order (README, "Export format (stable)"), then the two added at the end.
STABLE = ["trial_id", "resource", "loss", "elapsed_s", "decision", "x", "shape", "epochs"]
TIMES = ["experiment_s", "unix_time"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float, float]:
    tmp_path = tmp_path_factory.mktemp("load")
    path = write_config(tmp_path, synthetic_config(tmp_path, budget={"max_trials": 8}))
    before = time.time()
    result = cli("run", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return tmp_path, before, time.time()


def created_at(experiment: Path) -> float:
    events = read_journal(experiment / "journal.jsonl")
    assert events[0]["type"] == "experiment_created"
    return events[0]["t"]


def test_export_gains_the_times_at_the_end(finished: tuple[Path, float, float]) -> None:
    tmp_path, before, after = finished
    rows = read_export(tmp_path)
    assert list(rows[0]) == STABLE + TIMES
    report_times = [e["t"] for e in read_journal(tmp_path / "exp" / "journal.jsonl") if e["type"] == "report"]
    assert [float(row["unix_time"]) for row in rows] == report_times  # the journal's own times, in its order
    origin = created_at(tmp_path / "exp")
    for row in rows:
        assert before <= float(row["unix_time"]) <= after
        assert float(row["experiment_s"]) == pytest.approx(float(row["unix_time"]) - origin, abs=1e-6)
        assert float(row["experiment_s"]) >= float(row["elapsed_s"]) - 1e-6  # a trial starts after the experiment


def test_load_gives_a_dataframe_like_the_export(finished: tuple[Path, float, float]) -> None:
    pandas = pytest.importorskip("pandas")
    tmp_path, _, _ = finished
    frame = hpc_hpo.load(tmp_path / "exp")
    assert isinstance(frame, pandas.DataFrame)
    assert list(frame.columns) == STABLE + TIMES
    rows = read_export(tmp_path)
    assert len(frame) == len(rows) > 8
    assert list(frame["trial_id"]) == [row["trial_id"] for row in rows]
    assert list(frame["decision"]) == [row["decision"] for row in rows]
    for column in ("resource", "loss", "elapsed_s", "x", "experiment_s", "unix_time"):
        assert pandas.api.types.is_numeric_dtype(frame[column]), column
        assert list(frame[column]) == pytest.approx([float(row[column]) for row in rows], rel=1e-12), column
    assert set(frame["shape"]) <= {"fast", "slow"}
    # One time axis for all trials: curves can be laid on it, e.g. the best loss over experiment time.
    assert frame["experiment_s"].is_monotonic_increasing
    # The config file reaches the same experiment, from any directory.
    assert hpc_hpo.load(str(tmp_path / "exp.yaml")).equals(frame)


def test_load_without_pandas_gives_plain_records(finished: tuple[Path, float, float]) -> None:
    tmp_path, _, _ = finished
    code = ("import json, sys; sys.modules['pandas'] = None\n"  # as if pandas were not installed
            "import hpc_hpo\n"
            f"records = hpc_hpo.load({str(tmp_path / 'exp')!r})\n"
            "print(json.dumps({'type': type(records).__name__, 'item': type(records[0]).__name__, "
            "'records': records}))\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["type"] == "list" and out["item"] == "dict"
    rows = read_export(tmp_path)
    assert len(out["records"]) == len(rows)
    for record, row in zip(out["records"], rows):
        assert list(record) == STABLE + TIMES
        assert record["trial_id"] == row["trial_id"] and record["decision"] == row["decision"]
        assert isinstance(record["loss"], float) and isinstance(record["epochs"], int)  # numbers stay numbers
        assert record["unix_time"] == float(row["unix_time"])


def test_load_of_something_else_says_what_to_give(tmp_path: Path) -> None:
    with pytest.raises(HpoError, match="not an experiment directory"):
        hpc_hpo.load(tmp_path)
