"""Several drivers on one experiment (README "Elastic experiments"): who they are and whether they live.

Every driver has an id and a member file, drivers/<id>.json, with its host, pid, allocation and a beat
counter that a thread of its own rewrites every HEARTBEAT_S. While the driver lives it also holds an
exclusive flock on drivers/<id>.lock, which the OS frees when it dies (kill -9 too). Another driver
judges a member gone when its lock is free, when its file says it left, or when its beat stayed the same
for TAKEOVER_S of the judge's own watching (a stalled process, a node that died, locks that do not reach
between the machines). The journal records the verdict (driver_lost); a member that comes back and reads
its own verdict there stops without writing anything more (MemberLease.check).
"""
from __future__ import annotations

import fcntl
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import HpoError

MEMBERS_DIR = "drivers"
HEARTBEAT_S = 1.0  # as the driver lease's (experiment.py): how often a member's file is rewritten
TAKEOVER_S = 5.0  # a beat unchanged this long (as watched by another driver) means the member is gone
LOST_AFTER_S = 3.5  # a member that could not beat this long stops itself: others may have judged it gone


def new_driver_id() -> str:
    return uuid.uuid4().hex[:12]


class MemberLease:
    """This driver's membership: its file, its heartbeat thread and its lock."""

    def __init__(self, directory: Path, driver_id: str | None = None) -> None:
        self.directory = directory / MEMBERS_DIR
        self.driver_id = driver_id or new_driver_id()
        self.path = self.directory / f"{self.driver_id}.json"
        self.info: dict[str, Any] = {}
        self.lost: str | None = None  # why this driver may no longer write (another judged it gone)
        self.last_beat = 0.0
        self._fd: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()

    def acquire(self) -> None:
        self.directory.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(self.directory / f"{self.driver_id}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise HpoError(f"cannot lock this driver's member file in '{self.directory}' ({exc})") from None
        self._fd = fd
        self.info = {"driver": self.driver_id, "host": os.uname().nodename, "pid": os.getpid(),
                     "since": time.time(), "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
                     "pbs_job_id": os.environ.get("PBS_JOBID"), "beat": 1}
        _write_atomically(self.path, json.dumps(self.info) + "\n")
        self.last_beat = time.monotonic()
        self._thread = threading.Thread(target=self._heartbeat, name="hpc-hpo member heartbeat", daemon=True)
        self._thread.start()

    def lose(self, why: str) -> None:
        """The journal says another driver took this one's trials: write nothing more."""
        with self._guard:
            self.lost = self.lost or why

    def silent_too_long(self) -> bool:
        with self._guard:
            return time.monotonic() - self.last_beat > LOST_AFTER_S

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._guard:
            if self.info:
                try:
                    _write_atomically(self.path, json.dumps({**self.info, "left": True}) + "\n")
                except OSError:  # a full disk: the freed lock below says the same
                    pass
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with self._guard:
                if self._stop.is_set() or self.lost is not None:
                    return
                if time.monotonic() - self.last_beat > LOST_AFTER_S:
                    # Silent too long (the process was stopped, or stalled): another driver may have judged this
                    # one gone and taken its trials. Beat no more; the driver writes nothing more either.
                    self.lost = "its heartbeat was silent too long (the driver was stopped or stalled)"
                    return
                self.info["beat"] += 1
                try:
                    _write_atomically(self.path, json.dumps(self.info) + "\n")
                except OSError:
                    continue  # as if this beat never came
                self.last_beat = time.monotonic()


@dataclass
class Member:
    """Another driver as this one sees it."""

    driver_id: str
    info: dict[str, Any]
    beat: Any = None
    beat_seen_at: float = 0.0  # monotonic time the beat last changed in our watching


class Members:
    """The other drivers of the experiment, watched: read their files at most every HEARTBEAT_S."""

    def __init__(self, directory: Path, own_id: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.directory = directory / MEMBERS_DIR
        self.own_id = own_id
        self.clock = clock
        self.known: dict[str, Member] = {}
        self.read_at = float("-inf")

    def gone(self, driver_ids: set[str]) -> set[str]:
        """Of these drivers (owners of runs in the journal), the ones that are gone."""
        now = self.clock()
        if now - self.read_at >= HEARTBEAT_S:
            self.read_at = now
            for driver_id in driver_ids - {self.own_id}:
                self._look(driver_id, now)
        return {d for d in driver_ids - {self.own_id} if self._is_gone(d, now)}

    def watched_alive(self, driver_ids: set[str]) -> bool:
        """Whether one of these drivers was seen beating within the last few beats (lock held): one that will
        take over the others' trials should they stop."""
        now = self.clock()
        return any(not self._is_gone(d, now) and now - self.known[d].beat_seen_at <= 3 * HEARTBEAT_S
                   for d in driver_ids - {self.own_id} if d in self.known)

    def _look(self, driver_id: str, now: float) -> None:
        info = read_member(self.directory, driver_id)
        member = self.known.get(driver_id)
        if member is None:
            member = self.known[driver_id] = Member(driver_id, info or {}, beat_seen_at=now)
        beat = (info or {}).get("beat")
        if info is not None and beat != member.beat:
            member.beat, member.beat_seen_at = beat, now
        member.info = info or member.info
        member.info["lock_free"] = lock_is_free(self.directory, driver_id)

    def _is_gone(self, driver_id: str, now: float) -> bool:
        member = self.known.get(driver_id)
        if member is None:
            return False
        return bool(member.info.get("left") or member.info.get("lock_free")
                    or now - member.beat_seen_at > TAKEOVER_S)


def read_member(directory: Path, driver_id: str) -> dict[str, Any] | None:
    try:
        info = json.loads((directory / f"{driver_id}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def lock_is_free(directory: Path, driver_id: str) -> bool:
    """Whether no process holds this member's lock (it died, or left). A lock file that cannot be opened
    says nothing: the heartbeat decides then."""
    try:
        fd = os.open(directory / f"{driver_id}.lock", os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(fd)  # closing releases the lock we may have taken
    return True


def live_members(experiment_dir: Path, own_id: str | None = None) -> list[dict[str, Any]]:
    """The member files of drivers that hold their lock now (for status, and for a run without --join)."""
    directory = experiment_dir / MEMBERS_DIR
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    found = []
    for name in names:
        driver_id, dot, ext = name.rpartition(".")
        if ext != "json" or not dot or driver_id == own_id:
            continue
        info = read_member(directory, driver_id)
        if info is not None and not info.get("left") and not lock_is_free(directory, driver_id):
            found.append(info)
    return found


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
