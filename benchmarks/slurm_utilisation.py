"""Allocation utilisation on a live Slurm cluster: stopping ASHA, promotion ASHA, synchronous successive halving.

    python benchmarks/slurm_utilisation.py                  (needs the cluster; about 6 minutes)
    python benchmarks/slurm_utilisation.py --base 0.5 --max-t 3 --max-time 8 --out /tmp/u.md   (smoke)

The driver runs inside `salloc -N4 --exclusive` in steps mode: one node per trial, 4 at a time.
Each trial (benchmarks/programs/sleep_trial.py) sleeps base * (0.5 + x) seconds per epoch, x drawn
per config, reports its loss each epoch through hpc_hpo.report(), and stamps the start and end of
every sleep in its trial directory. Utilisation is

    (node-seconds of completed epoch sleeps, over all trials)
    / (4 nodes x wall time from the driver's first launch decision to its last run's end)

and the rest of the node-seconds is attributed, node by node, from the trials' stamps, the journal's
event times and each run's exit marker (written by record_exit.py when the run's srun exits): the
launch (decision, srun, interpreter start), gaps between epochs (report, checkpoint, waiting for a
verdict), the end of a run (its last epoch's end to its srun being gone: a stop's cut epoch and
cancel, a pause's verdict and exit), the idle gap on the node before the next run, and the tail
where a node has no more work.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from hpc_hpo.config import load_config
from hpc_hpo.schedulers import rung_levels
from hpc_hpo.schedulers.brackets import hyperband_sizes

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, add_live_output_options, command_line, header, load_average, publish  # noqa: E402

PROGRAM = REPO / "benchmarks" / "programs" / "sleep_trial.py"
NODES = 4
SCHEDULERS = {"asha": "stopping ASHA", "promotion": "promotion ASHA", "sh": "synchronous successive halving",
              "asha_packed": "stopping ASHA, one-GPU trials packed"}
GPUS_PER_NODE = 4  # the cluster's gres.conf
# Slots: one trial per node, or (the packed case) one per GPU, 16 at a time on the 4 nodes.
SLOTS = {"asha_packed": NODES * GPUS_PER_NODE}
# Where a node's seconds went; the first is the work, the rest add up to the remainder.
CATEGORIES = {
    "work": "trial work (completed epoch sleeps)",
    "launch_driver": "launch: decision to Popen (journal append, fsync, Popen of record_exit + srun)",
    "launch_slurm": "launch: Popen to the program running (wrapper, srun, step creation, interpreter)",
    "launch_program": "launch: program start to its first epoch (imports, checkpoint load)",
    "between": "inside a run, between epochs (stamp, checkpoint, report, a promoted run's verdict wait)",
    "end_stop": "end of a stopped run: the losing epoch's end to the step gone (reading it, the cut epoch, scancel)",
    "end_exit": "end of a paused or completed run: last epoch's end to the step gone (verdict wait, exit)",
    "end_budget": "end of a run cancelled by the time budget: last epoch's end to the step gone",
    "gap_seen": "idle: a run gone to the driver seeing it (polling)",
    "gap_wait": "idle: the driver seeing a run end to planning the next run on the node (nothing to run)",
    "start": "before the node's first run (the first sweep's launches one after another, or nothing to run yet)",
    "tail": "tail: the node's last run gone to the experiment's end",
}


def env() -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") or k == "SLURM_CONF"}
    base["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return base


def levels_and_bracket(max_t: int, eta: int) -> tuple[list[float], int]:
    """The rung levels (grace 1) and how many configs synchronous SH starts in its one bracket."""
    levels = rung_levels(max_t, 1, eta)
    return levels, hyperband_sizes(levels, eta)[0]


def config(where: Path, scheduler: str, args: argparse.Namespace, seed: int) -> Path:
    """ASHA and promotion ASHA run for a time budget; SH runs its one bracket (max_trials = its size):
    sync_hyperband's next bracket would need new trials, which max_trials refuses, so the run ends there."""
    _, bracket = levels_and_bracket(args.max_t, args.eta)
    execution = {"backend": "slurm", "stop_grace_period": 5, "num_parallel_evals": NODES,
                 "slurm": {"mode": "steps", "nodes_per_eval": 1}}
    if scheduler == "asha_packed":
        # As many one-GPU trials as the allocation's GPUs hold (num_parallel_evals 0: what fits).
        execution.update(num_parallel_evals=0, gpus_per_eval=1, slurm={"mode": "steps"})
        scheduler = "asha"
    if args.poll_interval is not None:
        execution["poll_interval"] = args.poll_interval
    budget = {"max_trials": bracket} if scheduler == "sh" else {"max_time": args.max_time}
    kind = "sync_hyperband" if scheduler == "sh" else scheduler
    data = {"name": f"utilisation-{scheduler}", "command": [sys.executable, str(PROGRAM)],
            "experiment_dir": str(where / "exp"),
            "params": {"x": {"type": "uniform", "low": 0.0, "high": 1.0},
                       "y": {"type": "uniform", "low": 0.0, "high": 1.0}, "base": args.base},
            "metric": {"name": "loss", "mode": "min"}, "resource": {"name": "epoch", "max": args.max_t},
            "scheduler": {"type": kind, "grace_period": 1, "reduction_factor": args.eta},
            "searcher": {"type": "random", "seed": seed}, "budget": budget, "execution": execution}
    path = where / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# --------------------------------------------------------------------------- reading what happened


