"""benchmarks/search_quality_mo.py at a tiny size, hpc_hpo side only (`--peers none`), and its hypervolume
against values worked out by hand. The figures in docs/benchmarks.md come from the full run."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "benchmarks"
sys.path.insert(0, str(BENCH))
import search_quality_mo  # noqa: E402


def test_hypervolume_by_hand_and_of_the_true_front() -> None:
    # (1, 1) alone: 10 x 10 of the (11, 11) box; (0.5, 3) adds 0.5 x 8; (2, 2) is dominated; outside counts 0.
    assert search_quality_mo.hypervolume([(1, 1)]) == 100
    assert search_quality_mo.hypervolume([(1, 1), (2, 2), (0.5, 3), (12, 0)]) == 104
    front = [(i / 2000, 1 - math.sqrt(i / 2000)) for i in range(2001)]
    gap = search_quality_mo.TRUE_HYPERVOLUME - search_quality_mo.hypervolume(front)
    assert 0 < gap < 1e-3


def test_the_problem_reaches_zdt1_at_full_resource() -> None:
    x = [0.3, 0.1, 0.2, 0.0]
    assert search_quality_mo.zdt1_mf(x, search_quality_mo.MAX_T) == search_quality_mo.zdt1(x)
    low, high = search_quality_mo.zdt1_mf(x, 1), search_quality_mo.zdt1(x)
    assert low[0] > high[0] and low[1] > high[1]  # worse early on


def test_smoke_run_writes_its_section(tmp_path: Path) -> None:
    out, raw = tmp_path / "benchmarks.md", tmp_path / "raw.json"
    done = subprocess.run([sys.executable, str(BENCH / "search_quality_mo.py"), "--seeds", "2", "--budget", "300",
                           "--peers", "none", "--out", str(out), "--json", str(raw)],
                          capture_output=True, text=True, timeout=240, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    results = json.loads(raw.read_text())
    assert {(r["method"], r["seed"]) for r in results} == {(m, s) for m in ("hpc-random-moasha", "hpc-kde-moasha")
                                                           for s in (0, 1)}
    for r in results:
        assert r["trials"] > len(r["completed"]) > 0, "MO-ASHA stopped some trials and completed others"
        assert all(used <= 300 for used, _, _ in r["completed"])
    text = out.read_text()
    assert "<!-- benchmark:search-quality-mo:begin -->" in text and "| hpc_hpo random + MO-ASHA | 2 |" in text
