"""Search quality at equal budget: hpc_hpo random, KDE and MOBSTER with ASHA, Optuna TPE + SuccessiveHalvingPruner,
Syne Tune ASHA and BOHB, on a multi-fidelity Branin and Hartmann-6 (simulated time) and on launchers/train_mlp.py
(real processes).

    python benchmarks/search_quality.py                                  (about 20 minutes on 2 cores)
    python benchmarks/search_quality.py --problems branin --seeds 3 --peers none --out /tmp/q.md   (smoke)

Every method runs through the same loop here, which plays the driver's part: W workers, a new trial
whenever one is free, every report given to the method, which says go on or stop; the run ends when
the trials together have used the resource budget. The methods:

- hpc-random-asha: hpc_hpo's RandomSearcher and StoppingAsha (grace 1, eta 3, max 27), called in
  the order the driver calls them (suggest, on_trial_created, next_action/on_start; on_report of
  scheduler then searcher; on_trial_end of both).
- hpc-kde-asha: the same with hpc_hpo's KdeSearcher (BOHB-style, searcher_data rungs).
- hpc-mobster-asha: the same with hpc_hpo's MobsterSearcher (one GP over config and log-resource,
  expected improvement at the full resource; searcher_data rungs; default options).
- optuna-tpe-sha: Optuna's ask/tell with TPESampler(seed) and SuccessiveHalvingPruner(min_resource 1,
  reduction_factor 3); trial.report + should_prune at each epoch, tell at the end.
- syne-asha: syne_tune.optimizer.baselines.ASHA (random search, grace 1, eta 3, max_t 27): suggest,
  on_trial_add, on_trial_result, on_trial_remove after a stop (as its Tuner does).
- syne-bohb: syne_tune.optimizer.baselines.BOHB (its KDE searcher on ASHA, same settings), driven
  the same way. (Syne Tune 0.16 has no MOBSTER baseline any more, so there is no peer GP here.)

Branin: loss(x, r) = branin(x) + (20 + 5 sin(x1 + x2)) / r (tests/unit/test_kde_searcher.py's
multi-fidelity Branin); Hartmann-6: loss(x, r) = hartmann6(x) + (1 + 0.5 sin(3 (x1 + ... + x6))) / r
on [0, 1]^6, built the same way (a bias fading as 1/r whose size depends on x). Both: 4 workers, an
epoch takes lognormal(0, 0.3) simulated seconds drawn from (seed, trial index, epoch), so every
method sees the same durations for its i-th trial; no process is started. train_mlp: each trial is a real `python launchers/train_mlp.py ...` process run
standalone (it prints "epoch N: accuracy A", unbuffered, and the loop reads each line as it is
printed), 2 at a time; a stopped trial's process is killed at once and a new one started; the loss
is 1 - validation accuracy; wall time is real, from the first trial's start to the report that
uses up the budget. Every method's worker process runs with one BLAS thread. The runs go seed by seed, the methods interleaved in an order rotated from one
seed to the next, so the machine's load falls on all of them alike. hpc_hpo's own driver (hpc-hpo
run) is not used, so every method pays the same launch costs. The peers run in
benchmarks/.venv-peers (this script spawns itself there with --worker).
"""
from __future__ import annotations

import argparse
import heapq
import json
import math
import os
import re
import selectors
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (BRANIN_MIN, DOCS, PEER_PYTHON, REPO, branin, branin_mf, command_line, header,  # noqa: E402
                    versions, write_section)

MAX_T, LEVELS = 27, [1, 3, 9, 27]
METHODS = ["hpc-random-asha", "hpc-kde-asha", "hpc-mobster-asha", "optuna-tpe-sha", "syne-asha", "syne-bohb"]
PEER_METHODS = {"optuna-tpe-sha", "syne-asha", "syne-bohb"}
LABELS = {"hpc-random-asha": "hpc_hpo random + ASHA", "hpc-kde-asha": "hpc_hpo KDE + ASHA",
          "hpc-mobster-asha": "hpc_hpo MOBSTER + ASHA",
          "optuna-tpe-sha": "Optuna TPE + SuccessiveHalvingPruner", "syne-asha": "Syne Tune ASHA",
          "syne-bohb": "Syne Tune BOHB"}
# The baseline of the "resource to reach" column: the share of the budget a method needs to reach
# the best loss this method has at the end of the budget.
BASELINE = "hpc-random-asha"

# The spaces: (name, kind, low, high) or (name, "choice", values).
SPACES = {
    "branin": [("x1", "uniform", -5.0, 10.0), ("x2", "uniform", 0.0, 15.0)],
    "hartmann6": [(f"x{i}", "uniform", 0.0, 1.0) for i in range(1, 7)],
    "mlp": [("learning_rate", "loguniform", 1e-4, 0.3), ("width", "lograndint", 8, 256),
            ("alpha", "loguniform", 1e-6, 1.0), ("batch_size", "choice", [16, 32, 64, 128, 256])],
}

