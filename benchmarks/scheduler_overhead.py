"""Time the scheduler's own work per report and per free-slot look-up, against the number of trials.

    python benchmarks/scheduler_overhead.py                   (100,000 trials; about 20 s)
    python benchmarks/scheduler_overhead.py --trials 3000 --out /tmp/smoke.md     (smoke run)

A synthetic experiment (no processes, no I/O): epochs 1..27, grace period 1, eta 3 (rungs 1, 3, 9,
max 27), 32 slots. Each running trial reports once per epoch; epoch durations are random, so the
reports of different trials interleave as on a cluster. Stopping ASHA starts a new trial when one
stops or completes; promotion ASHA asks next_action whenever a slot frees up (a trial paused,
completed or was told to pause and exited), which resumes a paused trial or starts a new one. The
run ends when `--trials` trials have been created.

Only the scheduler calls are timed (time.perf_counter_ns around each): on_report ("report") and
next_action ("look-up"); on_start, on_paused and on_trial_end are timed together as "bookkeeping".
The times of each call are grouped by the number of trials created when it was made: the row for N
holds the calls made while the experiment had between N/2 and N trials, so growth with N shows
directly. Each scheduler runs twice: with Python's garbage collector on (as in the driver) and
off, which separates the scheduler's own cost from collection pauses that grow with the number of
live objects. The table goes to stdout and, with the machine and versions, to --out.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import heapq
import math
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import sortedcontainers

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_average, machine  # noqa: E402

from hpc_hpo.schedulers import PromotionAsha, StoppingAsha, rung_levels
from hpc_hpo.schedulers.base import Decision, Resume, Scheduler, StartNew

LEVELS = rung_levels(27, 1, 3)  # [1, 3, 9, 27]
ETA, SLOTS = 3, 32


@dataclass
class Timings:
    """Per call: its duration (ns) and the number of trials created when it was made."""

    report: list[tuple[int, int]] = field(default_factory=list)
    lookup: list[tuple[int, int]] = field(default_factory=list)
    bookkeeping: list[tuple[int, int]] = field(default_factory=list)
    decisions: dict[str, int] = field(default_factory=dict)


def simulate(scheduler: Scheduler, trials: int, seed: int) -> Timings:
    rng = np.random.default_rng(seed)
    clock = time.perf_counter_ns
    timings = Timings()
    quality: dict[str, float] = {}
    at: dict[str, int] = {}  # trial -> last epoch reported
    target: dict[str, float] = {}
    events: list[tuple[float, int, str]] = []  # (time the next epoch ends, tie-break, trial)
    created = 0
    seq = 0
    now = 0.0

    def timed(kind: list, call, *args):
        start = clock()
        result = call(*args)
        kind.append((clock() - start, created))
        return result

    def fill(slots: int) -> None:
        nonlocal created, seq
        for _ in range(slots):
            if created >= trials:
                return
            action = timed(timings.lookup, scheduler.next_action, created)
            if isinstance(action, Resume):
                trial_id = action.trial_id
                timings.decisions["resume"] = timings.decisions.get("resume", 0) + 1
            else:
                assert isinstance(action, StartNew)
                trial_id = f"{created:06d}"
                created += 1
                quality[trial_id] = float(rng.random())
                at[trial_id] = 0
            target[trial_id] = action.target
            timed(timings.bookkeeping, scheduler.on_start, trial_id, action)
            seq += 1
            heapq.heappush(events, (now + float(rng.lognormal(0.0, 0.5)), seq, trial_id))

    fill(SLOTS)
    while events and created < trials:
        now, _, trial_id = heapq.heappop(events)
        epoch = at[trial_id] + 1
        at[trial_id] = epoch
        # Better configs have lower losses; the noise shrinks as training goes on.
        value = quality[trial_id] + float(rng.normal(0.0, 0.3)) / epoch
        outcome = timed(timings.report, scheduler.on_report, trial_id, epoch, value)
        name = outcome.decision.value
        timings.decisions[name] = timings.decisions.get(name, 0) + 1
        if outcome.decision == Decision.PROMOTE:
            target[trial_id] = outcome.target
        if outcome.decision in (Decision.CONTINUE, Decision.PROMOTE):
            seq += 1
            heapq.heappush(events, (now + float(rng.lognormal(0.0, 0.5)), seq, trial_id))
            continue
        if outcome.decision == Decision.PAUSE:
            timed(timings.bookkeeping, scheduler.on_paused, trial_id)
        else:  # STOP or COMPLETE: gone for good
            timed(timings.bookkeeping, scheduler.on_trial_end, trial_id)
            del quality[trial_id], at[trial_id], target[trial_id]
        fill(1)
    return timings


def window(calls: list[tuple[int, int]], n: int) -> np.ndarray:
    """Durations in microseconds of the calls made while between n/2 and n trials existed."""
    return np.array([ns for ns, created in calls if n // 2 < created <= n], dtype=float) / 1000.0


def stats(us: np.ndarray) -> tuple[int, float, float, float]:
    """Count, mean, median and 99th percentile."""
    if len(us) == 0:
        return 0, float("nan"), float("nan"), float("nan")
    return len(us), float(us.mean()), float(np.median(us)), float(np.percentile(us, 99))


def growth(means: dict[str, dict[int, tuple[float, float]]]) -> list[str]:
    """How the mean per report and per look-up grows from the smallest N to the largest, in words."""
    lines = []
    for name, by_n in means.items():
        small, large = min(by_n), max(by_n)
        report = by_n[large][0] / by_n[small][0]
        lookup = by_n[large][1] / by_n[small][1]
        lines.append(f"- {name}: from N = {small:,} to {large:,} ({large / small:.0f}x the trials; log N "
                     f"{math.log(large) / math.log(small):.2f}x) the mean per report grows {report:.2f}x and "
                     f"per look-up {lookup:.2f}x.")
    return lines


def checkpoints(trials: int) -> list[int]:
    """1,000, 10,000, 100,000 ... up to the number of trials (and that number itself)."""
    points = [n for n in (10**k for k in range(3, 9)) if n < trials]
    return points + [trials]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100_000, help="trials to create (default 100000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parent.parent / "docs" / "scheduler_benchmark.md")
    args = parser.parse_args()
    schedulers = {
        "stopping ASHA": lambda: StoppingAsha(LEVELS, ETA, "min"),
        "promotion ASHA": lambda: PromotionAsha(LEVELS, ETA, "min"),
    }
    rows = ["| scheduler | GC | trials N | reports | report mean µs | report median µs | report p99 µs | look-ups "
            "| look-up mean µs | look-up median µs | look-up p99 µs | bookkeeping mean µs |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    means: dict[str, dict[int, tuple[float, float]]] = {}
    runs = [(name, gc_on) for gc_on in (True, False) for name in schedulers]
    summaries = []
    load_before = load_average()
    print("\n".join(rows), flush=True)
    for name, gc_on in runs:
        gc.collect()
        if not gc_on:
            gc.disable()
        started = time.perf_counter()
        timings = simulate(schedulers[name](), args.trials, args.seed)
        elapsed = time.perf_counter() - started
        gc.enable()
        label = f"{name}, GC {'on' if gc_on else 'off'}"
        for n in checkpoints(args.trials):
            reports, report_mean, report_median, report_p99 = stats(window(timings.report, n))
            lookups, lookup_mean, lookup_median, lookup_p99 = stats(window(timings.lookup, n))
            book_mean = stats(window(timings.bookkeeping, n))[1]
            means.setdefault(label, {})[n] = (report_mean, lookup_mean)
            rows.append(f"| {name} | {'on' if gc_on else 'off'} | {n:,} | {reports:,} | {report_mean:.1f} "
                        f"| {report_median:.1f} | {report_p99:.1f} | {lookups:,} | {lookup_mean:.1f} "
                        f"| {lookup_median:.1f} | {lookup_p99:.1f} | {book_mean:.1f} |")
            print(rows[-1], flush=True)
        decisions = ", ".join(f"{k} {v:,}" for k, v in sorted(timings.decisions.items()))
        summaries.append(f"- {label}: {len(timings.report):,} reports and {len(timings.lookup):,} look-ups in "
                         f"{elapsed:.1f} s of wall time (simulation included); decisions: {decisions}.")
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0])] + sys.argv[1:])
    report = [
        "# Scheduler overhead: time per report and per look-up",
        "",
        f"Measured {datetime.date.today().isoformat()} on {machine()}; Python {platform.python_version()}, "
        f"sortedcontainers {sortedcontainers.__version__}, numpy {np.__version__}. Load average (1, 5, 15 min) "
        f"before: {load_before}; after: {load_average()}.",
        "",
        f"Command: `{command}`",
        "",
        f"Setup: {args.trials:,} synthetic trials, epochs 1..27, grace period 1, eta 3 (rungs 1, 3, 9; max 27), "
        f"{SLOTS} slots, seed {args.seed}. Each trial reports every epoch; epoch durations are lognormal, so "
        "reports interleave. A new trial (stopping ASHA) or a next_action look-up (promotion ASHA: resume "
        "a paused trial or start a new one) fills each slot that frees up. Times are of the scheduler calls "
        "alone (perf_counter_ns around each; the timer itself costs well under a microsecond); a row for N "
        "holds the calls made while the experiment had between N/2 and N trials. Each scheduler runs with "
        "the garbage collector on (as in the driver) and off (the scheduler's own work alone). Look-ups "
        "of stopping ASHA only draw a bracket (here: one bracket).",
        "",
        *rows,
        "",
        *summaries,
        "",
        "Reading the table: a SortedList per rung makes a report and a look-up O(log n), so from the "
        "smallest N to the largest the times should grow by a small constant factor at most, not in "
        "proportion to N. Measured growth of the mean:",
        "",
        *growth(means),
        "",
        "With GC on, the mean is above the median because of rare long calls: collection pauses, "
        "which grow with the number of live objects (every trial's state), and SortedList "
        "rebalancing; with GC off only the latter remain. The first row also includes warm-up.",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(report))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
