"""What the batch-system backends (Slurm and PBS) share: the trial's environment and command, the
job-script template and its quoted values, poll pacing, and the record of the nodes a run holds.

Nothing here talks to a batch system: these are the pieces both backends would otherwise copy.
"""
from __future__ import annotations

import logging
import re
import shlex
import time
import subprocess
from abc import abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import BackendError, ConfigError, show_text
from .base import (EXITED, RUN_TAG_ENV, RUNNING, Backend, JobStatus, LaunchSpec, WatchedRun, exit_marker, leads_group,
                   processes_tagged, read_exit_marker)
from .commands import CommandError

log = logging.getLogger("hpc_hpo")
SUBMIT_ATTEMPTS = 3

TEMPLATE_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
TEMPLATE_FIELDS = ("environment", "workdir", "command", "exit_file", "job_name", "trial_dir", "nodes_file")
# Poll pacing never waits longer than this between two looks, however often the command failed.
MAX_POLL_BACKOFF_S = 300.0
# What a job script's `export NAME=...` line can hold: a shell identifier (an exported bash function is
# BASH_FUNC_name%%, and a name may hold anything but '=' and NUL), a value on one line.
SHELL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Variables bash sets itself in the job script (some read-only): an export of the driver's value would fail
# or be overwritten at once. `_` is in every environment a shell started; the job's bash sets its own.
BASH_OWNED = frozenset({"_", "BASHOPTS", "BASHPID", "BASH_ARGV0", "BASH_VERSINFO", "EPOCHREALTIME", "EPOCHSECONDS",
                        "EUID", "GROUPS", "LINENO", "OLDPWD", "PPID", "PWD", "RANDOM", "SECONDS", "SHELLOPTS",
                        "SHLVL", "SRANDOM", "UID"})
# The sets of skipped variables already warned about: said once per driver, not once per trial.
_warned_skips: set[frozenset[str]] = set()


def submit_once(submit: Callable[[], str], find_submitted: Callable[[], list[str]],
                transient: Callable[[CommandError], bool], tool: str) -> str:
    """Submit a trial job, trying again after a transient failure. sbatch and qsub can time out and still
    have submitted: before each new try the job is looked for by its name, so it is never submitted twice."""
    for attempt in range(SUBMIT_ATTEMPTS):
        try:
            return submit()
        except CommandError as exc:
            found = find_submitted()
            if found:
                return found[0]
            if attempt == SUBMIT_ATTEMPTS - 1 or not transient(exc):
                raise
            log.warning("%s failed (%s); trying again", tool, exc)
            time.sleep(2 ** attempt)
    raise AssertionError("unreachable")


def trial_environment(export: tuple[str, ...], spec: LaunchSpec, source: dict[str, str]) -> dict[str, str]:
    """The environment a trial gets: the listed variables of the driver's (or ALL), then the trial's own.

    With ALL, the driver's variables a job script cannot carry are skipped with one warning: exported
    shell functions (BASH_FUNC_which%%, Lmod's ml, usual on RHEL-family clusters; their values hold
    newlines), names that are not shell identifiers ('A;touch X;B' would run as code), values with
    line breaks. The same in every mode, so that a trial sees the same environment under sbatch and srun."""
    if export == ("ALL",):
        source = {name: value for name, value in source.items() if name not in BASH_OWNED}
        env = {name: value for name, value in source.items() if scriptable(name, value)}
        _warn_skipped(sorted(set(source) - set(env)))
    else:
        env = {name: source[name] for name in export if name in source}
    env.update(spec.env)
    env[RUN_TAG_ENV] = spec.tag
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def scriptable(name: str, value: str) -> bool:
    """Whether `export NAME=value` can carry this variable into a job script."""
    return SHELL_NAME.fullmatch(name) is not None and "\n" not in value and "\r" not in value and "\0" not in value


def _warn_skipped(names: list[str]) -> None:
    if not names or frozenset(names) in _warned_skips:
        return
    _warned_skips.add(frozenset(names))
    shown = ", ".join(show_text(name, 40) for name in names[:5]) + (", ..." if len(names) > 5 else "")
    log.warning("export: ALL skipped %d of the driver's environment variables that no job script can carry "
                "(exported shell functions, names that are not shell identifiers, values with line breaks): %s",
                len(names), shown)


def program_argv(spec: LaunchSpec, nodes_flag: str | None) -> list[str]:
    """The trial's command, with the node count appended when the config asks for it (CrayAI's flag)."""
    argv = list(spec.argv)
    if nodes_flag:
        argv += [f"{nodes_flag}{spec.nodes}"] if nodes_flag.endswith("=") else [nodes_flag, str(spec.nodes)]
    return argv


# --------------------------------------------------------------------------- job scripts


