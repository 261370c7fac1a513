"""Reading what trials report: new complete lines of a file, parsed into (resource, value) reports.

A trial file has one writer (the trial), so the reader needs no lock: it keeps a byte offset,
consumes only complete lines and leaves an incomplete last line for the next read.

Trial files are written by the trial, which may be hostile or broken: the reader follows no symbolic
link (a trial's metrics.jsonl pointing at /etc/shadow is not read), reads nothing but a regular file,
takes at most READ_MAX bytes of a file per read (a gigabyte burst of output is read in slices, never
held at once), skips lines longer than LINE_MAX, and bounds the time metric_regex may take on a line.
"""
from __future__ import annotations

import errno
import functools
import json
import logging
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

try:  # has a timeout; Python's re cannot be stopped, not even by a signal
    import regex as _timed_re
except ImportError:  # pragma: no cover - a dependency; without it matching has no time bound
    _timed_re = None

if TYPE_CHECKING:
    from .config import MetricSpec

log = logging.getLogger(__name__)
READ_MAX = 4 << 20  # bytes taken from one file per read, i.e. per driver sweep
LINE_MAX = 1 << 20  # a longer line is no report: skipped (with one warning) up to its newline
REGEX_MAX_CHARS = 1 << 16  # metric_regex is not tried on longer lines
REGEX_TIMEOUT_S = 0.1  # metric_regex on one line; a line it takes longer on is skipped
REGEX_TIMEOUTS_PER_READ = 3  # after these, the rest of a read's lines are skipped, so that a sweep stays short