# Hartmann-6 (Dixon and Szego 1978): minimum -3.32237 at (0.20169, 0.150011, 0.476874, 0.275332,
# 0.311652, 0.6573) in [0, 1]^6.
_H6_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
                  [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]])
_H6_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                         [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])
_H6_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
HARTMANN6_MIN = -3.32237


def hartmann6(config: dict[str, Any]) -> float:
    x = np.array([config[f"x{i}"] for i in range(1, 7)])
    return float(-_H6_ALPHA @ np.exp(-np.sum(_H6_A * (x - _H6_P) ** 2, axis=1)))


def hartmann6_mf(config: dict[str, Any], resource: float) -> float:
    """hartmann6(x) + (1 + 0.5 sin(3 (x1 + ... + x6))) / r: as for Branin, a bias that fades as 1/r and
    whose size depends on x, so that low rungs rank configs close to, not exactly as, the full resource
    (at r = 1 the bias spans 0.5 to 1.5, about what separates a good random config from a median one)."""
    total = sum(config[f"x{i}"] for i in range(1, 7))
    return hartmann6(config) + (1.0 + 0.5 * math.sin(3.0 * total)) / resource


@dataclass(frozen=True)
class Simulated:
    """A synthetic problem run in simulated time: its loss at (config, epoch), its full-fidelity function
    (the regret of the best config) and that function's minimum."""

    title: str
    loss: Callable[[dict[str, Any], float], float]
    truth: Callable[[dict[str, Any]], float]
    minimum: float


# The synthetic problems, by name: add one here (and its space in SPACES) to benchmark it.
SIMULATED = {
    "branin": Simulated("multi-fidelity Branin", lambda c, r: branin_mf(c["x1"], c["x2"], r),
                        lambda c: branin(c["x1"], c["x2"]), BRANIN_MIN),
    "hartmann6": Simulated("multi-fidelity Hartmann-6", hartmann6_mf, hartmann6, HARTMANN6_MIN),
}
PROBLEMS = [*SIMULATED, "mlp"]


# --------------------------------------------------------------------------- the methods


class HpcMethod:
    def __init__(self, problem: str, seed: int, searcher: str) -> None:
        from hpc_hpo.config import validate_config
        from hpc_hpo.schedulers import make_scheduler
        from hpc_hpo.searchers import make_searcher
        params = {}
        for spec in SPACES[problem]:
            if spec[1] == "choice":
                params[spec[0]] = {"type": "choice", "values": spec[2]}
            else:
                params[spec[0]] = {"type": spec[1], "low": spec[2], "high": spec[3]}
        config = validate_config({
            "name": "quality", "command": "true", "params": params,
            "metric": {"name": "loss", "mode": "min"}, "resource": {"name": "epoch", "max": MAX_T},
            "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 3},
            "searcher": {"type": searcher, "seed": seed}, "budget": {"max_trials": 100000}}, check_program=False)
        self.scheduler, self.searcher = make_scheduler(config), make_searcher(config)
        self.index = 0

    def new_trial(self) -> tuple[str, dict[str, Any]]:
        tid = f"{self.index:05d}"
        config = self.searcher.suggest(self.index)
        self.searcher.on_trial_created(tid, config)
        action = self.scheduler.next_action(self.index)
        self.scheduler.on_start(tid, action)
        self.index += 1
        return tid, config

    def report(self, tid: str, epoch: int, loss: float) -> bool:
        from hpc_hpo.schedulers.base import Decision
        outcome = self.scheduler.on_report(tid, epoch, loss)
        self.searcher.on_report(tid, epoch, loss)
        return outcome.decision == Decision.CONTINUE

    def end(self, tid: str) -> None:
        self.scheduler.on_trial_end(tid)
        self.searcher.on_trial_end(tid)


class OptunaMethod:
    def __init__(self, problem: str, seed: int) -> None:
        import optuna
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.optuna, self.space = optuna, SPACES[problem]
        self.study = optuna.create_study(
            direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed),
            pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3,
                                                          min_early_stopping_rate=0))
        self.trials: dict[str, Any] = {}
        self.last: dict[str, tuple[int, float]] = {}

    def new_trial(self) -> tuple[str, dict[str, Any]]:
        trial = self.study.ask()
        config: dict[str, Any] = {}
        for spec in self.space:
            name, kind = spec[0], spec[1]
            if kind == "choice":
                config[name] = trial.suggest_categorical(name, spec[2])
            elif kind in ("uniform", "loguniform"):
                config[name] = trial.suggest_float(name, spec[2], spec[3], log=kind == "loguniform")
            else:
                config[name] = trial.suggest_int(name, spec[2], spec[3], log=kind == "lograndint")
        tid = str(trial.number)
        self.trials[tid] = trial
        return tid, config

    def report(self, tid: str, epoch: int, loss: float) -> bool:
        trial = self.trials[tid]
        trial.report(loss, epoch)
        self.last[tid] = (epoch, loss)
        if epoch >= MAX_T:
            return False
        return not trial.should_prune()

    def end(self, tid: str) -> None:
        trial = self.trials.pop(tid)
        epoch, loss = self.last.pop(tid, (0, None))
        if epoch >= MAX_T:
            self.study.tell(trial, loss)
        else:
            self.study.tell(trial, state=self.optuna.trial.TrialState.PRUNED)


