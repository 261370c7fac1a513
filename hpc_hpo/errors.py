"""One family of exceptions; the CLI turns any of them into one clear line and exit code 2."""
from __future__ import annotations

from typing import Any

# How much of a value or key a message echoes: a 50 MB value or an alias bomb is shown by its start and size.
SHOWN_MAX = 80
KEY_SHOWN_MAX = 160
TEXT_SHOWN_MAX = 1000  # a rule or a fix (they may quote a value too)


class HpoError(Exception):
    """A mistake the user can fix (bad config, missing experiment, ...). Never shown as a traceback."""


class ConfigError(HpoError):
    """A config value breaks a rule. The message names the key path, the value, the rule and the fix.

    The message is one line however large or strange the value: it shows at most SHOWN_MAX characters
    of the value (with its size when cut), and the key, rule and fix with their line breaks escaped."""

    def __init__(self, key: str, value: Any, rule: str, fix: str = "") -> None:
        self.key, self.value, self.rule, self.fix = key, value, rule, fix
        shown = "(missing)" if value is _MISSING else show_value(value)
        message = f"config key '{show_text(key, KEY_SHOWN_MAX)}' = {shown}: {show_text(rule, TEXT_SHOWN_MAX)}"
        if fix:
            message += f"; {show_text(fix, TEXT_SHOWN_MAX)}"
        super().__init__(message)


class _Missing:
    def __repr__(self) -> str:
        return "(missing)"


_MISSING: Any = _Missing()
MISSING = _MISSING


class BackendError(HpoError):
    """A command to the batch system (or a local process start) failed."""


def show_text(text: str, limit: int = SHOWN_MAX) -> str:
    """Text for a one-line message: line breaks and other unprintable characters escaped, cut at `limit`."""
    text = str(text) if not isinstance(text, str) else text
    cut = text[:limit]
    if not cut.isprintable():
        cut = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in cut)
    return cut if len(text) <= limit else f"{cut}... ({len(text)} characters)"


def show_value(value: Any, limit: int = SHOWN_MAX) -> str:
    """repr(value) when it is short; else its first `limit` characters, '...' and its size. Never builds the
    whole repr: a value shared a billion times (a YAML alias bomb) or a 50 MB string costs `limit` steps."""
    parts: list[str] = []
    complete = _bounded_repr(value, parts, limit)
    text = "".join(parts)
    if complete and len(text) <= limit:
        return text
    text = text[:limit] + "..."
    size = _size(value)
    return f"{text} ({size})" if size else text


def _bounded_repr(value: Any, parts: list[str], budget: int) -> bool:
    """Append the repr of `value` to `parts` until `budget` characters are spent; True if it is all there."""
    if budget <= 0:
        return False
    if isinstance(value, str):
        if len(value) <= budget:
            parts.append(repr(value))
            return len(parts[-1]) <= budget
        parts.append(repr(value[:budget])[:-1])  # the opening quote and the start, no closing quote
        return False
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 4 * budget:
        parts.append(f"<an integer of {_digits(value)}>")  # its digits would cost more than the budget
        return True
    if isinstance(value, (list, tuple, dict, set, frozenset)):
        opening, closing = {list: "[]", tuple: "()", dict: "{}"}.get(type(value), ("{", "}"))
        if isinstance(value, (set, frozenset)) and not value:
            parts.append(repr(value))
            return True
        parts.append(opening)
        spent = 1
        items = value.items() if isinstance(value, dict) else value
        for i, item in enumerate(items):
            if i:
                parts.append(", ")
                spent += 2
            start = len(parts)
            if isinstance(value, dict):
                key, item = item
                if not _bounded_repr(key, parts, budget - spent):
                    return False
                spent += sum(len(p) for p in parts[start:])
                parts.append(": ")
                spent += 2
                start = len(parts)
            if not _bounded_repr(item, parts, budget - spent):
                return False
            spent += sum(len(p) for p in parts[start:])
            if spent > budget:
                return False
        if isinstance(value, tuple) and len(value) == 1:
            parts.append(",")
        parts.append(closing)
        return spent + 1 <= budget
    try:
        text = repr(value)
    except ValueError:  # an object whose repr refuses (too many digits)
        text = f"<{type(value).__name__}>"
    parts.append(text[:budget])
    return len(text) <= budget


def _size(value: Any) -> str:
    if isinstance(value, str):
        return f"{len(value)} characters"
    if isinstance(value, (bytes, bytearray)):
        return f"{len(value)} bytes"
    if isinstance(value, (list, tuple, dict, set, frozenset)):
        return f"{len(value)} item" + ("s" if len(value) != 1 else "")
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{len(str(abs(value)))} digits"  # a short one: longer ones are shown by _digits alone
    return ""


def _digits(value: int) -> str:
    return f"about {int(value.bit_length() * 0.30103) + 1} digits"
