"""What one driver sweep costs when the experiment is large: CPU, filesystem operations and memory, against the
number of trials that have finished (issue 18, item 5).

    python benchmarks/driver_scale.py                                  (about 15 minutes)
    python benchmarks/driver_scale.py --before /tmp/before             (also the code of another checkout)
    python benchmarks/driver_scale.py --finished 1000 10000 --sweeps 10 --out /tmp/d.md

The large case is 100,000 trials, 1,000 running at once across 16 drivers: one driver's share is --running
(63) runs, and it holds the whole experiment's state. No cluster: a stand-in backend (in this file) "runs"
each trial by appending one report line (one epoch) to its metrics.jsonl between sweeps; a run ends at the
maximum or when the driver cancels it. The driver is the real one (hpc_hpo.driver.Driver, run()), with only
its wait between sweeps replaced by that simulation step.

Each measurement is a fresh process: it creates the experiment (a first driver starts --running trials and is
stopped as by kill -9), appends --finished finished trials to its journal (created, started, reports to a
rung of stopping ASHA, ended; a trial directory with its metrics.jsonl each, as a real experiment leaves), and
starts a second driver, which replays the journal, adopts the running trials and sweeps. After --warmup
sweeps, --sweeps sweeps are measured:
- CPU: the driver process's CPU time (time.process_time) from the end of one simulation step to the start of
  the next, i.e. the whole loop body (poll, read reports, decide, journal, launch, retention, progress);
- filesystem operations by the driver's main thread, counted by wrapping os.open, os.stat, os.lstat,
  os.fstat, os.pread, os.read, os.write, os.listdir, os.scandir, os.fsync, os.rename, os.replace,
  os.unlink, os.mkdir, os.rmdir and io.open (pathlib calls these; the heartbeat and checkpoint-removal
  threads are left out). Per running trial: divided by the runs the driver follows;
- memory: the process's resident set (VmRSS) after the sweeps, and the peak (VmHWM).
With --before DIR the same runs are made with hpc_hpo imported from DIR (a `git worktree add DIR HEAD`).
"""
from __future__ import annotations

import argparse
import builtins
import io
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DOCS, REPO, command_line, header, write_section  # noqa: E402

MAX_T, LEVELS = 27, (1, 3, 9, 27)
COUNTED = ("open", "stat", "lstat", "fstat", "pread", "read", "write", "listdir", "scandir", "fsync", "rename",
           "replace", "unlink", "mkdir", "rmdir")
# What a metadata server answers (Lustre: an MDS round trip each); reads and writes of data go to the OSTs.
METADATA = ("open", "stat", "lstat", "listdir", "scandir", "rename", "replace", "unlink", "mkdir", "rmdir")


# --------------------------------------------------------------------------- the worker (one fresh process)


class OpCounter:
    """Counts calls of the wrapped os/io functions made by the main thread while `on`."""

    def __init__(self) -> None:
        self.on, self.counts, self.main = False, Counter(), threading.get_ident()
        for name in COUNTED:
            self._wrap(os, name, name)
        self._wrap(io, "open", "open")
        builtins.open = io.open

    def _wrap(self, module: Any, attribute: str, name: str) -> None:
        original = getattr(module, attribute)

        def counted(*args: Any, **kwargs: Any) -> Any:
            if self.on and threading.get_ident() == self.main:
                self.counts[name] += 1
            return original(*args, **kwargs)
        setattr(module, attribute, counted)


def _loss(x: float, epoch: int, rng: random.Random) -> float:
    return round((x - 0.3) ** 2 + 1.0 / epoch + rng.gauss(0, 0.01), 4)