class SyneMethod:
    def __init__(self, problem: str, seed: int, baseline: str = "ASHA") -> None:
        from datetime import datetime
        from syne_tune import config_space as cs
        from syne_tune.backend.trial_status import Trial
        from syne_tune.optimizer import baselines
        from syne_tune.optimizer.scheduler import SchedulerDecision
        space: dict[str, Any] = {"epochs": MAX_T}
        for spec in SPACES[problem]:
            name, kind = spec[0], spec[1]
            space[name] = cs.choice(spec[2]) if kind == "choice" else getattr(cs, kind)(spec[2], spec[3])
        self.scheduler = getattr(baselines, baseline)(space, metric="loss", time_attr="epoch", max_t=MAX_T, do_minimize=True,
                              random_seed=seed, grace_period=1, reduction_factor=3)
        self.Trial, self.STOP, self.now = Trial, SchedulerDecision.STOP, datetime.now()
        self.trials: dict[str, Any] = {}
        self.index = 0
        np.random.seed(seed)  # its bracket draw uses numpy's global generator

    def new_trial(self) -> tuple[str, dict[str, Any]]:
        suggestion = self.scheduler.suggest()
        config = {k: v for k, v in suggestion.config.items() if k != "epochs"}
        trial = self.Trial(trial_id=self.index, config=suggestion.config, creation_time=self.now)
        self.scheduler.on_trial_add(trial)
        tid = str(self.index)
        self.trials[tid] = trial
        self.index += 1
        return tid, config

    def report(self, tid: str, epoch: int, loss: float) -> bool:
        decision = self.scheduler.on_trial_result(self.trials[tid], {"epoch": epoch, "loss": loss})
        return epoch < MAX_T and decision != self.STOP

    def end(self, tid: str) -> None:
        self.scheduler.on_trial_remove(self.trials.pop(tid))


def make_method(name: str, problem: str, seed: int):
    if name == "hpc-random-asha":
        return HpcMethod(problem, seed, "random")
    if name == "hpc-kde-asha":
        return HpcMethod(problem, seed, "kde")
    if name == "hpc-mobster-asha":
        return HpcMethod(problem, seed, "mobster")
    if name == "optuna-tpe-sha":
        return OptunaMethod(problem, seed)
    if name == "syne-asha":
        return SyneMethod(problem, seed)
    if name == "syne-bohb":
        return SyneMethod(problem, seed, "BOHB")
    raise ValueError(name)


# --------------------------------------------------------------------------- the loops


class Trace:
    """Best loss so far against resource used and wall time; one point per report. For train_mlp also
    one record per trial process (spawn, report and end times, how it ended), to see where the wall
    time went, and the seconds spent inside the method's own calls."""

    def __init__(self) -> None:
        self.resource, self.wall, self.best = [], [], []
        self.best_config: dict[str, Any] | None = None
        self.used = 0
        self.trials = 0
        self.method_s = 0.0
        self.trial_log: list[dict[str, Any]] = []

    def add(self, loss: float, wall: float, config: dict[str, Any]) -> None:
        self.used += 1
        if not self.best or loss < self.best[-1]:
            self.best_config = dict(config)
            best = loss
        else:
            best = self.best[-1]
        self.resource.append(self.used), self.wall.append(wall), self.best.append(best)

    def call(self, function, *args):
        """Call one of the method's functions, adding its time to method_s."""
        t0 = time.perf_counter()
        try:
            return function(*args)
        finally:
            self.method_s += time.perf_counter() - t0


def run_simulated(method, problem: Simulated, seed: int, budget: int, workers: int) -> Trace:
    """Simulated time: an event queue of the next report of each running trial."""
    trace = Trace()
    heap: list[tuple[float, int, str]] = []
    running: dict[str, tuple[dict[str, Any], int, int]] = {}  # tid -> (config, index, epoch)
    now, started = 0.0, 0

    def duration(index: int, epoch: int) -> float:
        return float(np.random.default_rng([seed, index, epoch]).lognormal(0.0, 0.3))

    def start() -> None:
        nonlocal started
        tid, config = trace.call(method.new_trial)
        running[tid] = (config, started, 0)
        heapq.heappush(heap, (now + duration(started, 1), started, tid))
        started += 1

    for _ in range(workers):
        start()
    while heap and trace.used < budget:
        now, _, tid = heapq.heappop(heap)
        config, index, epoch = running[tid]
        epoch += 1
        loss = problem.loss(config, epoch)
        trace.add(loss, now, config)
        goes_on = trace.call(method.report, tid, epoch, loss)
        if goes_on:
            running[tid] = (config, index, epoch)
            heapq.heappush(heap, (now + duration(index, epoch + 1), index, tid))
            continue
        trace.call(method.end, tid)
        del running[tid]
        if trace.used < budget:
            start()
    trace.trials = started
    return trace


