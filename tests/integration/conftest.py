"""Helpers for end-to-end tests: write a config, run the real CLI in a subprocess, read the results."""
from __future__ import annotations

import csv
from collections import Counter
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

PROGRAMS = Path(__file__).resolve().parents[1] / "programs"
REPO = Path(__file__).resolve().parents[2]


def cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The real CLI in a subprocess, importing hpc_hpo from this checkout whatever pip last installed."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "hpc_hpo.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=env)


def synthetic_config(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "name": "synthetic",
        "command": [sys.executable, str(PROGRAMS / "synthetic_trial.py")],
        "experiment_dir": str(tmp_path / "exp"),
        "params": {"x": {"type": "uniform", "low": 0.0, "high": 1.0},
                   "shape": {"type": "choice", "values": ["fast", "slow"]},
                   "epochs": 9},
        "metric": {"name": "loss", "mode": "min"},
        "resource": {"name": "epoch", "max": 9},
        "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 3},
        "searcher": {"type": "random", "seed": 7},
        "budget": {"max_trials": 24},
        "execution": {"backend": "local", "num_parallel_evals": 4, "poll_interval": 0.05},
    }
    for key, value in overrides.items():
        # Sections merge with the defaults; params and metric are replaced whole.
        if isinstance(value, dict) and isinstance(config.get(key), dict) and key not in ("params", "metric"):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config


