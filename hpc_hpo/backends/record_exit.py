"""Run a trial's command and leave its exit status in a file: `record_exit.py <exit_file> <argv...>`.

A driver sees the exit of its own children, but a driver that restarts after a crash re-adopts
runs it did not start, and nothing else tells it how those ended. Local and Slurm-step runs are
started through this wrapper; a batch job's script writes the same marker itself.

The wrapper leads the run's process group: a cancel signals the whole group, the trial ends,
and the wrapper records how. It mirrors the trial's end (the same code, or death by the same
signal), so the driver that started it sees what it would have seen without it.
It imports nothing beyond the interpreter's start-up (`python -I -S`): starting a trial through it
costs one bare interpreter start.
"""
from __future__ import annotations

import os
import signal
import sys


def write_marker(path: str, code: int) -> None:
    """Written whole and renamed into place: a reader sees a number or nothing."""
    temporary = f"{path}.tmp"
    try:
        with open(temporary, "w", encoding="ascii") as handle:
            handle.write(f"{code}\n")
        os.replace(temporary, path)
    except OSError:  # a full disk: the driver counts the run as lost, which is the truth
        pass


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
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    write_marker(exit_file, code)
    if code < 0:  # ended by a signal: end the same way
        try:
            signal.signal(-code, signal.SIG_DFL)
        except (OSError, ValueError):  # SIGKILL and SIGSTOP keep their default anyway
            pass
        os.kill(os.getpid(), -code)
    sys.exit(code)


if __name__ == "__main__":
    main(sys.argv[1:])
