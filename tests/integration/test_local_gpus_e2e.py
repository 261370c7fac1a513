"""Local mode GPUs end to end: the real CLI, real trial processes, each seeing its own CUDA_VISIBLE_DEVICES.

No GPU driver is installed here, so the GPUs come from a FAKE `nvidia-smi` put first on PATH: a shell
script that prints what `nvidia-smi -L` prints on a 4-GPU node. Everything else is real: the driver finds
the GPUs by running it, hands each trial a disjoint set, takes them back when a trial ends, and after a
kill -9 and restart knows which GPUs the trials it adopts still hold. Each trial writes down when it ran
and which devices it saw; the checks are on those records.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from itertools import combinations
from pathlib import Path
from typing import Any

from conftest import REPO, read_journal, write_config

FAKE_UUIDS = [f"GPU-fa4e0000-0000-4000-8000-00000000000{i}" for i in range(4)]
FAKE_NVIDIA_SMI = "#!/bin/sh\n# FAKE nvidia-smi for tests: no GPU driver is installed here.\n" + "".join(
    f"echo 'GPU {i}: NVIDIA Fake GPU 80GB (UUID: {uuid})'\n" for i, uuid in enumerate(FAKE_UUIDS))

# Records each run: when it started and ended (monotonic clock, shared by all processes of the machine)
# and the devices it was shown; reports its epochs with a pause so that runs overlap.
TRIAL_PROGRAM = """\
import os, sys, time
from hpc_hpo import report
trial_dir = os.environ["HPC_HPO_TRIAL_DIR"]
seen = os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")
start = time.monotonic()
for epoch in range(1, 4):
    time.sleep(float(sys.argv[1]))
    report(epoch=epoch, loss=1.0 / epoch)
with open(os.path.join(trial_dir, "gpu_runs"), "a") as handle:
    cpus = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
    handle.write(f"{start} {time.monotonic()} {seen} {cpus}\\n")
