"""Parsers of qsub/qstat/qselect/qdel output, exit-status conventions and job-script rendering for PBS.

No PBS server can be installed on the machines these tests run on. The recorded output below
follows what the OpenPBS/PBS Professional manual pages (qstat.1B, qsub.1B, qdel.1B) and sites'
documentation show: `qstat -f` long format with tab-indented continuation lines, `qstat -f -F json`
with its timestamp/pbs_version/pbs_server prologue, and the per-job error lines.
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

from hpc_hpo.backends import backend_choice, backend_kind
from hpc_hpo.backends import pbs as pbs_backend
from hpc_hpo.backends.base import (EXITED, RUN_TAG_ENV, RUNNING, JobStatus, LaunchSpec, processes_tagged,
                                   recording_exit)
from hpc_hpo.backends.pbs import (PbsQsubBackend, default_template, job_script_values, launcher_argv, qsub_argv,
                                  trial_argv)
from hpc_hpo.backends.pbs_output import (ALL_STATES, PbsCommandError, PbsJob, exit_meaning, find_job, job_name,
                                         only_missing_jobs, parse_nodefile, parse_qselect, parse_qstat_json,
                                         parse_qstat_text, parse_qsub_job_id, parse_variable_list, status_of)
from hpc_hpo.backends.batch import render_trial_script
from hpc_hpo.config import PbsSpec, validate_config
from hpc_hpo.errors import BackendError, ConfigError

QSTAT_F_RECORDED = """\
Job Id: 1201.pbs01
    Job_Name = hpo-1a2b3c4d-0000-1
    Job_Owner = alice@login01
    resources_used.cput = 00:01:02
    resources_used.walltime = 00:02:10
    job_state = R
    queue = workq
    server = pbs01
    Checkpoint = u
    ctime = Fri Nov 11 17:57:05 2016
    Error_Path = login01:/home/alice/exp/trials/0000/pbs.out
    exec_host = n001/0*8
    exec_vnode = (n001:ncpus=8)
    Join_Path = oe
    Resource_List.ncpus = 8
    Resource_List.nodect = 1
    Resource_List.place = scatter
    Resource_List.select = 1:ncpus=8
    Resource_List.walltime = 00:30:00
    session_id = 23107
    Variable_List = HPC_HPO_RUN_TAG=hpo-1a2b3c4d-0000-1,PBS_O_HOME=/home/alice,
\tPBS_O_LOGNAME=alice,PBS_O_PATH=/usr/local/bin:/usr/bin:/bin,PBS_O_MAIL=/v
\tar/spool/mail/alice,PBS_O_SHELL=/bin/bash,PBS_O_WORKDIR=/home/alice/exp,
\tPBS_O_SYSTEM=Linux,NOTE=a\\,b,PBS_O_QUEUE=workq,PBS_O_HOST=login01
    comment = Job run at Fri Nov 11 at 17:57 on (n001:ncpus=8)
    etime = Fri Nov 11 17:57:05 2016
    run_count = 1
    Submit_arguments = -N hpo-1a2b3c4d-0000-1 /home/alice/exp/trials/0000/hpo-1a2b3c4d-0000-1.pbs
    project = _pbs_project_default

Job Id: 1202.pbs01
    Job_Name = hpo-1a2b3c4d-0001-1
    Job_Owner = alice@login01
    job_state = F
    queue = workq
    Exit_status = 3
    run_count = 1

Job Id: 1203.pbs01
    Job_Name = hpo-1a2b3c4d-0002-1
    job_state = F
    Exit_status = 271
    run_count = 1

Job Id: 1204.pbs01
    Job_Name = hpo-1a2b3c4d-0003-1
    job_state = Q
    run_count = 1
    Exit_status = -11
