"""Time one suggest() of the GP searchers (bayesopt, mobster) against the number of observations, in a 6-D space.

    python benchmarks/gp_suggest.py                      (100, 250, 500, 1000, 2000 observations)
    python benchmarks/gp_suggest.py --sizes 100 1000 --repeats 3 --searchers mobster --out /tmp/gp.md

bayesopt: each observation is a random config with its Hartmann-6 loss, fed through the same
events the driver sends (created, report, end). "With refit" is the default setting
(opt_skip_period 1: the kernel hyperparameters are refit at every suggestion); "without refit"
reuses the hyperparameters of an earlier fit (refit skipping), so it times the posterior and the
acquisition alone.

mobster: the observations are rung reports of stopping ASHA (levels 1, 3, 9, 27): every trial
reports at 1, every third also at 3, every ninth at 9, every 27th at 27, with a multi-fidelity
Hartmann-6 loss; n counts reports, not trials. mobster refits only when the observations have
grown by 10% (so a run of 2,000 fits about 65 times), so three times are measured: a suggestion
between refits (most of them), one at which a refit happens, and the first suggestion of a
resumed driver, which recomputes the whole chain of fits once.

The tables go to stdout and, with the machine and versions, to --out.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import scipy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_average, machine  # noqa: E402

from hpc_hpo.searchers.bayesopt import BayesOptSearcher
from hpc_hpo.searchers.mobster import MobsterSearcher
from hpc_hpo.space import Param, Space, Uniform

SPACE = Space(tuple(Param(f"x{i}", Uniform(0.0, 1.0), None) for i in range(6)))
_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
               [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]])
_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                      [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])
_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
# An index far past the observations: suggestions there are model-based, and no refit turn
# comes up again when the skip period is this large.
_NEVER = 10**9


def hartmann6(config: dict) -> float:
    x = np.array([config[f"x{i}"] for i in range(6)])
    return float(-_ALPHA @ np.exp(-np.sum(_A * (x - _P) ** 2, axis=1)))


def searcher_with_history(n: int, refit: bool) -> BayesOptSearcher:
    """A searcher that has seen n finished trials; without refit, its hyperparameters are already fit."""
    options = {} if refit else {"opt_skip_init_length": 0, "opt_skip_period": _NEVER}
    searcher = BayesOptSearcher(SPACE, seed=0, points_to_evaluate=(), **options)
    rng = np.random.default_rng(n)
    for i in range(n):
        config = SPACE.sample(rng)
        searcher.on_trial_created(str(i), config)
        searcher.on_report(str(i), 1.0, hartmann6(config))
        searcher.on_trial_end(str(i))
    if not refit:
        searcher.suggest(_NEVER)  # index 0 mod the period: the one fit, untimed
    return searcher


def mobster_with_history(n: int) -> MobsterSearcher:
    """A mobster searcher that has seen n rung reports of ended trials, under stopping ASHA's proportions."""
    searcher = MobsterSearcher(SPACE, seed=0, points_to_evaluate=(), rung_levels=(1.0, 3.0, 9.0, 27.0))
    rng = np.random.default_rng(n)
    trial = 0
    while len(searcher.events) < n:
        config = SPACE.sample(rng)
        tid = str(trial)
        searcher.on_trial_created(tid, config)
        for level in (1.0, 3.0, 9.0, 27.0):
            if len(searcher.events) >= n or (level > 1 and trial % int(level) != 0):
                break
            searcher.on_report(tid, level, hartmann6(config) + (1.0 + 0.5 * np.sin(3 * sum(config.values()))) / level)
        searcher.on_trial_end(tid)
        trial += 1
    return searcher


def mobster_seconds(n: int, repeats: int) -> tuple[float, tuple[float, float], tuple[float, float]]:
    """(first suggestion of a resumed driver: every fit; median and min of suggestions with one refit;
    median and min of suggestions between refits)."""
    searcher = mobster_with_history(n)
    start = time.perf_counter()
    searcher.suggest(_NEVER)
    resumed = time.perf_counter() - start
    with_refit, without = [], []
    for r in range(repeats):
        searcher.fits.pop()  # the last checkpoint's fit is recomputed, warm-started from the one before
        start = time.perf_counter()
        searcher.suggest(_NEVER + 1 + r)
        with_refit.append(time.perf_counter() - start)
        start = time.perf_counter()
        searcher.suggest(_NEVER + 1 + repeats + r)
        without.append(time.perf_counter() - start)
    return resumed, (statistics.median(with_refit), min(with_refit)), (statistics.median(without), min(without))


