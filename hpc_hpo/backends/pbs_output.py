"""Talking to PBS Professional / OpenPBS: one helper that runs its commands, and pure parsers of what they print.

The parsers take text and return plain values, so they are tested on recorded output (every job
state and exit-status convention the driver must tell apart) without a PBS server. Facts used here
come from the OpenPBS manual pages (qsub.1B, qstat.1B, qdel.1B, qselect.1B) and the job exit codes
PBS documents (JOB_EXEC_* in its reference guide).
"""
from __future__ import annotations

import hashlib
import json
import re
import signal
from dataclasses import dataclass, field

from ..errors import BackendError
from ..walltime import clock_seconds
from .commands import CommandError, run_command
from .base import EXITED, RUNNING, JobStatus


# qstat's job states (qstat.1B). B: array begun; E: exiting after having run; F: finished;
# H: held; M: moved to another server; Q: queued; R: running; S: suspended; T: being moved;
# U: suspended because its workstation is busy; W: waiting for its start time; X: subjob done.
# A moved job goes on at the other server: its end is seen from the exit marker the job writes.
ACTIVE_STATES = frozenset("BEHMQRSTUW")
FINISHED_STATES = frozenset("FX")
# States of a job that has not started (again): with run_count >= 1 it ran once and was requeued.
WAITING_STATES = frozenset("QHWT")
ALL_STATES = ACTIVE_STATES | FINISHED_STATES

# Exit_status values PBS itself sets when it could not run, or ended, the job (negative; job.h).
PBS_EXIT_CODES: dict[int, str] = {
    -1: "JOB_EXEC_FAIL1: execution failed before files, no retry",
    -2: "JOB_EXEC_FAIL2: execution failed after files, no retry",
    -3: "JOB_EXEC_RETRY: execution failed, retry",
    -4: "JOB_EXEC_INITABT: aborted on MoM initialization",
    -5: "JOB_EXEC_INITRST: aborted on MoM initialization, checkpoint, no migrate",
    -6: "JOB_EXEC_INITRMG: aborted on MoM initialization, checkpoint, ok migrate",
    -7: "JOB_EXEC_BADRESRT: restart failed",
    -10: "JOB_EXEC_FAILUID: invalid UID/GID for the job",
    -11: "JOB_EXEC_RERUN: the job was rerun",
    -12: "JOB_EXEC_CHKP: checkpointed and killed",
    -13: "JOB_EXEC_FAIL_PASSWORD: bad password",
    -14: "JOB_EXEC_RERUN_ON_SIS_FAIL: lost contact with a sister MoM",
    -15: "JOB_EXEC_QUERST: requeued for restart from checkpoint",
    -16: "JOB_EXEC_FAILHOOK_RERUN: a hook rejected the start, requeue",
    -17: "JOB_EXEC_FAILHOOK_DELETE: a hook rejected the start, delete",
    -18: "JOB_EXEC_HOOK_RERUN: a hook asked for a requeue",
    -19: "JOB_EXEC_HOOK_DELETE: a hook asked for a delete",
    -20: "JOB_EXEC_RERUN_MS_FAIL: lost contact with the primary execution host",
    -21: "JOB_EXEC_FAIL_SECURITY: security breach in the PBS directory",
    -22: "JOB_EXEC_HOOKERROR: a hook failed or timed out",
    -23: "JOB_EXEC_FAIL_KRB5: no Kerberos credentials",
    -24: "JOB_EXEC_KILL_NCPUS_BURST: exceeded ncpus (burst)",
    -25: "JOB_EXEC_KILL_NCPUS_SUM: exceeded ncpus (sum)",
    -26: "JOB_EXEC_KILL_VMEM: exceeded vmem",
    -27: "JOB_EXEC_KILL_MEM: exceeded mem",
    -28: "JOB_EXEC_KILL_CPUT: exceeded cput",
    -29: "JOB_EXEC_KILL_WALLTIME: exceeded walltime",
    -30: "JOB_EXEC_JOINJOB: join job failed",
    -31: "JOB_EXEC_KILL_HPMEM: exceeded hpmem",
    -32: "JOB_EXEC_RERUN_ZOMBIE_JOB: requeued after its processes were lost",
}
# Ended by the cluster, not by the program (requeue codes, lost hosts, the walltime, as Slurm's
# TIMEOUT): worth resubmitting from the trial's checkpoint within the retry budget.
RESUBMIT_CODES = frozenset({-3, -11, -12, -14, -15, -16, -18, -20, -29, -32})
MEMORY_CODES = frozenset({-26, -27, -31})
# PBS Pro reports a job whose top shell was killed by signal N as Exit_status 256 + N (271: SIGTERM,
# what qdel sends first; 265: SIGKILL).
SIGNAL_BASE = 256

