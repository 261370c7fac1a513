"""Parsers of sbatch/squeue/sacct output and the rendering of trial job scripts: pure, no cluster.

The recorded lines below are what Slurm 22.05 prints for the formats the backend asks for.
"""
from __future__ import annotations

import shlex
import signal
import subprocess
from pathlib import Path

import pytest

from hpc_hpo.backends.base import EXITED, RUNNING, LaunchSpec
from hpc_hpo.backends.slurm import (TEMPLATE_FIELDS, default_template, render_trial_script, sbatch_argv,
                                    script_values, srun_step_argv, status_of, task_options, trial_environment)
from hpc_hpo.backends.slurm_output import (SlurmCommandError, latest_by_id, parse_exit_code, parse_sacct,
                                           parse_sbatch_job_id, parse_squeue, run_slurm)
from hpc_hpo.config import SlurmSpec
from hpc_hpo.errors import BackendError

SACCT_RECORDED = """\
101|COMPLETED|hpo-1a2b3c4d-0000-1|0:0
102|CANCELLED by 0|hpo-1a2b3c4d-0001-1|0:15
103|OUT_OF_MEMORY|hpo-1a2b3c4d-0002-1|0:125
104|TIMEOUT|hpo-1a2b3c4d-0003-1|0:0
105|NODE_FAIL|hpo-1a2b3c4d-0004-1|1:0
106|PREEMPTED|hpo-1a2b3c4d-0005-1|0:15
107|FAILED|hpo-1a2b3c4d-0006-1|3:0
108|PENDING|hpo-1a2b3c4d-0007-1|0:0
109|REQUEUED|hpo-1a2b3c4d-0008-1|0:0
109|RUNNING|hpo-1a2b3c4d-0008-1|0:0
"""

SQUEUE_RECORDED = """\
201|PENDING|hpo-1a2b3c4d-0010-1|Priority
202|RUNNING|hpo-1a2b3c4d-0011-1|None
203|COMPLETING|hpo-1a2b3c4d-0012-1|None
204|CANCELLED|hpo-1a2b3c4d-0013-1|None

"""


def by_id(text: str, parser=parse_sacct):
    return latest_by_id(parser(text))


def test_sbatch_parsable_output_gives_the_job_id():
    assert parse_sbatch_job_id("4242\n") == "4242"
    assert parse_sbatch_job_id("4242;cluster\n") == "4242"
    with pytest.raises(BackendError, match="not a job id"):
        parse_sbatch_job_id("sbatch: error: Batch job submission failed: Invalid partition name specified\n")


def test_exit_codes_keep_the_signal_apart():
    assert parse_exit_code("0:0") == 0
    assert parse_exit_code("3:0") == 3
    assert parse_exit_code("0:15") == -15
    assert parse_exit_code("") is None


@pytest.mark.parametrize("job_id, state, code, resubmit, reason", [
    ("101", EXITED, 0, False, None),
    ("102", EXITED, -15, False, "cancelled"),
    ("103", EXITED, -125, False, "out of memory"),  # Slurm records OOM as signal 125
    ("104", EXITED, 1, True, "TIMEOUT"),
    ("105", EXITED, 1, True, "NODE_FAIL"),
    ("106", EXITED, -15, True, "PREEMPTED"),
    ("107", EXITED, 3, False, "FAILED"),
    ("108", RUNNING, None, False, None),
    ("109", RUNNING, None, False, None),  # requeued, then running again: the last line counts
])
def test_sacct_states_map_to_what_the_driver_does(job_id, state, code, resubmit, reason):
    status = status_of(by_id(SACCT_RECORDED)[job_id])
    assert (status.state, status.exit_code, status.resubmit) == (state, code, resubmit)
    if reason is None:
        assert status.reason is None
    else:
        assert reason in status.reason


def test_squeue_lines_parse_and_blank_or_foreign_lines_are_skipped():
    records = by_id(SQUEUE_RECORDED + "slurm_load_jobs error: something\n", parse_squeue)
    assert set(records) == {"201", "202", "203", "204"}
    assert records["201"].reason == "Priority" and records["202"].name == "hpo-1a2b3c4d-0011-1"
    assert [status_of(records[i]).state for i in ("201", "202", "203", "204")] == [RUNNING] * 3 + [EXITED]


def test_a_step_listing_gives_step_ids_and_names():
    records = parse_squeue("77.0|RUNNING|hpo-x-0000-1\n77.1|RUNNING|hpo-x-0001-1\n")
    assert [(r.job_id, r.name) for r in records] == [("77.0", "hpo-x-0000-1"), ("77.1", "hpo-x-0001-1")]


def test_a_failing_command_raises_with_command_code_and_stderr():
    with pytest.raises(SlurmCommandError) as info:
        run_slurm(["sh", "-c", "echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1"])
    assert info.value.code == 1 and "Invalid job id specified" in info.value.stderr
    assert "sh -c" in str(info.value)
    with pytest.raises(SlurmCommandError) as missing:
        run_slurm(["/nonexistent/squeue"])
    assert missing.value.code == 127