def seconds(searcher: BayesOptSearcher, repeats: int) -> tuple[float, float]:
    """Median and minimum of `repeats` suggestions: the minimum shows what other load on the machine hid."""
    times = []
    for r in range(repeats):
        start = time.perf_counter()
        searcher.suggest(_NEVER + 1 + r)
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 250, 500, 1000, 2000])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--searchers", nargs="+", choices=["bayesopt", "mobster"], default=["bayesopt", "mobster"])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "docs" / "gp_benchmark.md")
    args = parser.parse_args()
    load_before = load_average()
    sections: list[str] = []
    if "bayesopt" in args.searchers:
        sections += bayesopt_section(args.sizes, args.repeats)
    if "mobster" in args.searchers:
        sections += mobster_section(args.sizes, args.repeats)
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0])] + sys.argv[1:])
    threads = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS") or "the default"
    report = [
        "# GP searchers: time of one suggest()",
        "",
        f"Measured {datetime.date.today().isoformat()} on {machine()}; Python {platform.python_version()}, "
        f"numpy {np.__version__}, scipy {scipy.__version__}; BLAS threads: {threads}. Load average "
        f"(1, 5, 15 min) before: {load_before}; after: {load_average()}.",
        "",
        f"Command: `{command}`",
        "",
        *sections,
        "Timings on a shared machine vary: a median well above its minimum means other processes "
        "were running during those repeats. On a machine whose cores are busy, a threaded BLAS makes "
        "the small matrices of a GP many times slower (set OPENBLAS_NUM_THREADS=1 there).",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(report))
    print(f"written to {args.out}")


def bayesopt_section(sizes: list[int], repeats: int) -> list[str]:
    rows = ["| observations | with refit: median (min), s | without refit: median (min), s |", "|---:|---:|---:|"]
    results = {}
    for n in sizes:
        with_refit = seconds(searcher_with_history(n, refit=True), repeats)
        without_refit = seconds(searcher_with_history(n, refit=False), repeats)
        results[n] = (with_refit[0], without_refit[0])
        rows.append(f"| {n} | {with_refit[0]:.3f} ({with_refit[1]:.3f}) "
                    f"| {without_refit[0]:.3f} ({without_refit[1]:.3f}) |")
        print(rows[-1] if len(rows) > 3 else "\n".join(rows), flush=True)
    return [
        "## bayesopt",
        "",
        "Space: 6 uniform parameters (Hartmann-6 losses of random configs), default options "
        "(num_candidates 2000, opt_nstarts 2, opt_maxiter 50). Median and minimum of "
        f"{repeats} suggestions. With refit: hyperparameters fit by L-BFGS-B at that "
        "suggestion (the default, opt_skip_period 1), on a random subset of at most 300 "
        "observations; without refit: hyperparameters reused (refit skipping). The posterior "
        "always conditions on every observation.",
        "",
        *rows,
        "",
        growth_sentence(results) + " The fit sees at most 300 observations, so its share stops "
        "growing beyond that; what keeps growing is the posterior: one O(n^3) Cholesky factor and "
        "O(n^2) work per candidate scored (about 2,600 per suggestion).",
        "",
    ]


def mobster_section(sizes: list[int], repeats: int) -> list[str]:
    rows = ["| observations (rung reports) | between refits: median (min), s | with a refit: median (min), s "
            "| first suggestion after a resume (all fits), s |", "|---:|---:|---:|---:|"]
    for n in sizes:
        resumed, with_refit, without = mobster_seconds(n, repeats)
        rows.append(f"| {n} | {without[0]:.3f} ({without[1]:.3f}) | {with_refit[0]:.3f} ({with_refit[1]:.3f}) "
                    f"| {resumed:.1f} |")
        print(rows[-1] if len(rows) > 3 else "\n".join(rows), flush=True)
    return [
        "## mobster",
        "",
        "Space: the same 6 parameters plus the resource, default options (num_candidates 500, opt_nstarts 2, "
        "opt_maxiter 50, max_size_data_for_model 300). Observations as in the docstring of "
        f"benchmarks/gp_suggest.py. Median and minimum of {repeats} suggestions. Above 300 observations "
        "the GP is fit on and conditioned on 300 of them (one per trial, its highest-resource report; "
        "then half the best of each rung, half the most recent), so the time per suggestion stops "
        "growing there; what still grows with n is building that subset (linear in n) and, after a "
        "resume, the number of fits in the chain (logarithmic in n).",
        "",
        *rows,
        "",
    ]


def growth_sentence(results: dict[int, tuple[float, float]]) -> str:
    """How the median time grows from the smallest to the largest size measured, in words."""
    sizes = sorted(results)
    small, large = sizes[0], sizes[-1]
    ratio = [results[large][k] / results[small][k] for k in (0, 1)]
    return (f"From {small} to {large} observations ({large / small:.0f}x the data) the median time with refit "
            f"grows {ratio[0]:.1f}x and without refit {ratio[1]:.1f}x.")


if __name__ == "__main__":
    main()