@dataclass
class Run:
    trial_id: str
    run: int
    planned: float  # trial_created / trial_resumed event: the driver decided to run it
    popen: float  # trial_started event: submitted (Popen returned)
    node: str = ""
    program_start: float | None = None
    # (start, end), end None for an epoch cut short or run after the trial's stop decision
    epochs: list[tuple[float, float | None]] = field(default_factory=list)
    seen_end: float | None = None  # trial_ended / trial_paused / trial_retry event
    gone: float | None = None  # exit marker's mtime: the run's srun exited
    decision: str = "continue"  # the last non-continue decision its reports got
    decided_at: float | None = None  # that report event's time: the driver read the line and decided
    decided_resource: float | None = None
    line_written: float | None = None  # the "t" of that report's metric line
    end_event: str = ""

    @property
    def end_kind(self) -> str:
        if self.decision == "stop":
            return "end_stop"
        if self.decision in ("pause", "complete"):
            return "end_exit"
        return "end_budget"


def read_runs(exp: Path) -> tuple[list[Run], list[dict]]:
    events = [json.loads(line) for line in (exp / "journal.jsonl").read_text().splitlines()]
    planned: dict[str, float] = {}
    current: dict[str, Run] = {}
    runs: list[Run] = []
    for e in events:
        kind, trial_id = e["type"], e.get("trial_id", "")
        if kind in ("trial_created", "trial_resumed", "trial_retry"):
            planned[trial_id] = e["t"]
        if kind == "trial_started":
            run = Run(trial_id, int(e["run"]), planned.get(trial_id, e["t"]), e["t"])
            current[trial_id] = run
            runs.append(run)
        elif kind == "report" and e["decision"] != "continue" and trial_id in current:
            run = current[trial_id]
            run.decision, run.decided_at, run.decided_resource = e["decision"], e["t"], float(e["resource"])
        if kind in ("trial_ended", "trial_paused", "trial_retry") and trial_id in current:
            run = current.pop(trial_id)
            run.seen_end, run.end_event = e["t"], kind
    for run in runs:
        trial_dir = exp / "trials" / run.trial_id
        nodes = list(trial_dir.glob(f"*-{run.trial_id}-{run.run}.nodes"))
        held = nodes[0].read_text().split() if nodes else []
        run.node = held[0] if held else "?"
        markers = list(trial_dir.glob(f"*-{run.trial_id}-{run.run}.exit"))
        run.gone = markers[0].stat().st_mtime if markers else run.seen_end
        stamps = [json.loads(line) for line in (trial_dir / "work.jsonl").read_text().splitlines()
                  if line.strip()] if (trial_dir / "work.jsonl").exists() else []
        starts, ends = {}, {}
        for s in stamps:
            if s.get("run") != run.run:
                continue
            if "program_start" in s:
                run.program_start = s["program_start"]
            elif "start" in s:
                starts[s["epoch"]] = s["start"]
            elif "end" in s:
                ends[s["epoch"]] = s["end"]
        # Epochs after a stop decision are waste even if they finished before the cancel came.
        stopped_at = run.decided_resource if run.decision == "stop" else None
        run.epochs = [(starts[k], ends.get(k) if stopped_at is None or k <= stopped_at else None)
                      for k in sorted(starts)]
        if run.decided_resource is not None and (trial_dir / "metrics.jsonl").exists():
            lines = [json.loads(line) for line in (trial_dir / "metrics.jsonl").read_text().splitlines() if line]
            run.line_written = next((line["t"] for line in lines
                                     if float(line["epoch"]) == run.decided_resource), None)
    return runs, events


