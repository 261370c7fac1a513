"""`hpc-hpo status`: the header above the trial table (who runs the experiment, what the budget has used,
what runs now, the best so far, the allocation's end), and `status --watch`, which refreshes it.

Plain text for a login node over ssh, no server and no curses: on a terminal each refresh clears the
screen with two ANSI codes (as `watch` does); into a pipe or a file the refreshes follow each other,
separated by a line. Ctrl-C ends the watch with exit code 0. The journal is read incrementally: each
refresh folds only the events appended since the previous one.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from .config import parse_duration
from .errors import ConfigError, HpoError
from .experiment import JOURNAL_FILE, LEASE_FILE, TAKEOVER_S, _pid_alive, effective_config
from .membership import live_members
from .results import status_table
from .state import RUNNING, ExperimentState
from .stop_request import STOP_FILE

CLEAR_SCREEN = "\x1b[H\x1b[2J"  # cursor home, erase the screen
MIN_INTERVAL_S = 0.1
READ_CHUNK = 1 << 20
RUNNING_SHOWN = 12  # running trials named in the header; the rest are counted


def status_text(directory: Path, state: ExperimentState, now: float | None = None) -> str:
    """The status table's summary line, the header, then the table and its notes."""
    table = status_table(state, directory).split("\n")
    blank = table.index("") if "" in table else len(table)
    # The header shows the allocation's end with the time left: the table's own line would repeat it.
    summary = [line for line in table[:blank] if not line.startswith("allocation ends ")]
    return "\n".join([*summary, *status_header(directory, state, now), *table[blank:]])


def status_header(directory: Path, state: ExperimentState, now: float | None = None) -> list[str]:
    now = time.time() if now is None else now
    driver = _driver(directory, now)
    members = live_members(directory)
    budget = _budget(directory)
    lines = [_driver_line(driver, directory) if driver or not members else _members_line(members, state, now),
             _budget_line(state, budget, now if driver or members else None)]
    if driver and len(members) > 1:  # others joined the lease holder
        lines.insert(1, _members_line(members, state, now))
    running = sorted((t for t in state.trials.values() if t.state == RUNNING), key=lambda t: t.index)
    if running:
        shown = ", ".join(f"{t.trial_id} at {state.resource} {t.last_resource:g}" if t.last_resource is not None
                          else f"{t.trial_id} (no report yet)" for t in running[:RUNNING_SHOWN])
        more = f" and {len(running) - RUNNING_SHOWN} more" if len(running) > RUNNING_SHOWN else ""
        lines.append(f"running ({len(running)}): {shown}{more}")
    else:
        lines.append("running: none")
    best = state.best_trial()
    lines.append("best: none yet" if best is None else
                 f"best: trial {best.trial_id} {state.metric}={best.best_value:.6g} at {state.resource} "
                 f"{best.best_resource:g} ({best.state})")
    lines.append(_disk_line(directory, now))
    if state.allocation_end is not None:
        left = state.allocation_end - now
        lines.append(f"allocation ends {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(state.allocation_end))}"
                     + (f" (in {_clock(left)})" if left > 0 else " (passed)"))
    return lines


# Walking a large experiment on a parallel filesystem takes a while: a watch measures it once a minute.
DISK_EVERY_S = 60.0
_disk_cache: dict[Path, tuple[float, str]] = {}


def _disk_line(directory: Path, now: float) -> str:
    """How much the experiment holds on disk, and how much of it is checkpoints (execution.keep_checkpoints)."""
    cached = _disk_cache.get(directory)
    if cached is not None and now - cached[0] < DISK_EVERY_S:
        return cached[1]
    total = disk_used(directory)
    kept = sum(disk_used(path) for trial in _trial_dirs(directory) for path in (trial / "checkpoint", trial / "snapshots"))
    line = f"disk: {_size(total)} in the experiment directory, {_size(kept)} of it checkpoints"
    _disk_cache[directory] = (now, line)
    return line


def _trial_dirs(directory: Path) -> list[Path]:
    try:
        return [d for d in (directory / "trials").iterdir() if d.is_dir() and not d.is_symlink()]
    except OSError:
        return []


def _size(count: float) -> str:
    if count < 1024:
        return f"{count:.0f} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        count /= 1024
        if count < 1024 or unit == "TiB":
            break
    return f"{count:.1f} {unit}"


def disk_used(path: Path) -> int:
    """Bytes under path, not following symlinks (0 for a path that is not there)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


def _budget_line(state: ExperimentState, budget: dict[str, Any], open_since: float | None) -> str:
    """Used / limit, the way the driver counts: trials created, driver seconds over all runs (up to now
    while a driver runs, else up to its last journaled event), each trial's furthest resource summed."""
    used_time = state.time_used()
    if open_since is not None and state.run_start is not None and state.ended is None and state.last_t:
        used_time += max(open_since - state.last_t, 0.0)
    spent = sum(t.last_resource or 0 for t in state.trials.values())
    parts = [f"trials {len(state.trials)} / {_limit(budget.get('max_trials'))}",
             f"time {_clock(used_time)} / {_limit(budget.get('max_time'), _clock)}",
             f"{state.resource} {spent:g} / {_limit(budget.get('max_resource'))}"]
    if budget.get("metric_threshold") is not None:
        parts.append(f"{state.metric} threshold {budget['metric_threshold']:g}")
    return "budget used: " + ", ".join(parts)


