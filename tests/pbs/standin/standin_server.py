"""The state of the stand-in PBS server: job records in a directory, written under one lock.

No PBS server can be installed on the machines these tests run on. The stand-in commands (qsub,
qstat, qdel, qselect in this directory) run each job as a local process (standin_mom.py) and print
what the OpenPBS manual pages show: `qsub` the job id, `qstat -f` the long format (`-F json` the
JSON one), `qstat -x` finished jobs while job history is on, and the per-job error lines for
unknown and finished jobs. Tests only; nothing in hpc_hpo depends on it.

The directory is $PBS_STANDIN_DIR; config.json there sets the server's behaviour:
  history       keep finished jobs for qstat -x (job_history_enable)       default true
  name_max      the longest job name qsub accepts                          default 236
  qsub_fail     {"message": ..., "code": ...}: qsub refuses every job      default none
  requeue       {"<job name suffix>": seconds}: on its first run, the job is requeued that long
                after it started (preemption by requeue); it waits in Q for requeue_hold seconds
  vanish        {"<job name suffix>": seconds}: the job is killed and forgotten, history and all
  stuck_delete  qdel without -W force does not reach the job (an unreachable MoM)
  kill_delay    seconds between qdel's SIGTERM and SIGKILL                  default 2
  nodefile_hosts  N: each job's PBS_NODEFILE lists N made-up hosts, cn<job key>-h<k> (the jobs still run
                here; the stand-in launchers in ../launchers only record the hosts)  default: this host once

Job arrays (qsub -J start-end[:step]) are kept as real PBS shows them: qsub prints the array's id,
`<seq>[].standin`; every subjob is a job of its own, `<seq>[<i>].standin`, run by its own mom with
PBS_ARRAY_INDEX=<i> and PBS_ARRAY_ID=<seq>[].standin. The array's record holds no process: its
state is derived from its subjobs' (Q while all wait, B while any runs, F once all ended), qdel of
the array deletes every subjob, and qselect lists the array, not its subjobs (as without -J/-t).
Simplified: subjobs all start at once (no max_run_subjobs, no scheduling), qstat -t is not there.

Dependencies (-W depend=after*:id[:id...]) hold the job until every job named has ended; the type
is not looked at (an afterok job runs after a failure too) and a dependency on a job the server does
not know is ignored. As OpenPBS does (depend_on_que: PBSE_IVALREQ), one on a subjob is refused: only
a whole array (<seq>[]) or a plain job can be depended on. #PBS lines in the script are not read:
only options on the qsub command line count.
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

SERVER = "standin"
VERSION = "22.05.11"


def state_dir() -> Path:
    path = os.environ.get("PBS_STANDIN_DIR")
    if not path:
        sys.exit("standin: PBS_STANDIN_DIR is not set")
    return Path(path)


def config() -> dict[str, Any]:
    try:
        data = json.loads((state_dir() / "config.json").read_text())
    except (OSError, ValueError):
        data = {}
    return {"history": True, "name_max": 236, "qsub_fail": None, "requeue": {}, "vanish": {},
            "stuck_delete": False, "kill_delay": 2.0, "requeue_hold": 2.0, "nodefile_hosts": None, **data}


@contextmanager
def locked() -> Iterator[None]:
    (state_dir() / "jobs").mkdir(parents=True, exist_ok=True)
    with open(state_dir() / "lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def log(argv: list[str]) -> None:
    """Every command the stand-in ran, for tests to check (e.g. that losers were qdel'd)."""
    state_dir().mkdir(parents=True, exist_ok=True)
    with open(state_dir() / "commands.jsonl", "a") as handle:
        handle.write(json.dumps({"argv": argv, "time": time.time()}) + "\n")


def job_path(sequence: str) -> Path:
    return state_dir() / "jobs" / f"{sequence}.json"


def read_job(sequence: str) -> dict[str, Any] | None:
    try:
        return json.loads(job_path(sequence).read_text())
    except (OSError, ValueError):
        return None


def write_job(job: dict[str, Any]) -> None:
    path = job_path(job["sequence"])
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(job))
    os.replace(temporary, path)


def forget_job(sequence: str) -> None:
    job_path(sequence).unlink(missing_ok=True)


def next_sequence() -> str:
    counter = state_dir() / "sequence"
    number = int(counter.read_text()) + 1 if counter.exists() else 100
    counter.write_text(str(number))
    return str(number)


def sequence_of(job_id: str) -> str:
    """The key of a job's record: its id without the server, `123`, `123[]` (an array) or `123[4]` (a subjob)."""
    return job_id.split(".", 1)[0]


def _order(key: str) -> tuple[int, int]:
    """Jobs by sequence number; an array before its subjobs, the subjobs by index."""
    number, _, index = key.partition("[")
    index = index.rstrip("]")
    return int(number), int(index) if index else -1


def subjobs(array: dict[str, Any]) -> list[dict[str, Any]]:
    """The subjob records of an array's record (those the server still knows)."""
    found = (read_job(f"{array['number']}[{index}]") for index in array["indices"])
    return [job for job in found if job is not None]


def array_state(array: dict[str, Any]) -> str:
    """An array's state from its subjobs': Q while all wait, F once all ended, B (begun) in between."""
    states = {job["job_state"] for job in subjobs(array)}
    if not states or states == {"F"}:
        return "F"
    return "Q" if states <= {"Q", "H"} else "B"


def with_derived_state(job: dict[str, Any]) -> dict[str, Any]:
    """The record as qstat shows it: an array's state derived from its subjobs."""
    return {**job, "job_state": array_state(job)} if job.get("indices") is not None else job


def finish(job: dict[str, Any], exit_status: int | None) -> None:
    """The job left execution: into history (state F) or, without history, out of the server."""
    if not config()["history"]:
        forget_job(job["sequence"])
        return
    job["job_state"] = "F"
    if exit_status is not None:
        job["Exit_status"] = exit_status
    write_job(job)


def signal_job(job: dict[str, Any], sig: signal.Signals) -> None:
    pgid = job.get("pgid")
    if pgid:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def all_jobs() -> list[dict[str, Any]]:
    jobs = []
    for path in sorted((state_dir() / "jobs").glob("*.json"), key=lambda p: _order(p.stem)):
        job = read_job(path.stem)
        if job is not None:
            jobs.append(with_derived_state(job))
    return jobs
