"""Trials as local processes, each in its own process group so that a cancel reaches its children.

Each run starts under record_exit.py, which leads the group and writes the exit status to a
marker file: a driver restarted after a crash re-adopts the runs still going (found by the tag
in their environment) and learns how the others ended. A run whose wrapper died is over: the trial
processes it left in its group are ended (each checked by its tag) before the run is retried. The
wrapper also ends its run once no driver has beaten for HPC_HPO_ORPHAN_TIMEOUT (record_exit.py).
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from ..errors import BackendError
from .base import (EXITED, RUN_TAG_ENV, RUNNING, Backend, JobStatus, LaunchSpec, WatchedRun, exit_marker,
                   group_members, leads_group, open_for_append, processes_tagged, read_exit_marker, recording_exit)


class LocalBackend(Backend):
    name = "local"

    def __init__(self, kill_grace_s: float = 5.0) -> None:
        self.kill_grace_s = kill_grace_s
        self.runs: dict[str, WatchedRun] = {}

    def submit(self, spec: LaunchSpec) -> str:
        env = dict(os.environ)
        env.update(spec.env)
        env[RUN_TAG_ENV] = spec.tag
        # Line-by-line stdout from Python trials, so metric_regex and users see output as it comes.
        env.setdefault("PYTHONUNBUFFERED", "1")
        exit_file = exit_marker(spec.trial_dir, spec.tag)
        try:
            with open_for_append(spec.stdout) as out, open_for_append(spec.stderr) as err:
                process = subprocess.Popen(recording_exit(exit_file, list(spec.argv)), cwd=spec.cwd, env=env,
                                           stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                           start_new_session=True)
        except OSError as exc:
            raise BackendError(f"cannot start trial {spec.trial_id}: {exc.strerror}") from None
        handle = str(process.pid)
        self.runs[handle] = WatchedRun(process.pid, spec.tag, exit_file, process)
        return handle

    def adopt(self, handle: str | None, tag: str, trial_dir: Path) -> str | None:
        candidates = [int(handle)] if handle and handle.isdigit() else None
        tagged = processes_tagged(tag, candidates)
        leaders = [pid for pid in tagged if leads_group(pid)]
        exit_file = exit_marker(trial_dir, tag)
        if leaders:
            handle = str(leaders[0])
            self.runs[handle] = WatchedRun(leaders[0], tag, exit_file)
            return handle
        # The wrapper is gone, but the trial processes it started may run on in its group: the run is
        # over (nothing can record its exit) and they are ended with it, before a retry starts beside them.
        strays = processes_tagged(tag, group_members(int(handle))) if candidates else tagged
        # Looked for after the process: a run that is gone wrote its marker before it went.
        if read_exit_marker(exit_file) is not None or handle or strays:
            handle = handle or f"ended:{tag}"
            self.runs[handle] = WatchedRun(None, tag, exit_file, pgid=_group_of(strays))
            return handle
        return None

    def poll(self, handles: list[str]) -> dict[str, JobStatus]:
        now = time.monotonic()
        statuses = {}
        for handle in handles:
            run = self.runs.get(handle)
            if run is None:
                statuses[handle] = JobStatus(EXITED, None, "not started by this driver")
                continue
            status = run.status()
            if status.state == RUNNING:
                if run.kill_at is not None and now >= run.kill_at:
                    run.signal_group(signal.SIGKILL)
            else:
                # The leader is gone; children it left in its group go with it.
                run.signal_group(signal.SIGKILL)
                del self.runs[handle]
            statuses[handle] = status
        return statuses

    def cancel(self, handle: str) -> None:
        run = self.runs.get(handle)
        if run is None or run.kill_at is not None or run.status().state == EXITED:
            return
        run.signal_group(signal.SIGTERM)
        run.kill_at = time.monotonic() + self.kill_grace_s


def _group_of(pids: list[int]) -> int | None:
    """The process group of the first of these processes still there (None: none is)."""
    for pid in pids:
        try:
            return os.getpgid(pid)
        except OSError:
            continue
    return None