def render_trial_script(template: str, values: dict[str, str], where: str = "template") -> str:
    """Fill the template's {{ placeholders }}; an unknown one is an error, so is a missing {{ command }}."""
    if not TEMPLATE_PLACEHOLDER.search(template) or "command" not in TEMPLATE_PLACEHOLDER.findall(template):
        raise BackendError(f"{where} has no {{{{ command }}}} placeholder: the trial would never run")

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise BackendError(f"{where} uses {{{{ {name} }}}}, which is not known; "
                               f"placeholders are: {', '.join(TEMPLATE_FIELDS)}")
        return values[name]
    return TEMPLATE_PLACEHOLDER.sub(fill, template)


def script_argv(argv: list[str], trial_id: str) -> str:
    """argv as one line of bash: every item quoted; one that no script line can hold is refused."""
    for item in argv:
        if "\0" in item or "\n" in item:
            raise BackendError(f"trial {trial_id}: argument {item!r} holds a newline or NUL byte")
    return shlex.join(argv)


def template_values(spec: LaunchSpec, env: dict[str, str], exit_file: Path, command: str,
                    job_name: str | None = None) -> dict[str, str]:
    """Every value of a trial template quoted for bash: nothing from a config or a hyperparameter is
    read as shell code. `command` is a line the caller built (with script_argv); the job name is the
    tag unless the batch system needs a shorter one."""
    for name, value in env.items():
        if SHELL_NAME.fullmatch(name) is None:
            raise BackendError(f"environment variable {show_text(name, 80)!r} is not a shell variable name; "
                               "it cannot enter a job script")
        if "\0" in value or "\n" in value:
            raise BackendError(f"environment variable {name} holds a newline or NUL byte; it cannot enter a job script")
    exports = "\n".join(f"export {name}={shlex.quote(value)}" for name, value in sorted(env.items()))
    return {"environment": exports, "workdir": shlex.quote(str(spec.cwd)), "command": command,
            "exit_file": shlex.quote(str(exit_file)), "job_name": job_name or spec.tag,
            "trial_dir": shlex.quote(str(spec.trial_dir))}


# --------------------------------------------------------------------------- polling


@dataclass
class PollClock:
    """When to ask the batch system (squeue, qstat) next: every interval, sooner after a cancel, backing
    off while it fails, so a struggling controller is not hammered by every driver."""

    interval: float
    next_at: float = 0.0
    failures: int = 0

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def done(self, now: float, ok: bool) -> None:
        self.failures = 0 if ok else self.failures + 1
        self.next_at = now + min(self.interval * 2 ** self.failures, MAX_POLL_BACKOFF_S)

    def soon(self, now: float) -> None:
        self.next_at = min(self.next_at, now + 1.0)


# --------------------------------------------------------------------------- runs inside an allocation


def nodes_file(trial_dir: Path, tag: str) -> Path:
    """Which nodes (hosts) a run inside an allocation holds: a restarted driver keeps them out of the free pool."""
    return trial_dir / f"{tag}.nodes"


def write_nodes(trial_dir: Path, tag: str, nodes: list[str]) -> None:
    nodes_file(trial_dir, tag).write_text(" ".join(nodes) + "\n", encoding="utf-8")


def read_nodes(trial_dir: Path, tag: str) -> list[str]:
    try:
        return nodes_file(trial_dir, tag).read_text(encoding="utf-8").split()
    except OSError:
        return []


# --------------------------------------------------------------------------- runs on the driver's allocation


@dataclass
class GroupRun(WatchedRun):
    nodes: list[str] = field(default_factory=list)  # given back to the free pool when the run is over
    # Where this run's part of the trial's appended logs begins (name -> byte offset): what srun and
    # slurmstepd said about this run, not about an earlier one.
    log_offsets: dict[str, int] = field(default_factory=dict)


