"""A driver on a login node that makes its own allocations (execution.slurm.allocation; CrayAI's Evaluator).

`salloc --no-shell` grants an allocation and returns; trials run in it as steps (`srun --jobid`, the steps
backend as with alloc_jobid). When the allocation's end comes before the experiment's, the driver run
ends the way it ends in any allocation: trials are paused for the end (or interrupted by it) and resumed
first by the next run. Here that next run is the same process: the allocation is given back, the next one
asked for, and a new driver run goes on in it. Every way out (done, Ctrl-C, SIGTERM, an error) gives the
allocation back; only a SIGKILL leaves it, until its time limit.

A driver run per allocation, not one long run whose backend swaps allocations: between allocations the
journal is the whole state, exactly as with a chain of allocations each starting `hpc-hpo run`, so the
path is the one the lifecycle tests pin down.
"""
from __future__ import annotations

import getpass
import logging
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from types import FrameType
from typing import Callable, Iterator, Protocol

from ..config import AllocationRequest, ExperimentConfig
from ..errors import BackendError, HpoError
from ..state import ExperimentState
from . import backend_kind
from .base import Backend
from .slurm_checks import check_slurm_mode_settings
from .slurm_output import INVALID_JOB_ID, SlurmCommandError, run_slurm

log = logging.getLogger("hpc_hpo")

GRANTED = re.compile(r"Granted job allocation (\d+)")
PENDING = re.compile(r"Pending job allocation (\d+)")
# Exit code of a driver run whose allocation ended under it (driver/common.py EXIT_ALLOCATION_GONE).
ALLOCATION_GONE = 75
# Allocations in a row that may end without one new report before the driver gives up: each one
# ended before any trial got to report, so more of the same would never get further.
FRUITLESS_ALLOCATIONS_MAX = 3
# How long a granted allocation may take to be RUNNING (nodes booting, prolog) before the driver gives up.
START_WAIT_S = 600.0
# Signals that end the driver between driver runs (a driver run handles them itself, gracefully).
LEAVE_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
SCANCEL_DONE = ("already completing or completed", INVALID_JOB_ID)


class DriverRun(Protocol):
    """What this module needs of a driver run (hpc_hpo.driver.Driver): it imports no driver."""

    exit_code: int
    closing_line: str | None
    state: ExperimentState

    def run(self) -> ExperimentState: ...


def wants_own_allocation(config: ExperimentConfig, environ: dict[str, str]) -> bool:
    """execution.slurm.allocation is set and the driver is not already inside an allocation (there it runs
    its trials in that one, as without the setting)."""
    return config.execution.slurm.allocation is not None and not environ.get("SLURM_JOB_ID") \
        and backend_kind(config) == "slurm"


def allocation_job_name(experiment_name: str) -> str:
    """The experiment's name first (what a default squeue shows), then a token unique to this driver, so that
    scancel by name reaches this driver's allocation and no other's (another experiment of the same name)."""
    return f"{experiment_name[:60]}.hpo-alloc.{secrets.token_hex(4)}"


def salloc_argv(request: AllocationRequest, job_name: str) -> list[str]:
    argv = ["salloc", "--no-shell", f"--nodes={request.nodes}", f"--job-name={job_name}"]
    if request.time is not None:
        argv.append(f"--time={request.time}")
    return argv + list(request.args)


def granted_job_id(salloc_stderr: str) -> str | None:
    """The job id from salloc's "Granted job allocation N" (salloc of Slurm 22.05 has no --parsable)."""
    match = GRANTED.search(salloc_stderr)
    return match.group(1) if match else None


def should_go_on(finished: bool, exit_code: int) -> bool:
    """After a driver run: ask for the next allocation when the run ended for its allocation's end (paused
    for it: exit 0, or cut by it: 75) and the experiment is not over. A stop signal (130, 143, 129) or a
    failure budget (1) ends the driver."""
    return not finished and exit_code in (0, ALLOCATION_GONE)