# --------------------------------------------------------------------------- what goes to srun and sbatch


def spec(tmp_path: Path, argv=("python3", "train.py", "--lr", "0.1"), nodes: int = 1, env=None) -> LaunchSpec:
    return LaunchSpec(trial_id="0003", argv=tuple(argv), cwd=tmp_path, trial_dir=tmp_path / "trials" / "0003",
                      env=env or {"HPC_HPO_TRIAL_ID": "0003"}, tag="hpo-1a2b3c4d-0003-1", nodes=nodes)


def test_a_step_runs_on_its_own_nodes_named_by_its_tag(tmp_path):
    settings = SlurmSpec(launch_args=("--gpus-per-task=1",), nodes_flag="--nodes")
    argv = srun_step_argv(settings, "77", ["n3", "n4"], spec(tmp_path, nodes=2))
    assert argv[:4] == ["srun", "--jobid=77", "--job-name=hpo-1a2b3c4d-0003-1", "--nodelist=n3,n4"]
    assert "--nodes=2" in argv and "--ntasks=2" in argv and "--gpus-per-task=1" in argv
    assert f"--output={tmp_path / 'trials/0003/stdout'}" in argv
    assert argv[-6:] == ["python3", "train.py", "--lr", "0.1", "--nodes", "2"]


def test_launch_args_that_count_tasks_replace_ours():
    assert task_options(2, ("--ntasks-per-node=4",)) == ["--nodes=2"]
    assert task_options(2, ("-n8",)) == ["--nodes=2"]
    assert task_options(2, ("--mem=4G",)) == ["--nodes=2", "--ntasks=2"]


def test_sbatch_line_carries_the_config_options_and_an_explicit_environment(tmp_path):
    settings = SlurmSpec(partition="debug", account="proj1", time_limit="00:30:00", alloc_args=("--qos=short",))
    argv = sbatch_argv(settings, spec(tmp_path), tmp_path / "job.sbatch")
    assert argv[:3] == ["sbatch", "--parsable", "--job-name=hpo-1a2b3c4d-0003-1"]
    assert "--export=NONE" in argv and "--partition=debug" in argv and "--account=proj1" in argv
    assert "--time=00:30:00" in argv and argv[-2:] == ["--qos=short", str(tmp_path / "job.sbatch")]


def test_only_listed_variables_reach_the_trial():
    source = {"PATH": "/usr/bin", "SECRET_TOKEN": "x", "SLURM_NTASKS": "16", "HOME": "/home/u"}
    env = trial_environment(("PATH", "HOME"), spec(Path("/tmp")), source)
    assert env["PATH"] == "/usr/bin" and "SECRET_TOKEN" not in env and "SLURM_NTASKS" not in env
    assert env["HPC_HPO_RUN_TAG"] == "hpo-1a2b3c4d-0003-1" and env["HPC_HPO_TRIAL_ID"] == "0003"
    assert trial_environment(("ALL",), spec(Path("/tmp")), source)["SECRET_TOKEN"] == "x"


HOSTILE = ["python3", "-c", "print(1)", "$(touch pwned)", "`touch pwned2`", "a;touch pwned3", "it's \"quoted\""]


def test_the_shipped_template_renders_into_a_script_bash_reads_as_intended(tmp_path):
    """Hostile values stay data: bash sees them as the same argv items, and nothing is executed."""
    launch = spec(tmp_path, argv=HOSTILE, env={"HPC_HPO_X": "$(touch pwned4) ; `x`"})
    values = script_values(SlurmSpec(), launch, {"HPC_HPO_X": "$(touch pwned4) ; `x`"}, tmp_path / "e.exit")
    script = render_trial_script(default_template().read_text(), values)
    command_line = next(line for line in script.splitlines() if line.startswith("srun "))
    assert shlex.split(command_line)[-len(HOSTILE):] == HOSTILE
    # Let bash evaluate the export lines: the value arrives intact and nothing ran.
    exports = "\n".join(line for line in script.splitlines() if line.startswith("export "))
    printed = subprocess.run(["bash", "-c", exports + '\nprintf %s "$HPC_HPO_X"'], cwd=tmp_path,
                             capture_output=True, text=True, check=True).stdout
    assert printed == "$(touch pwned4) ; `x`"
    assert not list(tmp_path.glob("pwned*"))


def test_newlines_and_nul_bytes_never_enter_a_script(tmp_path):
    with pytest.raises(BackendError, match="newline or NUL"):
        script_values(SlurmSpec(), spec(tmp_path, argv=["python3", "a\nrm -rf ~"]), {}, tmp_path / "e")
    with pytest.raises(BackendError, match="newline or NUL"):
        script_values(SlurmSpec(), spec(tmp_path), {"X": "a\0b"}, tmp_path / "e")