LINE = re.compile(r"^epoch (\d+): accuracy ([0-9.]+)")


def trial_environment() -> dict[str, str]:
    """The trial processes' environment: unbuffered output, so that each epoch's line reaches the loop
    when it is printed (with a block-buffered pipe a trial's lines would all arrive when it exits,
    after its last epoch, and a stopped trial would have run every epoch before it is stopped), one
    BLAS thread each, and no hpc_hpo trial variables, so train_mlp.py runs standalone."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPC_HPO_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["OMP_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def worker_environment() -> dict[str, str]:
    """Every method's worker runs with one BLAS thread: on a shared 2-core machine a threaded BLAS
    spends most of its time waiting for cores on the small matrices of a GP or a KDE (a 113 x 113
    Cholesky solve measured 23 ms with the default threads under load, 0.8 ms with one)."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] = env["MKL_NUM_THREADS"] = "1"
    return env


def run_mlp(method, seed: int, budget: int, workers: int, python: str) -> Trace:
    """Real processes of launchers/train_mlp.py, `workers` at a time; losers are killed.

    Each pipe is read with os.read as soon as the selector says it has bytes, and split into lines
    here, so no line waits in a file object's buffer while the selector sees an empty pipe."""
    trace = Trace()
    selector = selectors.DefaultSelector()
    running: dict[str, dict[str, Any]] = {}  # tid -> proc, config, unread bytes, log
    env = trial_environment()
    t0 = time.perf_counter()

    def start() -> None:
        tid, config = trace.call(method.new_trial)
        argv = [python, str(REPO / "launchers" / "train_mlp.py"), "--epochs", str(MAX_T)]
        for name, value in config.items():
            argv += [f"--{name}", str(value)]
        spawn = time.perf_counter() - t0
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, bufsize=0)
        running[tid] = {"proc": proc, "config": config, "unread": b"",
                        "log": {"spawn": spawn, "reports": [], "end": None, "how": None}}
        selector.register(proc.stdout, selectors.EVENT_READ, tid)
        trace.trials += 1

    def finish(tid: str, how: str) -> None:
        trial = running.pop(tid)
        proc = trial["proc"]
        selector.unregister(proc.stdout)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
        trial["log"]["end"], trial["log"]["how"] = time.perf_counter() - t0, how
        trace.trial_log.append(trial["log"])
        trace.call(method.end, tid)

    def fill() -> None:
        while len(running) < workers and trace.used < budget:
            start()

    fill()
    while running and trace.used < budget:
        for key, _ in selector.select(timeout=1.0):
            tid = key.data
            if tid not in running or trace.used >= budget:
                continue
            trial = running[tid]
            data = os.read(key.fd, 65536)
            if not data:  # the process ended on its own
                finish(tid, "exited")
                continue
            *lines, trial["unread"] = (trial["unread"] + data).split(b"\n")
            for line in lines:
                match = LINE.match(line.decode(errors="replace"))
                if not match:
                    continue
                epoch, loss = int(match.group(1)), 1.0 - float(match.group(2))
                trace.add(loss, time.perf_counter() - t0, trial["config"])
                trial["log"]["reports"].append(trace.wall[-1])
                goes_on = trace.call(method.report, tid, epoch, loss)
                if goes_on and trace.used < budget:
                    continue
                finish(tid, "budget" if goes_on else "completed" if epoch >= MAX_T else f"stopped at {epoch}")
                break
        fill()
    for tid in list(running):
        finish(tid, "budget")
    trace.trial_log.sort(key=lambda log: log["spawn"])
    return trace


def worker(problem: str, method_name: str, seeds: list[int], budget: int, workers: int, python: str) -> list[dict]:
    out = []
    for seed in seeds:
        method = make_method(method_name, problem, seed)
        t0 = time.perf_counter()
        if problem in SIMULATED:
            trace = run_simulated(method, SIMULATED[problem], seed, budget, workers)
        else:
            trace = run_mlp(method, seed, budget, workers, python)
        result = {"method": method_name, "problem": problem, "seed": seed, "resource": trace.resource,
                  "wall": trace.wall, "best": trace.best, "trials": trace.trials, "best_config": trace.best_config,
                  "seconds": time.perf_counter() - t0, "method_s": trace.method_s, "trial_log": trace.trial_log}
        if problem in SIMULATED and trace.best_config:
            result["regret"] = SIMULATED[problem].truth(trace.best_config) - SIMULATED[problem].minimum
        out.append(result)
        print(f"  {problem} {method_name} seed {seed}: best {trace.best[-1]:.4f} after {trace.used} resource, "
              f"{trace.trials} trials, {result['seconds']:.1f} s", file=sys.stderr, flush=True)
    return out


