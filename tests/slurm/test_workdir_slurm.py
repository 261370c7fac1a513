"""Per-trial working directories on the live cluster: a trial's srun step (steps mode, inside a small
salloc) and its sbatch job (--chdir) run in the trial's own directory, so a program writing out.txt
relative to its cwd keeps its output apart from the trials running beside it. The config lives in one
directory and the driver starts in another: the program, named relative to the config, is found."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from live import journal, run

pytestmark = pytest.mark.usefixtures("slurm_cluster")
CLI = [sys.executable, "-m", "hpc_hpo.cli"]

# Records where it ran (node, Slurm job and step, cwd) in out.txt in its cwd, waits while the other trials
# run, and reports its x only if out.txt still holds its own line (else 99).
WRITER = '''\
import argparse, os, socket, time
from hpc_hpo import report
parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float)
args = parser.parse_args()
line = (f"{os.environ['HPC_HPO_TRIAL_ID']} x={args.x} cwd={os.getcwd()} job={os.environ.get('SLURM_JOB_ID')} "
        f"step={os.environ.get('SLURM_STEP_ID')} node={socket.gethostname()} data={open('data.txt').read().strip()}")
with open("out.txt", "w") as handle:
    handle.write(line + "\\n")
time.sleep(2.0)
report(epoch=1, loss=args.x if open("out.txt").read().strip() == line else 99.0)
'''


def project(tmp_path: Path, execution: dict[str, Any], trials: int) -> tuple[Path, Path]:
    proj, here = tmp_path / "proj", tmp_path / "run_here"
    proj.mkdir()
    here.mkdir()
    (proj / "writer.py").write_text(WRITER)
    (proj / "data.txt").write_text("input beside the config\n")
    config = {"name": "wdslurm", "command": "{python} writer.py", "experiment_dir": str(tmp_path / "exp"),
              "params": {"x": {"type": "uniform", "low": 0.0, "high": 1.0}},
              "metric": {"name": "loss", "mode": "min"}, "resource": {"max": 1}, "scheduler": {"type": "fifo"},
              "searcher": {"type": "random", "seed": 5}, "budget": {"max_trials": trials},
              "execution": {"backend": "slurm", "poll_interval": 0.1, "stop_grace_period": 5,
                            "workdir": "trial", "src_path": "data.txt", **execution}}
    path = proj / "hpo.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path, here


def outputs(experiment: Path, directory_of: Any) -> dict[str, tuple[float, str, dict[str, str]]]:
    """Per trial: its x, its out.txt line split into fields, checked against the directory it ran in."""
    events = journal(experiment)
    xs = {e["trial_id"]: e["config"]["x"] for e in events if e["type"] == "trial_created"}
    reported = {e["trial_id"]: e["value"] for e in events if e["type"] == "report"}
    assert reported == xs  # every run still found its own line in its out.txt at the end
    found = {}
    for trial_id, x in xs.items():
        directory = directory_of(trial_id)
        lines = (directory / "out.txt").read_text().splitlines()
        assert len(lines) == 1
        first, *pairs = lines[0].split(" ")
        fields = dict(pair.split("=", 1) for pair in pairs if "=" in pair)
        assert first == trial_id and float(fields["x"]) == x and fields["cwd"] == str(directory)
        assert lines[0].endswith("data=input beside the config")
        found[trial_id] = (x, lines[0], fields)
    return found


def test_steps_run_in_each_trials_directory_inside_an_allocation(tmp_path: Path) -> None:
    path, here = project(tmp_path, {"slurm": {"mode": "steps"}, "cpus_per_eval": 1, "num_parallel_evals": 4},
                         trials=4)
    done = run(["salloc", "-N1", "--time=3", *CLI, "run", str(path)], here, timeout=240)
    assert done.returncode == 0, done.stderr + done.stdout
    experiment = tmp_path / "exp"
    found = outputs(experiment, lambda trial_id: experiment / "trials" / trial_id)
    jobs = {fields["job"] for _, _, fields in found.values()}
    steps = {fields["step"] for _, _, fields in found.values()}
    assert len(jobs) == 1 and "None" not in jobs  # one allocation
    assert len(steps) == 4 and "None" not in steps  # each trial its own step
    assert not (here / "out.txt").exists()


def test_sbatch_jobs_run_in_run_path_directories_through_chdir(tmp_path: Path) -> None:
    path, here = project(tmp_path, {"slurm": {"mode": "sbatch", "squeue_interval": 1}, "run_path": "work",
                                    "num_parallel_evals": 2}, trials=2)
    done = run([*CLI, "run", str(path)], here, timeout=240)
    assert done.returncode == 0, done.stderr + done.stdout
    found = outputs(tmp_path / "exp", lambda trial_id: here / "work" / trial_id)
    jobs = {fields["job"] for _, _, fields in found.values()}
    assert len(jobs) == 2 and "None" not in jobs  # each trial its own sbatch job
    assert not (here / "out.txt").exists()
