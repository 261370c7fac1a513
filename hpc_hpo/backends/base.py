"""The seam between the driver and whatever runs trials (local processes, Slurm, PBS).

Backends know nothing about rungs or metrics: they start a command, say whether it still
runs, and end it on request. The driver is the only caller.
"""
from __future__ import annotations

import os
import signal
import re
import subprocess
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO


@dataclass(frozen=True)
class LaunchSpec:
    """Everything needed to start one trial attempt."""

    trial_id: str
    argv: tuple[str, ...]
    cwd: Path
    trial_dir: Path
    env: dict[str, str] = field(default_factory=dict)  # added to the driver's environment
    # Names this run (experiment, trial, run number) where the batch system can see it: a driver
    # that died between submitting and journaling the handle finds the run again by its tag.
    tag: str = ""
    nodes: int = 1
    # A share of one node (execution.*_per_eval, resolved for this trial); None: not asked for. With
    # none set the run takes `nodes` whole nodes.
    gpus: int | None = None
    cpus: int | None = None
    mem_mb: int | None = None
    tasks: int | None = None

    @property
    def sub_node(self) -> bool:
        return any(v is not None for v in (self.gpus, self.cpus, self.mem_mb, self.tasks))

    @property
    def stdout(self) -> Path:
        return self.trial_dir / "stdout"

    @property
    def stderr(self) -> Path:
        return self.trial_dir / "stderr"


RUNNING, EXITED = "running", "exited"


class SubmitLater(Exception):
    """The batch system refused a submission for now (a per-user submit limit): try again later, not a failure."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
# Set in every trial's environment; a resumed driver finds the processes of a run by it.
RUN_TAG_ENV = "HPC_HPO_RUN_TAG"


@dataclass(frozen=True)
class JobStatus:
    state: str  # RUNNING or EXITED
    exit_code: int | None = None  # negative: killed by that signal
    reason: str | None = None
    # Ended by the cluster, not by the program (preempted, node failure, time limit): worth
    # resubmitting from the trial's checkpoint within the requeue budget.
    resubmit: bool = False
    # The allocation the run lived in has ended or was revoked: nothing more can start in it.
    allocation_gone: bool = False


class Backend(ABC):
    name: str = "backend"
    # Nodes (hosts) each trial run gets, from this backend's own settings (execution.slurm or
    # execution.pbs): the driver puts it in every LaunchSpec and reads no batch system's section itself.
    nodes_per_eval: int = 1
    # nodes_per_eval: {param: name}: each trial's node count is that hyperparameter's value.
    nodes_param: str | None = None
    # Each run holds its own allocation (a batch job): a driver that is told to go (SIGTERM, the
    # allocation's warning) may leave its runs going, and the next driver takes them back.
    runs_outlive_driver: bool = False
    # With backend `auto`: why this one was chosen (the driver says so in its first line).
    chosen_because: str = ""

    @abstractmethod
    def submit(self, spec: LaunchSpec) -> str:
        """Start the trial; returns a handle (a pid, a job id) that poll and cancel take."""

    @abstractmethod
    def poll(self, handles: list[str]) -> dict[str, JobStatus]:
        """The status of every handle, in one batched look (one squeue call on Slurm)."""

    @abstractmethod
    def cancel(self, handle: str) -> None:
        """Ask the trial to end (SIGTERM or scancel), escalating to a forced end after a grace period."""

    def adopt(self, handle: str | None, tag: str, trial_dir: Path) -> str | None:
        """Watch a run that a previous driver started, found by its handle or, without one, by its tag.

        Returns the handle to poll and cancel it by from now on, or None when the run left no trace
        (never started, or lost in a way the backend cannot follow). A backend that cannot adopt
        (this default) ends the run with end_orphan and returns None; the driver then counts the
        attempt as lost.
        """
        self.end_orphan(handle, tag)
        return None

    def end_orphan(self, handle: str | None, tag: str) -> None:
        """End a run that a previous driver started and nobody watches any more (best effort).

        With no handle (the driver died between submitting and journaling it), the run is
        looked for by its tag; a handle is checked against the tag before anything is ended.
        """

    def usable_slots(self) -> int | None:
        """How many trials fit now, when that can shrink while the driver runs (nodes lost); None: as set up."""
        return None

    def has_room(self, spec: LaunchSpec) -> bool:
        """Whether this run fits the resources free now; the driver holds it back until it does (trials of
        different shapes share nodes, so a count of slots alone cannot say)."""
        return True

    def allocation_end(self) -> float | None:
        """When the allocation the trials run in ends (unix seconds), or None: no allocation, or no end."""
        return None

    def slots(self, requested: int) -> int:
        """How many trials may run at once: `requested`, or with 0, what the resources hold."""
        return requested or (os.cpu_count() or 1)

    def shutdown(self) -> None:
        """Release what the backend holds; trials still running are cancelled by the driver first."""


# Runs the driver cannot wait for itself (adopted after a restart) are followed by this file.
RECORD_EXIT = Path(__file__).with_name("record_exit.py")


def open_for_append(path: Path) -> BinaryIO:
    """A trial's log opened to append, never through a symlink: a trial (or anyone who can write its
    directory) must not make the driver, often root on a test cluster, append to another file."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    return os.fdopen(fd, "ab")


def exit_marker(trial_dir: Path, tag: str) -> Path:
    """Where a run's exit status is written when it ends (by record_exit.py, or by a batch job's script)."""
    return trial_dir / f"{tag}.exit"