# --------------------------------------------------------------------------- summary, table and plot


def best_at(result: dict, resource: float) -> float:
    """The best loss once `resource` has been used (inf before the first report)."""
    index = np.searchsorted(np.array(result["resource"]), resource, side="right") - 1
    return float(result["best"][index]) if index >= 0 else math.inf


def quantiles(values: list[float]) -> tuple[float, float, float]:
    a = np.array(values, dtype=float)
    return float(np.median(a)), float(np.percentile(a, 25)), float(np.percentile(a, 75))


def resource_to_reach(result: dict, target: float) -> float:
    """The resource used when the best loss first reached `target` (inf if it never did)."""
    hits = np.nonzero(np.array(result["best"]) <= target)[0]
    return float(result["resource"][hits[0]]) if len(hits) else math.inf


def baseline_target(results: list[dict], problem: str) -> float | None:
    """The baseline's final best loss, median over seeds (None when the baseline did not run)."""
    finals = [r["best"][-1] for r in results if r["problem"] == problem and r["method"] == BASELINE]
    return float(np.median(finals)) if finals else None


def share_text(values: list[float], budget: int) -> str:
    """Median [IQR] of resources as shares of the budget; '>1' where the budget was not enough."""
    def one(v: float) -> str:
        return f"{v / budget:.2f}" if v <= budget else ">1"
    finite = [min(v, 2.0 * budget) for v in values]  # inf (never reached) sorts last without NaN arithmetic
    m, lo, hi = (float(np.percentile(finite, q)) for q in (50, 25, 75))
    return f"{one(m)} [{one(lo)}, {one(hi)}]"


# Issue 17's bar: hpc_hpo's multi-fidelity model-based method against Optuna TPE + SuccessiveHalvingPruner.
CANDIDATE, RIVAL = "hpc-mobster-asha", "optuna-tpe-sha"


def verdict(results: list[dict], problem: str, budget: int) -> str | None:
    """One sentence: the candidate against the rival in median regret (synthetic problems) and median
    best loss at the budget (lower is better), and the share of the budget it needs to reach the
    baseline's final best loss (target: at most half); None unless both ran."""
    mine = [r for r in results if r["problem"] == problem and r["method"] == CANDIDATE]
    theirs = [r for r in results if r["problem"] == problem and r["method"] == RIVAL]
    target = baseline_target(results, problem)
    if not mine or not theirs or target is None:
        return None

    def compare(what: str, a: float, b: float) -> str:
        word = "better than" if a < b else "equal to" if a == b else "worse than"
        return f"{what} {a:.4g} against {b:.4g} ({word} {LABELS[RIVAL]})"

    parts = []
    if problem in SIMULATED:
        parts.append(compare("median regret of the best config", float(np.median([r["regret"] for r in mine])),
                             float(np.median([r["regret"] for r in theirs]))))
    offset = SIMULATED[problem].minimum if problem in SIMULATED else 0.0
    parts.append(compare("median best loss at the budget" + (" (minus the minimum)" if offset else ""),
                         float(np.median([r["best"][-1] for r in mine])) - offset,
                         float(np.median([r["best"][-1] for r in theirs])) - offset))
    share = float(np.median([min(resource_to_reach(r, target), 2.0 * budget) for r in mine])) / budget
    reached = f"{share:.2f} of the budget" if share <= 1 else "more than the budget"
    parts.append(f"it reaches {LABELS[BASELINE]}'s final best loss after {reached} (median; the target is at most "
                 f"0.5: {'met' if share <= 0.5 else 'missed'})")
    return f"**{LABELS[CANDIDATE]}**: " + "; ".join(parts) + "."


def table(results: list[dict], problem: str, budget: int, methods: list[str]) -> list[str]:
    fractions = [0.1, 0.25, 0.5, 1.0]
    simulated = SIMULATED.get(problem)
    offset = simulated.minimum if simulated else 0.0
    what = "best loss - minimum" if simulated else "best 1 - validation accuracy"
    target = baseline_target(results, problem)
    rows = [f"| method | seeds | {' | '.join(f'{what} at {int(f * budget)} resource (median [IQR])' for f in fractions)} "
            f"| trials (median) | {'regret of the best config, median [IQR]' if simulated else 'wall s at budget (median [IQR])'} "
            f"| share of the budget to reach {LABELS[BASELINE]}'s final best loss, median [IQR] |",
            "|---|---:|" + "---:|" * len(fractions) + "---:|---:|---:|"]
    for method in methods:
        mine = [r for r in results if r["problem"] == problem and r["method"] == method]
        if not mine:
            continue
        cells = []
        for f in fractions:
            m, lo, hi = quantiles([best_at(r, f * budget) - offset for r in mine])
            cells.append(f"{m:.4f} [{lo:.4f}, {hi:.4f}]")
        trials = float(np.median([r["trials"] for r in mine]))
        if simulated:
            m, lo, hi = quantiles([r["regret"] for r in mine])
            last = f"{m:.4f} [{lo:.4f}, {hi:.4f}]"
        else:
            m, lo, hi = quantiles([r["wall"][-1] for r in mine])
            last = f"{m:.0f} [{lo:.0f}, {hi:.0f}]"
        reach = share_text([resource_to_reach(r, target) for r in mine], budget) if target is not None else "-"
        rows.append(f"| {LABELS[method]} | {len(mine)} | {' | '.join(cells)} | {trials:g} | {last} | {reach} |")
    return rows


