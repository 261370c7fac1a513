"""Decision latency and launch overhead on a live Slurm cluster.

    python benchmarks/slurm_latency.py                 (needs Slurm's commands; about 2 minutes)
    python benchmarks/slurm_latency.py --repeats 1 --out /tmp/smoke.md

Decision latency: how long from a losing metric line being written (the "t" the trial's report()
stamps on the line) to the trial's process being gone. A watcher thread here looks every 2 ms
for each trial's pid (the cluster's nodes all live on this host, so /proc shows every trial). Measured for every trial ASHA stops, in steps mode (inside `salloc -N4 --exclusive`) and in
sbatch mode (one job per trial). The driver polls its trials' files every 0.1 s here
(execution.poll_interval), which bounds the part of the latency spent waiting to read the line.

Launch overhead in steps mode: from the driver deciding to start a trial (its trial_created event)
to the trial program running, against a bare `srun` of the same program inside the same
allocation (from just before Popen to the program running). Both run the same Python program, so
the interpreter's start-up is in both. The table goes to stdout and, with the machine, to --out.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
PROGRAM = REPO / "benchmarks" / "programs" / "latency_trial.py"


def env() -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") or k == "SLURM_CONF"}
    base["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return base


def config(where: Path, mode: str, trials: int) -> Path:
    execution = {"backend": "slurm", "poll_interval": 0.1, "stop_grace_period": 5,
                 "num_parallel_evals": 4, "slurm": {"mode": mode, "squeue_interval": 2}}
    data = {"name": f"latency-{mode}", "command": [sys.executable, str(PROGRAM)],
            "experiment_dir": str(where / "exp"),
            "params": {"x": {"type": "uniform", "low": 0.0, "high": 1.0}, "epochs": 9, "sleep": 0.5},
            "metric": {"name": "loss", "mode": "min"}, "resource": {"name": "epoch", "max": 9},
            "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 3},
            "searcher": {"type": "random", "seed": int(time.time()) % 1000}, "budget": {"max_trials": trials},
            "execution": execution}
    path = where / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def events(where: Path) -> list[dict]:
    return [json.loads(line) for line in (where / "exp" / "journal.jsonl").read_text().splitlines()]


class PidWatcher(threading.Thread):
    """Notes when each trial's process disappears (or turns zombie): the moment the cancel took effect."""

    def __init__(self, trials: Path) -> None:
        super().__init__(daemon=True)
        self.trials, self.gone, self.running = trials, {}, True

    def run(self) -> None:
        alive: dict[str, int] = {}
        while self.running:
            if self.trials.is_dir():
                for pid_file in self.trials.glob("*/pid"):
                    trial_id = pid_file.parent.name
                    if trial_id not in alive and trial_id not in self.gone and pid_file.read_text():
                        alive[trial_id] = int(pid_file.read_text())
            now = time.time()
            for trial_id, pid in list(alive.items()):
                if not _alive(pid):
                    self.gone[trial_id] = now
                    del alive[trial_id]
            time.sleep(0.002)


def _alive(pid: int) -> bool:
    try:
        return " Z " not in Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False


def decision_latencies(where: Path, gone: dict[str, float]) -> list[float]:
    """For each stopped trial: when its process was gone minus when the losing line was written."""
    latencies = []
    for event in events(where):
        if event["type"] != "report" or event["decision"] != "stop":
            continue
        trial_dir = where / "exp" / "trials" / event["trial_id"]
        lines = [json.loads(line) for line in (trial_dir / "metrics.jsonl").read_text().splitlines()]
        written = next(line["t"] for line in lines if float(line["epoch"]) == float(event["resource"]))
        if event["trial_id"] in gone:
            latencies.append(gone[event["trial_id"]] - written)
    return latencies


