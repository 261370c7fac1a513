"""Trials as local processes, each in its own process group so that a cancel reaches its children.

Each run starts under record_exit.py, which leads the group and writes the exit status to a
marker file: a driver restarted after a crash re-adopts the runs still going (found by the tag
in their environment) and learns how the others ended.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import BackendError
from .base import (EXITED, RUN_TAG_ENV, RUNNING, Backend, JobStatus, LaunchSpec, exit_marker, leads_group,
                   processes_tagged, read_exit_marker, recording_exit)

LOST = "the run ended while no driver watched it, leaving no exit status"


@dataclass
class _Run:
    pid: int | None  # None: found ended (by its exit marker) when adopted
    tag: str
    exit_file: Path
    process: subprocess.Popen[bytes] | None = None  # set when this driver started it
    kill_at: float | None = None  # when SIGTERM turns into SIGKILL


class LocalBackend(Backend):
    name = "local"

    def __init__(self, kill_grace_s: float = 5.0) -> None:
        self.kill_grace_s = kill_grace_s
        self.runs: dict[str, _Run] = {}

    def submit(self, spec: LaunchSpec) -> str:
        env = dict(os.environ)
        env.update(spec.env)
        env[RUN_TAG_ENV] = spec.tag
        # Line-by-line stdout from Python trials, so metric_regex and users see output as it comes.
        env.setdefault("PYTHONUNBUFFERED", "1")
        exit_file = exit_marker(spec.trial_dir, spec.tag)
        try:
            with open(spec.stdout, "ab") as out, open(spec.stderr, "ab") as err:
                process = subprocess.Popen(recording_exit(exit_file, list(spec.argv)), cwd=spec.cwd, env=env,
                                           stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                           start_new_session=True)
        except OSError as exc:
            raise BackendError(f"cannot start trial {spec.trial_id}: {exc.strerror}") from None
        handle = str(process.pid)
        self.runs[handle] = _Run(process.pid, spec.tag, exit_file, process)
        return handle

    def adopt(self, handle: str | None, tag: str, trial_dir: Path) -> str | None:
        candidates = [int(handle)] if handle and handle.isdigit() else None
        leaders = [pid for pid in processes_tagged(tag, candidates) if leads_group(pid)]
        exit_file = exit_marker(trial_dir, tag)
        if leaders:
            handle = str(leaders[0])
            self.runs[handle] = _Run(leaders[0], tag, exit_file)
            return handle
        # Looked for after the process: a run that is gone wrote its marker before it went.
        if read_exit_marker(exit_file) is not None or handle:
            handle = handle or f"ended:{tag}"
            self.runs[handle] = _Run(None, tag, exit_file)
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
            status = self._status(run)
            if status.state == RUNNING:
                if run.kill_at is not None and now >= run.kill_at:
                    self._signal(run, signal.SIGKILL)
            else:
                # The leader is gone; children it left in its group go with it.
                self._signal(run, signal.SIGKILL)
                del self.runs[handle]
            statuses[handle] = status
        return statuses

    def _status(self, run: _Run) -> JobStatus:
        if run.process is not None:
            code = run.process.poll()
            return JobStatus(RUNNING) if code is None else JobStatus(EXITED, code)
        if run.pid is not None and processes_tagged(run.tag, [run.pid]):
            return JobStatus(RUNNING)
        code = read_exit_marker(run.exit_file)
        if code is not None:
            return JobStatus(EXITED, code)
        return JobStatus(EXITED, None, LOST, resubmit=True)

    def cancel(self, handle: str) -> None:
        run = self.runs.get(handle)
        if run is None or run.kill_at is not None or self._status(run).state == EXITED:
            return
        self._signal(run, signal.SIGTERM)
        run.kill_at = time.monotonic() + self.kill_grace_s

    def end_orphan(self, handle: str | None, tag: str) -> None:
        """Kill the process group of a run left by a dead driver (found by the tag in its environment)."""
        for pid in processes_tagged(tag, [int(handle)] if handle and handle.isdigit() else None):
            if leads_group(pid):
                _kill_group(pid, signal.SIGKILL)

    @staticmethod
    def _signal(run: _Run, sig: signal.Signals) -> None:
        # An adopted pid is signalled only while the tag proves it is still the run's.
        if run.pid is None or (run.process is None and not processes_tagged(run.tag, [run.pid])):
            return
        _kill_group(run.pid, sig)


def _kill_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
