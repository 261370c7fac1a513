"""Run a trial's command and leave its exit status in a file: `record_exit.py <exit_file> <argv...>`.

A driver sees the exit of its own children, but a driver that restarts after a crash re-adopts
runs it did not start, and nothing else tells it how those ended. Local and Slurm-step runs are
started through this wrapper; a batch job's script writes the same marker itself.

The wrapper leads the run's process group: a cancel signals the whole group, the trial ends,
and the wrapper records how. It mirrors the trial's end (the same code, or death by the same
signal), so the driver that started it sees what it would have seen without it.
It imports nothing beyond the interpreter's start-up and two small modules (`python -I -S`):
starting a trial through it costs one bare interpreter start.

Runs outlive a driver that dies (kill -9, a lost node), so that the next driver re-adopts them, but not
for ever: the wrapper watches the experiment's lease file (driver.json, whose heartbeat a running
driver rewrites every second) and, once it has not changed for the orphan timeout, ends its run:
SIGTERM, then SIGKILL after a grace period, with a note beside the exit marker that tells the next
driver why (the run is resubmitted, not charged to the trial).
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time

# Seconds a run outlives the last heartbeat of its experiment's driver before its wrapper ends it; 0: never.
ORPHAN_TIMEOUT_ENV = "HPC_HPO_ORPHAN_TIMEOUT"
ORPHAN_TIMEOUT_S = 600.0
ORPHAN_GRACE_S = 10.0  # from SIGTERM to SIGKILL (the timeout, if that is shorter)
EXPERIMENT_DIR_ENV = "HPC_HPO_EXPERIMENT_DIR"  # set by the driver in every trial's environment
LEASE_FILE = "driver.json"  # experiment.LEASE_FILE


def write_marker(path: str, code: int) -> None:
    """Written whole and renamed into place: a reader sees a number or nothing."""
    temporary = f"{path}.tmp"
    try:
        with open(temporary, "w", encoding="ascii") as handle:
            handle.write(f"{code}\n")
        os.replace(temporary, path)
    except OSError:  # a full disk: the driver counts the run as lost, which is the truth
        pass


class OrphanWatch:
    """Ends the run when no driver has beaten for the orphan timeout (a thread beside the wait for the trial)."""

    def __init__(self, lease: str, timeout: float, exit_file: str, child: int) -> None:
        self.lease, self.timeout, self.exit_file, self.child = lease, timeout, exit_file, child
        self.done = threading.Event()  # the trial has ended: nothing to watch
        self.ended_it = False

    def start(self) -> None:
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        interval = min(max(self.timeout / 5, 0.1), 30.0)
        seen, changed = _read(self.lease), time.monotonic()
        while not self.done.wait(interval):
            now = _read(self.lease)
            if now != seen:
                seen, changed = now, time.monotonic()
            elif time.monotonic() - changed >= self.timeout:
                self._end(time.monotonic() - changed)
                return

    def _end(self, silent: float) -> None:
        """SIGTERM to the trial (and what it started), SIGKILL to what is left after the grace period."""
        note = (f"ended by its wrapper: no driver beat for {silent:.0f} s ({self.lease} unchanged; "
                f"{ORPHAN_TIMEOUT_ENV}={self.timeout:g} s)")
        _write_note(os.path.splitext(self.exit_file)[0] + ".orphaned", note + "\n")  # base.orphan_note
        self.ended_it = True
        self.signal(signal.SIGTERM)
        if not self.done.wait(min(ORPHAN_GRACE_S, self.timeout)):
            self.signal(signal.SIGKILL)

    def signal(self, sig: int) -> None:
        """The other processes of the wrapper's group (the run's), or the trial alone where it leads none."""
        pids = _group_members(os.getpid()) if os.getpgrp() == os.getpid() else [self.child]
        for pid in pids:
            if pid != os.getpid():
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass


def _orphan_watch(exit_file: str, child: int) -> OrphanWatch | None:
    """The watch over this run's driver, None where there is no experiment to watch or it is turned off."""
    directory = os.environ.get(EXPERIMENT_DIR_ENV)
    try:
        timeout = float(os.environ.get(ORPHAN_TIMEOUT_ENV) or ORPHAN_TIMEOUT_S)
    except ValueError:
        timeout = ORPHAN_TIMEOUT_S
    if not directory or not timeout > 0:
        return None
    return OrphanWatch(os.path.join(directory, LEASE_FILE), timeout, exit_file, child)


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None


def _write_note(path: str, text: str) -> None:
    try:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError:
        pass


def _group_members(pgid: int) -> list[int]:
    """The processes of this process group, from /proc/<pid>/stat (field 5, after "pid (comm) state ppid");
    base.group_members, which this file cannot import (it imports nothing of hpc_hpo)."""
    members = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 2 and fields[2] == str(pgid).encode():
            members.append(int(name))
    return members


def main(args: list[str]) -> None:
    if len(args) < 2:
        sys.exit("usage: record_exit.py EXIT_FILE COMMAND [ARG...]")
    exit_file, argv = args[0], args[1:]
    # A cancel signals the group: the trial must end first, the wrapper only records it. A handler,
    # not SIG_IGN, so the trial does not inherit the wrapper's indifference.
    for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1", "SIGUSR2"):
        signal.signal(getattr(signal, name), lambda signum, frame: None)
    try:
        # posix_spawnp, not subprocess: importing subprocess would double the wrapper's start-up time.
        pid = os.posix_spawnp(argv[0], argv, os.environ)
    except OSError as exc:
        print(f"cannot start {argv[0]}: {exc.strerror}", file=sys.stderr)
        write_marker(exit_file, 127)
        sys.exit(127)
    watch = _orphan_watch(exit_file, pid)
    if watch is not None:
        watch.start()
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if watch is not None:
        watch.done.set()
    write_marker(exit_file, code)
    if watch is not None and watch.ended_it:
        watch.signal(signal.SIGKILL)  # what the trial left in the group: no driver will end it
    if code < 0:  # ended by a signal: end the same way
        try:
            signal.signal(-code, signal.SIG_DFL)
        except (OSError, ValueError):  # SIGKILL and SIGSTOP keep their default anyway
            pass
        os.kill(os.getpid(), -code)
    sys.exit(code)


if __name__ == "__main__":
    main(sys.argv[1:])