def time_split(result: dict, workers: int) -> dict[str, float]:
    """Where one train_mlp run's wall time went, from its trial records.

    A trial's start-up is the time from its spawn to its first report less one of its epochs (its
    mean time between reports, or the run's median epoch for a trial with one report): the
    interpreter, the imports (scikit-learn) and loading the data. A trial killed before its first
    report spent all of its life starting up."""
    logs = result["trial_log"]
    per_epoch = [(log["reports"][-1] - log["reports"][0]) / (len(log["reports"]) - 1) for log in logs
                 if len(log["reports"]) >= 2]
    typical = float(np.median(per_epoch)) if per_epoch else 0.0
    startups = []
    for log in logs:
        reports = log["reports"]
        if not reports:
            startups.append(log["end"] - log["spawn"])
            continue
        epoch = (reports[-1] - reports[0]) / (len(reports) - 1) if len(reports) >= 2 else typical
        startups.append(max(reports[0] - log["spawn"] - epoch, 0.0))
    lifetimes = sum(log["end"] - log["spawn"] for log in logs)
    wall = result["wall"][-1]
    out = {"trials": len(logs), "epochs_per_trial": float(np.mean([len(log["reports"]) for log in logs])),
           "startup_per_trial": float(np.median([s for s, log in zip(startups, logs) if log["reports"]] or [0.0])),
           "startup_total": float(sum(startups)), "after_startup_total": lifetimes - float(sum(startups)),
           "epoch_s": typical, "method_s": result["method_s"], "wall": wall,
           "wall_less_startups": wall - float(sum(startups)) / workers}
    for how in ENDINGS:
        out[how] = sum(1 for log in logs if log["how"] == how)
    return out


ENDINGS = ["stopped at 1", "stopped at 3", "stopped at 9", "completed", "budget"]


