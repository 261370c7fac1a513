"""What every section reads with: Section (the keys of a mapping at a key path, refusing unknown ones),
numbers, durations, lists and program flags. Each raises ConfigError naming the key path."""
from __future__ import annotations

import difflib
import math
import re
from typing import Any

from ..errors import MISSING, ConfigError, show_value
from ..walltime import clock_seconds

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# Bounds that keep hostile or mistyped numbers from reaching the driver (each refusal names its bound):
# any integer fits in 64 bits (JSON readers, numpy); a count of things the driver starts or holds
# (nodes, parallel runs, retries, candidates) stays below a million; a duration below ten years.
MAX_INTEGER = 2 ** 63 - 1
MAX_COUNT = 1_000_000
MAX_DURATION = 3650 * 86400.0


class Section:
    """A mapping at a key path; takes keys one by one and reports any key left over as unknown."""

    def __init__(self, data: Any, path: str, allowed: tuple[str, ...]) -> None:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(path or "(top level)", data, "must be a mapping of keys to values",
                              f"allowed keys: {', '.join(allowed)}")
        self.data, self.path, self.allowed = data, path, allowed
        for key in data:
            if key not in allowed:
                name = key_text(key)
                close = difflib.get_close_matches(name, allowed, n=1) if len(name) <= 100 else []
                hint = f"did you mean '{close[0]}'? " if close else ""
                raise ConfigError(self.key(name), data[key], "unknown key",
                                  f"{hint}allowed keys here: {', '.join(allowed)}")

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def get(self, name: str, default: Any = MISSING) -> Any:
        value = self.data.get(name, default)
        if value is MISSING:
            raise ConfigError(self.key(name), MISSING, "is required")
        return value

    def number(self, name: str, default: Any = MISSING, *, integer: bool = False, positive: bool = False,
               minimum: float | None = None, maximum: float | None = None, why: str = "") -> Any:
        value = self.get(name, default)
        if value is None and default is None:
            return None
        return as_number(value, self.key(name), integer=integer, positive=positive, minimum=minimum,
                         maximum=maximum, why=why)

    def choice(self, name: str, allowed: tuple[str, ...], default: Any = MISSING) -> str:
        value = self.data.get(name, default)
        if value not in allowed:
            raise ConfigError(self.key(name), value, f"must be one of: {', '.join(allowed)}", _closest(value, allowed))
        return value

    def text(self, name: str, default: Any = MISSING, pattern: re.Pattern[str] | None = None,
             rule: str = "") -> Any:
        value = self.get(name, default)
        if value is None and default is None:
            return None
        if not isinstance(value, str) or not value:
            raise ConfigError(self.key(name), value, "must be a non-empty string")
        # fullmatch: a pattern's '$' alone lets a trailing line break through ('unit\n').
        if pattern is not None and not pattern.fullmatch(value):
            raise ConfigError(self.key(name), value, rule)
        return value


def _closest(value: Any, allowed: tuple[str, ...]) -> str:
    """'did you mean ...?' for a misspelt choice, or another tool's shorter name ('hyperband')."""
    if not isinstance(value, str) or not value or len(value) > 100:
        return ""
    close = [a for a in allowed if value.lower() in a] or difflib.get_close_matches(value.lower(), allowed, n=1)
    return f"did you mean '{close[0]}'?" if len(close) == 1 else ""


def key_text(key: Any) -> str:
    """A mapping key as the text of a key path: YAML keys may be numbers, booleans or null too."""
    return key if isinstance(key, str) else show_value(key)


