"""Runs one stand-in PBS job as a local process and records how it ends (tests only; see standin_server)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import standin_server as server

POLL_S = 0.05


def job_environment(job: dict) -> dict[str, str]:
    """What PBS gives a job: a login-like environment, the -v variables and PBS's own. PBS_STANDIN_DIR
    too: the stand-in commands inside the job reach this server by it (as pbs.conf leads real ones)."""
    env = {name: os.environ[name] for name in ("HOME", "USER", "LOGNAME", "PATH", "LANG", "PBS_STANDIN_DIR")
           if name in os.environ}
    nodefile = server.state_dir() / f"{job['sequence']}.nodes"
    count = server.config()["nodefile_hosts"]
    name = job["sequence"].replace("[", "-").rstrip("]")  # 123[4] -> cn123-4-h1, ...
    hosts = [f"cn{name}-h{k}" for k in range(1, count + 1)] if count else [os.uname().nodename]
    nodefile.write_text("".join(f"{host}\n" for host in hosts))
    env.update(job["variables"])
    env.update(PBS_JOBID=job["id"], PBS_JOBNAME=job["Job_Name"], PBS_NODEFILE=str(nodefile),
               PBS_ENVIRONMENT="PBS_BATCH", PBS_QUEUE=job["queue"], PBS_O_QUEUE=job["queue"])
    if "array_id" in job:
        env.update(PBS_ARRAY_INDEX=str(job["array_index"]), PBS_ARRAY_ID=job["array_id"])
    return env


def wait_for_dependencies(sequence: str) -> bool:
    """A held job (-W depend) waits until every job it names has ended; False if it was deleted meanwhile."""
    while True:
        with server.locked():
            job = server.read_job(sequence)
            if job is None or job["job_state"] == "F":
                return False
            if job["job_state"] != "H":
                return True
            others = (server.read_job(key) for key in job.get("depends_on", []))
            if all(other is None or server.with_derived_state(other)["job_state"] == "F" for other in others):
                job["job_state"] = "Q"
                server.write_job(job)
                return True
        time.sleep(POLL_S)


def trigger(job: dict, kind: str) -> float | None:
    """Seconds after its start at which this job is requeued or vanishes (config by job name suffix)."""
    for suffix, seconds in server.config()[kind].items():
        if job["Job_Name"].endswith(suffix):
            return float(seconds)
    return None


def start(sequence: str) -> subprocess.Popen | None:
    with server.locked():
        job = server.read_job(sequence)
        if job is None or job["job_state"] != "Q":
            return None  # deleted while queued
        with open(job["Output_Path"] or os.devnull, "ab") as output:
            process = subprocess.Popen(["/bin/bash", job["script"]], cwd=os.environ.get("HOME", "/"),
                                       env=job_environment(job), stdin=subprocess.DEVNULL, stdout=output,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        job.update(job_state="R", pgid=process.pid, session_id=process.pid, run_count=job["run_count"] + 1,
                   started=time.time())
        server.write_job(job)
    return process


def end_run(sequence: str, process: subprocess.Popen, sig: signal.Signals) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
    process.wait()


def watch(sequence: str, process: subprocess.Popen) -> str:
    """Until the run ends: 'done', 'requeued' or 'gone'."""
    while True:
        time.sleep(POLL_S)
        with server.locked():
            job = server.read_job(sequence)
            if job is None or job["job_state"] == "F":  # qdel -W force made the server forget it
                end_run(sequence, process, signal.SIGKILL)
                return "gone"
            elapsed = time.time() - job["started"]
            requeue, vanish = trigger(job, "requeue"), trigger(job, "vanish")
            if job.get("kill_at") and time.time() >= job["kill_at"]:
                server.signal_job(job, signal.SIGKILL)
            code = process.poll()
            if code is not None:
                server.signal_job(job, signal.SIGKILL)  # what the script left behind in its session
                server.finish(job, code if code >= 0 else 256 - code)
                return "done"
            if vanish is not None and elapsed >= vanish:
                end_run(sequence, process, signal.SIGKILL)
                server.forget_job(sequence)
                return "gone"
            if requeue is not None and job["run_count"] == 1 and elapsed >= requeue:
                end_run(sequence, process, signal.SIGKILL)
                job.update(job_state="Q", pgid=None, session_id=None)
                server.write_job(job)
                return "requeued"


def main(sequence: str) -> None:
    if not wait_for_dependencies(sequence):
        return
    time.sleep(0.1)  # a moment in the queue, as the scheduler would take
    while True:
        process = start(sequence)
        if process is None or watch(sequence, process) != "requeued":
            return
        time.sleep(server.config()["requeue_hold"])


if __name__ == "__main__":
    main(sys.argv[1])