def time_table(results: list[dict], methods: list[str], workers: int) -> list[str]:
    """Medians over seeds of where each method's train_mlp runs spent their wall time."""
    rows = ["| method | trials | epochs per trial (mean) | trials stopped at epoch 1 / 3 / 9, completed, cut at the "
            "budget | start-up s per trial | start-up s, all trials | trial s after start-up, all trials | "
            "s in the method's calls | wall s at budget | wall s less start-ups / " + str(workers) + " |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for method in methods:
        splits = [time_split(r, workers) for r in results if r["problem"] == "mlp" and r["method"] == method]
        if not splits:
            continue
        m = {key: float(np.median([s[key] for s in splits])) for key in splits[0]}
        endings = " / ".join(f"{m[how]:g}" for how in ENDINGS[:3]) + f", {m['completed']:g}, {m['budget']:g}"
        rows.append(f"| {LABELS[method]} | {m['trials']:g} | {m['epochs_per_trial']:.1f} | {endings} | "
                    f"{m['startup_per_trial']:.2f} | {m['startup_total']:.0f} | {m['after_startup_total']:.0f} | "
                    f"{m['method_s']:.1f} | {m['wall']:.1f} | {m['wall_less_startups']:.1f} |")
    return rows


def plot(results: list[dict], budgets: dict[str, int], methods: list[str], png: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [(p, axis) for p in budgets for axis in (("resource",) if p in SIMULATED else ("resource", "wall"))]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), squeeze=False)
    for ax, (problem, axis) in zip(axes[0], panels):
        offset = SIMULATED[problem].minimum if problem in SIMULATED else 0.0
        for method in methods:
            mine = [r for r in results if r["problem"] == problem and r["method"] == method]
            if not mine:
                continue
            if axis == "resource":
                grid = np.linspace(1, budgets[problem], 200)
                curves = np.array([[best_at(r, x) - offset for x in grid] for r in mine])
            else:
                end = max(r["wall"][-1] for r in results if r["problem"] == problem)
                grid = np.linspace(0, end, 200)
                curves = np.array([[float(r["best"][i]) if (i := np.searchsorted(r["wall"], x, side="right") - 1) >= 0
                                    else np.nan for x in grid] for r in mine]) - offset
            # Drawn only where every seed has reported (nan before that), so the median never jumps
            # between different sets of seeds.
            median = np.median(curves, axis=0)
            lo, hi = np.percentile(curves, 25, axis=0), np.percentile(curves, 75, axis=0)
            ax.plot(grid, median, label=LABELS[method])
            ax.fill_between(grid, lo, hi, alpha=0.2)
        ax.set_yscale("log")
        ax.set_xlabel("total resource (epochs)" if axis == "resource" else "wall time (s)")
        ax.set_ylabel("best loss - minimum" if problem in SIMULATED else "best 1 - accuracy")
        seeds = len({r["seed"] for r in results if r["problem"] == problem})
        title = SIMULATED[problem].title if problem in SIMULATED else "train_mlp.py (digits)"
        ax.set_title(f"{title}, {seeds} seeds")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def wall_time_text(results: list[dict], methods: list[str], workers: int) -> list[str]:
    """The train_mlp wall-time breakdown: a paragraph with the measured start-up and epoch times, and the table."""
    splits = [time_split(r, workers) for r in results if r["problem"] == "mlp"]
    startup = float(np.median([s["startup_per_trial"] for s in splits]))
    epoch = float(np.median([s["epoch_s"] for s in splits]))
    startups = sum(s["startup_total"] for s in splits)
    share = startups / max(startups + sum(s["after_startup_total"] for s in splits), 1e-9)
    if share >= 0.5:
        consequence = ("So at an equal budget of epochs a method's wall time follows the number of trials it "
                       "starts, each paying one start-up, more than the epochs it trains.")
    else:
        consequence = "So the wall time follows the epochs trained more than the number of trials started."
    return [f"Where the wall time went (medians over seeds). Every trial is a new Python process that imports "
            f"scikit-learn and loads the digits before its first epoch: that start-up took a median {startup:.2f} s "
            f"per trial here, an epoch a median {epoch:.2f} s, and start-ups were {share:.0%} of the time the trial "
            f"processes ran. {consequence} How many trials fit in the budget is the methods' own doing: their "
            "stopping rules (the column of trials stopped at epoch 1, 3 and 9: hpc_hpo's ASHA stops a trial at a "
            "rung when its value is worse than the interpolated 1/eta quantile of the values recorded there "
            "before it, Syne Tune's when more than 1/eta of the n values there, its own included, are better "
            "than it, Optuna's pruner unless it is among the best max(1, floor(n/eta)) of the n values there, "
            "its own included) and their samplers (a config with small batches and wide "
            "layers takes longer per epoch). The loop charges every method alike: the same processes, "
            f"{workers} at a time, each line read as it is printed, a stopped trial killed at once. A trial's "
            "start-up is measured as the time from its spawn to its first report less one of its epochs; the "
            f"last column takes all start-ups out of the wall time, spread over the {workers} trials that run at "
            "a time; \"s in the method's calls\" is the loop's time inside the method (suggest, report, end).",
            "", *time_table(results, methods, workers), ""]


