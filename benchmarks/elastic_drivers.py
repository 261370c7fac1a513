"""Several drivers on one experiment, on the live cluster (README "Elastic experiments"): per-decision latency
and allocation utilisation with 1, 4 and 16 drivers holding the same 16 GPU slots.

    python benchmarks/elastic_drivers.py                     (needs the cluster; about 8 minutes)
    python benchmarks/elastic_drivers.py --drivers 1 4 --max-time 20 --base 0.5 --out /tmp/e.md   (smoke)

The experiment is slurm_utilisation.py's packed case: stopping ASHA, one-GPU trials of
benchmarks/programs/sleep_trial.py as steps, under a time budget. The same 16 GPUs (4 nodes x 4) are held
- by 1 driver: `salloc -N4 --exclusive`, 16 trials at a time;
- by 4 drivers: a job array of 4 one-node exclusive allocations, each driver running 4 trials at a time;
- by 16 drivers: a job array of 16 allocations of one GPU and one CPU, 4 per node, one trial at a time each.
Every driver of an array runs `hpc-hpo run --join` (execution.join). Utilisation is slurm_utilisation.py's:
GPU-seconds of completed epochs over 16 x the wall time from the first decision to the last run gone, all
drivers together. Per-decision latency comes from the drivers' own probe (HPC_HPO_SWEEP_TIMES, see
driver/joining.py SweepClock): for every sweep that journaled something, the wait for the journal lock, the
catch-up (reading and folding the other drivers' new events) and the deciding (reports, plans, the append).
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_live_output_options, command_line, header, publish  # noqa: E402
from slurm_utilisation import account, assign_slots, config, env, read_runs, slurm_version  # noqa: E402

SLOTS = 16  # 4 nodes x 4 GPUs (the cluster's gres.conf)
SHAPES = {1: [], 4: ["-N1", "--exclusive"], 16: ["-n1", "-c1", "--gres=gpu:1", "--mem=200"]}


def run_drivers(drivers: int, args: argparse.Namespace, seed: int) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"hpo-elastic-{drivers}-", dir=args.dir) as tmp:
        where = Path(tmp)
        path = config(where, "asha_packed", args, seed)
        data = yaml.safe_load(path.read_text())
        data["name"] = f"elastic-{drivers}"
        data["execution"]["join"] = drivers > 1
        path.write_text(yaml.safe_dump(data))
        run = f"{sys.executable} -m hpc_hpo.cli run --quiet {path}"
        if drivers == 1:
            argv = ["salloc", "-N4", "--exclusive", "bash", "-c", f"HPC_HPO_SWEEP_TIMES={where}/times-0 exec {run}"]
        else:
            argv = ["sbatch", "--wait", f"--array=1-{drivers}", *SHAPES[drivers], "--time=30:00",
                    f"--output={where}/driver-%a.out",
                    f"--wrap=HPC_HPO_SWEEP_TIMES={where}/times-$SLURM_ARRAY_TASK_ID exec {run}"]
        began = time.monotonic()
        done = subprocess.run(argv, cwd=where, env=env(), capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            logs = "\n".join(p.read_text() for p in where.glob("driver-*.out"))
            raise SystemExit(f"{drivers} drivers failed ({done.returncode}):\n{done.stdout}\n{done.stderr}\n{logs}")
        runs, events = read_runs(where / "exp")
        assign_slots(runs)
        result = account(runs, events, args.max_time, SLOTS)
        result["command_s"] = time.monotonic() - began
        result["drivers_seen"] = len({e["driver"] for e in events if e["type"] == "run_started" and "driver" in e})
        result["latency_ms"] = sweep_latencies(where)
        if args.keep:
            target = Path(args.keep) / f"drivers-{drivers}"
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(where / "exp", target)
        return result


def sweep_latencies(where: Path) -> dict[str, dict[str, float]]:
    """Median and p99 (ms) of lock wait, catch-up, deciding and their sum, over every driver's sweeps."""
    rows = [tuple(float(v) for v in line.split()[:3]) for path in where.glob("times-*")
            for line in path.read_text().splitlines() if line.strip()]
    parts = {"lock_wait": [r[0] for r in rows], "catch_up": [r[1] for r in rows], "decide": [r[2] for r in rows],
             "total": [sum(r) for r in rows]}
    return {name: {"median": 1000 * statistics.median(v), "p99": 1000 * _p99(v), "n": len(v)}
            for name, v in parts.items() if v}


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def render(results: dict[int, dict], args: argparse.Namespace, head: list[str]) -> str:
    lines = ["## Live Slurm: several drivers on one experiment (issue 18)", "", *head, "",
             "Stopping ASHA (grace 1, eta 3, max 9 epochs), one-GPU trials of `sleep_trial.py` "
             f"(an epoch sleeps {args.base:g} x (0.5 + x) s), budget.max_time {args.max_time:g} s, seed {args.seed}; "
             "the same 16 GPUs held by one driver (`salloc -N4 --exclusive`) or by a job array of drivers that "
             "all `--join` (4 one-node allocations; 16 allocations of one GPU and one CPU). "
             "Utilisation: GPU-seconds of completed epochs over 16 x wall, all drivers together (as in "
             "\"Live Slurm: allocation utilisation\"); steady: until the first slot has no more work or the budget "
             "ends. Latency: per sweep that journaled something, over every driver's sweeps.", "",
             "| drivers | trials | runs | utilisation | steady | lock wait ms median / p99 | catch-up ms median / p99 "
             "| decide ms median / p99 | per decision ms median / p99 | sweeps |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for drivers, r in results.items():
        lat = r["latency_ms"]

        def cell(name: str) -> str:
            return f"{lat[name]['median']:.2f} / {lat[name]['p99']:.2f}" if name in lat else "-"
        lines.append(f"| {drivers} | {r['trials']} | {r['runs']} | {100 * r['utilisation']:.1f}% | "
                     f"{100 * r['steady_utilisation']:.1f}% | {cell('lock_wait')} | {cell('catch_up')} | "
                     f"{cell('decide')} | {cell('total')} | {lat.get('total', {}).get('n', 0)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drivers", nargs="+", type=int, choices=sorted(SHAPES), default=sorted(SHAPES))
    parser.add_argument("--base", type=float, default=2.0, help="mean epoch seconds: an epoch sleeps base * (0.5 + x)")
    parser.add_argument("--max-t", type=int, default=9)
    parser.add_argument("--eta", type=int, default=3)
    parser.add_argument("--max-time", type=float, default=90.0, help="budget.max_time (s)")
    parser.add_argument("--poll-interval", type=float, default=None)
    parser.add_argument("--seed", type=int, default=1)
    add_live_output_options(parser)
    args = parser.parse_args()
    head = header(command_line(), None)
    head = [f"Peers: none (the reference is one driver holding the same GPUs); {slurm_version()}, the project's "
            "4-node cluster on this one host (.ci/cluster/cluster.sh)." if line.startswith("Peers:") else line
            for line in head]
    results = {}
    for drivers in args.drivers:
        r = results[drivers] = run_drivers(drivers, args, args.seed)
        print(f"{drivers} drivers ({r['drivers_seen']} ran): {r['trials']} trials, utilisation "
              f"{100 * r['utilisation']:.1f}% (steady {100 * r['steady_utilisation']:.1f}%), latency "
              f"{json.dumps(r['latency_ms'])}", flush=True)
    body = render(results, args, head)
    publish("elastic-drivers", body, args.out, results, args.json)


if __name__ == "__main__":
    main()