# --------------------------------------------------------------------------- accounting


def assign_slots(runs: list[Run]) -> None:
    """Packed runs hold a share of a node, not a node: each is given the first GPU slot free at its
    decision (a slot whose previous run is gone), so that slot-seconds are accounted as node-seconds are."""
    free_at: list[float] = []
    for run in sorted(runs, key=lambda r: r.planned):
        gone = run.gone if run.gone is not None else float("inf")
        slot = next((i for i, t in enumerate(free_at) if t <= run.planned), None)
        if slot is None:
            slot = len(free_at)
            free_at.append(gone)
        free_at[slot] = gone
        run.node = f"slot{slot}"


def account(runs: list[Run], events: list[dict], max_time: float | None, slots: int = NODES) -> dict:
    """Every slot-second (a node, or a GPU when packed) of [first decision, last run gone] in one category;
    plus per-run delays."""
    t0 = min(r.planned for r in runs)
    t_end = max(r.gone for r in runs if r.gone is not None)
    split = {name: 0.0 for name in CATEGORIES}
    delays: dict[str, list[float]] = {k: [] for k in ("gone_to_seen", "seen_to_next", "gone_to_next_epoch",
                                                      "planned_to_popen", "popen_to_program",
                                                      "program_to_epoch", "between_epochs",
                                                      "end_stop", "end_exit", "stop_read", "stop_cancel",
                                                      "exit_read", "exit_gone")}
    by_node: dict[str, list[Run]] = {}
    for run in runs:
        by_node.setdefault(run.node, []).append(run)
    last_gone_per_node = []
    for node_runs in by_node.values():
        node_runs.sort(key=lambda r: r.planned)
        split["start"] += node_runs[0].planned - t0
        for i, run in enumerate(node_runs):
            gone = run.gone if run.gone is not None else t_end
            _run_split(run, gone, split, delays)
            if i + 1 < len(node_runs):
                following = node_runs[i + 1]
                seen = min(max(run.seen_end or gone, gone), following.planned)
                split["gap_seen"] += seen - gone
                split["gap_wait"] += following.planned - seen
                delays["gone_to_seen"].append(seen - gone)
                delays["seen_to_next"].append(following.planned - seen)
                if following.epochs:
                    delays["gone_to_next_epoch"].append(following.epochs[0][0] - gone)
            else:
                split["tail"] += t_end - gone
                last_gone_per_node.append(gone)
    # Nodes that never ran anything (fewer trials than nodes) idle the whole time.
    split["tail"] += (slots - len(by_node)) * (t_end - t0)
    wall = t_end - t0
    accounted = sum(split.values())
    # The steady part: until the first node has no more work, or the time budget ran out.
    steady_end = min(last_gone_per_node) if len(by_node) == slots else t0
    deadline = None
    if max_time is not None:
        started = next(e["t"] for e in events if e["type"] == "run_started")
        deadline = started + max_time
        steady_end = min(steady_end, deadline)
    steady_work = 0.0
    for run in runs:
        for start, end in run.epochs:
            if end is None and run.end_kind != "end_budget":
                continue  # cut by a stop: not work
            end = end if end is not None else (run.gone or t_end)
            steady_work += max(0.0, min(end, steady_end) - max(start, t0))
    steady_s = steady_end - t0
    return {"trials": len({r.trial_id for r in runs}), "runs": len(runs), "wall_s": wall,
            "work_node_s": split["work"], "utilisation": split["work"] / (slots * wall), "slots": slots,
            "steady_s": steady_s, "steady_utilisation": steady_work / (slots * steady_s) if steady_s > 0 else float("nan"),
            "deadline_after_s": (deadline - t0) if deadline else None,
            "split_node_s": split, "accounted_node_s": accounted, "node_s": slots * wall,
            "delays_ms": {k: _quantiles(v) for k, v in delays.items()},
            "stops": sum(r.decision == "stop" for r in runs), "pauses": sum(r.decision == "pause" for r in runs)}