class LineTail:
    """The complete lines appended to a file since the last read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.skipping = False  # inside a line longer than LINE_MAX: dropped up to its newline
        self.more = False  # the last read stopped at READ_MAX: there may be more to read now
        self.warned: set[str] = set()

    def read_lines(self) -> list[str]:
        data = self._read()
        self.more = len(data) >= READ_MAX
        if self.skipping and data:
            newline = data.find(b"\n")
            if newline < 0:
                self.offset += len(data)
                return []
            self.offset += newline + 1
            data, self.skipping = data[newline + 1:], False
        end = data.rfind(b"\n") + 1  # an incomplete last line waits for its newline
        self.offset += end
        if len(data) - end >= LINE_MAX:  # the start of a line too long to be a report
            self.offset += len(data) - end
            self.skipping = True
            self._warn("long", f"{self.path}: skipping a line longer than {LINE_MAX} bytes")
        block = data[:end]
        if b"\0" in block:
            block = block.replace(b"\0", b"")
        lines = block.decode("utf-8", errors="replace").splitlines()
        if any(len(line) > LINE_MAX for line in lines):
            self._warn("long", f"{self.path}: skipping a line longer than {LINE_MAX} bytes")
        return [line for line in lines if len(line) <= LINE_MAX and line.strip()]

    def _read(self) -> bytes:
        """Up to READ_MAX new bytes; none if the file is missing, a symbolic link or not a regular file."""
        try:
            # O_NOFOLLOW: a trial may have replaced its file by a link to anywhere; O_NONBLOCK: or by a FIFO.
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return b""
        except OSError as exc:
            self._unreadable("it is a symbolic link, which is not followed" if exc.errno == errno.ELOOP
                             else exc.strerror or str(exc))
            return b""
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                self._unreadable("it is not a regular file")
                return b""
            if info.st_size < self.offset:
                log.warning("%s shrank from %d to %d bytes; reading it again from the start",
                            self.path, self.offset, info.st_size)
                self.offset, self.skipping = 0, False
            return os.pread(fd, READ_MAX, self.offset)
        except OSError as exc:
            self._unreadable(exc.strerror or str(exc))
            return b""
        finally:
            os.close(fd)

    def _unreadable(self, why: str) -> None:
        self._warn("unreadable", f"cannot read {self.path}: {why}; no reports are taken from it")

    def _warn(self, kind: str, message: str) -> None:
        if kind not in self.warned:
            self.warned.add(kind)
            log.warning(message)


@dataclass(frozen=True)
class Report:
    resource: float
    value: float  # the objective: the metric, the weighted sum of the combined metrics, or the first objective
    time: float | None  # when the trial wrote it (unix seconds), if the line says
    components: dict[str, float] | None = None  # the combined metrics' own values, or every objective's


class ReportParser:
    """Turns lines into reports: JSON lines from report(), or text lines matched by metric_regex.

    A line without the metric is not a report (programs log other things too). A line whose
    resource is missing counts as one more than the previous report. Malformed lines are
    logged once per file and skipped.
    """

    def __init__(self, metric: str, resource: str, regex: re.Pattern[str] | None, label: str,
                 objective: MetricSpec | None = None, warned: set[str] | None = None) -> None:
        self.metric, self.resource, self.regex, self.label = metric, resource, regex, label
        # With combined metrics a report needs each of them; the objective is their weighted sum. With several
        # objectives it needs each of them too, and all are kept (the value is the first one's).
        self.objective = objective if objective is not None and (objective.components or objective.objectives) \
            else None
        self.needed = self.objective.reported if self.objective else (metric,)
        self.count = 0
        # Kinds of warning given already: pass one set to every trial's parser to warn once per experiment.
        self.warned: set[str] = warned if warned is not None else set()
        self.unmatched: str | None = None  # the first line that was not a report, to show when none is
        self.search = _timed_search(regex) if regex is not None else None
        self.timeouts_left = REGEX_TIMEOUTS_PER_READ

    def parse(self, lines: list[str]) -> list[Report]:
        reports = []
        self.timeouts_left = REGEX_TIMEOUTS_PER_READ
        for line in lines:
            fields = self._fields(line)
            if fields is None or any(name not in fields for name in self.needed):
                if self.unmatched is None:
                    self.unmatched = line[:200]
                continue
            report = self._report(fields, line)
            if report is not None:
                self.count += 1
                reports.append(report)
        return reports

    def _fields(self, line: str) -> dict[str, Any] | None:
        if self.regex is None:
            try:
                fields = json.loads(line)
            except ValueError:
                self._warn("malformed", f"{self.label}: skipping a malformed metrics line: {line[:200]!r}")
                return None
            return fields if isinstance(fields, dict) else None
        match = self._match(line)
        if match is None:
            return None
        fields = {k: v for k, v in match.groupdict().items() if v is not None}
        if self.metric not in fields and self.regex.groups == 1:
            fields[self.metric] = match.group(1)
        return fields

    def _match(self, line: str) -> Any:
        """metric_regex on a line, within REGEX_MAX_CHARS and REGEX_TIMEOUT_S: a pattern that backtracks without
        end (nested repetition such as (a+)+) costs a sweep at most a few timeouts, never the driver."""
        if len(line) > REGEX_MAX_CHARS:
            self._warn("regex-long", f"{self.label}: metric_regex is not tried on lines longer than "
                                     f"{REGEX_MAX_CHARS} characters; such lines are skipped")
            return None
        if self.timeouts_left <= 0 or self.search is None:
            return None
        try:
            return self.search(line)
        except TimeoutError:
            self.timeouts_left -= 1
            pattern = self.regex.pattern if self.regex is not None else ""
            self._warn("regex-slow", f"{self.label}: metric_regex {pattern!r} took over {REGEX_TIMEOUT_S:g} s on a "
                                     f"line, which was skipped (after {REGEX_TIMEOUTS_PER_READ} such lines, so is "
                                     "the rest of what was read at once); simplify the pattern: no nested "
                                     "repetition such as (a+)+ or (a|aa)+")
            return None

    def _report(self, fields: dict[str, Any], line: str) -> Report | None:
        values = {name: _number(fields.get(name)) for name in self.needed}
        bad = [name for name, number in values.items() if number is None]
        if bad:
            self._warn("value", f"{self.label}: '{bad[0]}' is not a number in {line[:200]!r}; skipped")
            return None
        numbers: dict[str, float] = {k: v for k, v in values.items() if v is not None}
        value = self.objective.combine(numbers) if self.objective else numbers[self.metric]
        if self.resource in fields:
            resource = _number(fields[self.resource])
            if resource is None or resource <= 0:
                self._warn("resource", f"{self.label}: '{self.resource}' must be a positive number "
                                       f"in {line[:200]!r}; skipped")
                return None
        else:
            self._warn("no-resource", f"{self.label}: reports carry no '{self.resource}'; "
                                      "counting reports 1, 2, 3, ... instead")
            resource = float(self.count + 1)
        stamp = _number(fields.get("t")) if self.regex is None else None
        return Report(resource=resource, value=value, time=stamp,
                      components=numbers if self.objective else None)

    def _warn(self, kind: str, message: str) -> None:
        if kind not in self.warned:
            self.warned.add(kind)
            log.warning(message)


@functools.lru_cache(maxsize=8)  # one compile (and at most one warning) per pattern, not one per trial
def _timed_search(pattern: re.Pattern[str]) -> Callable[[str], Any]:
    """pattern.search with a time bound: the same pattern compiled by the regex module, which has a timeout
    (the config validates and compiles metric_regex with re; regex reads re's syntax)."""
    if _timed_re is not None:
        flags = 0
        for re_flag, timed_flag in ((re.I, _timed_re.I), (re.M, _timed_re.M), (re.S, _timed_re.S),
                                    (re.X, _timed_re.X), (re.A, _timed_re.A)):
            if pattern.flags & re_flag:
                flags |= timed_flag
        try:
            timed = _timed_re.compile(pattern.pattern, flags)
        except (_timed_re.error, ValueError, TypeError):
            timed = None
        if timed is not None and timed.groups == pattern.groups and dict(timed.groupindex) == dict(pattern.groupindex):
            return lambda line: timed.search(line, timeout=REGEX_TIMEOUT_S)
    log.warning("metric_regex %r is matched without a time bound (the 'regex' package is missing or reads it "
                "differently): a pattern that backtracks without end can stall the driver", pattern.pattern)
    return pattern.search


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, (int, float)):
        return float(value)  # NaN and inf stay: the scheduler treats NaN as the worst value
    return None