class OwnAllocation:
    """One allocation at a time, asked for with salloc --no-shell and given back with scancel."""

    def __init__(self, request: AllocationRequest, job_name: str, say: Callable[[str], None]) -> None:
        self.request, self.job_name, self.say = request, job_name, say
        self.job_id: str | None = None  # known from salloc's first line, before it is granted
        self.granted = False
        self.user = getpass.getuser()

    def obtain(self) -> str:
        """Ask for the allocation and wait until it is granted and running; its job id."""
        argv = salloc_argv(self.request, self.job_name)
        self.say(f"asking Slurm for an allocation: {' '.join(argv)}")
        # Its own session: a Ctrl-C reaches the driver, which gives back whatever salloc got so far.
        try:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.PIPE, text=True, start_new_session=True)
        except OSError as exc:
            raise BackendError(f"cannot run salloc: {exc.strerror}; execution.slurm.allocation needs Slurm's "
                               "commands on PATH") from None
        said: list[str] = []
        try:
            for line in process.stderr or ():
                said.append(line.strip())
                pending = PENDING.search(line) or GRANTED.search(line)
                if pending:
                    self.job_id = pending.group(1)
                if not GRANTED.search(line) and "error" not in line:  # queued, waiting: errors go into the raise
                    self.say(line.strip())
            code = process.wait()
        finally:
            if process.poll() is None:  # interrupted while waiting in the queue: salloc withdraws the request
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()  # the scancel by name in release() withdraws it then
                    process.wait()
        job_id = granted_job_id("\n".join(said))
        if code != 0 or job_id is None:
            errors = [line for line in said if "error" in line] or said
            raise BackendError(f"salloc did not grant an allocation (exit {code}): "
                               f"{'; '.join(errors)[-500:] or '(no output)'}")
        self.job_id, self.granted = job_id, True
        self._wait_until_running()
        self.say(f"allocation {job_id} granted ({self.request.nodes} nodes"
                 f"{', time ' + self.request.time if self.request.time else ''}, job name {self.job_name})")
        return job_id

    def _wait_until_running(self) -> None:
        deadline = time.monotonic() + START_WAIT_S
        while True:
            state = run_slurm(["squeue", "-h", f"--jobs={self.job_id}", "-o", "%T"]).strip()
            if state == "RUNNING":
                return
            if state not in ("CONFIGURING", "PENDING") or time.monotonic() > deadline:
                raise BackendError(f"allocation {self.job_id} was granted but is {state or 'gone'}, not running")
            time.sleep(1)

    def release(self) -> None:
        """scancel the allocation (by id, and by its unique name in case salloc was stopped before it said
        the id); an allocation already ended is fine. Stop signals wait until it is done."""
        with _signals_held():
            targets = [[self.job_id]] if self.job_id else []
            targets.append([f"--name={self.job_name}", f"--user={self.user}"])
            for target in targets:
                try:
                    run_slurm(["scancel", *target])
                except SlurmCommandError as exc:
                    if not any(text in exc.stderr for text in SCANCEL_DONE):
                        log.warning("could not give back allocation %s: %s", self.job_id or self.job_name, exc)
            if self.job_id:
                self.say(f"allocation {self.job_id} given back" if self.granted
                         else f"allocation request {self.job_id} withdrawn")
            self.job_id, self.granted = None, False


def run_in_own_allocations(config: ExperimentConfig, make_backend: Callable[[str], Backend],
                           make_driver: Callable[[Backend], DriverRun], say: Callable[[str], None] | None = None,
                           ) -> DriverRun:
    """Driver runs, each in a new allocation, until the experiment is over or the driver is stopped; the
    last driver run (its exit code and closing line are the command's)."""
    request = config.execution.slurm.allocation
    if request is None:
        raise HpoError("run_in_own_allocations needs execution.slurm.allocation")
    # A setting steps mode does not use is refused now, before an allocation is asked for and given back.
    check_slurm_mode_settings(config.execution.slurm, "steps", None, own_allocation=True)
    say = say or _say
    allocation = OwnAllocation(request, allocation_job_name(config.name), say)
    fruitless, reports_before = 0, None
    with _leave_on_signals():
        try:
            while True:
                job_id = allocation.obtain()
                driver = make_driver(make_backend(job_id))
                state = driver.run()
                allocation.release()
                if not should_go_on(state.finished, driver.exit_code):
                    return driver
                fruitless = fruitless + 1 if state.num_reports == reports_before else 0
                reports_before = state.num_reports
                if fruitless >= FRUITLESS_ALLOCATIONS_MAX:
                    raise HpoError(f"{fruitless} allocations in a row ended before any trial reported: "
                                   f"execution.slurm.allocation.time ({request.time or 'the partition default'}) is too short for a trial "
                                   "to reach its next report; raise it, then run the same command again")
                say(f"allocation {job_id} is over and the experiment is not: asking for the next one")
        finally:
            allocation.release()


def _say(text: str) -> None:
    print(f"hpc-hpo: {text}", file=sys.stderr, flush=True)


@contextmanager
def _leave_on_signals() -> Iterator[None]:
    """Between driver runs (waiting in the queue, giving back) SIGTERM and SIGHUP end the driver the way
    Ctrl-C does, through KeyboardInterrupt, so that the allocation is given back on the way out."""
    def leave(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    if threading.current_thread() is not threading.main_thread():
        yield  # handlers can only be set from the main thread
        return
    previous = {signum: signal.signal(signum, leave) for signum in LEAVE_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def _signals_held() -> Iterator[None]:
    """Stop signals wait while the allocation is given back: a second Ctrl-C must not cut the scancel short."""
    held = {signal.SIGINT, *LEAVE_SIGNALS}
    signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, held)
