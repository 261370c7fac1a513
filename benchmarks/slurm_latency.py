"""Decision latency and launch overhead on a live Slurm cluster.

    python benchmarks/slurm_latency.py                  (needs the cluster; about 3 minutes)
    python benchmarks/slurm_latency.py --repeats 1 --trials 6 --out /tmp/l.md   (smoke)

Decision latency: from a losing metric line being written (the "t" the trial's report() stamps on
the line) to the trial being gone, for every trial stopping ASHA stops. Measured in steps mode (the
driver inside `salloc -N4 --exclusive`, each trial an srun step under hpc_hpo's record_exit.py
wrapper) and in sbatch mode (one job per trial). A watcher thread here looks every 2 ms at the
trial's processes (the cluster's nodes all live on this host, so /proc shows them): the trial's own
process; the slurmstepd of its step (its parent); in sbatch mode the slurmstepd of the job's batch
script. The step is over when its srun exits: record_exit.py then writes the run's exit marker, whose
mtime is taken (slurmctld stops listing a cancelled step within a few ms of that; the step's
slurmstepd process often lingers about 3 s more, racing srun to tell it the tasks ended, and holds
nothing the next step needs). The job is over when its batch slurmstepd and its step's slurmstepd
have exited. The driver polls its trials' files every 0.1 s here (execution.poll_interval), which
bounds the part of the latency spent waiting to read the line.

Launch overhead in steps mode: from the driver deciding to start a trial (its trial_created event)
and from the driver's Popen of the step (its trial_started event) to the trial program running,
against a bare `srun` of the same program inside the same kind of allocation (from just before
Popen to the program running), one batch after each repeat's experiments. Both run the same Python program, so the interpreter's start-up is
in both; the hpc_hpo step also starts record_exit.py (`python -I -S`) in front of srun.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DOCS, REPO, command_line, header, load_average, publish  # noqa: E402

PROGRAM = REPO / "benchmarks" / "programs" / "latency_trial.py"
NODES = 4
POLL_INTERVAL = 0.1


def env() -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") or k == "SLURM_CONF"}
    base["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return base


def config(where: Path, mode: str, trials: int, seed: int) -> Path:
    execution = {"backend": "slurm", "poll_interval": POLL_INTERVAL, "stop_grace_period": 5,
                 "num_parallel_evals": NODES, "slurm": {"mode": mode, "squeue_interval": 2}}
    data = {"name": f"latency-{mode}", "command": [sys.executable, str(PROGRAM)],
            "experiment_dir": str(where / "exp"),
            "params": {"x": {"type": "uniform", "low": 0.0, "high": 1.0}, "epochs": 9, "sleep": 0.5},
            "metric": {"name": "loss", "mode": "min"}, "resource": {"name": "epoch", "max": 9},
            "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 3},
            "searcher": {"type": "random", "seed": seed}, "budget": {"max_trials": trials},
            "execution": execution}
    path = where / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def events(where: Path) -> list[dict]:
    return [json.loads(line) for line in (where / "exp" / "journal.jsonl").read_text().splitlines()]


# --------------------------------------------------------------------------- watching /proc


def _alive(pid: int) -> bool:
    try:
        return " Z " not in Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _batch_stepd(step_cmdline: str) -> int | None:
    """The slurmstepd of the job's batch script, from the step's 'slurmstepd: [JOB.STEP]'."""
    job = step_cmdline.split("[", 1)[1].split(".", 1)[0] if "[" in step_cmdline else ""
    wanted = f"slurmstepd: [{job}.batch]"
    for name in os.listdir("/proc"):
        if name.isdigit() and _cmdline(int(name)) == wanted:
            return int(name)
    return None


class Watcher(threading.Thread):
    """Notes when each trial's process, its step's slurmstepd and (sbatch) its batch slurmstepd are gone."""

    def __init__(self, trials: Path, sbatch: bool) -> None:
        super().__init__(daemon=True)
        self.trials, self.sbatch = trials, sbatch
        self.finish_by: float | None = None  # set when the driver is done: a few more seconds for lingering stepds
        self.gone: dict[str, dict[str, float]] = {}  # trial -> {"process"|"stepd"|"batch": time}
        self.unwatched: list[str] = []  # trials whose step could not be found

    def run(self) -> None:
        alive: dict[tuple[str, str], int] = {}
        seen: set[str] = set()
        sweep = 0
        while (self.finish_by is None or (alive and time.time() < self.finish_by)):
            if sweep % 10 == 0 and self.trials.is_dir():  # new trials every 20 ms; they live for seconds
                for pid_file in self.trials.glob("*/pid"):
                    trial_id = pid_file.parent.name
                    text = pid_file.read_text()
                    if trial_id in seen or not text:
                        continue
                    seen.add(trial_id)
                    self._watch(trial_id, int(text), alive)
            sweep += 1
            now = time.time()
            for key, pid in list(alive.items()):
                if not _alive(pid):
                    self.gone.setdefault(key[0], {})[key[1]] = now
                    del alive[key]
            time.sleep(0.002)

    def _watch(self, trial_id: str, pid: int, alive: dict[tuple[str, str], int]) -> None:
        alive[(trial_id, "process")] = pid
        step = _parent(pid)
        step_cmdline = _cmdline(step) if step else ""
        if not step_cmdline.startswith("slurmstepd:"):
            self.unwatched.append(trial_id)
            return
        alive[(trial_id, "stepd")] = step
        if self.sbatch:
            batch = _batch_stepd(step_cmdline)
            if batch is None:
                self.unwatched.append(trial_id)
            else:
                alive[(trial_id, "batch")] = batch


def decision_latencies(where: Path, gone: dict[str, dict[str, float]]) -> dict[str, list[float]]:
    """For each stopped trial: when its process / srun (steps) / slurmstepd / job was gone minus when
    the losing line was written, and when the driver read that line (its report event)."""
    out: dict[str, list[float]] = {"read": [], "process": [], "srun": [], "stepd": [], "job": []}
    for event in events(where):
        if event["type"] != "report" or event["decision"] != "stop":
            continue
        trial_dir = where / "exp" / "trials" / event["trial_id"]
        lines = [json.loads(line) for line in (trial_dir / "metrics.jsonl").read_text().splitlines()]
        written = next(line["t"] for line in lines if float(line["epoch"]) == float(event["resource"]))
        out["read"].append(event["t"] - written)
        markers = list(trial_dir.glob("*.exit"))  # one run per trial under stopping ASHA
        if markers:
            out["srun"].append(markers[0].stat().st_mtime - written)
        times = gone.get(event["trial_id"], {})
        for what in ("process", "stepd"):
            if what in times:
                out[what].append(times[what] - written)
        if "stepd" in times and "batch" in times:
            out["job"].append(max(times["stepd"], times["batch"]) - written)
    return out


# --------------------------------------------------------------------------- experiments


def run_experiment(mode: str, trials: int, seed: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory(prefix=f"hpo-latency-{mode}-") as tmp:
        where = Path(tmp)
        path = config(where, mode, trials, seed)
        argv = [sys.executable, "-m", "hpc_hpo.cli", "run", "--quiet", str(path)]
        if mode == "steps":
            argv = ["salloc", f"-N{NODES}", "--exclusive", *argv]
        watcher = Watcher(where / "exp" / "trials", sbatch=mode == "sbatch")
        watcher.start()
        done = subprocess.run(argv, cwd=where, env=env(), capture_output=True, text=True, timeout=900)
        watcher.finish_by = time.time() + 5
        watcher.join()
        if done.returncode != 0:
            raise SystemExit(f"{mode}: the driver failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        result = decision_latencies(where, watcher.gone)
        result["unwatched"] = [float(len(watcher.unwatched))]
        evs = events(where)
        created = {e["trial_id"]: (e["t"], e["index"]) for e in evs if e["type"] == "trial_created"}
        popen = {e["trial_id"]: e["t"] for e in evs if e["type"] == "trial_started"}
        for key in ("launch_decision", "launch_popen", "launch_decision_first", "launch_popen_first"):
            result[key] = []
        for trial_id, (decided, index) in created.items():
            started = where / "exp" / "trials" / trial_id / "started"
            if started.exists():
                program = float(started.read_text())
                # The first sweep starts one trial per node at once; later ones replace a trial that ended.
                first = "_first" if index < NODES else ""
                result["launch_decision" + first].append(program - decided)
                result["launch_popen" + first].append(program - popen[trial_id])
        return result


def bare_srun_overhead(count: int) -> list[float]:
    """Inside one allocation, `srun` of the same program, one at a time: Popen to program start."""
    script = (f"import subprocess, sys, time, json\nout = []\n"
              f"for i in range({count}):\n"
              f"    t0 = time.time()\n"
              f"    r = subprocess.run(['srun', '-N1', '-n1', '--exact', sys.executable, {str(PROGRAM)!r}, '--probe'],"
              f" capture_output=True, text=True, check=True)\n"
              f"    out.append(float(r.stdout.strip()) - t0)\n"
              f"print(json.dumps(out))\n")
    done = subprocess.run(["salloc", f"-N{NODES}", "--exclusive", sys.executable, "-c", script], env=env(),
                          capture_output=True, text=True, check=True, timeout=600)
    return json.loads(done.stdout.strip().splitlines()[-1])


def row(values: list[float]) -> str:
    if not values:
        return "0 | | |"
    ms = np.array(values) * 1000
    return f"{len(ms)} | {np.median(ms):.0f} | {np.percentile(ms, 99):.0f} | {ms.max():.0f}"


def slurm_version() -> str:
    return subprocess.run(["sinfo", "-V"], capture_output=True, text=True).stdout.strip() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="experiments per mode")
    parser.add_argument("--trials", type=int, default=16, help="trials per experiment")
    parser.add_argument("--seed", type=int, default=1, help="the first experiment's searcher seed (then +1 each)")
    parser.add_argument("--out", type=Path, default=DOCS)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    head = header(command_line(), None)
    head = [f"Peers: none (the reference is a bare srun); {slurm_version()}, the project's {NODES}-node cluster "
            "on this one host (.ci/cluster/cluster.sh)." if line.startswith("Peers:") else line for line in head]

    keys = ("read", "process", "srun", "stepd", "job", "launch_decision", "launch_popen", "launch_decision_first",
            "launch_popen_first", "unwatched")
    results: dict[str, dict[str, list[float]]] = {m: {k: [] for k in keys} for m in ("steps", "sbatch")}
    bare: list[float] = []
    for repeat in range(args.repeats):
        for mode in ("steps", "sbatch"):
            found = run_experiment(mode, args.trials, args.seed + repeat)
            for key in keys:
                results[mode][key] += found.get(key, [])
            print(f"{mode} #{repeat + 1}: {len(found['read'])} stops", flush=True)
        # Interleaved with the experiments, so that both sides see the same background load.
        bare += bare_srun_overhead(args.trials)
    results["bare"] = {"launch_popen": bare}

    steps, sbatch = results["steps"], results["sbatch"]
    ratio = (np.median(steps["launch_popen"]) / np.median(bare)) if bare and steps["launch_popen"] else float("nan")
    unwatched = int(sum(steps["unwatched"]) + sum(sbatch["unwatched"]))
    body = ["## Live Slurm: decision latency and launch overhead (issue 6, part 3a and 3b)", "", *head,
            f"Setup: {args.repeats} experiment(s) per mode of {args.trials} trials, stopping ASHA (rungs 1, 3, 9; "
            f"eta 3), 4 trials at a time, trials of 9 epochs of 0.5 s (benchmarks/programs/latency_trial.py), "
            f"execution.poll_interval {POLL_INTERVAL:g} s; sbatch mode with squeue_interval 2 s.", "",
            "Decision latency: from the losing metric line being written to the driver reading it (its report "
            "event) and to the trial being gone, watched in /proc every 2 ms: its process; in steps mode the step "
            "(its srun exited: the exit marker record_exit.py writes then; slurmctld drops a cancelled step "
            "from `squeue --steps` within a few ms of its srun, checked apart) and the step's slurmstepd process; "
            "in sbatch mode the job (its batch slurmstepd and its step's slurmstepd both exited). The driver "
            "cancels a step with `squeue --steps` + `scancel JOB.STEP`, a job with `scancel JOB`.", "",
            "| mode | from the losing line to | stopped trials | median ms | p99 ms | max ms |",
            "|---|---|---:|---:|---:|---:|",
            f"| steps (srun in salloc -N4) | the driver reading it | {row(steps['read'])} |",
            f"| steps (srun in salloc -N4) | trial process gone | {row(steps['process'])} |",
            f"| steps (srun in salloc -N4) | **step gone** (srun exited) | {row(steps['srun'])} |",
            f"| steps (srun in salloc -N4) | the step's slurmstepd process gone | {row(steps['stepd'])} |",
            f"| sbatch (one job per trial) | the driver reading it | {row(sbatch['read'])} |",
            f"| sbatch (one job per trial) | trial process gone | {row(sbatch['process'])} |",
            f"| sbatch (one job per trial) | **job gone** (batch and step slurmstepd exited) | {row(sbatch['job'])} |",
            ""]
    if unwatched:
        body += [f"{unwatched} trial(s) could not be followed to their slurmstepd and are left out.", ""]
    body += ["Launch overhead in steps mode: to the trial program running, from the driver's decision (trial_created, "
             "which also covers the sweep's journal append and fsync) and from its Popen of record_exit.py + srun "
             "(trial_started), against a bare `srun -N1 -n1 --exact` of the same program in the same kind of "
             "allocation, one at a time, a batch after each repeat's experiments. The hpc_hpo step pays one more "
             "interpreter start (record_exit.py, `python -I -S`, which records the run's exit for a restarted "
             "driver) and shares the host's 2 cores with the driver's sweeps and the other trials. The driver's "
             "first sweep starts one trial on each of the 4 nodes at once, which makes those launches slower; "
             "they are shown apart.", "",
             "| launch | runs | median ms | p99 ms | max ms |",
             "|---|---:|---:|---:|---:|",
             f"| hpc_hpo step replacing an ended trial, decision -> program | {row(steps['launch_decision'])} |",
             f"| hpc_hpo step replacing an ended trial, Popen -> program | {row(steps['launch_popen'])} |",
             f"| hpc_hpo step, first sweep (4 at once), decision -> program | {row(steps['launch_decision_first'])} |",
             f"| hpc_hpo step, first sweep (4 at once), Popen -> program | {row(steps['launch_popen_first'])} |",
             f"| bare srun, one at a time, Popen -> program | {row(bare)} |", "",
             f"Ratio of medians, hpc_hpo step replacing an ended trial / bare srun (Popen -> program): {ratio:.2f}.", "",
             f"Load average (1, 5, 15 min) at the end: {load_average()}.", ""]
    text = "\n".join(body)
    publish("slurm-latency", text, args.out, results, args.json)


if __name__ == "__main__":
    main()
