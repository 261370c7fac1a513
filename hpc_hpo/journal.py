"""The append-only experiment journal: JSON lines written under a file lock, read without one.

Writers batch: one append and one fsync per driver sweep. Readers (status, export, a
restarted driver) take no lock and ignore an incomplete last line until it is finished.
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Iterable

from filelock import FileLock

from .errors import HpoError

FORMAT_VERSION = 1
log = logging.getLogger(__name__)


def make_event(kind: str, trial_id: str | None = None, **fields: Any) -> dict[str, Any]:
    """Every journal line carries the format version, the event type, a timestamp and the trial id."""
    event: dict[str, Any] = {"v": FORMAT_VERSION, "type": kind, "t": round(time.time(), 6)}
    if trial_id is not None:
        event["trial_id"] = trial_id
    event.update(fields)
    return event


class Journal:
    def __init__(self, directory: Path) -> None:
        self.path = directory / "journal.jsonl"
        self.lock = FileLock(str(directory / "journal.lock"))

    def append(self, events: Iterable[dict[str, Any]]) -> None:
        """Write all events in one append and one fsync, under the lock."""
        # NaN/Infinity are allowed: a diverged trial reports them and the journal must keep the fact.
        data = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events)
        if not data:
            return
        with self.lock:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                _repair_torn_tail(fd)
                payload = data.encode()
                while payload:
                    written = os.write(fd, payload)
                    payload = payload[written:]
                os.fsync(fd)
            finally:
                os.close(fd)

    def read(self) -> list[dict[str, Any]]:
        return read_events(self.path)


def _repair_torn_tail(fd: int) -> None:
    """A writer killed mid-line leaves a line without its newline; end it so the next event starts clean."""
    size = os.fstat(fd).st_size
    if size and os.pread(fd, 1, size - 1) != b"\n":
        os.write(fd, b"\n")


def read_events(path: Path) -> list[dict[str, Any]]:
    """All complete, well-formed events in order. A torn or garbled line is skipped, never fatal."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise HpoError(f"no journal at '{path}': is this an experiment directory?") from None
    events = []
    complete = data[: data.rfind(b"\n") + 1]
    for number, line in enumerate(complete.splitlines(), start=1):
        line = line.replace(b"\0", b"").strip()
        if not line:
            continue
        try:
            event = json.loads(line)
        except ValueError:
            log.warning("journal %s line %d is damaged and was skipped", path, number)
            continue
        if isinstance(event, dict) and "type" in event:
            events.append(event)
    return events
