"""Saying what runs where: run tags that carry the experiment's name (and old tags still honoured), the
`run --verbose` line of each run, and `status` showing srun's or Slurm's words for a failed trial whose own
stderr is empty. The Slurm side of --verbose runs on the live cluster (tests/slurm/test_verbose_live.py)."""
from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from hpc_hpo.backends import LocalBackend, LaunchSpec
from hpc_hpo.backends.base import RUN_TAG_ENV
from hpc_hpo.backends.verbose import RunPlace, VerboseBackend, job_gpus
from hpc_hpo.driver.core import Driver
from hpc_hpo.results import batch_system_said, status_table
from hpc_hpo.state import ExperimentState, TrialState

EXPERIMENT_ID = "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d"


def tagger(tmp_path: Path, name: str = "resnet50_lr_sweep", trials: dict[str, TrialState] | None = None):
    """Driver._run_tag as the driver calls it, on a driver reduced to what the method reads (the lease's id,
    the config's name, the journal's state and the trial directories)."""
    driver = SimpleNamespace(lease=SimpleNamespace(experiment_id=EXPERIMENT_ID), config=SimpleNamespace(name=name),
                             state=SimpleNamespace(trials=trials or {}),
                             _trial_dir=lambda trial_id: tmp_path / "trials" / trial_id)
    return lambda trial_id, run: Driver._run_tag(driver, trial_id, run)  # type: ignore[arg-type]


def test_a_tag_begins_with_the_experiments_name_as_a_default_squeue_shows_it(tmp_path: Path) -> None:
    tag = tagger(tmp_path)("0007", 2)
    assert tag == "resnet50-1a2b3c4d-0007-2"
    assert tag[:8] == "resnet50"  # squeue's default NAME column: 8 characters


def test_tags_stay_unique_across_experiments_trials_and_runs(tmp_path: Path) -> None:
    tags = {tagger(tmp_path)(t, r) for t in ("0000", "0001") for r in (1, 2)}
    other = SimpleNamespace(lease=SimpleNamespace(experiment_id="ffff" + EXPERIMENT_ID[4:]),
                            config=SimpleNamespace(name="resnet50_lr_sweep"), state=SimpleNamespace(trials={}),
                            _trial_dir=lambda trial_id: tmp_path / "other" / trial_id)
    tags.add(Driver._run_tag(other, "0000", 1))  # type: ignore[arg-type]  # same name, another experiment
    assert len(tags) == 5


def test_a_name_that_starts_with_a_digit_gets_a_letter_first(tmp_path: Path) -> None:
    assert tagger(tmp_path, name="2024_sweep")("0000", 1) == "e2024_sw-1a2b3c4d-0000-1"  # PBS wants a letter first


@pytest.mark.parametrize("left_behind", ["exit", "nodes", "sbatch", "pbs", "share"])
def test_a_run_an_older_driver_started_keeps_its_old_tag(tmp_path: Path, left_behind: str) -> None:
    old = "hpo-1a2b3c4d-0003-1"
    trial_dir = tmp_path / "trials" / "0003"
    trial_dir.mkdir(parents=True)
    (trial_dir / f"{old}.{left_behind}").write_text("n1\n")
    tag = tagger(tmp_path)
    assert tag("0003", 1) == old
    assert tag("0003", 2) == "resnet50-1a2b3c4d-0003-2"  # its next run is named the new way


def test_a_local_run_an_older_driver_started_is_known_by_its_process(tmp_path: Path) -> None:
    """A local run writes no file before it ends: its journaled process carrying the old tag says so."""
    old = "hpo-1a2b3c4d-0004-1"
    (tmp_path / "trials" / "0004").mkdir(parents=True)
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], env={**os.environ,
                                                                                          RUN_TAG_ENV: old})
    try:
        trial = TrialState(trial_id="0004", index=4, config={}, handle=str(process.pid), runs=1)
        assert tagger(tmp_path, trials={"0004": trial})("0004", 1) == old
        trial.handle = str(os.getpid())  # a process without that tag: the new name
        assert tagger(tmp_path, trials={"0004": trial})("0004", 1) == "resnet50-1a2b3c4d-0004-1"
    finally:
        process.kill()
        process.wait()