"""

QSTAT_JSON_RECORDED = json.dumps({
    "timestamp": 1479277336, "pbs_version": "19.1.3", "pbs_server": "pbs01",
    "Jobs": {
        "1301.pbs01": {"Job_Name": "hpo-1a2b3c4d-0010-1", "Job_Owner": "alice@login01", "job_state": "F",
                       "queue": "workq", "Exit_status": 0, "run_count": 1,
                       "Variable_List": {"HPC_HPO_RUN_TAG": "hpo-1a2b3c4d-0010-1", "PBS_O_HOME": "/home/alice"}},
        "1302.pbs01": {"Job_Name": "hpo-1a2b3c4d-0011-1", "job_state": "H", "run_count": 0,
                       "Variable_List": "HPC_HPO_RUN_TAG=hpo-1a2b3c4d-0011-1,PBS_O_HOME=/home/alice"},
        "1303.pbs01": {"Job_Name": "hpo-1a2b3c4d-0012-1", "job_state": "F", "Exit_status": -29, "run_count": 1},
    }}, indent=4)


def test_qstat_long_format_with_continuation_lines() -> None:
    jobs = parse_qstat_text(QSTAT_F_RECORDED)
    assert set(jobs) == {"1201.pbs01", "1202.pbs01", "1203.pbs01", "1204.pbs01"}
    running = jobs["1201.pbs01"]
    assert (running.state, running.name, running.run_count, running.exit_status) == ("R", "hpo-1a2b3c4d-0000-1", 1, None)
    assert running.variables["HPC_HPO_RUN_TAG"] == "hpo-1a2b3c4d-0000-1"
    assert running.variables["PBS_O_MAIL"] == "/var/spool/mail/alice"  # joined across the wrap
    assert running.variables["NOTE"] == "a,b"  # an escaped comma stays inside its value
    assert running.variables["PBS_O_HOST"] == "login01"
    assert [jobs[j].exit_status for j in ("1202.pbs01", "1203.pbs01")] == [3, 271]


def test_qstat_json_format() -> None:
    jobs = parse_qstat_json(QSTAT_JSON_RECORDED)
    assert jobs["1301.pbs01"].exit_status == 0 and jobs["1301.pbs01"].variables["PBS_O_HOME"] == "/home/alice"
    # Older servers print Variable_List as one string, newer ones as an object: both are read.
    assert jobs["1302.pbs01"].variables["HPC_HPO_RUN_TAG"] == "hpo-1a2b3c4d-0011-1"
    assert status_of(jobs["1302.pbs01"]) == status_of(PbsJob("x", "H"))
    assert parse_qstat_json("") == {}
    with pytest.raises(ValueError):
        parse_qstat_json('{"Jobs": {"1.s": {"Variable_List": "a\\qb"}}')


@pytest.mark.parametrize("state", sorted(ALL_STATES))
def test_every_state_letter_has_a_meaning(state: str) -> None:
    status = status_of(PbsJob("1.s", state, exit_status=0))
    if state in "FX":
        assert status == exit_meaning(0) and status.state == EXITED
    else:
        assert status.state == RUNNING


def test_an_unknown_state_is_never_success() -> None:
    status = status_of(PbsJob("1.s", "Z"))
    assert status.state == EXITED and status.exit_code != 0


@pytest.mark.parametrize("exit_status, code, resubmit, words", [
    (0, 0, False, None), (3, 3, False, None), (143, 143, False, None),
    (271, -signal.SIGTERM, False, "SIGTERM"), (265, -signal.SIGKILL, False, "SIGKILL"),
    (-1, 1, False, "JOB_EXEC_FAIL1"), (-10, 1, False, "JOB_EXEC_FAILUID"),
    (-3, 1, True, "JOB_EXEC_RETRY"), (-11, 1, True, "JOB_EXEC_RERUN"), (-20, 1, True, "JOB_EXEC_RERUN_MS_FAIL"),
    (-29, 1, True, "JOB_EXEC_KILL_WALLTIME"), (-27, 1, False, "out of memory"), (-99, 1, False, "PBS error"),
    (None, None, False, "without an exit status"),
])
def test_exit_status_conventions(exit_status, code, resubmit, words) -> None:
    status = exit_meaning(exit_status)
    assert (status.state, status.exit_code, status.resubmit) == (EXITED, code, resubmit)
    assert words is None and status.reason is None or words in status.reason


def test_a_requeued_job_is_resubmitted_not_waited_for() -> None:
    jobs = parse_qstat_text(QSTAT_F_RECORDED)
    requeued = status_of(jobs["1204.pbs01"])  # back in Q after having run
    assert requeued.state == EXITED and requeued.resubmit and "requeued" in requeued.reason
    assert status_of(PbsJob("1.s", "R", run_count=2)).resubmit  # already running again
    assert status_of(PbsJob("1.s", "Q", run_count=0)).state == RUNNING  # never ran: just queued
    assert not status_of(PbsJob("1.s", "F", exit_status=0, run_count=2)).resubmit  # ended after a rerun


def test_qsub_qselect_and_error_lines() -> None:
    assert parse_qsub_job_id("1201.pbs01\n") == "1201.pbs01"
    assert parse_qsub_job_id("1201\n") == "1201"
    with pytest.raises(BackendError, match="not a job id"):
        parse_qsub_job_id("qsub: Unknown queue\n")
    assert parse_qselect("1201.pbs01\n1202.pbs01\n\n") == ["1201.pbs01", "1202.pbs01"]
    assert only_missing_jobs("qstat: Unknown Job Id 99.pbs01\n"
                             "qstat: 98.pbs01 Job has finished, use -x or -H to obtain historical job information\n")
    assert not only_missing_jobs("qstat: cannot connect to server pbs01 (errno=111)\n")
    assert not only_missing_jobs("")


def test_job_ids_match_with_or_without_the_full_server_name() -> None:
    jobs = {"1201.pbs01.example.org": PbsJob("1201.pbs01.example.org", "R")}
    assert find_job(jobs, "1201.pbs01") is jobs["1201.pbs01.example.org"]
    assert find_job(jobs, "1202.pbs01") is None


def test_nodefile_and_variable_list() -> None:
    assert parse_nodefile("n1\nn1\nn2\n\nn3\nn2\n") == ["n1", "n2", "n3"]
    assert parse_variable_list("A=1,B=x\\,y,C=") == {"A": "1", "B": "x,y", "C": ""}


def test_job_names_fit_the_servers_limit() -> None:
    tag = "hpo-1a2b3c4d-0007-2"
    assert job_name(tag, 236) == tag
    short = job_name(tag, 15)
    assert len(short) == 15 and short[0].isalpha() and short.endswith("-0007-2")
    assert short == job_name(tag, 15) and short != job_name("hpo-ffffffff-0007-2", 15)


# --------------------------------------------------------------------------- rendering


def spec(tmp_path: Path, argv=("python", "train.py", "--lr", "0.1")) -> LaunchSpec:
    return LaunchSpec(trial_id="0000", argv=tuple(argv), cwd=tmp_path, trial_dir=tmp_path / "t",
                      env={"HPC_HPO_TRIAL_ID": "0000"}, tag="hpo-1a2b3c4d-0000-1", nodes=1)


def test_qsub_argv_carries_the_config(tmp_path: Path) -> None:
    settings = PbsSpec(queue="debug", account="proj1", walltime="00:30:00", select="ncpus=8:ngpus=1",
                       qsub_args=("-W", "group_list=hpo"), nodes_per_eval=2)
    argv = qsub_argv(settings, spec(tmp_path), "hpo-name", tmp_path / "job.pbs")
    text = " ".join(argv)
    assert argv[:3] == ["qsub", "-N", "hpo-name"] and argv[-1] == str(tmp_path / "job.pbs")
    assert "-l select=1:ncpus=8:ngpus=1" in text and "-l place=scatter" in text
    assert "-q debug" in text and "-A proj1" in text and "-l walltime=00:30:00" in text
    assert "-v HPC_HPO_RUN_TAG=hpo-1a2b3c4d-0000-1" in text and "-W group_list=hpo" in text


def test_hostile_values_are_quoted_in_the_script(tmp_path: Path) -> None:
    hostile = ["'; touch pwned #", "$(touch pwned)", "`touch pwned`", "a\"b"]
    values = job_script_values(PbsSpec(), spec(tmp_path, ["prog", *hostile]), {"X": "$(rm -rf /)"},
                               tmp_path / "t" / "x.exit", "hpo-name")
    script = render_trial_script(default_template().read_text(), values)
    assert "#PBS -S /bin/bash" in script
    command = next(line for line in script.splitlines() if line.startswith("prog "))
    assert shlex.split(command)[:5] == ["prog", *hostile]
    assert "export X='$(rm -rf /)'" in script
    done = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
    assert done.returncode == 0, done.stderr
    with pytest.raises(BackendError, match="newline"):
        job_script_values(PbsSpec(), spec(tmp_path, ["prog", "a\nb"]), {}, tmp_path / "x", "n")


def test_launchers(tmp_path: Path) -> None:
    two = PbsSpec(nodes_per_eval=2)
    env = {"HPC_HPO_TRIAL_ID": "0000", "HOME": "/h"}
    assert launcher_argv(two, ["a", "b"], env) == ["mpiexec", "--hosts", "a,b", "-n", "2", "--ppn", "1"]
    assert launcher_argv(PbsSpec(nodes_per_eval=2, launcher="mpirun"), ["a", "b"], env) == [
        "mpirun", "--host", "a,b", "-np", "2", "-x", "HPC_HPO_TRIAL_ID"]
    assert launcher_argv(PbsSpec(launcher="pbsdsh"), ["a"], env) == ["pbsdsh", "-h", "a", "--"]
    custom = PbsSpec(nodes_per_eval=2, launcher=("srun", "-w", "{hosts}", "-N{nodes}", "--first={host}"))
    assert launcher_argv(custom, ["a", "b"], env) == ["srun", "-w", "a,b", "-N2", "--first=a"]
    # launch_args that set a task count replace ours.
    assert launcher_argv(PbsSpec(nodes_per_eval=2, launch_args=("--ppn", "4")), ["a", "b"], env) == [
        "mpiexec", "--hosts", "a,b", "--ppn", "4"]
    # Inside a one-node qsub job the program runs by itself; a multi-node one through the launcher.
    assert trial_argv(PbsSpec(), spec(tmp_path), None, env)[0] == "python"
    assert trial_argv(two, LaunchSpec(**{**spec(tmp_path).__dict__, "nodes": 2}), None, env)[:3] == [
        "mpiexec", "-n", "2"]
    with pytest.raises(ConfigError, match="host placeholders"):
        launcher_argv(custom, None, env)
    wrapped = trial_argv(PbsSpec(launcher="pbsdsh"), spec(tmp_path), ["a"], env)
    assert wrapped[:4] == ["pbsdsh", "-h", "a", "--"] and "HOME=/h" in wrapped and wrapped[-4:] == list(spec(tmp_path).argv)


# --------------------------------------------------------------------------- the qsub backend's polling


class FakePbs:
    """Replies to run_pbs by command name; records what was asked."""

    def __init__(self, replies: dict[str, object]) -> None:
        self.replies, self.calls = replies, []

    def __call__(self, argv: list[str], env=None, timeout=60.0) -> str:
        self.calls.append(argv)
        reply = self.replies[argv[0]]
        if isinstance(reply, Exception):
            raise reply
        return reply(argv) if callable(reply) else reply


def qsub_backend(tmp_path: Path, monkeypatch, fake: FakePbs, **settings) -> PbsQsubBackend:
    monkeypatch.setattr(pbs_backend, "run_pbs", fake)
    backend = PbsQsubBackend(PbsSpec(qstat_interval=0.0001, **settings), kill_grace_s=0.0)
    (tmp_path / "t").mkdir(exist_ok=True)
    return backend


def test_a_missing_job_is_lost_only_after_lost_after(tmp_path: Path, monkeypatch) -> None:
    fake = FakePbs({"qsub": "77.pbs01\n", "qstat": PbsCommandError(["qstat"], 153, "", "qstat: Unknown Job Id 77.pbs01\n")})
    backend = qsub_backend(tmp_path, monkeypatch, fake, lost_after=0.2)
    handle = backend.submit(spec(tmp_path))
    assert backend.poll([handle])[handle].state == RUNNING
    time.sleep(0.3)
    status = backend.poll([handle])[handle]
    assert status.state == EXITED and status.exit_code is None and "vanished" in status.reason


def test_a_failed_qstat_changes_nothing(tmp_path: Path, monkeypatch) -> None:
    fake = FakePbs({"qsub": "78.pbs01\n", "qstat": PbsCommandError(["qstat"], 1, "", "qstat: cannot connect to server")})
    backend = qsub_backend(tmp_path, monkeypatch, fake, lost_after=0.0)
    handle = backend.submit(spec(tmp_path))
    for _ in range(3):
        assert backend.poll([handle])[handle].state == RUNNING


def test_the_exit_marker_wins_and_a_recycled_id_is_not_our_job(tmp_path: Path, monkeypatch) -> None:
    other = json.dumps({"Jobs": {"79.pbs01": {"Job_Name": "someone-else", "job_state": "F", "Exit_status": 0}}})
    fake = FakePbs({"qsub": "79.pbs01\n", "qstat": other})
    backend = qsub_backend(tmp_path, monkeypatch, fake, lost_after=1000)
    handle = backend.submit(spec(tmp_path))
    assert backend.poll([handle])[handle].state == RUNNING  # a finished job of another name is not ours
    (tmp_path / "t" / "hpo-1a2b3c4d-0000-1.exit").write_text("4\n")
    assert backend.poll([handle])[handle] == exit_meaning(4)


def test_a_cancel_that_does_not_take_is_forced(tmp_path: Path, monkeypatch) -> None:
    running = json.dumps({"Jobs": {"80.pbs01": {"Job_Name": "hpo-1a2b3c4d-0000-1", "job_state": "R", "run_count": 1}}})
    fake = FakePbs({"qsub": "80.pbs01\n", "qstat": running, "qdel": ""})
    backend = qsub_backend(tmp_path, monkeypatch, fake)
    handle = backend.submit(spec(tmp_path))
    backend.cancel(handle)
    backend.poll([handle])
    assert ["qdel", "80.pbs01"] in fake.calls and ["qdel", "-W", "force", "80.pbs01"] in fake.calls


def test_the_rendered_script_runs_the_program(tmp_path: Path, monkeypatch) -> None:
    fake = FakePbs({"qsub": "81.pbs01\n"})
    backend = qsub_backend(tmp_path, monkeypatch, fake)
    backend.submit(spec(tmp_path, ["/bin/sh", "-c", "echo ran $0", "arg"]))
    script = tmp_path / "t" / "hpo-1a2b3c4d-0000-1.pbs"
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "t" / "stdout").read_text() == "ran arg\n"
    assert (tmp_path / "t" / "hpo-1a2b3c4d-0000-1.exit").read_text() == "0\n"


# --------------------------------------------------------------------------- the allocation backend's adoption


def allocation_backend() -> pbs_backend.PbsAllocationBackend:
    return pbs_backend.PbsAllocationBackend(PbsSpec(nodes_per_eval=2), "4242.server", ["a", "b", "c", "d"], 0.5)


def test_allocation_adopt_reads_exit_markers(tmp_path: Path) -> None:
    backend, trial = allocation_backend(), tmp_path / "t"
    trial.mkdir()
    assert backend.adopt(None, "hpo-x-0000-1", trial) is None  # never started: the driver starts it
    (trial / "hpo-x-0000-1.exit").write_text("3\n")
    handle = backend.adopt(None, "hpo-x-0000-1", trial)
    assert handle is not None and backend.poll([handle])[handle] == JobStatus(EXITED, 3)
    # A journaled run with neither process nor marker ended unseen: no exit status, worth resubmitting.
    handle = backend.adopt("4242.server:999999999", "hpo-x-0001-1", trial)
    status = backend.poll([handle])[handle]
    assert status.state == EXITED and status.exit_code is None and status.resubmit
    # A run of an earlier PBS job: its marker tells its end; without one it is lost.
    assert backend.adopt("4100.server:123", "hpo-x-0002-1", trial) is None
    (trial / "hpo-x-0002-1.exit").write_text("0\n")
    handle = backend.adopt("4100.server:123", "hpo-x-0002-1", trial)
    assert handle.startswith("4242.server:") and backend.poll([handle])[handle] == JobStatus(EXITED, 0)
    assert backend.free_nodes == ["a", "b", "c", "d"]


def test_allocation_adopt_keeps_a_live_runs_hosts_until_it_is_over(tmp_path: Path) -> None:
    backend, trial = allocation_backend(), tmp_path / "t"
    trial.mkdir()
    tag = "hpo-x-0003-1"
    (trial / f"{tag}.nodes").write_text("c d\n")
    argv = recording_exit(trial / f"{tag}.exit", ["sleep", "30"])
    run = subprocess.Popen(argv, env={**os.environ, RUN_TAG_ENV: tag}, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        # The wrapper and the program it started (which inherits the tag): the wrapper is past its start-up.
        while len(processes_tagged(tag)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        handle = backend.adopt(None, tag, trial)
        assert handle == f"4242.server:{run.pid}" and backend.free_nodes == ["a", "b"]
        assert backend.poll([handle])[handle].state == RUNNING
        backend.cancel(handle)
        assert run.wait(timeout=10) == -signal.SIGTERM  # the wrapper mirrors the trial's end
        status = backend.poll([handle])[handle]
        assert status == JobStatus(EXITED, -signal.SIGTERM)  # read from the marker the wrapper wrote
        assert sorted(backend.free_nodes) == ["a", "b", "c", "d"]
    finally:
        run.kill()
        run.wait()


# --------------------------------------------------------------------------- config and auto detection


def pbs_config(**execution):
    return validate_config({"name": "t", "command": ["python"], "params": {"x": [1, 2]},
                            "metric": {"name": "loss", "mode": "min"}, "resource": {"max": 3}, "budget": {"max_trials": 2},
                            "execution": execution}, check_program=False)


def fake_command(directory: Path, name: str, exit_code: int = 0) -> None:
    (directory / name).write_text(f"#!/bin/sh\nexit {exit_code}\n")
    (directory / name).chmod(0o755)


def test_auto_recognises_pbs(monkeypatch, tmp_path: Path) -> None:
    for name in ("SLURM_JOB_ID", "PBS_JOBID", "PBS_NODEFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert backend_choice(pbs_config()) == ("local", "auto: no batch system found: local processes")
    fake_command(tmp_path, "qsub")
    fake_command(tmp_path, "qstat", exit_code=1)
    # qsub on PATH whose server does not answer is no batch system to send trials to.
    assert backend_choice(pbs_config()) == ("local", "auto: qsub found but not answering: local processes")
    fake_command(tmp_path, "qstat")
    assert backend_kind(pbs_config()) == "pbs"  # qsub and no sbatch
    fake_command(tmp_path, "sbatch")
    fake_command(tmp_path, "sinfo", exit_code=1)
    assert backend_kind(pbs_config()) == "pbs"  # unconfigured Slurm client tools are passed over
    fake_command(tmp_path, "sinfo")
    assert backend_kind(pbs_config()) == "slurm"  # a Slurm site's qsub wrapper
    monkeypatch.setenv("PBS_JOBID", "1.s")
    monkeypatch.setenv("PBS_NODEFILE", "/nodes")
    assert backend_kind(pbs_config()) == "pbs"  # inside a PBS job
    assert pbs_config(workload_manager="pbs").execution.backend == "pbs"


@pytest.mark.parametrize("key, value, words", [
    ("walltime", "1h", "HH:MM:SS"), ("select", "ncpus=8 && rm", "chunk resources"),
    ("queue", "q;rm", "destination"), ("launcher", "srun", "mpiexec, mpirun, pbsdsh"),
    ("qsub_args", ["-h", "script"], "not an option"), ("qsub_args", ["-I"], "interactive"),
    ("job_name_max", 300, "between 15 and 236"), ("mode", "steps", "must be one of"),
    ("export", ["BAD NAME"], "environment variable names"), ("qstat_format", "xml", "must be one of"),
])
def test_bad_pbs_settings_are_one_clear_error(key, value, words) -> None:
    with pytest.raises(ConfigError) as caught:
        pbs_config(backend="pbs", pbs={key: value})
    assert f"execution.pbs.{key}" in str(caught.value) and words in str(caught.value)
