"""Smoke runs of the benchmark scripts at tiny sizes, hpc_hpo side only (`--peers none`: the peers'
virtualenv is not installed in CI), so that the scripts keep working. The figures in
docs/benchmarks.md come from full runs (benchmarks/run_all.sh), never from these."""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
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
    run("scheduler_peers.py", "--trials", "60", "120", "--peers", "none", "--no-journal-per-report-above", "60",
        "--out", str(out), "--json", str(raw))
    results = json.loads(raw.read_text())
    assert set(results) == {"hpc_hpo", "hpc_hpo+journal", "hpc_hpo+journal/sweep"}
    for n in ("60", "120"):
        plain = results["hpc_hpo"][n]
        assert plain["reports"] > n_reports_floor(int(n)) and plain["mean_us"] > 0 and plain["p99_us"] >= plain["median_us"]
        # The stream's decisions follow DESIGN.md's rule, written independently: hpc_hpo must agree exactly.
        assert plain["agreement"] == 1.0
        assert results["hpc_hpo+journal/sweep"][n]["agreement"] == 1.0
    assert results["hpc_hpo+journal"]["60"]["mean_us"] > results["hpc_hpo"]["60"]["mean_us"], "fsync costs"
    assert "skipped" in results["hpc_hpo+journal"]["120"]
    text = section(out, "scheduler-peers")
    assert "| hpc_hpo StoppingAsha | 120 |" in text and "Peers: none" in text and "--peers none" in text
    assert "cores" in text and "Measured" in text
    assert "journal run stops above N = 60 (`--no-journal-per-report-above`)" in text, "the section states its caps"


def test_scheduler_peers_projects_and_skips_peers_above_the_cap():
    import scheduler_peers
    runs = {1000: {"wall_s": 1.0}, 10_000: {"wall_s": 100.0}}  # time grew as N^2
    seconds, how = scheduler_peers.projection(runs, 100_000)
    assert abs(seconds - 10_000.0) < 1e-6 and "N^2.00 from 1,000 to 10,000" in how
    assert scheduler_peers.projection({1000: {"wall_s": 2.0}}, 4000)[0] == 8.0, "one run: linear"
    flat = {1000: {"wall_s": 2.0}, 2000: {"wall_s": 1.0}}
    assert scheduler_peers.projection(flat, 4000)[0] == 2.0, "never projected to grow slower than N"
    assert scheduler_peers.peer_skip(runs, 100_000, 150.0).startswith("projected 10,000 s > 150 s")
    assert scheduler_peers.peer_skip(runs, 11_000, 150.0) is None
    cut = {1000: {"wall_s": 1.0}, 10_000: {"wall_s": 150.0, "truncated": True}}
    assert "stopped at the deadline at N = 10,000" in scheduler_peers.peer_skip(cut, 100_000, 150.0)
    args = argparse.Namespace(peer_full_up_to=10_000, peer_budget=150.0, no_journal_per_report_above=10_000)
    stated = " ".join(scheduler_peers.caps(args, with_peers=True))
    assert "every peer ran to the end at each N up to 10,000 (`--peer-full-up-to`)" in stated
    assert "within 150 s (`--peer-budget`)" in stated


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
    # The smallest train_mlp run that still goes through the loop: one method, two trial processes at
    # a time, each line read as printed, the run ended when the budget of 2 epochs is used. (The loop
    # is the same for every method; both hpc_hpo methods on the train_mlp space are checked in-process
    # by test_search_quality_methods_on_the_mlp_space.)
    run("search_quality.py", "--problems", "branin", "hartmann6", "mlp", "--seeds", "2", "--budget", "60",
        "--mlp-seeds", "1", "--mlp-budget", "2", "--mlp-methods", "hpc-random-asha", "--peers", "none", "--out",
        str(out), "--json", str(raw), "--png", str(tmp_path / "q.png"), timeout=240)
    results = json.loads(raw.read_text())
    hpc_methods = ("hpc-random-asha", "hpc-kde-asha", "hpc-mobster-asha")
    import search_quality
    for problem in ("branin", "hartmann6"):
        synthetic = [r for r in results if r["problem"] == problem]
        assert {(r["method"], r["seed"]) for r in synthetic} == {(m, s) for m in hpc_methods for s in (0, 1)}
        minimum = search_quality.SIMULATED[problem].minimum
        for r in synthetic:
            assert r["resource"][-1] == 60 and r["trials"] > 4, "the budget is spent, over several trials"
            assert all(a >= b for a, b in zip(r["best"], r["best"][1:])), "best so far never gets worse"
            assert r["regret"] >= 0 and r["best"][-1] >= minimum
    mlp = [r for r in results if r["problem"] == "mlp"]
    assert [r["method"] for r in mlp] == ["hpc-random-asha"], mlp
    assert all(0 <= r["best"][-1] < 0.9 and r["wall"][-1] > 0 for r in mlp), mlp
    for r in mlp:
        assert r["resource"][-1] == 2 and r["trials"] == len(r["trial_log"]) == 2, "two trials at a time"
        for log in r["trial_log"]:
            assert log["how"] in ("budget", "stopped at 1"), log
            assert all(log["spawn"] < t <= log["end"] for t in log["reports"]), log
        assert sorted(t for log in r["trial_log"] for t in log["reports"]) == r["wall"], "every line was read"
    text = section(out, "search-quality")
    synthetic_text, mlp_text = text.split("### train_mlp.py", 1)
    branin_text, hartmann_text = synthetic_text.split("### Multi-fidelity Hartmann-6", 1)
    for problem_text in (branin_text, hartmann_text):
        assert "| hpc_hpo random + ASHA | 2 |" in problem_text and "| hpc_hpo KDE + ASHA | 2 |" in problem_text
        assert "| hpc_hpo MOBSTER + ASHA | 2 |" in problem_text
        assert "| share of the budget to reach hpc_hpo random + ASHA's final best loss, median [IQR] |" in problem_text
    for problem in ("branin", "hartmann6"):
        # The baseline's best seed reaches the baseline's median final best loss within the budget.
        baseline = [r for r in results if r["problem"] == problem and r["method"] == search_quality.BASELINE]
        target = search_quality.baseline_target(results, problem)
        assert min(search_quality.resource_to_reach(r, target) for r in baseline) <= 60
    assert "| hpc_hpo random + ASHA | 1 |" in mlp_text and "KDE" not in mlp_text.split("Where the wall", 1)[0]
    breakdown = mlp_text.split("Where the wall time went", 1)[1]
    assert "| start-up s per trial |" in breakdown and "wall s less start-ups / 2 |" in breakdown
    assert "| hpc_hpo random + ASHA | 2 |" in breakdown, "two trials"