"""


def setup(tmp_path: Path, gpus_per_eval: int | None, trials: int, epoch_s: float, parallel: int = 0,
          **shape: int) -> tuple[Path, dict[str, str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "nvidia-smi"
    fake.write_text(FAKE_NVIDIA_SMI)
    fake.chmod(0o755)
    program = tmp_path / "gpu_trial.py"
    program.write_text(TRIAL_PROGRAM)
    config: dict[str, Any] = {
        "name": "gpus", "command": [sys.executable, str(program), str(epoch_s)],
        "experiment_dir": str(tmp_path / "exp"),
        "params": {"x": {"type": "uniform", "low": 0.0, "high": 1.0, "flag": None}},
        "metric": {"name": "loss", "mode": "min"}, "resource": {"name": "epoch", "max": 3},
        "scheduler": {"type": "fifo"}, "searcher": {"type": "random", "seed": 3},
        "budget": {"max_trials": trials},
        "execution": {"backend": "local", "num_parallel_evals": parallel, "poll_interval": 0.05,
                      **({} if gpus_per_eval is None else {"gpus_per_eval": gpus_per_eval}), **shape},
    }
    env = {k: v for k, v in os.environ.items() if not k.endswith("_VISIBLE_DEVICES")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return write_config(tmp_path, config), env


def driver_argv(path: Path) -> list[str]:
    return [sys.executable, "-m", "hpc_hpo.cli", "run", str(path)]


def runs(tmp_path: Path) -> list[tuple[float, float, list[str]]]:
    records = []
    for log in sorted((tmp_path / "exp" / "trials").glob("*/gpu_runs")):
        for line in log.read_text().splitlines():
            start, end, seen, _cpus = line.split()
            records.append((float(start), float(end), seen.split(",")))
    return records


def most_at_once(records: list[tuple[float, float, list[str]]]) -> int:
    return max(sum(1 for s, e, _ in records if s <= start < e) for start, _, _ in records)


def check_never_shared(records: list[tuple[float, float, list[str]]]) -> None:
    """No two runs that ran at the same time were shown the same GPU."""
    for (s1, e1, g1), (s2, e2, g2) in combinations(records, 2):
        if s1 < e2 and s2 < e1:
            assert not set(g1) & set(g2), f"runs at the same time shared a GPU: {g1} and {g2}"


def test_four_one_gpu_trials_run_at_once_each_on_its_own_gpu(tmp_path: Path) -> None:
    path, env = setup(tmp_path, gpus_per_eval=1, trials=8, epoch_s=0.4)
    done = subprocess.run(driver_argv(path), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "4 at a time" in done.stdout  # num_parallel_evals 0: as many as the 4 GPUs hold
    records = runs(tmp_path)
    assert len(records) == 8
    assert all(len(seen) == 1 and seen[0] in FAKE_UUIDS for _, _, seen in records)
    assert {seen[0] for _, _, seen in records} == set(FAKE_UUIDS)
    assert most_at_once(records) == 4
    check_never_shared(records)


def test_two_gpu_trials_run_two_at_once(tmp_path: Path) -> None:
    path, env = setup(tmp_path, gpus_per_eval=2, trials=4, epoch_s=0.4)
    done = subprocess.run(driver_argv(path), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "2 at a time" in done.stdout
    records = runs(tmp_path)
    assert len(records) == 4 and all(len(seen) == 2 and set(seen) <= set(FAKE_UUIDS) for _, _, seen in records)
    assert most_at_once(records) == 2
    check_never_shared(records)


def test_a_restarted_driver_does_not_hand_out_the_gpus_of_runs_it_adopts(tmp_path: Path) -> None:
    """num_parallel_evals 8 on 4 GPUs: only the book of free GPUs holds trials back, so a restarted driver that
    forgot what its adopted runs hold would start four more on their GPUs at once."""
    path, env = setup(tmp_path, gpus_per_eval=1, trials=8, epoch_s=1.0, parallel=8)
    journal = tmp_path / "exp" / "journal.jsonl"
    first = subprocess.Popen(driver_argv(path), cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if journal.exists() and sum(e["type"] == "trial_started" for e in read_journal(journal)) >= 4:
            break
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    started = [e for e in read_journal(journal) if e["type"] == "trial_started"]
    assert len(started) == 4, "the first driver should have started 4 one-GPU trials on the 4 GPUs"
    assert not runs(tmp_path), "the trials should still be running when the driver is killed"
    done = subprocess.run(driver_argv(path), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("adopted") == 4
    records = runs(tmp_path)
    assert len(records) == 8  # every trial ran once: the adopted ones were not started again
    check_never_shared(records)
    assert most_at_once(records) == 4
    events = read_journal(journal)
    assert {e["state"] for e in events if e["type"] == "trial_ended"} == {"finished"}  # fifo: every trial ran to max_t
    # What each adopted run held is on disk, beside its exit marker.
    held = [json.loads(p.read_text())["gpus"] for p in (tmp_path / "exp" / "trials").glob("*/*.devices")]
    assert len(held) == 8 and sorted(g for gpus in held for g in gpus) == sorted(FAKE_UUIDS * 2)


def test_cpus_per_eval_pins_each_trial_to_its_own_cpus(tmp_path: Path) -> None:
    """No GPU here: cpus_per_eval 1 on the driver's CPUs (os.sched_getaffinity) runs that many trials at once,
    each pinned (taskset) to a CPU no other running trial has."""
    cpus = sorted(os.sched_getaffinity(0))
    path, env = setup(tmp_path, gpus_per_eval=None, trials=2 * len(cpus), epoch_s=0.3, cpus_per_eval=1)
    done = subprocess.run(driver_argv(path), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{len(cpus)} at a time" in done.stdout
    records = []
    for log in (tmp_path / "exp" / "trials").glob("*/gpu_runs"):
        for line in log.read_text().splitlines():
            start, end, seen, pinned = line.split()
            assert seen == "<unset>"  # a trial that asks for no GPU is shown the driver's view, untouched
            records.append((float(start), float(end), pinned.split(",")))
    assert len(records) == 2 * len(cpus)
    assert all(len(pinned) == 1 and int(pinned[0]) in cpus for _, _, pinned in records)
    check_never_shared(records)  # here: no two trials at once on one CPU
