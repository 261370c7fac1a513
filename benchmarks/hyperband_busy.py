"""How busy synchronous Hyperband keeps its workers: brackets one after another (before) against brackets
that overlap, idle workers starting the next bracket's configs (after). Scheduler only: no processes.

    python benchmarks/hyperband_busy.py                  (a few seconds)
    python benchmarks/hyperband_busy.py --out /tmp/x.md  (write the section elsewhere)

The plan of max 81, grace 1, eta 3 (143 configs, 1581 resource resuming from checkpoints), run once to
its end by the real SyncHyperband, driven by hpc_hpo/plan_simulation.py's event loop (the driver's
calls: next_action/on_start when a slot is free, on_report at each rung, on_paused, on_trial_end).
Durations: each config takes `pace` time per unit of resource, lognormal around 1 with spread sigma
(0.1: configs about as fast as each other; 0.3: a config's hyperparameters change its speed, which
stays with it through its stages). Busy share = slot-time running trials / (workers x wall), wall from
the first start to the last report. Also shown: the bound on the busy share of any schedule that
keeps each bracket synchronous, work / (workers x wall with unlimited workers): the plan's chains
of stages (1 -> 3 -> 9 -> 27 -> 81 and its slowest members at each barrier) cannot go faster.
Medians over 10 seeds (curves and paces drawn from the seed).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DOCS, command_line, header, write_section  # noqa: E402

from hpc_hpo.plan_simulation import simulate, synthetic_trials  # noqa: E402
from hpc_hpo.schedulers.base import rung_levels  # noqa: E402
from hpc_hpo.schedulers.sync_hyperband import SyncHyperband  # noqa: E402

MAX_T, ETA = 81, 3
WORKERS = (4, 16)
SPREADS = (0.1, 0.3)
SEEDS = range(10)
UNLIMITED = 10_000  # workers: every ready run starts at once
# What the table says, measured 2026-12-01 (the figures move little between runs: curves are seeded).
READING = """Reading: overlapping brackets lift 4 workers from about 62% to 93% busy and cut the wall time by a
third; 16 workers go from about 21% to 63-71%, short of the issue's 90% target. The bound column says
why part of it cannot be had: one pass of this plan is a few long chains (each bracket's last stage
runs 54 or 81 units of one config, after its barriers), and with configs of unequal speed (spread 0.3)
even unlimited workers leave 16 only 85% busy. The rest of the gap (71% against a 100% bound at
spread 0.1) is the bracket order the scheduler keeps: the earliest bracket first, so the last
bracket's five 81-unit runs start only once every earlier config has started. Starting long runs
first (tried in the simulation: later brackets' configs first, or the longest run first) did worse
(61% at 16 workers), because the first bracket's chain of five barriers then starts late. What closes
the gap is more than one pass (`scheduler.repeat`, Li et al.'s outer loop; null runs passes until the
budget ends): the next pass's brackets start while the last one's long stages run, and with 5 passes
16 workers are 91.6% busy at spread 0.1 and 89.7% at spread 0.3 (the 90% target met at the first,
missed by a hair at the second)."""


PASSES = 5  # scheduler.repeat of the last column


def busy(workers: int, spread: float, overlap: bool, seed: int, repeat: int = 1) -> tuple[float, float]:
    """(busy share, wall) of `repeat` passes of the plan."""
    levels = rung_levels(MAX_T, 1, ETA)
    result = simulate(SyncHyperband(levels, ETA, "min", overlap=overlap, repeat=repeat),
                      synthetic_trials(seed, MAX_T, "min", pace_spread=spread), workers, levels)
    return result.busy_share, result.wall


def bound(workers: int, spread: float, seed: int) -> float:
    """The busy share no synchronous schedule can beat: work over workers x the unlimited-worker wall."""
    levels = rung_levels(MAX_T, 1, ETA)
    result = simulate(SyncHyperband(levels, ETA, "min"), synthetic_trials(seed, MAX_T, "min", pace_spread=spread),
                      UNLIMITED, levels)
    return min(1.0, result.busy / (workers * result.wall))


def table() -> list[str]:
    lines = ["| pace spread | workers | busy, brackets in turn (before) | busy, brackets overlap (after) | "
             f"wall before | wall after | bound (unlimited-worker wall) | busy, {PASSES} passes overlapping "
             "(`repeat: 5`) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for spread in SPREADS:
        for workers in WORKERS:
            before = [busy(workers, spread, False, seed) for seed in SEEDS]
            after = [busy(workers, spread, True, seed) for seed in SEEDS]
            limit = statistics.median(bound(workers, spread, seed) for seed in SEEDS)
            passes = statistics.median(busy(workers, spread, True, seed, PASSES)[0] for seed in SEEDS)
            lines.append(f"| {spread:g} | {workers} | {statistics.median(b[0] for b in before):.1%} | "
                         f"{statistics.median(a[0] for a in after):.1%} | {statistics.median(b[1] for b in before):.0f} | "
                         f"{statistics.median(a[1] for a in after):.0f} | {limit:.1%} | {passes:.1%} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DOCS, help="markdown file whose section is (re)written")
    args = parser.parse_args()
    rows = table()
    print("\n".join(rows))
    head = [line.replace("Peers: none (run with `--peers none`).", "Peers: none (a simulation of the scheduler alone).")
            for line in header(command_line(), None)]
    body = ["## Synchronous Hyperband: busy workers (issue 17, item 4)", "", *head,
            "Setup: " + " ".join(" ".join(__doc__.split("\n\n")[2:4]).split()), "", *rows, "", READING]
    write_section("hyperband-busy", "\n".join(body), args.out)


if __name__ == "__main__":
    main()