def _run_split(run: Run, gone: float, split: dict[str, float], delays: dict[str, list[float]]) -> None:
    """One run's seconds on its node, from its decision to its srun being gone."""
    split["launch_driver"] += run.popen - run.planned
    delays["planned_to_popen"].append(run.popen - run.planned)
    if run.program_start is None or not run.epochs:
        split["launch_slurm"] += gone - run.popen  # never got to an epoch: all of it was launching
        return
    split["launch_slurm"] += run.program_start - run.popen
    split["launch_program"] += run.epochs[0][0] - run.program_start
    delays["popen_to_program"].append(run.program_start - run.popen)
    delays["program_to_epoch"].append(run.epochs[0][0] - run.program_start)
    last_end = run.epochs[0][0]
    for start, end in run.epochs:
        if end is None:
            break
        if start > last_end:
            split["between"] += start - last_end
            if last_end != run.epochs[0][0]:
                delays["between_epochs"].append(start - last_end)
        split["work"] += end - start
        last_end = end
    split[run.end_kind] += gone - last_end
    if run.end_kind in delays:
        delays[run.end_kind].append(gone - last_end)
        if run.line_written is not None and run.decided_at is not None and run.decision != "complete":
            name = "stop" if run.end_kind == "end_stop" else "exit"
            delays[f"{name}_read"].append(run.decided_at - run.line_written)
            delays[f"{name}_{'cancel' if name == 'stop' else 'gone'}"].append(gone - run.decided_at)


def _quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ms = sorted(v * 1000 for v in values)
    return {"n": len(ms), "median": statistics.median(ms), "p90": ms[min(len(ms) - 1, int(0.9 * len(ms)))],
            "mean": statistics.fmean(ms)}


# --------------------------------------------------------------------------- running