def test_template_errors_name_the_placeholder():
    values = {name: "" for name in TEMPLATE_FIELDS}
    with pytest.raises(BackendError, match="no {{ command }}"):
        render_trial_script("#!/bin/bash\necho hi\n", values)
    with pytest.raises(BackendError, match="{{ modules }}"):
        render_trial_script("{{ modules }}\n{{ command }}\n", values)


def test_cancelled_without_an_exit_code_reads_as_sigterm():
    from hpc_hpo.backends.slurm_output import SlurmRecord
    assert status_of(SlurmRecord("1", "CANCELLED")).exit_code == -signal.SIGTERM


# --------------------------------------------------------------------------- sbatch-mode polling, on recorded replies


class RecordedSlurm:
    """Stands in for the Slurm commands with recorded replies; notes every call."""

    def __init__(self, replies: dict[str, list]) -> None:
        self.replies, self.calls = replies, []

    def __call__(self, argv: list[str], env=None, timeout=None) -> str:
        self.calls.append(argv)
        reply = self.replies[argv[0]].pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply


def batch_backend(tmp_path: Path, monkeypatch, replies: dict[str, list]):
    from hpc_hpo.backends import slurm
    recorded = RecordedSlurm(replies)
    monkeypatch.setattr(slurm, "run_slurm", recorded)
    backend = slurm.SlurmBatchBackend(SlurmSpec(squeue_interval=0.0), kill_grace_s=1)
    for job_id, trial in (("301", "0000"), ("302", "0001")):
        backend.jobs[job_id] = slurm._Job(f"hpo-x-{trial}-1", tmp_path / f"{trial}.exit", 0.0)
    return backend, recorded


def test_a_failed_squeue_changes_nothing_and_backs_off(tmp_path, monkeypatch):
    backend, recorded = batch_backend(tmp_path, monkeypatch, {"squeue": [
        SlurmCommandError(["squeue"], 1, "", "slurm_load_jobs error: Socket timed out on send/recv operation")]})
    statuses = backend.poll(["301", "302"])
    assert {s.state for s in statuses.values()} == {RUNNING}
    assert backend.clock.failures == 1 and backend.clock.next_at > 0
    assert len(recorded.calls) == 1


def test_jobs_squeue_forgot_are_read_from_sacct_and_invalid_id_is_not_success(tmp_path, monkeypatch):
    backend, recorded = batch_backend(tmp_path, monkeypatch, {
        "squeue": [SlurmCommandError(["squeue"], 1, "", "slurm_load_jobs error: Invalid job id specified")],
        # 301 ended by the time limit; 302 is not in accounting yet.
        "sacct": ["301|TIMEOUT|hpo-x-0000-1|0:0\n"]})
    statuses = backend.poll(["301", "302"])
    assert statuses["301"].state == EXITED and statuses["301"].resubmit
    assert statuses["302"].state == RUNNING, "missing from squeue and sacct is not an end, let alone a success"
    assert [argv[0] for argv in recorded.calls] == ["squeue", "sacct"]


def test_an_older_job_with_the_same_id_in_sacct_is_ignored(tmp_path, monkeypatch):
    backend, _ = batch_backend(tmp_path, monkeypatch, {
        "squeue": [""], "sacct": ["301|COMPLETED|allocation|0:0\n302|FAILED|hpo-x-0001-1|2:0\n"]})
    statuses = backend.poll(["301", "302"])
    assert statuses["301"].state == RUNNING and statuses["302"].exit_code == 2


def test_the_exit_marker_ends_a_job_without_asking_slurm(tmp_path, monkeypatch):
    backend, recorded = batch_backend(tmp_path, monkeypatch, {"squeue": ["302|RUNNING|hpo-x-0001-1|None\n"]})
    (tmp_path / "0000.exit").write_text("3\n")
    statuses = backend.poll(["301", "302"])
    assert statuses["301"].exit_code == 3 and statuses["302"].state == RUNNING
    assert recorded.calls[0][0] == "squeue" and "--jobs=302" in recorded.calls[0]


def test_the_first_array_element_reads_its_own_record_not_the_whole_array() -> None:
    """`scontrol show job -d 1279` for the first element of array 1279 shows every element; each driver of a job
    array (README "Elastic experiments") must book only its own allocation's CPUs and GPUs."""
    from hpc_hpo.backends.slurm_output import job_record, parse_job_resources
    text = ("JobId=1280 ArrayJobId=1279 ArrayTaskId=2 JobName=wrap\n"
            "     Nodes=n2 CPU_IDs=1 Mem=200 GRES=gpu:1(IDX:1)\n\n"
            "JobId=1279 ArrayJobId=1279 ArrayTaskId=1 JobName=wrap\n"
            "     Nodes=n1 CPU_IDs=0 Mem=200 GRES=gpu:1(IDX:0)\n\n")
    own = parse_job_resources(job_record(text, "1279"))
    assert [(g.nodes, g.cpus, g.gpus) for g in own] == [("n1", 1, 1)]
    assert [g.nodes for g in parse_job_resources(job_record(text, "1280"))] == ["n2"]