def _stand_in_backend() -> Any:
    from hpc_hpo.backends import EXITED, RUNNING, JobStatus
    from hpc_hpo.backends.base import Backend, LaunchSpec

    class StandIn(Backend):
        """Runs are entries of a dict; step() is what the programs would do between two sweeps."""

        name = "standin"

        def __init__(self) -> None:
            self.runs: dict[str, dict[str, Any]] = {}
            self.serial = 0
            self.rng = random.Random(5)

        def submit(self, spec: LaunchSpec) -> str:
            self.serial += 1
            handle = f"standin:{os.getpid()}-{self.serial}"
            env, argv = spec.env, list(spec.argv)
            x = float(argv[argv.index("--x") + 1]) if "--x" in argv else self.rng.random()  # no file read here
            self.runs[handle] = {"dir": spec.trial_dir, "epoch": int(float(env.get("HPC_HPO_RESUME_FROM", 0))),
                                 "target": float(env.get("HPC_HPO_TARGET_RESOURCE", MAX_T)), "x": x, "exit": None}
            return handle

        def poll(self, handles: list[str]) -> dict[str, JobStatus]:
            return {h: JobStatus(EXITED, self.runs[h]["exit"]) if self.runs.get(h, {}).get("exit") is not None
                    else JobStatus(RUNNING) for h in handles}

        def cancel(self, handle: str) -> None:
            if handle in self.runs and self.runs[handle]["exit"] is None:
                self.runs[handle]["exit"] = -15

        def adopt(self, handle: str | None, tag: str, trial_dir: Path) -> str | None:
            if handle is None:
                return None  # nothing was submitted without being journaled here
            lines = (trial_dir / "metrics.jsonl").read_text().splitlines() if (trial_dir / "metrics.jsonl").exists() else []
            self.runs[handle] = {"dir": trial_dir, "epoch": len(lines), "target": MAX_T, "x": self.rng.random(),
                                 "exit": None}
            return handle

        def slots(self, requested: int) -> int:
            return requested

        def step(self) -> None:
            for run in self.runs.values():
                if run["exit"] is not None:
                    continue
                run["epoch"] += 1
                with open(run["dir"] / "metrics.jsonl", "a") as out:
                    out.write(json.dumps({"loss": _loss(run["x"], run["epoch"], self.rng), "epoch": run["epoch"]})
                              + "\n")
                if run["epoch"] >= run["target"]:
                    run["exit"] = 0

    return StandIn()


class _Enough(Exception):
    """Raised from the driver's wait: the measured sweeps are done (the driver stops as if killed)."""


