"""`hpc-hpo stop EXP`: ask the driver running an experiment, wherever it runs, to stop gracefully.

The shared experiment directory is all that connects the two: `stop` writes EXP/stop_request.json
naming the driver it is for (the token of the driver's lease, driver.json), and the driver takes the file
at every sweep (one rename, which fails at once when there is none). A request for another driver (one
that ended before it could take it) is stale: the next driver drops it. So a request never leaks into a
later run, and one written after a driver started is that driver's.

What the driver then does is what SIGINT does (also in sbatch/qsub mode, where SIGTERM would leave trial
jobs running): it starts nothing more, asks its running trials to save and exit at their next report,
cancels what still runs after stop_grace_period, and leaves them interrupted, not failed.
- `hpc-hpo stop EXP` stops this driver only: the experiment goes on with the next `hpc-hpo run`, which
  resumes the interrupted trials first. The driver exits 143, as on SIGTERM (a chained driver.sbatch
  does not resubmit itself).
- `hpc-hpo stop EXP --final` ends the experiment for good (as a budget does): the driver exits 0 and a
  later run has nothing to do, unless a raised budget reopens it.
`stop` returns once the request is written; `--wait` waits until the driver is gone.
"""
from __future__ import annotations

import getpass
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import HpoError
from .experiment import HEARTBEAT_S, LEASE_FILE, TAKEOVER_S, _pid_alive, _still_running

STOP_FILE = "stop_request.json"
WAIT_POLL_S = 0.5


@dataclass(frozen=True)
class StopRequest:
    token: str  # the lease token of the driver it is for
    final: bool
    who: str  # "user@host, pid N": for the driver's message

    @property
    def reason(self) -> str:
        return f"stopped by hpc-hpo stop{' --final' if self.final else ''} ({self.who})"


def take_request(directory: Path) -> StopRequest | None:
    """The request waiting in the experiment directory, taken (renamed away, so read once by one driver);
    None when there is none (the common case: one failed rename) or it cannot be read."""
    path = directory / STOP_FILE
    taken = directory / f"{STOP_FILE}.{os.getpid()}.taken"
    try:
        os.rename(path, taken)
    except FileNotFoundError:
        return None
    except OSError:
        return None  # e.g. a read-only mount: nobody could have written a request either
    try:
        data = json.loads(taken.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = None
    finally:
        taken.unlink(missing_ok=True)
    if not isinstance(data, dict) or not isinstance(data.get("token"), str):
        return None
    return StopRequest(data["token"], bool(data.get("final")), str(data.get("who") or "someone"))


def running_driver(directory: Path) -> dict[str, Any] | None:
    """The lease of the driver running the experiment now, or None: no lease, a released one, a dead pid on
    this host, or a heartbeat that stopped (judged from another host within TAKEOVER_S seconds)."""
    holder = _lease(directory)
    if holder is None or holder.get("released") or not isinstance(holder.get("token"), str):
        return None
    return holder if _still_running(holder, directory / LEASE_FILE) else None


def request_stop(directory: Path, final: bool, wait: bool, timeout: float | None) -> int:
    """The `stop` command; returns its exit code (0 asked or stopped, 1 no driver or still running at timeout)."""
    holder = running_driver(directory)
    if holder is None:
        print(f"hpc-hpo: no driver is running the experiment in '{directory}': nothing to stop")
        return 1
    _write_request(directory, holder["token"], final)
    where = f"the driver on host {holder.get('host')}, pid {holder.get('pid')}"
    what = "end the experiment for good" if final else "stop (a later `hpc-hpo run` resumes the experiment)"
    print(f"asked {where} to {what}; it does so at its next sweep: running trials save and exit at their next "
          "report and are cancelled after stop_grace_period")
    if not wait:
        return 0
    try:
        gone = _wait_until_gone(directory, holder, timeout)
    except KeyboardInterrupt:
        print("stopped waiting; the driver stops all the same")
        return 130
    if not gone:
        print(f"{where} is still running after {timeout:g} s")
        return 1
    from .state import load_state
    ended = load_state(directory).ended
    print(f"{where} has stopped" + (f": {ended}" if ended else ""))
    return 0


def _write_request(directory: Path, token: str, final: bool) -> None:
    path = directory / STOP_FILE
    try:
        earlier = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        earlier = None
    if isinstance(earlier, dict) and earlier.get("token") == token and earlier.get("final"):
        final = True  # a --final request not taken yet is not made lighter by a plain one
    request = {"token": token, "final": final, "who": f"{_user()}@{os.uname().nodename}, pid {os.getpid()}",
               "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    temporary = directory / f"{STOP_FILE}.{os.getpid()}.tmp"
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(request) + "\n")
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise HpoError(f"cannot write the stop request '{path}': {exc.strerror or exc}; the driver can also be "
                       "stopped by a signal (SIGINT or SIGTERM to its pid)") from None


def _wait_until_gone(directory: Path, holder: dict[str, Any], timeout: float | None) -> bool:
    """Until the lease is released or taken by another driver, the pid dies (this host), or the heartbeat
    stays unchanged for TAKEOVER_S (another host: the driver was killed)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    same_host = holder.get("host") == os.uname().nodename
    last, changed_at = holder, time.monotonic()
    while deadline is None or time.monotonic() < deadline:
        now = _lease(directory)
        if now is None or now.get("released") or now.get("token") != holder["token"]:
            return True
        if same_host and not _pid_alive(holder.get("pid")):
            return True
        if now != last:
            last, changed_at = now, time.monotonic()
        elif time.monotonic() - changed_at > TAKEOVER_S + HEARTBEAT_S:
            return True
        time.sleep(WAIT_POLL_S)
    return False


def _lease(directory: Path) -> dict[str, Any] | None:
    try:
        info = json.loads((directory / LEASE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
