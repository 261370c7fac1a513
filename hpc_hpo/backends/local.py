"""Trials as local processes, each in its own process group so that a cancel reaches its children."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from ..errors import BackendError
from .base import EXITED, RUN_TAG_ENV, RUNNING, Backend, JobStatus, LaunchSpec, processes_tagged


class LocalBackend(Backend):
    name = "local"

    def __init__(self, kill_grace_s: float = 5.0) -> None:
        self.kill_grace_s = kill_grace_s
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.kill_at: dict[str, float] = {}  # handle -> when SIGTERM turns into SIGKILL

    def submit(self, spec: LaunchSpec) -> str:
        env = dict(os.environ)
        env.update(spec.env)
        env[RUN_TAG_ENV] = spec.tag
        # Line-by-line stdout from Python trials, so metric_regex and users see output as it comes.
        env.setdefault("PYTHONUNBUFFERED", "1")
        try:
            with open(spec.stdout, "ab") as out, open(spec.stderr, "ab") as err:
                process = subprocess.Popen(list(spec.argv), cwd=spec.cwd, env=env, stdin=subprocess.DEVNULL,
                                           stdout=out, stderr=err, start_new_session=True)
        except OSError as exc:
            raise BackendError(f"cannot start trial {spec.trial_id}: {spec.argv[0]}: {exc.strerror}") from None
        handle = str(process.pid)
        self.processes[handle] = process
        return handle

    def poll(self, handles: list[str]) -> dict[str, JobStatus]:
        now = time.monotonic()
        statuses = {}
        for handle in handles:
            process = self.processes.get(handle)
            if process is None:
                statuses[handle] = JobStatus(EXITED, None, "not started by this driver")
                continue
            code = process.poll()
            if code is None:
                if handle in self.kill_at and now >= self.kill_at[handle]:
                    self._signal(process, signal.SIGKILL)
                statuses[handle] = JobStatus(RUNNING)
            else:
                # The leader is gone; children it left in its group go with it.
                self._signal(process, signal.SIGKILL)
                self.kill_at.pop(handle, None)
                statuses[handle] = JobStatus(EXITED, code)
        return statuses

    def cancel(self, handle: str) -> None:
        process = self.processes.get(handle)
        if process is None or process.poll() is not None or handle in self.kill_at:
            return
        self._signal(process, signal.SIGTERM)
        self.kill_at[handle] = time.monotonic() + self.kill_grace_s

    def end_orphan(self, handle: str | None, tag: str) -> None:
        """Kill the process group of a run left by a dead driver (found by the tag in its environment)."""
        for pid in processes_tagged(tag, [int(handle)] if handle and handle.isdigit() else None):
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    @staticmethod
    def _signal(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        try:
            os.killpg(process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