def _config(directory: Path, running: int, finished: int, keep_checkpoints: str) -> Path:
    import yaml

    config = {"name": "scale", "command": [sys.executable, "-c", "pass"], "experiment_dir": str(directory / "exp"),
              "params": {"x": {"type": "uniform", "low": 0.0, "high": 1.0}},
              "metric": {"name": "loss", "mode": "min"}, "resource": {"name": "epoch", "max": MAX_T},
              "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 3},
              "searcher": {"type": "random", "seed": 3}, "budget": {"max_trials": finished + running + 10 ** 6},
              "execution": {"backend": "local", "num_parallel_evals": running, "poll_interval": 1.0,
                                "keep_checkpoints": keep_checkpoints}}
    path = directory / "scale.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _finished_trials(experiment: Path, first_index: int, count: int, seed: int) -> None:
    """Append `count` trials that ended (stopping ASHA: most stop at a low rung) and make their directories."""
    from hpc_hpo.journal import FORMAT_VERSION, Journal

    rng = random.Random(seed)
    journal = Journal(experiment)
    t = time.time() - 3600.0
    batch: list[dict[str, Any]] = []
    for index in range(first_index, first_index + count):
        trial_id = f"{index:04d}"
        x = rng.random()
        stop_at = rng.choices(LEVELS, weights=(67, 22, 7, 4))[0]
        t += 0.01

        def event(kind: str, **fields: Any) -> dict[str, Any]:
            return {"v": FORMAT_VERSION, "type": kind, "t": round(t, 6), "trial_id": trial_id, **fields}
        batch += [event("trial_created", index=index, config={"x": x}, bracket=0, target=MAX_T),
                  event("trial_started", handle=f"standin:old-{index}", backend="standin", run=1)]
        lines = []
        for epoch in range(1, stop_at + 1):
            decision = "continue" if epoch < stop_at else ("complete" if stop_at == MAX_T else "stop")
            value = _loss(x, epoch, rng)
            batch.append(event("report", resource=epoch, value=value, elapsed_s=float(epoch), decision=decision))
            lines.append(json.dumps({"loss": value, "epoch": epoch}))
        batch.append(event("trial_ended", state="completed" if stop_at == MAX_T else "stopped",
                           exit_code=0 if stop_at == MAX_T else -15))
        trial_dir = experiment / "trials" / trial_id
        trial_dir.mkdir(parents=True, exist_ok=True)
        (trial_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
        if len(batch) >= 20000:
            journal.append(batch)
            batch = []
    journal.append(batch)


def _memory_kib() -> tuple[int, int]:
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def worker(finished: int, running: int, warmup: int, sweeps: int, workdir: Path,
           keep_checkpoints: str = "resumable") -> dict[str, Any]:
    import logging

    from hpc_hpo.config import load_config
    from hpc_hpo.driver import Driver

    logging.disable(logging.WARNING)
    path = _config(workdir, running, finished, keep_checkpoints)
    config = load_config(path)
    experiment = workdir / "exp"

    # 1. The experiment, with `running` runs going, as a driver killed after its first sweep leaves it.
    first = _stand_in_backend()
    driver = Driver(config, first, quiet=True)

    def stop_now(self: Any) -> None:
        raise _Enough()
    Driver._wait_for_next_sweep = stop_now  # type: ignore[method-assign]
    try:
        driver.run()
    except _Enough:
        pass
    created = len(driver.state.trials)

    # 2. The trials that have finished, appended to its journal.
    started = time.perf_counter()
    _finished_trials(experiment, created, finished, seed=finished)
    build_s = time.perf_counter() - started

    # 3. A driver that replays it all, adopts the runs and sweeps: the measured sweeps.
    counter = OpCounter()
    backend = _stand_in_backend()
    marks: dict[str, Any] = {"sweeps": [], "run_started": time.perf_counter(), "replay_s": None}

    def simulate(self: Any) -> None:
        cpu, wall = time.process_time(), time.perf_counter()
        if marks["replay_s"] is None:
            marks["replay_s"] = wall - marks["run_started"]  # replay, reconciliation and the first sweep
        else:
            marks["sweeps"].append({"cpu_s": cpu - marks["cpu"], "wall_s": wall - marks["wall"],
                                    "ops": dict(counter.counts), "live": len(self.live),
                                    "launched": sum(1 for r in backend.runs.values() if r.get("new"))})
        counter.on = False
        if len(marks["sweeps"]) >= warmup + sweeps:
            marks["state"] = self.state
            raise _Enough()
        for run in backend.runs.values():
            run["new"] = False
        backend.step()
        counter.counts.clear()
        counter.on = True
        marks["cpu"], marks["wall"] = time.process_time(), time.perf_counter()

    original_submit = backend.submit

    def submit(spec: Any) -> str:
        handle = original_submit(spec)
        backend.runs[handle]["new"] = True
        return handle
    backend.submit = submit  # type: ignore[method-assign]
    Driver._wait_for_next_sweep = simulate  # type: ignore[method-assign]
    second = Driver(config, backend, quiet=True)
    try:
        second.run()
    except _Enough:
        pass
    rss, peak = _memory_kib()
    measured = marks["sweeps"][warmup:]
    ops = Counter()
    for sweep in measured:
        ops.update(sweep["ops"])
    live = sum(s["live"] for s in measured) / max(len(measured), 1)
    state = marks.get("state", second.state)
    return {"finished": finished, "running": running, "trials": len(state.trials), "build_s": build_s,
            "replay_s": marks["replay_s"], "sweeps": len(measured), "live": live,
            "cpu_ms": [1000 * s["cpu_s"] for s in measured], "wall_ms": [1000 * s["wall_s"] for s in measured],
            "launched_per_sweep": statistics.mean(s["launched"] for s in measured) if measured else 0,
            "ops_per_sweep": {k: v / max(len(measured), 1) for k, v in ops.items()},
            "rows_kept": len(getattr(state, "rows", [])), "readers": len(getattr(second, "readers", {})),
            "rss_kib": rss, "peak_kib": peak}


# --------------------------------------------------------------------------- the runs and the report


def run_worker(pythonpath: Path, finished: int, args: argparse.Namespace, keep_checkpoints: str) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="driver-scale-", dir=args.tmp))
    try:
        env = {**os.environ, "PYTHONPATH": str(pythonpath)}
        result = subprocess.run([sys.executable, __file__, "--worker", str(finished), "--running", str(args.running),
                                 "--warmup", str(args.warmup), "--sweeps", str(args.sweeps), "--workdir", str(workdir),
                                 "--keep-checkpoints", keep_checkpoints],
                                env=env, cwd=workdir, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"worker failed ({pythonpath}, {finished}):\n{result.stderr[-3000:]}")
        return json.loads(result.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def _metadata(result: dict[str, Any]) -> float:
    return sum(result["ops_per_sweep"].get(name, 0.0) for name in METADATA)


def table(results: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines = ["| code | finished trials | CPU per sweep, median (p90) | wall per sweep | launches per sweep | "
             "metadata ops per sweep (per running trial) | open / stat / listdir / fsync per sweep | "
             "replay | RSS after (peak) | report rows kept |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for label, rows in results.items():
        for r in rows:
            ops = r["ops_per_sweep"]
            cpu = sorted(r["cpu_ms"])
            p90 = cpu[int(0.9 * (len(cpu) - 1))] if cpu else math.nan
            lines.append(
                f"| {label} | {r['finished']:,} | {_median(cpu):.1f} ms ({p90:.1f}) | {_median(r['wall_ms']):.1f} ms | "
                f"{r['launched_per_sweep']:.1f} | {_metadata(r):,.0f} ({_metadata(r) / max(r['live'], 1):.1f}) | "
                f"{ops.get('open', 0):,.0f} / {ops.get('stat', 0) + ops.get('lstat', 0):,.0f} / "
                f"{ops.get('listdir', 0) + ops.get('scandir', 0):,.1f} / {ops.get('fsync', 0):.1f} | "
                f"{r['replay_s']:.1f} s | {r['rss_kib'] / 1024:.0f} MiB ({r['peak_kib'] / 1024:.0f}) | "
                f"{r['rows_kept']:,} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--finished", type=int, nargs="+", default=[1000, 10000, 50000, 100000])
    parser.add_argument("--running", type=int, default=63, help="one driver's share of 1,000 runs over 16 drivers")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--sweeps", type=int, default=30)
    parser.add_argument("--before", type=Path, default=None, help="a checkout of the code to compare with")
    parser.add_argument("--tmp", default=None, help="where the experiments are made (default: the system's)")
    parser.add_argument("--keep-checkpoints", nargs="+", default=["resumable", "all"],
                        help="execution.keep_checkpoints of the runs: each value is a set of runs")
    parser.add_argument("--out", type=Path, default=DOCS)
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps(worker(args.worker, args.running, args.warmup, args.sweeps, args.workdir,
                                args.keep_checkpoints[0])))
        return

    versions = {"after": REPO} if args.before is None else {"before": args.before.resolve(), "after": REPO}
    results: dict[str, list[dict[str, Any]]] = {}
    for policy in args.keep_checkpoints:
        for finished in args.finished:
            for name, path in versions.items():
                label = f"{name}, keep_checkpoints {policy}"
                result = run_worker(path, finished, args, policy)
                results.setdefault(label, []).append(result)
                print(f"{label:6s} {finished:>7,} finished: CPU {_median(result['cpu_ms']):.1f} ms/sweep, "
                      f"metadata ops {_metadata(result):.0f}/sweep ({_metadata(result) / max(result['live'], 1):.1f} "
                      f"per running trial), {result['launched_per_sweep']:.1f} launches, "
                      f"fsync {result['ops_per_sweep'].get('fsync', 0):.1f}, RSS {result['rss_kib'] / 1024:.0f} MiB",
                      flush=True)
    write_section("driver-scale", "\n".join(report(results, args)), args.out)
    print(f"wrote {args.out}")


def report(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> list[str]:
    lines = ["## Driver cost at scale: one sweep against the number of finished trials", ""]
    lines += [line for line in header(command_line(), None) if not line.startswith("Peers:")]  # no peers here
    lines += ["", f"One driver's share of 1,000 runs over 16 drivers: {args.running} runs, stopping ASHA (epochs "
              f"1..{MAX_T}, eta 3), a stand-in backend whose runs write one report per sweep; "
              f"{args.warmup} sweeps of warm-up, then {args.sweeps} measured. Filesystem operations are the "
              "driver's main thread's calls of os/io functions (wrapped, not strace); metadata ops are open, "
              "stat, lstat, listdir, scandir, rename, replace, unlink, mkdir, rmdir.", ""]
    lines += table(results)
    return lines


if __name__ == "__main__":
    main()