def _limit(value: Any, shown: Any = None) -> str:
    if value is None:
        return "no limit"
    return shown(value) if shown else f"{value:g}"


def _budget(directory: Path) -> dict[str, Any]:
    """The budget the last run ran with: experiment.yaml plus the journaled changes; a value that does not
    read as a number is left out (the driver refused or will refuse it with its own message)."""
    try:
        leaves = effective_config(directory)
    except HpoError:
        return {}
    budget: dict[str, Any] = {}
    for name in ("max_trials", "max_time", "max_resource", "metric_threshold"):
        value = leaves.get(("budget", name))
        if value is None:
            continue
        try:
            budget[name] = parse_duration(value, "budget.max_time") if name == "max_time" else float(value)
        except (ConfigError, TypeError, ValueError):
            continue
    return budget


def _driver(directory: Path, now: float) -> dict[str, Any] | None:
    """The driver's lease when a driver seems to run: not released, and its pid alive (this host) or its
    heartbeat recent (another host; a cheap guess from the file's age, no waiting)."""
    path = directory / LEASE_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        age = now - path.stat().st_mtime
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or info.get("released"):
        return None
    if info.get("host") == os.uname().nodename:
        return info if _pid_alive(info.get("pid")) else None
    return info if age < TAKEOVER_S else None


def _driver_line(driver: dict[str, Any] | None, directory: Path) -> str:
    if driver is None:
        return "driver: none running"
    line = f"driver: host {driver.get('host')}, pid {driver.get('pid')}, since {driver.get('since')}"
    if driver.get("slurm_job_id"):
        line += f", Slurm job {driver['slurm_job_id']}"
    if (directory / STOP_FILE).exists():
        line += "; a stop was requested (hpc-hpo stop)"
    return line


def running_drivers(directory: Path) -> int:
    """How many drivers run the experiment now: the lease holder and those that joined it."""
    members = live_members(directory)
    holder = _driver(directory, time.time())
    joined_holder = holder is not None and any(m.get("pid") == holder.get("pid") and m.get("host") == holder.get("host")
                                               for m in members)
    return len(members) + (1 if holder is not None and not joined_holder else 0)


def _members_line(members: list[dict[str, Any]], state: ExperimentState, now: float) -> str:
    """The drivers that joined the experiment (README "Elastic experiments"): where, since when, running what."""
    running: dict[str, int] = {}
    for trial in state.trials.values():
        if trial.driver is not None and trial.state == RUNNING:
            running[trial.driver] = running.get(trial.driver, 0) + 1
    shown = []
    for info in members:
        job = info.get("slurm_job_id") or info.get("pbs_job_id")
        since = info.get("since")
        age = f", for {_clock(now - since)}" if isinstance(since, (int, float)) else ""
        shown.append(f"{info.get('driver')} (host {info.get('host')}, pid {info.get('pid')}"
                     + (f", job {job}" if job else "") + f"{age}, {running.get(info.get('driver'), 0)} running)")
    return f"drivers ({len(members)}): " + "; ".join(shown)


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return str(seconds)
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    days, hours = divmod(hours, 24)
    text = f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
    return f"{days}d {text}" if days else text


class _JournalFollower:
    """The experiment's state, brought up to date with the events appended since the last look."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / JOURNAL_FILE
        self.state = ExperimentState()
        self.offset = 0

    def update(self) -> ExperimentState:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                while True:
                    data = handle.read(READ_CHUNK)
                    end = data.rfind(b"\n") + 1  # an unfinished last line waits for the next look
                    if end == 0:
                        break
                    handle.seek(self.offset + end)
                    self.offset += end
                    for line in data[:end].split(b"\n"):
                        self._apply(line)
        except FileNotFoundError:
            pass
        return self.state

    def _apply(self, line: bytes) -> None:
        try:
            event = json.loads(line.replace(b"\0", b"")) if line.strip() else None
        except ValueError:
            return  # a damaged line: skipped, as every journal reader does
        if isinstance(event, dict) and "type" in event:
            self.state.apply(event)


def watch(directory: Path, interval: float, out: TextIO | None = None) -> int:
    """Refresh the status every `interval` seconds until Ctrl-C (exit 0)."""
    if not math.isfinite(interval) or interval < MIN_INTERVAL_S:
        raise HpoError(f"--interval {interval:g} is too short; give at least {MIN_INTERVAL_S:g} seconds")
    out = out or sys.stdout
    on_terminal = out.isatty()
    follower = _JournalFollower(directory)
    first = True
    try:
        while True:
            state = follower.update()
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            title = f"every {interval:g} s: hpc-hpo status {directory}    {stamp}"
            if on_terminal:
                out.write(CLEAR_SCREEN)
            elif not first:
                out.write(f"\n{'-' * 20} {stamp} {'-' * 20}\n")
            out.write(f"{title}\n\n{status_text(directory, state)}\n")
            out.flush()
            first = False
            time.sleep(interval)
    except KeyboardInterrupt:
        if on_terminal:
            out.write("\n")
        return 0
