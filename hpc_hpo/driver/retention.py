"""Deleting the checkpoints an experiment no longer needs (hpc_hpo/retention.py decides which).

A checkpoint directory is first renamed to trials/<id>/.deleted-<n> (one fast, atomic rename in the
driver's loop), then removed by a background thread, since removing gigabytes from a parallel
filesystem takes long. A driver killed in between leaves renamed directories, which the next
driver removes: a checkpoint is either whole where a resume looks for it, or gone.
"""
from __future__ import annotations

import itertools
import logging
import os
import shutil
import threading
from pathlib import Path

from ..retention import checkpoints_to_drop, snapshots_to_drop
from ..state import ENDED_STATES, ExperimentState

log = logging.getLogger("hpc_hpo")
DELETED_PREFIX = ".deleted-"


class CheckpointRetention:
    """Its cost follows what ends, not what has ended: a checkpoint is looked for only in trials that ended
    since the last look and in the few ended trials whose checkpoint was kept (the best); the whole
    experiment is walked only at the end of a `best` experiment and, for PBT's snapshots, at each change."""

    def __init__(self, trials_dir: Path, policy: str, keep_best: int, snapshots: bool = False) -> None:
        self.trials_dir, self.policy, self.keep_best = trials_dir, policy, keep_best
        self.snapshots = snapshots  # PBT keeps snapshots at pauses (Scheduler.snapshots_at_pause)
        self.numbers = itertools.count()
        self.pending: list[Path] = []
        self.lock = threading.Lock()
        self.worker: threading.Thread | None = None
        self.ended_seen = 0  # how many of state.ended_ids were looked at
        self.holding: set[str] = set()  # ended trials whose checkpoint was present and kept at the last look
        self.last_seen: tuple[int, bool] | None = None
        self.warned = False

    def prune(self, state: ExperimentState, final: bool = False, new_trials_may_start: bool = True) -> None:
        """Put aside what the policy no longer keeps; cheap when nothing ended since the last call."""
        if self.policy == "all":
            return
        if self.snapshots:  # PBT: a population of a few dozen trials, whose pauses move the lowest level on
            self._prune_snapshots(state, final, new_trials_may_start)
        # Trials ending are what changes the answer for checkpoints; reports alone do not.
        seen = (len(state.ended_ids), new_trials_may_start)
        if seen == self.last_seen and not final:
            return
        self.last_seen = seen
        candidates = self.holding | set(state.ended_ids[self.ended_seen:])
        self.ended_seen = len(state.ended_ids)
        if final and self.policy == "best":  # paused and interrupted trials' checkpoints go too
            candidates |= {d.name for d in self._trial_dirs()}
        present = {trial_id for trial_id in candidates if (self.trials_dir / trial_id / "checkpoint").is_dir()}
        dropped = checkpoints_to_drop(state, self.policy, self.keep_best, final, present)
        for trial_id in sorted(dropped):
            self._put_aside(self.trials_dir / trial_id / "checkpoint")
        self.holding = {t for t in present - dropped if t in state.trials and state.trials[t].state in ENDED_STATES}

    def _prune_snapshots(self, state: ExperimentState, final: bool, new_trials_may_start: bool) -> None:
        snapshots = {d.name: self._levels(d / "snapshots") for d in self._trial_dirs() if (d / "snapshots").is_dir()}
        for trial_id, level in snapshots_to_drop(state, self.policy, snapshots, new_trials_may_start and not final):
            self._put_aside(self.trials_dir / trial_id / "snapshots" / _level_name(level))

    def clean_leftovers(self) -> None:
        """Directories a previous driver put aside but did not get to remove."""
        for trial_dir in self._trial_dirs():
            for leftover in trial_dir.glob(f"{DELETED_PREFIX}*"):
                self._remove_later(leftover)

    def wait(self, timeout_s: float = 60.0) -> None:
        """At the driver's end: let the removals finish (what is left is removed by the next driver)."""
        if self.worker is not None:
            self.worker.join(timeout_s)

    def _trial_dirs(self) -> list[Path]:
        try:
            return [d for d in self.trials_dir.iterdir() if d.is_dir() and not d.is_symlink()]
        except OSError:
            return []

    @staticmethod
    def _levels(snapshots: Path) -> list[float]:
        levels = []
        for entry in snapshots.iterdir():
            try:
                levels.append(float(entry.name))
            except ValueError:
                continue
        return levels

    def _put_aside(self, path: Path) -> None:
        # Never through a symlink: a checkpoint link pointing elsewhere is the user's, not ours to empty.
        if path.is_symlink() or not path.is_dir():
            return
        target = path.parent / f"{DELETED_PREFIX}{os.getpid()}-{next(self.numbers)}"
        if path.parent.name == "snapshots":
            target = path.parent.parent / f"{DELETED_PREFIX}{os.getpid()}-{next(self.numbers)}"
        try:
            path.rename(target)
        except FileNotFoundError:
            return  # another driver of the experiment put it aside first (README "Elastic experiments")
        except OSError as exc:
            if not self.warned:
                self.warned = True
                log.warning("cannot delete checkpoint %s: %s", path, exc.strerror)
            return
        self._remove_later(target)

    def _remove_later(self, path: Path) -> None:
        with self.lock:
            self.pending.append(path)
            if self.worker is None or not self.worker.is_alive():
                self.worker = threading.Thread(target=self._remove_all, name="hpc-hpo-retention", daemon=True)
                self.worker.start()

    def _remove_all(self) -> None:
        while True:
            with self.lock:
                if not self.pending:
                    return
                path = self.pending.pop()
            shutil.rmtree(path, ignore_errors=True)


def _level_name(level: float) -> str:
    """Snapshot directories are named by their level as plain_number writes it (3, not 3.0)."""
    return str(int(level)) if float(level).is_integer() else repr(float(level))