# Lines qstat and qdel print for jobs they no longer (or never) knew, per job, beside the others' output.
MISSING_JOB = re.compile(r"Unknown Job Id|Job has finished|job has finished|has been deleted|"
                         r"Job ID .* not found", re.IGNORECASE)
JOB_ID_PATTERN = re.compile(r"^\d+(\[\d*\])?(\.[A-Za-z0-9_.-]+)?$")


# One runner for every batch system's commands; the PBS code calls it by these names.
PbsCommandError = CommandError
run_pbs = run_command


def only_missing_jobs(stderr: str) -> bool:
    """True when every complaint is about a job the server does not (or no longer) list: the output for
    the other jobs is complete. Anything else (server down, bad option) means nothing can be trusted."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    return bool(lines) and all(MISSING_JOB.search(line) for line in lines)


# --------------------------------------------------------------------------- parsers


@dataclass(frozen=True)
class PbsJob:
    """One job as `qstat -f` shows it (long or JSON format)."""

    job_id: str  # "123.server"
    state: str  # one letter, see ACTIVE_STATES
    name: str = ""
    exit_status: int | None = None
    run_count: int = 0
    variables: dict[str, str] = field(default_factory=dict)  # Variable_List
    comment: str = ""


def parse_qsub_job_id(stdout: str) -> str:
    """qsub prints the new job's id, `sequence_number.servername`, on a line of its own."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    job_id = lines[-1] if lines else ""
    if not JOB_ID_PATTERN.match(job_id):
        raise BackendError(f"qsub printed {stdout.strip()!r}, not a job id")
    return job_id


def parse_qselect(stdout: str) -> list[str]:
    """qselect prints one job id a line."""
    return [line.strip() for line in stdout.splitlines() if JOB_ID_PATTERN.match(line.strip())]


def parse_qstat_text(stdout: str) -> dict[str, PbsJob]:
    """`qstat -f` long format: "Job Id: <id>", then "    name = value" lines. Values longer than a
    line go on in continuation lines that start with a tab (or deeper indentation than 4 spaces)."""
    jobs: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    last = ""
    for line in stdout.splitlines():
        if line.startswith("Job Id:"):
            current = jobs.setdefault(line.split(":", 1)[1].strip(), {})
            last = ""
        elif current is None or not line.strip():
            continue
        elif re.match(r"^ {4}\S", line) and " = " in line:
            last, _, value = line.strip().partition(" = ")
            current[last] = value
        elif last and line[:1] in ("\t", " "):
            current[last] += line.strip()
    return {job_id: _job(job_id, attrs) for job_id, attrs in jobs.items()}


def parse_qstat_json(stdout: str) -> dict[str, PbsJob]:
    """`qstat -f -F json`: {"timestamp":.., "pbs_version":.., "pbs_server":.., "Jobs": {id: {attr: value}}}.
    Raises ValueError for text that is not that JSON (older servers can print invalid JSON)."""
    if not stdout.strip():
        return {}
    data = json.loads(stdout)
    if not isinstance(data, dict):
        raise ValueError("qstat -F json printed no object")
    jobs = data.get("Jobs") or {}
    if not isinstance(jobs, dict):
        raise ValueError("qstat -F json: 'Jobs' is not an object")
    return {job_id: _job(job_id, attrs) for job_id, attrs in jobs.items() if isinstance(attrs, dict)}


def _job(job_id: str, attrs: dict[str, object]) -> PbsJob:
    variables = attrs.get("Variable_List", "")
    return PbsJob(job_id=job_id, state=str(attrs.get("job_state", "")).strip(), name=str(attrs.get("Job_Name", "")),
                  exit_status=_integer(attrs.get("Exit_status")), run_count=_integer(attrs.get("run_count")) or 0,
                  variables=({str(k): str(v) for k, v in variables.items()} if isinstance(variables, dict)
                             else parse_variable_list(str(variables))),
                  comment=str(attrs.get("comment", "")))


