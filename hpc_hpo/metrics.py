"""Reading what trials report: new complete lines of a file, parsed into (resource, value) reports.

A trial file has one writer (the trial), so the reader needs no lock: it keeps a byte offset,
consumes only complete lines and leaves an incomplete last line for the next read.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import MetricSpec

log = logging.getLogger(__name__)


class LineTail:
    """The complete lines appended to a file since the last read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def read_lines(self) -> list[str]:
        try:
            with open(self.path, "rb") as handle:
                size = handle.seek(0, 2)
                if size < self.offset:
                    log.warning("%s shrank from %d to %d bytes; reading it again from the start",
                                self.path, self.offset, size)
                    self.offset = 0
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1  # an incomplete last line waits for its newline
        self.offset += end
        text = data[:end].replace(b"\0", b"").decode("utf-8", errors="replace")
        return [line for line in text.splitlines() if line.strip()]


@dataclass(frozen=True)
class Report:
    resource: float
    value: float  # the objective: the metric, or the weighted sum of the combined metrics
    time: float | None  # when the trial wrote it (unix seconds), if the line says
    components: dict[str, float] | None = None  # the combined metrics' own values


class ReportParser:
    """Turns lines into reports: JSON lines from report(), or text lines matched by metric_regex.

    A line without the metric is not a report (programs log other things too). A line whose
    resource is missing counts as one more than the previous report. Malformed lines are
    logged once per file and skipped.
    """

    def __init__(self, metric: str, resource: str, regex: re.Pattern[str] | None, label: str,
                 objective: MetricSpec | None = None, warned: set[str] | None = None) -> None:
        self.metric, self.resource, self.regex, self.label = metric, resource, regex, label
        # With combined metrics a report needs each of them; the objective is their weighted sum.
        self.objective = objective if objective is not None and objective.components else None
        self.needed = self.objective.reported if self.objective else (metric,)
        self.count = 0
        # Kinds of warning given already: pass one set to every trial's parser to warn once per experiment.
        self.warned: set[str] = warned if warned is not None else set()
        self.unmatched: str | None = None  # the first line that was not a report, to show when none is

    def parse(self, lines: list[str]) -> list[Report]:
        reports = []
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
        match = self.regex.search(line)
        if match is None:
            return None
        fields = {k: v for k, v in match.groupdict().items() if v is not None}
        if self.metric not in fields and self.regex.groups == 1:
            fields[self.metric] = match.group(1)
        return fields

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
