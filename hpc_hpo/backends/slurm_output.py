"""Talking to Slurm's command-line tools: one helper that runs them, and pure parsers of what they print.

The parsers take text and return plain values, so they are tested on recorded output (every job
state the driver must tell apart) without a cluster.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import BackendError
from ..walltime import clock_seconds
from .commands import CommandError, run_command

SEPARATOR = "|"

# Job and step states, grouped by what the driver does about them (squeue/sacct man pages).
ACTIVE_STATES = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED",
                           "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED",
                           "RESV_DEL_HOLD", "SPECIAL_EXIT"})
# The run did not fail on its own: it may be resubmitted from its checkpoint within the retry budget.
RESUBMIT_STATES = frozenset({"PREEMPTED", "NODE_FAIL", "TIMEOUT", "BOOT_FAIL", "DEADLINE"})
INVALID_JOB_ID = "Invalid job id specified"


# One runner for every batch system's commands; the Slurm code calls it by these names.
SlurmCommandError = CommandError
run_slurm = run_command


# --------------------------------------------------------------------------- parsers


@dataclass(frozen=True)
class SlurmRecord:
    """One job or step as squeue or sacct shows it."""

    job_id: str  # "123", "123.4" for a step, "123_7" for an array task
    state: str  # the base state, e.g. CANCELLED (sacct's "CANCELLED by 0" loses the "by 0")
    name: str = ""
    exit_code: int | None = None  # negative: ended by that signal
    reason: str = ""


def parse_sbatch_job_id(stdout: str) -> str:
    """`sbatch --parsable` prints "jobid" or "jobid;cluster"."""
    line = stdout.strip().splitlines()[-1] if stdout.strip() else ""
    job_id = line.split(";", 1)[0].strip()
    if not job_id.isdigit():
        raise BackendError(f"sbatch --parsable printed {stdout.strip()!r}, not a job id")
    return job_id


def base_state(text: str) -> str:
    """'CANCELLED by 1000' -> 'CANCELLED'; 'RUNNING+' (sacct's truncation mark) -> 'RUNNING'."""
    return text.strip().split(" ", 1)[0].rstrip("+")


def parse_exit_code(text: str) -> int | None:
    """sacct's ExitCode "code:signal": the code, or minus the signal when a signal ended it."""
    code, _, signal = text.strip().partition(":")
    if not code.isdigit():
        return None
    if signal.isdigit() and int(signal) != 0:
        return -int(signal)
    return int(code)


SQUEUE_JOB_FORMAT = "%i|%T|%j|%r"  # job id, long state, name, reason
SQUEUE_STEP_FORMAT = "%i|%T|%j"  # step id, state, name (with --steps)
SACCT_FIELDS = "JobID,State,JobName,ExitCode"


def parse_squeue(stdout: str) -> list[SlurmRecord]:
    """Lines of `squeue -h -o '%i|%T|%j|%r'` (or the step format); blank and foreign lines are skipped."""
    records = []
    for line in stdout.splitlines():
        fields = line.strip().split(SEPARATOR)
        if len(fields) < 2 or not fields[0]:
            continue
        name = fields[2] if len(fields) > 2 else ""
        reason = fields[3] if len(fields) > 3 else ""
        records.append(SlurmRecord(fields[0], base_state(fields[1]), name, None, reason))
    return records


def parse_sacct(stdout: str) -> list[SlurmRecord]:
    """Lines of `sacct -n -P -o JobID,State,JobName,ExitCode`: one per job, and per step unless -X."""
    records = []
    for line in stdout.splitlines():
        fields = line.strip().split(SEPARATOR)
        if len(fields) < 4 or not fields[0]:
            continue
        records.append(SlurmRecord(fields[0], base_state(fields[1]), fields[2], parse_exit_code(fields[3])))
    return records


def latest_by_id(records: list[SlurmRecord]) -> dict[str, SlurmRecord]:
    """sacct lists a requeued job once per run, oldest first: the last line is the current one."""
    return {record.job_id: record for record in records}


def parse_time_left(text: str) -> float | None:
    """Seconds left from squeue's %L ("[days-]hours:minutes:seconds", "minutes:seconds"); None when Slurm
    sets no end ("UNLIMITED", "NOT_SET", "INVALID") or the text is not a duration."""
    days, dash, clock = text.strip().rpartition("-")
    seconds = clock_seconds(clock)
    if seconds is None or (dash and not (days.isascii() and days.isdigit())):
        return None
    return seconds + int(days or 0) * 86400


# --------------------------------------------------------------------------- an allocation's resources

# `scontrol show job -d` gives one line per group of nodes with the same share of the job:
#   Nodes=n[1-2] CPU_IDs=0-3 Mem=0 GRES=gpu:4(IDX:0-3)
# GRES may name types (gpu:a100:4(IDX:0-3)) and other resources (shard:8(...)); Mem=0 means the
# allocation does not count memory.
_NODE_LINE = re.compile(r"^\s*Nodes=(\S+)\s+CPU_IDs=(\S+)\s+Mem=(\d+)(?:\s+GRES=(\S*))?", re.MULTILINE)
_GPU_COUNT = re.compile(r"(?:^|,)gpu(?::[^:(,]+)?:(\d+)")


@dataclass(frozen=True)
class NodeResources:
    """What an allocation holds on a group of nodes (a Slurm hostlist expression) per node."""

    nodes: str
    cpus: int
    mem_mb: int
    gpus: int


def job_record(text: str, job_id: str) -> str:
    """The record of this job in `scontrol show job` output. For the first element of a job array, whose id is
    the array's, scontrol shows every element, one record each (blank-line separated): the one whose JobId is
    this id is the job's own. Output naming no JobId (a test's fragment) is taken whole."""
    records = [r for r in re.split(r"\n\s*\n", text) if r.strip()]
    own = [r for r in records if re.search(rf"(^|\s)JobId={re.escape(job_id)}(\s|$)", r)]
    return own[0] if own else (text if not any("JobId=" in r for r in records) else "")


def parse_job_resources(text: str) -> list[NodeResources]:
    """The per-node lines of `scontrol show job -d` (one per group of nodes with the same share)."""
    groups = []
    for match in _NODE_LINE.finditer(text):
        nodes, cpu_ids, mem, gres = match.groups()
        gpus = sum(int(count) for count in _GPU_COUNT.findall(gres or ""))
        groups.append(NodeResources(nodes, count_ids(cpu_ids), int(mem), gpus))
    return groups


def count_ids(ranges: str) -> int:
    """How many ids a list like 0-3,8,10-11 names."""
    total = 0
    for part in ranges.split(","):
        low, _, high = part.partition("-")
        if low.isdigit() and (not high or high.isdigit()):
            total += int(high) - int(low) + 1 if high else 1
    return total