def _integer(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = str(value).strip() if value is not None else ""
    return int(text) if re.fullmatch(r"-?\d+", text) else None


def parse_variable_list(text: str) -> dict[str, str]:
    """Variable_List of the long format: NAME=value pairs split by commas; a comma inside a value is
    written as "\\,"."""
    variables = {}
    for item in re.split(r"(?<!\\),", text):
        name, sep, value = item.partition("=")
        if sep and name.strip():
            variables[name.strip()] = value.replace("\\,", ",")
    return variables


def find_job(jobs: dict[str, PbsJob], job_id: str) -> PbsJob | None:
    """The record of a job id; qstat may print the server's full name where qsub printed a short one."""
    if job_id in jobs:
        return jobs[job_id]
    sequence = job_id.split(".", 1)[0]
    matches = [job for key, job in jobs.items() if key.split(".", 1)[0] == sequence]
    return matches[0] if len(matches) == 1 else None


def requeued(job: PbsJob) -> bool:
    """PBS put a job that had started back in the queue (preemption by requeue, a lost node, qrerun):
    waiting again after a run, or started more than once."""
    return (job.state in WAITING_STATES and job.run_count >= 1) or (job.state not in FINISHED_STATES
                                                                      and job.run_count >= 2)


def exit_meaning(status: int | None) -> JobStatus:
    """What an Exit_status says: the program's own code, death by a signal, or PBS's own verdict."""
    if status is None:
        return JobStatus(EXITED, None, "the job finished without an exit status (deleted before it ran?)")
    if status > SIGNAL_BASE:
        number = status - SIGNAL_BASE
        return JobStatus(EXITED, -number, f"killed by {_signal_name(number)} (Exit_status {status})")
    if status >= 0:
        return JobStatus(EXITED, status)
    what = PBS_EXIT_CODES.get(status, "a PBS error")
    if status in RESUBMIT_CODES:
        return JobStatus(EXITED, 1, f"ended by PBS (Exit_status {status}, {what})", resubmit=True)
    if status in MEMORY_CODES:
        return JobStatus(EXITED, 1, f"out of memory (Exit_status {status}, {what})")
    return JobStatus(EXITED, 1, f"PBS could not run the job (Exit_status {status}, {what})")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def status_of(job: PbsJob) -> JobStatus:
    """What the driver needs from a job: still going, ended with which code and why, or requeued."""
    if requeued(job):
        return JobStatus(EXITED, 1, f"requeued by PBS (state {job.state}, run_count {job.run_count}): "
                                    "preempted or its host failed", resubmit=True)
    if job.state in ACTIVE_STATES:
        return JobStatus(RUNNING)
    if job.state in FINISHED_STATES:
        return exit_meaning(job.exit_status)
    return JobStatus(EXITED, 1, f"unknown PBS job state {job.state!r}")


def parse_nodefile(text: str) -> list[str]:
    """PBS_NODEFILE lists a host once per MPI process placed on it: the distinct hosts, in order."""
    hosts: list[str] = []
    for line in text.splitlines():
        host = line.strip()
        if host and not host.startswith("#") and host not in hosts:
            hosts.append(host)
    return hosts


def job_name(tag: str, limit: int) -> str:
    """The job name for a run tag: the tag itself when it fits, otherwise a deterministic short form
    that keeps the tag's end (trial and run) and a hash of the whole tag, starting with a letter as
    older servers require. The full tag also travels in the job's Variable_List (HPC_HPO_RUN_TAG)."""
    if len(tag) <= limit:
        return tag
    digest = hashlib.sha1(tag.encode()).hexdigest()[:5]
    return f"h{digest}{tag[-(limit - 6):]}"


def parse_walltime(text: object) -> float | None:
    """A PBS duration, "[[HH:]MM:]SS" (hours may exceed 24), in seconds; None for anything else."""
    return clock_seconds(str(text)) if text is not None else None


def walltime_left(stdout: str, job_id: str) -> float | None:
    """Seconds a running job has left, from `qstat -f -F json JOB`: its Resource_List.walltime less its
    resources_used.walltime. None when the job has no walltime limit or qstat does not say."""
    try:
        jobs = json.loads(stdout).get("Jobs") or {}
    except (ValueError, AttributeError):
        return None
    attrs = jobs.get(job_id) or next((a for j, a in jobs.items() if j.split(".")[0] == job_id.split(".")[0]), None)
    if not isinstance(attrs, dict):
        return None
    limit = parse_walltime((attrs.get("Resource_List") or {}).get("walltime"))
    used = parse_walltime((attrs.get("resources_used") or {}).get("walltime")) or 0.0
    return None if limit is None else max(limit - used, 0.0)