class NodeGroupBackend(Backend):
    """Trials on groups of nodes_per_eval nodes of the allocation the driver runs in, each started on the
    driver's host under record_exit.py: a Slurm step's srun, a PBS launcher. The pool of free nodes, the
    watching, and the taking back after a driver restart are the same for both; how a run is started,
    how it is ended and what a run of another allocation gets are each backend's own."""

    pool = "nodes of allocation"  # for messages: "the 4 nodes of allocation 123"
    nodes_key = ""  # the config key named when nodes_per_eval does not fit
    more_nodes = ""  # how to get more

    def __init__(self, nodes_per_eval: int, job_id: str, nodes: list[str], kill_grace_s: float) -> None:
        self.nodes_per_eval, self.job_id, self.kill_grace_s = nodes_per_eval, job_id, kill_grace_s
        self.all_nodes, self.free_nodes = list(nodes), list(nodes)
        self.runs: dict[str, GroupRun] = {}
        self.end_unknown_warned = False  # the allocation's end could not be read (said once)

    def _end_from_time_left(self, read_time_left: Callable[[], float | None], what: str) -> float | None:
        """The allocation's end from the batch system's time left (so the clocks of driver and server need
        not agree); a failed query keeps the driver going as if there were no end, said once (the driver
        asks again every few seconds, and the signal sent before the end remains the fallback)."""
        try:
            left = read_time_left()
        except CommandError as exc:
            if not self.end_unknown_warned:
                self.end_unknown_warned = True
                log.warning("cannot read the time left of %s %s: %s", what, self.job_id, exc)
            return None
        return None if left is None else time.time() + left

    def usable_slots(self) -> int:
        return len(self.all_nodes) // self.nodes_per_eval

    def has_room(self, spec: LaunchSpec) -> bool:
        """Trials whose node count is a hyperparameter wait for as many free nodes as they need."""
        return len(self.free_nodes) >= spec.nodes

    def drop_nodes(self, nodes: list[str]) -> None:
        """Nodes that failed leave the pool for good (with salloc --no-kill the allocation goes on without them)."""
        self.all_nodes = [n for n in self.all_nodes if n not in nodes]
        self.free_nodes = [n for n in self.free_nodes if n not in nodes]

    def slots(self, requested: int) -> int:
        fit = len(self.all_nodes) // self.nodes_per_eval
        if fit == 0:
            raise ConfigError(self.nodes_key, self.nodes_per_eval,
                              f"is more than the {len(self.all_nodes)} {self.pool} {self.job_id}", self.more_nodes)
        return min(requested, fit) if requested else fit

    def _take_nodes(self, spec: LaunchSpec) -> list[str]:
        unit = self.pool.split()[0]
        if len(self.free_nodes) < spec.nodes:
            raise BackendError(f"trial {spec.trial_id} needs {spec.nodes} {unit}, {len(self.free_nodes)} are free")
        nodes, self.free_nodes = self.free_nodes[:spec.nodes], self.free_nodes[spec.nodes:]
        return nodes

    def _watch(self, process: subprocess.Popen[bytes], spec: LaunchSpec, exit_file: Path, nodes: list[str]) -> str:
        handle = f"{self.job_id}:{process.pid}"
        self.runs[handle] = GroupRun(process.pid, spec.tag, exit_file, process, nodes=nodes)
        return handle

    def _adopt_here(self, handle: str | None, tag: str, trial_dir: Path) -> str | None:
        """A run of this allocation: its wrapper still running on this host is watched again (found by its
        tag, its nodes taken from the pool); one that ended while no driver watched is read from its exit
        marker. None: it left no trace here."""
        exit_file = exit_marker(trial_dir, tag)
        pid_text = (handle or "").partition(":")[2]
        candidates = [int(pid_text)] if pid_text.isdigit() else None
        leaders = [pid for pid in processes_tagged(tag, candidates) if leads_group(pid)]
        if leaders:
            nodes = [n for n in read_nodes(trial_dir, tag) if n in self.free_nodes]
            self.free_nodes = [n for n in self.free_nodes if n not in nodes]
            handle = f"{self.job_id}:{leaders[0]}"
            self.runs[handle] = GroupRun(leaders[0], tag, exit_file, nodes=nodes)
            return handle
        # Looked for after the process: a run that is gone wrote its marker before it went.
        if read_exit_marker(exit_file) is not None or handle:
            return self._ended_run(handle, tag, exit_file)
        return None

    def _ended_run(self, handle: str | None, tag: str, exit_file: Path) -> str:
        """Watch a run that is over: its status comes from its exit marker (or says it left none)."""
        handle = handle or f"{self.job_id}:ended-{tag}"
        self.runs[handle] = GroupRun(None, tag, exit_file)
        return handle

    def poll(self, handles: list[str]) -> dict[str, JobStatus]:
        statuses = {}
        now = time.monotonic()
        for handle in handles:
            run = self.runs.get(handle)
            if run is None:
                statuses[handle] = JobStatus(EXITED, None, "not started by this driver")
                continue
            status = run.status()
            if status.state == RUNNING:
                if run.kill_at is not None and now >= run.kill_at:
                    self._force_end(run)
            else:
                self._run_over(run)
                del self.runs[handle]
                self.free_nodes += run.nodes
            statuses[handle] = status
        return statuses

    def shutdown(self) -> None:
        for run in self.runs.values():
            if run.status().state == RUNNING:
                self._force_end(run)

    @abstractmethod
    def _force_end(self, run: GroupRun) -> None:
        """End the run now (its grace period is over, or the driver is shutting down)."""

    def _run_over(self, run: GroupRun) -> None:
        """Called once when a run is seen over, before its nodes go back to the pool."""
