"""What the parts of the driver share: its constants, what it keeps about a running trial, and small
helpers for the files it writes into trial directories."""
from __future__ import annotations

import logging
import os
import re
import signal
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from ..schedulers.base import Branch, Decision, Resume, StartNew
from ..state import TrialState

log = logging.getLogger("hpc_hpo")
TRIAL_ID = re.compile(r"\d{4,9}")
# How long a driver that is shutting down waits for cancelled trials to go.
SHUTDOWN_WAIT_S = 30.0
# Decisions after which a run's further lines are not fed to the scheduler.
RUN_OVER = (Decision.STOP, Decision.COMPLETE, Decision.PAUSE)
# How often, between sweeps, the driver looks whether a run it told to end is gone: its node idles till then.
ENDING_CHECK_S = 0.05
# Signals that stop the driver gracefully: running trials save and exit at their next report.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGHUP)
# A program that fails this many trials before any trial has reported once is taken as broken.
BROKEN_PROGRAM_FAILURES = 5
# Exit codes of `hpc-hpo run` beyond 0 (done, or stopped to be resumed) and 2 (bad input).
EXIT_FAILED = 1  # the failure budget ran out, or the experiment ended without a single report
EXIT_ALLOCATION_GONE = 75  # EX_TEMPFAIL: the allocation ended under the driver; resume in a new one
# A refused submission (a per-user submit limit) is tried again after this, doubling up to the maximum.
SUBMIT_WAIT_S = 2.0
SUBMIT_WAIT_MAX_S = 60.0
# How often the driver asks when its allocation ends (an administrator may move the end: scontrol update).
ALLOCATION_CHECK_S = 15.0


@dataclass
class LiveTrial:
    """What the driver keeps about a running trial besides its journaled state."""

    trial: TrialState
    plan: StartNew | Resume | Branch  # what this run was started for: a retry runs it again
    run_over: Decision | None = None  # STOP, COMPLETE or PAUSE taken for the current run
    exit_deadline: float | None = None  # when a run told to end that has not exited gets cancelled
    launched_at: float = 0.0  # wall clock at launch (or adoption): the run's pace is measured from it
    from_resource: float = 0.0  # where the run started: 0, or the checkpoint it resumed from
    interrupt_asked: bool = False  # asked to save and exit at its next report (the allocation ends)


def plain_number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def write_atomically(path: Path, text: str) -> None:
    """Readers see the old file or the new one, never half of one."""
    temporary = path.with_name(path.name + ".tmp")
    # Not through a symlink someone left in the trial directory; os.replace swaps a link itself, not its target.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(temporary, path)


def stderr_tail(path: Path, max_bytes: int = 2000) -> str:
    """The end of a failed trial's stderr, for `status` (not through a symlink: what it points at is not the
    trial's to show)."""
    try:
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK), "rb") as handle:
            handle.seek(max(handle.seek(0, 2) - max_bytes, 0))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = [line for line in text.splitlines() if line.strip()]
    return "\n".join(lines[-5:])


def path_with_hpc_hpo(path: str) -> dict[str, str]:
    """{"PATH": ...} with the directory of this installation's `hpc-hpo` appended, when PATH lacks it: a
    shell trial can call `hpc-hpo report` although the driver was started without activating its venv.
    Appended, not prepended, so that the user's own programs still win."""
    scripts = sysconfig.get_path("scripts")
    if not os.path.exists(os.path.join(scripts, "hpc-hpo")) or scripts in path.split(os.pathsep):
        return {}
    return {"PATH": os.pathsep.join(filter(None, [path, scripts]))}