def run_one(scheduler: str, args: argparse.Namespace, seed: int) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"hpo-util-{scheduler}-", dir=args.dir) as tmp:
        where = Path(tmp)
        path = config(where, scheduler, args, seed)
        argv = ["salloc", f"-N{NODES}", "--exclusive", sys.executable, "-m", "hpc_hpo.cli", "run", "--quiet",
                str(path)]
        began = time.monotonic()
        done = subprocess.run(argv, cwd=where, env=env(), capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            raise SystemExit(f"{scheduler}: the driver failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        runs, events = read_runs(where / "exp")
        slots = SLOTS.get(scheduler, NODES)
        if slots != NODES:
            assign_slots(runs)
        result = account(runs, events, args.max_time if scheduler != "sh" else None, slots)
        result["poll_interval"] = load_config(path).execution.poll_interval
        result["command_s"] = time.monotonic() - began
        if args.keep:
            target = Path(args.keep) / scheduler
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(where / "exp", target)
        return result


def slurm_version() -> str:
    done = subprocess.run(["sinfo", "-V"], capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--schedulers", nargs="+", choices=list(SCHEDULERS), default=list(SCHEDULERS),
                        help="asha_packed: stopping ASHA with gpus_per_eval 1, 16 trials at a time on the 16 GPUs")
    parser.add_argument("--base", type=float, default=4.0, help="mean epoch seconds: an epoch sleeps base * (0.5 + x)")
    parser.add_argument("--max-t", type=int, default=9, help="resource.max in epochs (rungs grace 1 * eta**k)")
    parser.add_argument("--eta", type=int, default=3)
    parser.add_argument("--max-time", type=float, default=150.0, help="budget.max_time (s) of ASHA and promotion")
    parser.add_argument("--poll-interval", type=float, default=None,
                        help="execution.poll_interval (default: hpc_hpo's own default)")
    parser.add_argument("--seed", type=int, default=1)
    add_live_output_options(parser)
    args = parser.parse_args()
    command = command_line()
    head = header(command, None)
    head = [f"Peers: none (the reference is the allocation itself); {slurm_version()}, the project's "
            f"{NODES}-node cluster on this one host (.ci/cluster/cluster.sh)." if line.startswith("Peers:") else line
            for line in head]
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
    results = {}
    for scheduler in args.schedulers:
        results[scheduler] = run_one(scheduler, args, args.seed)
        r = results[scheduler]
        print(f"{SCHEDULERS[scheduler]}: {r['trials']} trials, {r['runs']} runs, wall {r['wall_s']:.1f} s, "
              f"work {r['work_node_s']:.1f} node-s, utilisation {100 * r['utilisation']:.1f}% "
              f"(steady {100 * r['steady_utilisation']:.1f}% over {r['steady_s']:.1f} s)", flush=True)
    body = render(results, args, head)
    publish("slurm-utilisation", body, args.out, results, args.json)


def render(results: dict, args: argparse.Namespace, head: list[str]) -> str:
    levels, bracket = levels_and_bracket(args.max_t, args.eta)
    polls = sorted({r["poll_interval"] for r in results.values()})
    poll = "/".join(f"{p:g}" for p in polls)
    lo, hi = args.base * 0.5, args.base * 1.5
    launches = [r["delays_ms"]["popen_to_program"] for r in results.values() if r["delays_ms"]["popen_to_program"]["n"]]
    launch = statistics.median(q["median"] for q in launches) / 1000
    minutes = sum(r["command_s"] for r in results.values()) / 60
    lines = ["## Live Slurm: allocation utilisation (issue 6, part 3c)", "", *head,
             f"Setup: the driver inside `salloc -N{NODES} --exclusive` in steps mode, one node per trial, "
             f"num_parallel_evals {NODES}, poll_interval {poll} s (hpc_hpo's default unless the command sets it), "
             f"random search. Trials (benchmarks/programs/sleep_trial.py) sleep base * (0.5 + x) = "
             f"{lo:g}..{hi:g} s per epoch (x ~ U(0, 1) per config; loss |y - 0.3| + 1/(1 + epoch), y ~ U(0, 1), "
             f"so speed and quality are independent), up to {args.max_t:g} epochs; rungs "
             f"{', '.join(f'{v:g}' for v in levels)} (grace 1, eta {args.eta}). Stopping and promotion ASHA run "
             f"for budget.max_time {args.max_time:g} s; synchronous successive halving is sync_hyperband run for its "
             f"first bracket only (budget.max_trials {bracket}: {bracket} configs at rung 1, the best 1/{args.eta} "
             "resumed from their checkpoints at each rung). The packed case is the stopping ASHA run with "
             f"`gpus_per_eval: 1` and num_parallel_evals 0 on nodes of {GPUS_PER_NODE} GPUs (gres), "
             f"{NODES * GPUS_PER_NODE} trials at a time, each a step of one GPU and one CPU placed by the "
             "driver's book; its utilisation is GPU-seconds of work over "
             f"{NODES * GPUS_PER_NODE} x wall, and its runs are given GPU slots (first free at their "
             "decision) for the split below.", "",
             f"Why these sizes: a launch costs about {launch:.2f} s here (median, Popen to the program running: "
             f"srun step, interpreter) against epochs of {lo:g}..{hi:g} s, {lo / launch:.0f} to {hi / launch:.0f} "
             "times as long, as on a real cluster, where an srun step and a framework import take seconds and an "
             "epoch minutes; millisecond epochs would measure only the launch. "
             f"{len(levels)} rung levels give decisions at {len(levels) - 1} of them, and the runs took "
             f"{minutes:.1f} minutes in all. Why a time budget for the asynchronous schedulers: with "
             "max_trials their last trials drain one by one while the other nodes idle, a tail whose length "
             "is that of the last survivor (up to "
             f"{args.max_t:g} epochs), an artefact of stopping that a long experiment amortises; a time "
             "budget ends all nodes together (the end's loss is one cut epoch per node at most, shown apart). "
             "Synchronous SH has no steady state of its own: each bracket repeats its barriers and its "
             "narrowing last stages, so one whole bracket is its steady state and is measured to its end.", "",
             "Utilisation = node-seconds of completed epoch sleeps (stamped by the trials) / "
             f"({NODES} x wall), wall from the driver's first launch decision to its last run's srun exit. "
             "\"Before the end\" counts the same only until the first node has no more work (or the time "
             "budget runs out), including epochs the budget's cancel cut.", "",
             "| scheduler | trials | runs (steps) | stops | pauses | wall s | node-s of work | utilisation, whole run | "
             "before the end (window s) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        lines.append(f"| {SCHEDULERS[name]} | {r['trials']} | {r['runs']} | {r['stops']} | {r['pauses']} | "
                     f"{r['wall_s']:.1f} | {r['work_node_s']:.1f} | {100 * r['utilisation']:.1f}% | "
                     f"{100 * r['steady_utilisation']:.1f}% ({r['steady_s']:.1f}) |")
    lines += ["", "Where the slot-seconds (node-seconds; GPU-seconds when packed) of slots x wall went "
              "(% of them; each column adds up to 100):", "",
              "| | " + " | ".join(SCHEDULERS[n] for n in results) + " |",
              "|---|" + "---:|" * len(results)]
    for key, label in CATEGORIES.items():
        lines.append(f"| {label} | " + " | ".join(f"{100 * r['split_node_s'][key] / r['node_s']:.1f}"
                                                 for r in results.values()) + " |")
    lines.append("| unaccounted (stamps and events that disagree) | " + " | ".join(
        f"{100 * (r['node_s'] - r['accounted_node_s']) / r['node_s']:.1f}" for r in results.values()) + " |")
    names = {"gone_to_seen": "a run's srun gone -> the driver sees it",
             "seen_to_next": "seen -> next run on the node planned",
             "gone_to_next_epoch": "a run's srun gone -> the next run's first epoch on the node",
             "planned_to_popen": "planned -> Popen returned", "popen_to_program": "Popen -> program running",
             "program_to_epoch": "program running -> first epoch", "between_epochs": "between two epochs of a run",
             "end_stop": "stopped run: the losing epoch's end -> srun gone",
             "stop_read": "stopped run: losing line written -> the driver reads it and decides",
             "stop_cancel": "stopped run: decision -> srun gone (journal, squeue + scancel, step teardown)",
             "end_exit": "paused/completed run: last epoch's end -> srun gone",
             "exit_read": "paused run: its rung's line written -> the driver reads it and decides",
             "exit_gone": "paused run: decision -> srun gone (decision file, report() exits)"}
    lines += ["", "Per-run delays, median / 90th percentile in ms (n):", "",
              "| delay | " + " | ".join(SCHEDULERS[n] for n in results) + " |", "|---|" + "---:|" * len(results)]
    for key, label in names.items():
        cells = []
        for r in results.values():
            q = r["delays_ms"][key]
            cells.append(f"{q['median']:.0f} / {q['p90']:.0f} ({q['n']})" if q["n"] else "")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if "asha" in results:
        r = results["asha"]
        verdict = {True: "meets", False: "misses"}
        lines += ["", f"Target >= 95% for ASHA: stopping ASHA {verdict[r['steady_utilisation'] >= 0.95]} it before "
                  f"the end, the steady-state figure ({100 * r['steady_utilisation']:.2f}%), and "
                  f"{verdict[r['utilisation'] >= 0.95]} it over the whole run, where the epochs the time "
                  f"budget's cancel cut count as lost ({100 * r['utilisation']:.2f}%)."]
    lines += ["", f"Load average (1, 5, 15 min) at the end: {load_average()}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
