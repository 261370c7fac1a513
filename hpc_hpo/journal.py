"""The append-only experiment journal: JSON lines written under a file lock, read without one.

Writers batch: one append and one fsync per driver sweep. Readers (status, export, a
restarted driver) take no lock, ignore an incomplete last line until it is finished, and stream
the file: a journal of a million events is folded without holding a million dicts.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

from .errors import HpoError

FORMAT_VERSION = 1
READ_CHUNK = 1 << 20
log = logging.getLogger(__name__)
# NaN/Infinity are allowed: a diverged trial reports them and the journal must keep the fact.
_decode = json.JSONDecoder().decode


def make_event(kind: str, trial_id: str | None = None, **fields: Any) -> dict[str, Any]:
    """Every journal line carries the format version, the event type, a timestamp and the trial id."""
    event: dict[str, Any] = {"v": FORMAT_VERSION, "type": kind, "t": round(time.time(), 6)}
    if trial_id is not None:
        event["trial_id"] = trial_id
    event.update(fields)
    return event


class BlockingFlock:
    """An exclusive flock(2) on a lock file that a waiter sleeps on in the kernel, re-entrant in one object.

    Not filelock.FileLock: that one tries a non-blocking lock and sleeps between tries, so with many
    writers a waiter can miss every moment the lock is free (docs/benchmarks.md, "Journal and lock":
    16 writers waited up to 3.7 s). A blocking flock is handed to a waiter as soon as it is released.
    On NFS, Linux turns flock into a whole-file POSIX lock; README "Locks on shared filesystems".
    """

    _shared: dict[str, "BlockingFlock"] = {}  # one per lock file in a process: flock is per open file

    def __new__(cls, path: Path) -> "BlockingFlock":
        # Two Journal objects of one experiment in one process (a driver and open_experiment) must share the
        # lock: a second descriptor's flock would wait forever for the first.
        key = os.path.abspath(path)
        lock = cls._shared.get(key)
        if lock is None:
            lock = cls._shared[key] = super().__new__(cls)
            lock.path = path
            lock._fd = None
            lock._depth = 0
            lock._in_process = threading.RLock()  # threads of one process take turns too
        return lock

    def acquire(self) -> None:
        self._in_process.acquire()
        if self._depth == 0:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:  # interrupted while waiting (Ctrl-C): leave no descriptor behind
                os.close(fd)
                self._in_process.release()
                raise
            self._fd = fd
        self._depth += 1

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the only descriptor releases the lock
        self._in_process.release()

    @property
    def is_locked(self) -> bool:
        return self._depth > 0

    def __enter__(self) -> "BlockingFlock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Journal:
    def __init__(self, directory: Path) -> None:
        self.path = directory / "journal.jsonl"
        self.lock = BlockingFlock(directory / "journal.lock")

    def append(self, events: Iterable[dict[str, Any]]) -> int:
        """Write all events in one append under the lock, then fsync before returning.

        The fsync comes after the lock is released: the bytes are already in the file for the next
        writer (on NFS the unlock itself flushes them), and fsync makes the whole file durable, so
        concurrent writers commit together instead of queueing behind each other's disk flush.
        Returns the journal's size just after this append (where a reader holding the lock has read to).
        """
        data = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events)
        if not data:
            return -1
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            with self.lock:
                _repair_torn_tail(fd)
                payload = data.encode()
                while payload:
                    written = os.write(fd, payload)
                    payload = payload[written:]
                end = os.fstat(fd).st_size
            os.fsync(fd)
        finally:
            os.close(fd)
        return end

    def read_from(self, offset: int) -> tuple[list[dict[str, Any]], int]:
        """The complete events after byte `offset`, and the offset after the last complete line: what other
        drivers appended since this one last read (README "Elastic experiments"). Costs one read of the new
        bytes, however long the journal is."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(offset)
                data = handle.read()
        except FileNotFoundError:
            return [], offset
        end = data.rfind(b"\n")
        if end < 0:
            return [], offset
        events = []
        for line in data[:end].split(b"\n"):
            event = _parse_line(line, self.path, 0)
            if event is not None:
                events.append(event)
        return events, offset + end + 1

    def read(self) -> list[dict[str, Any]]:
        return read_events(self.path)

    def iter(self, read_to: list[int] | None = None) -> Iterator[dict[str, Any]]:
        """The events; `read_to`, if given, ends up holding the byte offset after the last complete line read."""
        return iter_events(self.path, read_to)


def _repair_torn_tail(fd: int) -> None:
    """A writer killed mid-line leaves a line without its newline; end it so the next event starts clean."""
    size = os.fstat(fd).st_size
    if size and os.pread(fd, 1, size - 1) != b"\n":
        os.write(fd, b"\n")


def read_events(path: Path) -> list[dict[str, Any]]:
    """All complete, well-formed events in order. A torn or garbled line is skipped, never fatal."""
    return list(iter_events(path))


def iter_events(path: Path, read_to: list[int] | None = None) -> Iterator[dict[str, Any]]:
    """The events of read_events, one at a time, up to the journal's size when it was opened.

    The missing-journal error comes at the call, not at the first next(): callers open before they loop.
    """
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise HpoError(f"no journal at '{path}': is this an experiment directory?") from None
    return _events_of(handle, path, read_to if read_to is not None else [0])


def _events_of(handle: Any, path: Path, read_to: list[int]) -> Iterator[dict[str, Any]]:
    read_to[:] = [0]
    with handle:
        left = os.fstat(handle.fileno()).st_size  # lines appended while we read wait for the next reader
        number, carry, consumed = 0, b"", 0
        while left > 0:
            chunk = handle.read(min(READ_CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            end = chunk.rfind(b"\n")
            if end < 0:
                carry += chunk
                continue
            block, carry = carry + chunk[:end], chunk[end + 1:]
            consumed += len(block) + 1
            read_to[0] = consumed
            for line in block.split(b"\n"):  # json.dumps escapes \r: only \n ends a line
                number += 1
                event = _parse_line(line, path, number)
                if event is not None:
                    yield event
        # `carry` is an unterminated last line: a writer is still writing it (or died); not an event yet.


def _parse_line(line: bytes, path: Path, number: int) -> dict[str, Any] | None:
    if b"\0" in line:
        line = line.replace(b"\0", b"")
    try:
        text = line.decode().strip()
        if not text:
            return None
        event = _decode(text)
    except ValueError:  # UnicodeDecodeError is a ValueError too
        log.warning("journal %s line %d is damaged and was skipped", path, number)
        return None
    return event if isinstance(event, dict) and "type" in event else None