def test_search_quality_methods_on_the_mlp_space():
    """hpc_hpo's methods as search_quality.py drives them, on train_mlp's space (a choice, a log-int and
    two log-uniform parameters), long enough for the KDE searcher to sample from its model."""
    import search_quality
    for name in ("hpc-random-asha", "hpc-kde-asha", "hpc-mobster-asha"):
        method, stops = search_quality.make_method(name, "mlp", 0), 0
        for _ in range(40):
            tid, config = method.new_trial()
            assert config["batch_size"] in (16, 32, 64, 128, 256) and 8 <= config["width"] <= 256, config
            assert 1e-4 <= config["learning_rate"] <= 0.3 and 1e-6 <= config["alpha"] <= 1.0, config
            quality = abs(math.log10(config["learning_rate"]) + 2.5) + config["batch_size"] / 1000
            for epoch in range(1, search_quality.MAX_T + 1):
                if not method.report(tid, epoch, quality + 1 / epoch):
                    break
            stops += epoch < search_quality.MAX_T
            method.end(tid)
        assert stops > 20, f"{name}: ASHA stops most of 40 trials early"
        if name == "hpc-kde-asha":
            assert method.searcher.model_budget() is not None, "the last configs came from the KDE model"
        if name == "hpc-mobster-asha":
            assert method.searcher.fits, "the last configs came from the GP"


def test_search_quality_measures_the_resource_to_reach_the_baselines_final_best():
    import search_quality
    run_a = {"resource": [1, 2, 3, 4], "best": [5.0, 3.0, 2.0, 1.0]}
    run_b = {"resource": [1, 2, 3, 4], "best": [9.0, 9.0, 9.0, 9.0]}
    assert search_quality.resource_to_reach(run_a, 2.5) == 3.0
    assert search_quality.resource_to_reach(run_b, 2.5) == math.inf
    assert search_quality.share_text([2.0, 4.0, math.inf], 4) == "1.00 [0.75, >1]"
    results = [{"problem": "p", "method": search_quality.BASELINE, "best": [b]} for b in (3.0, 1.0, 2.0)]
    assert search_quality.baseline_target(results, "p") == 2.0 and search_quality.baseline_target(results, "q") is None


def test_search_quality_hartmann6_has_its_known_minimum_and_a_fading_bias():
    import search_quality
    optimum = dict(zip([f"x{i}" for i in range(1, 7)], [0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573]))
    assert abs(search_quality.hartmann6(optimum) - search_quality.HARTMANN6_MIN) < 1e-4
    rng = np.random.default_rng(0)
    for _ in range(20):
        config = {f"x{i}": float(rng.random()) for i in range(1, 7)}
        assert search_quality.hartmann6(config) >= search_quality.HARTMANN6_MIN
        biases = [search_quality.hartmann6_mf(config, r) - search_quality.hartmann6(config) for r in (1, 3, 27)]
        assert 0.5 - 1e-12 <= biases[0] <= 1.5 + 1e-12 and biases[0] > biases[1] > biases[2] > 0


def test_search_quality_interleaves_the_train_mlp_runs():
    import search_quality
    methods = ["a", "b", "c"]
    jobs = search_quality.jobs(["branin", "mlp"], {"branin": methods, "mlp": methods}, 20, 3)
    assert jobs[:3] == [("branin", m, list(range(20))) for m in methods]
    assert [(m, seeds) for _, m, seeds in jobs[3:]] == [("a", [0]), ("b", [0]), ("c", [0]), ("b", [1]), ("c", [1]),
                                                         ("a", [1]), ("c", [2]), ("a", [2]), ("b", [2])]


def test_search_quality_splits_a_runs_wall_time():
    import search_quality
    # Two trials at a time: one stopped after its first epoch, one completed in 27 epochs of 0.1 s.
    logs = [{"spawn": 0.0, "reports": [2.1], "end": 2.2, "how": "stopped at 1"},
            {"spawn": 0.0, "reports": [2.1 + 0.1 * k for k in range(27)], "end": 4.8, "how": "completed"}]
    split = search_quality.time_split({"trial_log": logs, "wall": [4.7], "method_s": 0.5}, workers=2)
    assert split["trials"] == 2 and split["stopped at 1"] == 1 and split["completed"] == 1
    assert abs(split["epoch_s"] - 0.1) < 1e-9 and abs(split["startup_per_trial"] - 2.0) < 1e-9
    assert abs(split["startup_total"] - 4.0) < 1e-9 and abs(split["wall_less_startups"] - 2.7) < 1e-9


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