def recording_exit(exit_file: Path, argv: list[str]) -> list[str]:
    """argv run under record_exit.py: isolated (-I -S) so that it starts fast and imports nothing of the user's."""
    return [sys.executable, "-I", "-S", str(RECORD_EXIT), str(exit_file), *argv]


def read_exit_marker(path: Path) -> int | None:
    """The exit status a run left, or None while there is none (or it is not a whole number yet)."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if re.fullmatch(r"-?\d+", text) else None


def leads_group(pid: int) -> bool:
    """True for a process group leader: the process a run was started as (its wrapper), not one of its children."""
    try:
        return os.getpgid(pid) == pid
    except OSError:
        return False


def orphan_note(exit_file: Path) -> Path:
    """Written by record_exit.py beside the exit marker when it ended its run because no driver beat any more."""
    return exit_file.with_suffix(".orphaned")


@dataclass
class WatchedRun:
    """A run started as a local process group (a trial, or the srun of a step) under record_exit.py."""

    pid: int | None  # the wrapper; None: found ended (by its exit marker) when adopted
    tag: str
    exit_file: Path
    process: subprocess.Popen[bytes] | None = None  # set when this driver started it
    kill_at: float | None = None  # when SIGTERM turns into SIGKILL
    # The run's process group: the wrapper's pid, as it leads the group. Its trial processes stay in it
    # when the wrapper dies, and are found there (by their tag) to be ended.
    pgid: int | None = None

    def __post_init__(self) -> None:
        if self.pgid is None:
            self.pgid = self.pid

    def status(self) -> JobStatus:
        """Its own child is waited for; an adopted run lives while its tagged pid does, then its marker tells."""
        if self.process is not None:
            code = self.process.poll()
            return JobStatus(RUNNING) if code is None else self._ended(code)
        if self.pid is not None and processes_tagged(self.tag, [self.pid]):
            return JobStatus(RUNNING)
        code = read_exit_marker(self.exit_file)
        if code is not None:
            return self._ended(code)
        return JobStatus(EXITED, None, "the run ended while no driver watched it, leaving no exit status",
                         resubmit=True)

    def _ended(self, code: int) -> JobStatus:
        """An exit; one its wrapper caused because no driver beat (record_exit.py) is the cluster's, not the trial's."""
        if code != 0:
            try:
                why = orphan_note(self.exit_file).read_text(encoding="utf-8", errors="replace").strip()
            except OSError:
                why = ""
            if why:
                return JobStatus(EXITED, code, why, resubmit=True)
        return JobStatus(EXITED, code)

    def signal_group(self, sig: signal.Signals) -> None:
        """Signal the run's process group while its leader (the wrapper) is this driver's child or carries
        the run's tag. Once the wrapper is gone, each process left in the group is signalled only if its
        environment carries the tag: a recycled pid or group id belongs to some other program, which must
        not be touched, but the trial a dead wrapper left must not run on beside the run's retry."""
        if self.pgid is None:
            return
        if self.process is not None or (self.pid is not None and processes_tagged(self.tag, [self.pid])):
            try:
                os.killpg(self.pgid, sig)
            except (ProcessLookupError, PermissionError):
                pass
            return
        for pid in processes_tagged(self.tag, group_members(self.pgid)):
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass


def group_members(pgid: int) -> list[int]:
    """The local processes in this process group (from /proc/<pid>/stat)."""
    members = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_bytes()
        except OSError:  # gone meanwhile
            continue
        fields = stat[stat.rfind(b")") + 2:].split()  # state, ppid, pgrp, ... after "pid (comm) "
        if len(fields) > 2 and fields[2] == str(pgid).encode():
            members.append(int(name))
    return members


def processes_tagged(tag: str, candidates: list[int] | None = None) -> list[int]:
    """The local processes (of the candidates, or all) whose environment carries this run tag.

    The environment is the proof: a recycled pid belongs to some other program, which must not
    be touched.
    """
    marker = f"{RUN_TAG_ENV}={tag}".encode()
    pids = candidates if candidates is not None else [int(n) for n in os.listdir("/proc") if n.isdigit()]
    found = []
    for pid in pids:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:  # gone, or another user's
            continue
        if marker in environ:
            found.append(pid)
    return found


class DelegatingBackend(Backend):
    """A backend that wraps another one (tune()'s function runs, run --verbose): everything goes to `inner`
    unless the wrapper overrides it, its settings (name, nodes, whether runs outlive the driver) included."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.name, self.chosen_because = inner.name, inner.chosen_because
        self.nodes_per_eval, self.nodes_param = inner.nodes_per_eval, inner.nodes_param
        self.runs_outlive_driver = inner.runs_outlive_driver

    def submit(self, spec: LaunchSpec) -> str:
        return self.inner.submit(spec)

    def poll(self, handles: list[str]) -> dict[str, JobStatus]:
        return self.inner.poll(handles)

    def cancel(self, handle: str) -> None:
        self.inner.cancel(handle)

    def adopt(self, handle: str | None, tag: str, trial_dir: Path) -> str | None:
        return self.inner.adopt(handle, tag, trial_dir)

    def end_orphan(self, handle: str | None, tag: str) -> None:
        self.inner.end_orphan(handle, tag)

    def usable_slots(self) -> int | None:
        return self.inner.usable_slots()

    def has_room(self, spec: LaunchSpec) -> bool:
        return self.inner.has_room(spec)

    def allocation_end(self) -> float | None:
        return self.inner.allocation_end()

    def slots(self, requested: int) -> int:
        return self.inner.slots(requested)

    def shutdown(self) -> None:
        self.inner.shutdown()
