"""Smoke runs of the benchmark scripts at tiny sizes, hpc_hpo side only (`--peers none`: the peers'
virtualenv is not installed in CI), so that the scripts keep working. The figures in
docs/benchmarks.md come from full runs (benchmarks/run_all.sh), never from these."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "benchmarks"
sys.path.insert(0, str(BENCH))
import common  # noqa: E402


def run(script: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, check=False)
    assert done.returncode == 0, f"{script} failed:\n{done.stdout}\n{done.stderr}"
    return done


def section(path: Path, key: str) -> str:
    text = path.read_text()
    begin, end = f"<!-- benchmark:{key}:begin -->", f"<!-- benchmark:{key}:end -->"
    assert begin in text and end in text, text
    return text.split(begin, 1)[1].split(end, 1)[0]


def test_scheduler_overhead_against_peers_hpc_hpo_side(tmp_path):
    out, raw = tmp_path / "benchmarks.md", tmp_path / "raw.json"
    run("scheduler_peers.py", "--trials", "100", "200", "--peers", "none", "--no-journal-per-report-above", "100",
        "--out", str(out), "--json", str(raw))
    results = json.loads(raw.read_text())
    assert set(results) == {"hpc_hpo", "hpc_hpo+journal", "hpc_hpo+journal/sweep"}
    for n in ("100", "200"):
        plain = results["hpc_hpo"][n]
        assert plain["reports"] > n_reports_floor(int(n)) and plain["mean_us"] > 0 and plain["p99_us"] >= plain["median_us"]
        # The stream's decisions follow DESIGN.md's rule, written independently: hpc_hpo must agree exactly.
        assert plain["agreement"] == 1.0
        assert results["hpc_hpo+journal/sweep"][n]["agreement"] == 1.0
    assert results["hpc_hpo+journal"]["100"]["mean_us"] > results["hpc_hpo"]["100"]["mean_us"], "fsync costs"
    assert "skipped" in results["hpc_hpo+journal"]["200"]
    text = section(out, "scheduler-peers")
    assert "| hpc_hpo StoppingAsha | 200 |" in text and "Peers: none" in text and "--peers none" in text
    assert "cores" in text and "Measured" in text


def n_reports_floor(trials: int) -> int:
    """Every trial reports at least once."""
    return trials


def test_scheduler_peers_refuses_an_unknown_peer(tmp_path):
    done = subprocess.run([sys.executable, str(BENCH / "scheduler_peers.py"), "--peers", "hyperopt", "--out",
                           str(tmp_path / "x.md")], capture_output=True, text=True, cwd=REPO, check=False)
    assert done.returncode == 2 and "unknown peer 'hyperopt'" in done.stderr
    assert not (tmp_path / "x.md").exists()


def test_journal_and_lock(tmp_path):
    out, raw = tmp_path / "benchmarks.md", tmp_path / "raw.json"
    run("journal_lock.py", "--writers", "1", "4", "--duration", "0.25", "--replay-events", "5000",
        "--replay-repeats", "1", "--no-compare", "--out", str(out), "--json", str(raw), "--dir", str(tmp_path))
    results = json.loads(raw.read_text())
    assert [r["writers"] for r in results["writers"]] == [1, 4]
    for r in results["writers"]:
        assert r["appends"] > 0 and len(r["per_writer_appends"]) == r["writers"]
        assert 0 <= r["wait_p50_ms"] <= r["wait_p99_ms"] <= r["wait_max_ms"]
    replay = results["replay"][0]
    assert replay["streamed"] and 5000 <= replay["events"] < 5100 and replay["trials"] > 100 and replay["total_s"] > 0
    text = section(out, "journal-lock")
    assert "| hpc_hpo's Journal (blocking flock, fsync after unlock) | 4 |" in text and "Replay: 5,0" in text


def test_search_quality_hpc_hpo_methods(tmp_path):
    out, raw = tmp_path / "benchmarks.md", tmp_path / "raw.json"
    run("search_quality.py", "--problems", "branin", "mlp", "--seeds", "2", "--budget", "60", "--mlp-seeds", "1",
        "--mlp-budget", "3", "--peers", "none", "--out", str(out), "--json", str(raw), "--png",
        str(tmp_path / "q.png"))
    results = json.loads(raw.read_text())
    branin = [r for r in results if r["problem"] == "branin"]
    assert {(r["method"], r["seed"]) for r in branin} == {(m, s) for m in ("hpc-random-asha", "hpc-kde-asha")
                                                          for s in (0, 1)}
    for r in branin:
        assert r["resource"][-1] == 60 and r["trials"] > 4, "the budget is spent, over several trials"
        assert all(a >= b for a, b in zip(r["best"], r["best"][1:])), "best so far never gets worse"
        assert r["regret"] >= 0 and r["best"][-1] >= common.BRANIN_MIN
    mlp = [r for r in results if r["problem"] == "mlp"]
    assert len(mlp) == 2 and all(0 <= r["best"][-1] < 0.9 and r["wall"][-1] > 0 for r in mlp), mlp
    text = section(out, "search-quality")
    assert "| hpc_hpo random + ASHA | 2 |" in text and "| hpc_hpo KDE + ASHA | 1 |" in text


def test_search_quality_refuses_peers_none_with_a_peer_method(tmp_path):
    done = subprocess.run([sys.executable, str(BENCH / "search_quality.py"), "--peers", "none", "--methods",
                           "optuna-tpe-sha", "--out", str(tmp_path / "x.md")], capture_output=True, text=True,
                          cwd=REPO, check=False)
    assert done.returncode == 2 and "--peers none" in done.stderr


def test_write_section_replaces_only_its_own_section(tmp_path):
    path = tmp_path / "b.md"
    common.write_section("a", "## A\none", path)
    common.write_section("b", "## B\ntwo", path)
    common.write_section("a", "## A\nthree", path)
    text = path.read_text()
    assert "three" in text and "one" not in text and "two" in text
    assert text.index("## A") < text.index("## B"), "a section keeps its place"


@pytest.mark.parametrize("trials", [50, 400])
def test_stream_is_deterministic_and_keeps_32_running(trials):
    first, second = common.generate_stream(trials, 3), common.generate_stream(trials, 3)
    for key in first:
        assert (first[key] == second[key]).all()
    starts = int((first["kind"] == common.START).sum())
    ends = int((first["decision"] != common.CONTINUE).sum())
    assert starts == trials and ends == trials
    assert set(first["epoch"][first["kind"] == common.REPORT].tolist()) <= set(range(1, 28))