def jobs(problems: list[str], methods: dict[str, list[str]], branin_seeds: int,
         mlp_seeds: int) -> list[tuple[str, str, list[int]]]:
    """The worker runs, in order: Branin (simulated time) one worker per method for all its seeds;
    train_mlp (real wall time) one worker per seed and method, the methods interleaved and their
    order rotated from seed to seed, so a change in the machine's load falls on every method alike."""
    out: list[tuple[str, str, list[int]]] = []
    for problem in problems:
        if problem in SIMULATED:
            out += [(problem, method, list(range(branin_seeds))) for method in methods[problem]]
            continue
        for seed in range(mlp_seeds):
            shift = seed % len(methods[problem])
            out += [(problem, method, [seed]) for method in methods[problem][shift:] + methods[problem][:shift]]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="+", default=PROBLEMS, choices=PROBLEMS)
    parser.add_argument("--seeds", type=int, default=20, help="seeds for the synthetic problems")
    parser.add_argument("--mlp-seeds", type=int, default=5)
    parser.add_argument("--budget", type=int, default=1000, help="synthetic problems: total epochs per run")
    parser.add_argument("--mlp-budget", type=int, default=108, help="train_mlp: total epochs per run")
    parser.add_argument("--workers", type=int, default=4, help="synthetic problems: trials at a time")
    parser.add_argument("--mlp-workers", type=int, default=2)
    parser.add_argument("--peers", default="all", help="all or none")
    parser.add_argument("--methods", nargs="+", choices=METHODS, help="default: all (hpc_hpo only with --peers none)")
    parser.add_argument("--mlp-methods", nargs="+", choices=METHODS, help="train_mlp's methods; default: --methods")
    parser.add_argument("--png", type=Path, default=REPO / "docs" / "search_quality.png")
    parser.add_argument("--out", type=Path, default=DOCS)
    parser.add_argument("--json", type=Path)
    # Internal: run one method's seeds in this interpreter and print the results as JSON.
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--problem", help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    parser.add_argument("--seed-list", type=int, nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--trial-python", default=sys.executable, help=argparse.SUPPRESS)
    parser.add_argument("--plot-from", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        budget = args.budget if args.problem in SIMULATED else args.mlp_budget
        workers = args.workers if args.problem in SIMULATED else args.mlp_workers
        print(json.dumps(worker(args.problem, args.method, args.seed_list, budget, workers, args.trial_python)))
        return
    if args.plot_from:
        data = json.loads(args.plot_from.read_text())
        plot(data["results"], data["budgets"], data["methods"], args.png)
        return
    if args.peers not in ("all", "none"):
        parser.error("--peers: all or none")
    methods = args.methods or [m for m in METHODS if args.peers == "all" or m not in PEER_METHODS]
    mlp_methods = [m for m in METHODS if m in (args.mlp_methods or methods)]
    by_problem = {**{p: methods for p in SIMULATED}, "mlp": mlp_methods}
    every = [m for m in METHODS if m in methods or m in mlp_methods]
    if args.peers == "none" and PEER_METHODS & set(every):
        parser.error("--peers none: choose hpc_hpo methods only")
    needs_peers = bool(PEER_METHODS & set(every)) or args.peers == "all"
    if needs_peers and not PEER_PYTHON.exists():
        parser.error(f"{PEER_PYTHON} is missing: run `bash benchmarks/peers.sh` first, or pass --peers none")
    command = command_line()
    peer_versions = versions(["optuna", "syne-tune", "matplotlib"], PEER_PYTHON) if needs_peers else None
    head = header(command, peer_versions)
    budgets = {p: (args.budget if p in SIMULATED else args.mlp_budget) for p in args.problems}
    results: list[dict] = []
    for problem, method, seeds in jobs(args.problems, by_problem, args.seeds, args.mlp_seeds):
        python = str(PEER_PYTHON) if method in PEER_METHODS else sys.executable
        argv = [python, str(Path(__file__).resolve()), "--worker", "--problem", problem, "--method", method,
                "--seed-list", *map(str, seeds), "--budget", str(args.budget), "--mlp-budget",
                str(args.mlp_budget), "--workers", str(args.workers), "--mlp-workers", str(args.mlp_workers),
                "--trial-python", sys.executable]
        print(f"{problem}: {method}, seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}", flush=True)
        done = subprocess.run(argv, stdout=subprocess.PIPE, text=True, check=False, env=worker_environment())
        if done.returncode != 0:
            raise SystemExit(f"{method} on {problem} failed (exit {done.returncode})")
        results.extend(json.loads(done.stdout.strip().splitlines()[-1]))
    png_note = []
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"results": results, "budgets": budgets, "methods": every}, handle)
    try:
        import matplotlib  # noqa: F401
        plotter = sys.executable
    except ImportError:
        plotter = str(PEER_PYTHON) if PEER_PYTHON.exists() else None
    if plotter:
        subprocess.run([plotter, str(Path(__file__).resolve()), "--plot-from", handle.name, "--png", str(args.png)],
                       check=True)
        relative = os.path.relpath(args.png, args.out.parent)
        png_note = [f"![best loss against resource and wall time]({relative})", ""]
    else:
        png_note = ["(No plot: matplotlib is neither here nor in benchmarks/.venv-peers.)", ""]
    os.unlink(handle.name)
    body = ["## Search quality at equal budget (issue 6, part 4)", "", *head,
            *__doc__.split("\n\n", 2)[2].splitlines(), "",
            *png_note]
    for problem in args.problems:
        seeds = len({r["seed"] for r in results if r["problem"] == problem})
        if problem in SIMULATED:
            simulated = SIMULATED[problem]
            body += [f"### {simulated.title[0].upper() + simulated.title[1:]}: {budgets[problem]} epochs per run, "
                     f"{args.workers} workers, {seeds} seeds",
                     "", f"Best loss so far minus the function's minimum ({simulated.minimum:g}), median and "
                     "interquartile range over seeds, at shares of the budget; \"regret\" is the true regret of "
                     "the config with the best loss (its full-fidelity quality); the last column is the share of "
                     f"the budget after which a run's best loss is at or below {LABELS[BASELINE]}'s final best "
                     "loss (median over seeds), median and IQR over seeds (>1: not reached within the budget).", ""]
        else:
            body += [f"### train_mlp.py on digits: {budgets[problem]} epochs per run, {args.mlp_workers} trials at a time, "
                     f"{seeds} seeds", "", "Best 1 - validation accuracy so far, median and interquartile range over "
                     "seeds; \"wall s\" is the wall time the run took to use the budget (process start-up "
                     "included); the last column as for the synthetic problems.", ""]
        body += table(results, problem, budgets[problem], by_problem[problem]) + [""]
        summary = verdict(results, problem, budgets[problem])
        body += [summary, ""] if summary else []
        if problem == "mlp":
            body += wall_time_text(results, mlp_methods, args.mlp_workers)
    write_section("search-quality", "\n".join(body), args.out)
    if args.json:
        args.json.write_text(json.dumps(results))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