def run_experiment(mode: str, trials: int) -> tuple[list[float], list[float]]:
    with tempfile.TemporaryDirectory(dir=REPO / "benchmarks") as tmp:
        where = Path(tmp)
        path = config(where, mode, trials)
        argv = [sys.executable, "-m", "hpc_hpo.cli", "run", "--quiet", str(path)]
        if mode == "steps":
            argv = ["salloc", "-N4", "--exclusive", *argv]
        watcher = PidWatcher(where / "exp" / "trials")
        watcher.start()
        subprocess.run(argv, cwd=where, env=env(), check=True, capture_output=True, text=True, timeout=900)
        watcher.running = False
        watcher.join()
        created = {e["trial_id"]: e["t"] for e in events(where) if e["type"] == "trial_created"}
        launch = []
        for trial_id, decided in created.items():
            started = where / "exp" / "trials" / trial_id / "started"
            if started.exists():
                launch.append(float(started.read_text()) - decided)
        return decision_latencies(where, watcher.gone), launch


def bare_srun_overhead(count: int) -> list[float]:
    """Inside one allocation, `srun` of the same program, one at a time: Popen to program start."""
    script = (f"import subprocess, sys, time, json\nout = []\n"
              f"for i in range({count}):\n"
              f"    t0 = time.time()\n"
              f"    r = subprocess.run(['srun', '-N1', '-n1', '--exact', sys.executable, {str(PROGRAM)!r}, '--probe'],"
              f" capture_output=True, text=True, check=True)\n"
              f"    out.append(float(r.stdout.strip()) - t0)\n"
              f"print(json.dumps(out))\n")
    done = subprocess.run(["salloc", "-N4", "--exclusive", sys.executable, "-c", script], env=env(),
                          capture_output=True, text=True, check=True, timeout=600)
    return json.loads(done.stdout.strip().splitlines()[-1])


def summary(values: list[float]) -> str:
    if not values:
        return "no samples | | "
    ms = np.array(values) * 1000
    return f"{len(ms)} | {np.median(ms):.0f} | {np.percentile(ms, 99):.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="experiments per mode")
    parser.add_argument("--trials", type=int, default=16, help="trials per experiment")
    parser.add_argument("--out", default=str(REPO / "docs" / "slurm_benchmark.md"))
    args = parser.parse_args()

    results: dict[str, list[float]] = {"steps": [], "sbatch": [], "steps launch": []}
    for _ in range(args.repeats):
        for mode in ("steps", "sbatch"):
            latencies, launch = run_experiment(mode, args.trials)
            results[mode] += latencies
            if mode == "steps":
                results["steps launch"] += launch
    bare = bare_srun_overhead(args.repeats * args.trials)

    launch_ratio = np.median(results["steps launch"]) / np.median(bare) if bare and results["steps launch"] else float("nan")
    lines = [
        "# Slurm: decision latency and launch overhead",
        "",
        f"Measured {datetime.date.today()} on {platform.node()} ({os.cpu_count()} cores, "
        f"{subprocess.run(['sinfo', '-V'], capture_output=True, text=True).stdout.strip()}, the project's "
        "4-node cluster on one host: .ci/cluster/cluster.sh), with",
        "",
        f"    {shlex.join(['python', 'benchmarks/slurm_latency.py', *sys.argv[1:]])}",
        "",
        "Decision latency: from the losing metric line being written to the trial's process being",
        "gone (watched in /proc every 2 ms). The driver polls every 0.1 s.",
        "",
        "| mode | stopped trials | median ms | p99 ms |",
        "|---|---|---|---|",
        f"| steps (srun in salloc -N4) | {summary(results['steps'])} |",
        f"| sbatch (one job per trial) | {summary(results['sbatch'])} |",
        "",
        "Launch overhead in steps mode: decision to start a trial -> the program running, against a",
        "bare `srun -N1 -n1 --exact` of the same program in the same kind of allocation.",
        "",
        "| launch | runs | median ms | p99 ms |",
        "|---|---|---|---|",
        f"| hpc-hpo step | {summary(results['steps launch'])} |",
        f"| bare srun | {summary(bare)} |",
        "",
        f"Ratio of medians, hpc-hpo step / bare srun: {launch_ratio:.2f}.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