def write_config(tmp_path: Path, config: dict[str, Any], name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def read_export(tmp_path: Path, experiment: str = "exp") -> list[dict[str, str]]:
    out = tmp_path / "export.csv"
    result = cli("export", str(tmp_path / experiment), "--csv", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with open(out, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def run_experiment(tmp_path: Path):
    def run(**overrides: Any) -> subprocess.CompletedProcess[str]:
        path = write_config(tmp_path, synthetic_config(tmp_path, **overrides))
        return cli("run", str(path), cwd=tmp_path)
    return run


# --------------------------------------------------------------------------- kill/restart cycles


def kill_restart_cycles(argv: list[str], cwd: Path, env: dict[str, str], journal_path: Path, cycles: int,
                        seed: int, alive_s: tuple[float, float] = (0.3, 2.5)) -> None:
    """Start the driver, SIGKILL it at a random moment, again and again, checking that the journal only grows."""
    import random
    import signal
    import time
    rng = random.Random(seed)
    seen_events, seen_trials = 0, 0
    for cycle in range(cycles):
        driver = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(*alive_s))
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=60)
        if not journal_path.exists():
            continue
        events = read_journal(journal_path)
        trials = sum(1 for e in events if e["type"] == "trial_created")
        assert len(events) >= seen_events and trials >= seen_trials, f"progress went back in cycle {cycle} (seed {seed})"
        seen_events, seen_trials = len(events), trials


def read_journal(path: Path) -> list[dict[str, Any]]:
    """Complete lines only: a driver killed mid-append may leave a torn last line, which readers skip."""
    import json
    data = path.read_bytes()
    return [json.loads(line) for line in data[: data.rfind(b"\n") + 1].splitlines() if line.strip()]


def check_nothing_lost_or_doubled(experiment: Path, rows: list[dict[str, str]], max_resource: float) -> None:
    """After crashes: every trial ended, ids unique, one process per journaled run, and every metric line a
    trial wrote (up to the last one the scheduler saw) in the export exactly once."""
    import json
    from collections import Counter
    events = read_journal(experiment / "journal.jsonl")
    created = [e["trial_id"] for e in events if e["type"] == "trial_created"]
    assert created == [f"{i:04d}" for i in range(len(created))], "trial ids are not unique and in order"
    assert events[-1]["type"] == "experiment_ended" and events[-1]["final"] is True
    ended = {e["trial_id"]: e for e in events if e["type"] == "trial_ended"}
    assert set(ended) == set(created), f"trials never ended: {sorted(set(created) - set(ended))}"
    # None of these trials fails on its own: a failed one is a run the restarted driver lost track of.
    decisions = {e["trial_id"]: e["decision"] for e in events if e["type"] == "report"}
    failed = {t: e.get("reason") for t, e in ended.items() if e["state"] == "failed" and decisions.get(t) != "stop"}
    assert not failed, f"runs lost across restarts: {failed}"
    runs = Counter(e["trial_id"] for e in events if e["type"] == "trial_started")
    for trial_id in created:
        trial_dir = experiment / "trials" / trial_id
        starts = [line.split()[0] for line in (trial_dir / "starts").read_text().splitlines()]
        assert len(starts) == len(set(starts)), f"trial {trial_id}: a run was started twice: {starts}"
        assert len(starts) == runs[trial_id], f"trial {trial_id}: {len(starts)} processes, {runs[trial_id]} runs journaled"
        exported = [float(r["resource"]) for r in rows if r["trial_id"] == trial_id]
        assert len(exported) == len(set(exported)), f"trial {trial_id}: a report appears twice in the export"
        written = {float(json.loads(line)["epoch"]) for line in (trial_dir / "metrics.jsonl").read_text().splitlines()
                   if line.strip()}
        seen = max(exported, default=0.0)
        assert {r for r in written if r <= seen} == set(exported), f"trial {trial_id}: reports lost"
        if decisions.get(trial_id) != "stop":
            assert seen == max_resource, f"trial {trial_id} ended at {seen} without being stopped"


def oracle_disagreements(config_path: Path, events: list[dict[str, Any]]) -> list[str]:
    """Feed the journal's events to a fresh scheduler in journal order; list every report whose journaled
    decision differs from the one the scheduler takes."""
    from hpc_hpo.config import load_config
    from hpc_hpo.schedulers import make_scheduler
    from hpc_hpo.schedulers.base import Resume, StartNew
    scheduler = make_scheduler(load_config(config_path))
    wrong = []
    for event in events:
        kind, trial_id = event["type"], event.get("trial_id", "")
        if kind == "trial_created":
            scheduler.on_trial_created(trial_id, event["config"])
            scheduler.on_start(trial_id, StartNew(target=event["target"], bracket=event.get("bracket", 0)))
        elif kind == "trial_resumed":
            scheduler.on_start(trial_id, Resume(trial_id, event["resume_from"], event["target"]))
        elif kind == "report":
            decision = scheduler.on_report(trial_id, float(event["resource"]), float(event["value"])).decision.value
            if decision != event["decision"]:
                wrong.append(f"{trial_id}@{event['resource']}: journal {event['decision']}, oracle {decision}")
        elif kind == "trial_paused":
            scheduler.on_paused(trial_id)
        elif kind == "trial_ended":
            scheduler.on_trial_end(trial_id)
    return wrong


def check_shared_journal(config_path: Path, final_states: tuple[str, ...]) -> list[dict[str, Any]]:
    """The end state of an experiment several drivers ran (README \"Elastic experiments\"): no trial id twice, no
    promotion twice, no trial ended twice, the decisions a single scheduler takes in the journal's order, one
    experiment end, and every trial in one of `final_states`."""
    from hpc_hpo.journal import read_events
    events = read_events(config_path.parent / "exp" / "journal.jsonl")
    created = Counter(e["trial_id"] for e in events if e["type"] == "trial_created")
    assert created and max(created.values()) == 1, f"a trial id was created twice: {created.most_common(3)}"
    promoted = Counter((e["trial_id"], e["resume_from"]) for e in events if e["type"] == "trial_resumed")
    assert not promoted or max(promoted.values()) == 1, f"a trial was promoted twice from one rung: {promoted}"
    ended = Counter(e["trial_id"] for e in events if e["type"] == "trial_ended")
    assert not ended or max(ended.values()) == 1, f"a trial ended twice: {ended.most_common(3)}"
    assert oracle_disagreements(config_path, events) == []
    exported = {(row["trial_id"], float(row["resource"])): row["decision"]
                for row in read_export(config_path.parent)}
    journaled = {(e["trial_id"], float(e["resource"])): e["decision"] for e in events if e["type"] == "report"}
    assert exported == journaled, "the export's decisions differ from the journal's"
    assert sum(e["type"] == "experiment_ended" for e in events) == 1
    result = cli("status", str(config_path.parent / "exp"), cwd=config_path.parent)
    states = {line.split()[0]: line.split()[1] for line in result.stdout.splitlines()
              if line[:4].isdigit() and len(line.split()) > 1}
    assert set(states) == set(created), result.stdout
    assert set(states.values()) <= set(final_states), result.stdout
    return events