def as_number(value: Any, key: str, *, integer: bool = False, positive: bool = False,
              minimum: float | None = None, maximum: float | None = None, why: str = "") -> Any:
    """A number from YAML. Strings like '1e-4' are accepted because YAML 1.1 reads them as text.

    Any number is finite, and an integer fits in 64 bits; `minimum` and `maximum` bound it further
    (`why` says why, as the fix)."""
    kind = "an integer" if integer else "a number"
    given = value
    if isinstance(value, str):
        text = value.strip()
        # float() reads other scripts' digits too ('١'); a config number is written in ASCII.
        if not text.isascii() or len(text) > 100:
            raise ConfigError(key, value, f"must be {kind} written in ASCII digits")
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(key, value, f"must be {kind}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(key, value, f"must be {kind}")
    if isinstance(value, int) and abs(value) > MAX_INTEGER:
        raise ConfigError(key, given, f"must be {kind} of at most {len(str(MAX_INTEGER))} digits "
                          f"(|value| <= {MAX_INTEGER})")
    if not math.isfinite(value):
        raise ConfigError(key, given, f"must be {kind} (finite)")
    if integer:
        if isinstance(value, float) and not value.is_integer():
            raise ConfigError(key, given, "must be a whole number")
        if abs(value) > MAX_INTEGER:
            raise ConfigError(key, given, f"must be an integer of at most {len(str(MAX_INTEGER))} digits "
                              f"(|value| <= {MAX_INTEGER})")
        value = int(value)
    if positive and value <= 0:
        raise ConfigError(key, given, f"must be {kind} greater than 0")
    if minimum is not None and value < minimum:
        raise ConfigError(key, given, f"must be at least {_bound_text(minimum)}", why)
    if maximum is not None and value > maximum:
        raise ConfigError(key, given, f"must be at most {_bound_text(maximum)}", why)
    return value


def _bound_text(bound: float) -> str:
    return f"{int(bound):,}" if float(bound).is_integer() and abs(bound) < 1e16 else f"{bound:g}"


def describe_seconds(seconds: float) -> str:
    """3600 -> '1h': how a bound on a duration reads in a message."""
    for unit in ("d", "h", "m"):
        if seconds >= DURATION_UNITS[unit] and seconds % DURATION_UNITS[unit] == 0:
            return f"{seconds / DURATION_UNITS[unit]:g}{unit}"
    return f"{seconds:g}s"


def parse_duration(value: Any, key: str, maximum: float = MAX_DURATION) -> float:
    """Seconds from a number (seconds) or a string like '90s', '30m', '2h', '1d', or 'HH:MM:SS', at most
    `maximum` (ten years unless the key says less): a sleep or a deadline that far off is a typo."""
    seconds = _duration_seconds(value, key)
    if seconds > maximum:
        raise ConfigError(key, value, f"must be at most {describe_seconds(maximum)}",
                          "write seconds (3600) or a number with a unit: 90s, 30m, 2h, 1d")
    return seconds


def _duration_seconds(value: Any, key: str) -> float:
    if isinstance(value, str):
        text = value.strip()
        if not text.isascii() or len(text) > 100:
            pass  # refused below: '١:00' would pass isdigit() and then fail int()
        elif ":" in text:
            seconds = clock_seconds(text)
            if seconds is not None and seconds > 0:
                return seconds
        elif text and text[-1] in DURATION_UNITS:
            try:
                seconds = float(text[:-1]) * DURATION_UNITS[text[-1]]
            except ValueError:
                seconds = -1.0
            if seconds > 0 and not math.isnan(seconds):
                return seconds  # inf: refused as too long
        else:
            try:
                return float(as_number(text, key, positive=True))
            except ConfigError:
                pass
        raise ConfigError(key, value, "is not a duration",
                          "write seconds (3600) or a number with a unit: 90s, 30m, 2h, 1d, or HH:MM:SS")
    return float(as_number(value, key, positive=True))


def _flag(value: Any, key: str) -> str | None:
    """A program flag: printable ASCII without spaces, so that a look-alike letter ('--l\u0435' with a
    Cyrillic e) or a terminal escape cannot hide in it; its length is checked with the whole argv."""
    if value is None or value is False:
        return None
    if not isinstance(value, str) or not value.strip() or not (value.isascii() and value.isprintable()) \
            or " " in value:
        raise ConfigError(key, value, "must be a flag without spaces like '--lr' or '--lr=', or null "
                          "(printable ASCII only)", "null passes the value only in config.json")
    return value


def _as_list(value: Any, key: str) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(key, value, "must be a list")
    return value
