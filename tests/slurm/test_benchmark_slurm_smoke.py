"""Smoke runs of the live Slurm benchmarks at tiny sizes (about 45 s together), so that the scripts keep
working and their sections stay sane. The figures in docs/benchmarks.md come from full runs
(benchmarks/run_slurm.sh), never from these."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("slurm_cluster")
REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "benchmarks"


def run(script: str, *args: str) -> None:
    done = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True,
                          timeout=300, cwd=REPO, check=False)
    assert done.returncode == 0, f"{script} failed:\n{done.stdout}\n{done.stderr}"


def section(path: Path, key: str) -> str:
    text = path.read_text()
    begin, end = f"<!-- benchmark:{key}:begin -->", f"<!-- benchmark:{key}:end -->"
    assert text.count(begin) == 1 and text.count(end) == 1, text
    return text.split(begin, 1)[1].split(end, 1)[0]


def test_slurm_latency_tiny(tmp_path):
    out, raw = tmp_path / "benchmarks.md", tmp_path / "raw.json"
    run("slurm_latency.py", "--repeats", "1", "--trials", "5", "--out", str(out), "--json", str(raw))
    results = json.loads(raw.read_text())
    text = section(out, "slurm-latency")
    assert "Measured" in text and "cores" in text and "slurm" in text.lower() and "--trials 5" in text
    for mode in ("steps", "sbatch"):
        found = results[mode]
        # Every trial launched is timed; every stop the driver decided is timed to its reading.
        assert len(found["launch_popen"]) + len(found["launch_popen_first"]) == 5
        assert all(0 < v < 10 for v in found["launch_popen"] + found["launch_popen_first"])
        # A stop is read after its line was written, and the trial is gone after that.
        assert all(0 <= v < 5 for v in found["read"]) and all(0 < v < 10 for v in found["process"])
        gone = found["srun"] if mode == "steps" else found["job"]
        assert len(gone) == len(found["read"]), found
        assert all(0 < v < 10 for v in gone)
    assert len(results["bare"]["launch_popen"]) == 5
    rows = {line.split("|")[2].strip(): line.split("|")[3].strip() for line in text.splitlines()
            if line.startswith("| steps") or line.startswith("| sbatch")}
    assert rows["**step gone** (srun exited)"] == str(len(results["steps"]["srun"]))
    assert rows["**job gone** (batch and step slurmstepd exited)"] == str(len(results["sbatch"]["job"]))


def test_slurm_utilisation_tiny(tmp_path):
    out, raw = tmp_path / "benchmarks.md", tmp_path / "raw.json"
    run("slurm_utilisation.py", "--base", "0.4", "--max-t", "3", "--max-time", "6", "--out", str(out),
        "--json", str(raw))
    results = json.loads(raw.read_text())
    assert set(results) == {"asha", "promotion", "sh", "asha_packed"}
    # The packed case: one-GPU trials on the cluster's 16 GPUs, accounted per GPU slot.
    assert results["asha_packed"]["slots"] == 16 and results["asha"]["slots"] == 4
    text = section(out, "slurm-utilisation")
    assert "Measured" in text and "cores" in text and "--max-time 6" in text and "Target >= 95% for ASHA" in text
    for name, r in results.items():
        assert 0 < r["utilisation"] <= 1 and 0 < r["steady_utilisation"] <= 1, (name, r)
        assert r["runs"] >= r["trials"] >= 1 and r["wall_s"] > 0
        # Every node-second of 4 x wall is in exactly one category.
        assert r["accounted_node_s"] == pytest.approx(r["node_s"], rel=0.02), (name, r["split_node_s"])
        assert r["work_node_s"] == pytest.approx(r["split_node_s"]["work"])
    assert results["asha"]["runs"] == results["asha"]["trials"]  # stopping ASHA never resumes
    assert results["sh"]["trials"] == 3 and results["sh"]["runs"] == 4  # 3 configs at epoch 1, the best resumed to 3
    for label, name in (("stopping ASHA", "asha"), ("promotion ASHA", "promotion"),
                        ("synchronous successive halving", "sh"), ("stopping ASHA, one-GPU trials packed", "asha_packed")):
        cells = [c.strip() for c in next(line for line in text.splitlines()
                                         if line.startswith(f"| {label} | ")).split("|")[1:-1]]
        r = results[name]
        assert cells[1:3] == [str(r["trials"]), str(r["runs"])]
        assert re.fullmatch(r"\d+\.\d%", cells[7]) and float(cells[7][:-1]) == pytest.approx(100 * r["utilisation"], abs=0.06)


def test_elastic_drivers_tiny(tmp_path):
    out, raw = tmp_path / "benchmarks.md", tmp_path / "raw.json"
    run("elastic_drivers.py", "--drivers", "1", "4", "--max-time", "12", "--base", "0.3", "--out", str(out),
        "--json", str(raw))
    results = json.loads(raw.read_text())
    text = section(out, "elastic-drivers")
    assert "Measured" in text and "| 4 |" in text
    assert results["4"]["drivers_seen"] == 4, "not every element of the array joined"
    for drivers in ("1", "4"):
        latency = results[drivers]["latency_ms"]
        assert latency["total"]["n"] > 0 and 0 <= latency["lock_wait"]["median"] <= latency["total"]["p99"]
        assert 0 < results[drivers]["utilisation"] <= 1
