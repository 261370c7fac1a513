"""One family of exceptions; the CLI turns any of them into one clear line and exit code 2."""
from __future__ import annotations

from typing import Any


class HpoError(Exception):
    """A mistake the user can fix (bad config, missing experiment, ...). Never shown as a traceback."""


class ConfigError(HpoError):
    """A config value breaks a rule. The message names the key path, the value, the rule and the fix."""

    def __init__(self, key: str, value: Any, rule: str, fix: str = "") -> None:
        self.key, self.value, self.rule, self.fix = key, value, rule, fix
        shown = "(missing)" if value is _MISSING else repr(value)
        message = f"config key '{key}' = {shown}: {rule}"
        if fix:
            message += f"; {fix}"
        super().__init__(message)


class _Missing:
    def __repr__(self) -> str:
        return "(missing)"


_MISSING: Any = _Missing()
MISSING = _MISSING


class BackendError(HpoError):
    """A command to the batch system (or a local process start) failed."""