def test_verbose_says_each_local_runs_process_host_and_command(tmp_path: Path) -> None:
    said: list[str] = []
    backend = VerboseBackend(LocalBackend(kill_grace_s=1.0), said.append)
    trial_dir = tmp_path / "0000"
    trial_dir.mkdir()
    argv = (sys.executable, "-c", "pass", "--lr", "0.1 0.2")
    spec = LaunchSpec(trial_id="0000", argv=argv, cwd=tmp_path, trial_dir=trial_dir, tag="exp-1a2b3c4d-0000-1",
                      env={"HPC_HPO_RUN": "1"})
    handle = backend.submit(spec)
    deadline = time.monotonic() + 30
    while backend.poll([handle])[handle].state != "exited":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert said == [f"run       0000  (run 1) process {handle} on {socket.gethostname()}: {shlex.join(argv)}"]


def test_a_step_line_names_its_allocation_nodes_and_gpus() -> None:
    place = RunPlace("0002", "1", "python train.py --lr 0.1", "step", run_id="4242.7", within="4242", nodes="n1,n2",
                     gpus="2 (which ones Slurm sets inside the step)", gpus_asked=2)
    assert place.complete()
    assert place.line() == ("run       0002  (run 1) step 4242.7 of allocation 4242 on n1,n2, GPUs 2 (which ones "
                            "Slurm sets inside the step): python train.py --lr 0.1")
    assert not RunPlace("0002", "1", "x", "step", within="4242", nodes="n1").complete()  # step id not seen yet


# Recorded on the project's cluster: `scontrol show job -d` of a job with --gres=gpu:2 on n2.
SCONTROL_JOB_DETAIL = """\
JobId=479 JobName=bash
   NumNodes=1 NumCPUs=1 NumTasks=1 CPUs/Task=1 ReqB:S:C:T=0:0:*:*
   TRES=cpu=1,node=1,billing=1
   JOB_GRES=gpu:2
     Nodes=n2 CPU_IDs=0 Mem=0 GRES=gpu:2(IDX:0-1)
   TresPerNode=gres:gpu:2
"""


def test_a_jobs_gpus_are_read_per_node_from_scontrol() -> None:
    assert job_gpus(SCONTROL_JOB_DETAIL) == "n2:0-1"
    two_nodes = SCONTROL_JOB_DETAIL.replace("     Nodes=n2 CPU_IDs=0 Mem=0 GRES=gpu:2(IDX:0-1)\n",
                                            "     Nodes=n1 CPU_IDs=0 Mem=0 GRES=gpu:1(IDX:3)\n"
                                            "     Nodes=n2 CPU_IDs=0 Mem=0 GRES=gpu:1(IDX:0)\n")
    assert job_gpus(two_nodes) == "n1:3 n2:0"
    assert job_gpus(SCONTROL_JOB_DETAIL.replace("GRES=gpu:2(IDX:0-1)", "")) is None


def failed_trial(tmp_path: Path, reason: str | None, files: dict[str, str]) -> tuple[ExperimentState, Path]:
    state = ExperimentState(name="e", metric="loss", resource="epoch")
    state.trials["0000"] = TrialState(trial_id="0000", index=0, config={}, state="failed", exit_code=1, reason=reason)
    trial_dir = tmp_path / "trials" / "0000"
    trial_dir.mkdir(parents=True)
    for name, text in files.items():
        (trial_dir / name).write_text(text)
    return state, trial_dir


def test_status_shows_slurms_words_for_a_failed_trial_with_an_empty_stderr(tmp_path: Path) -> None:
    state, _ = failed_trial(tmp_path, "Slurm state FAILED", {"stderr": "", "slurm.out": "module: cuda/12: not found\n"})
    text = status_table(state, tmp_path)
    assert "trial 0000 failed (exit code 1): Slurm state FAILED\n  (slurm.out) module: cuda/12: not found" in text
    assert "(slurm.out)" not in status_table(state)  # without the directory: as before


def test_status_shows_nothing_more_when_stderr_has_the_story_or_the_reason_is_that_text(tmp_path: Path) -> None:
    _, trial_dir = failed_trial(tmp_path, None, {"stderr": "ValueError: bad lr\n", "srun.log": "srun: error: x\n"})
    assert batch_system_said(trial_dir, "ValueError: bad lr") == ""
    (trial_dir / "stderr").write_text("")
    assert batch_system_said(trial_dir, "(srun.log) srun: error: x") == ""  # the driver recorded it already
    assert batch_system_said(trial_dir, None) == "\n  (srun.log) srun: error: x"
