"""The hooks section: commands the driver runs when a trial ends, a new best appears, or the experiment ends.

    hooks:
      on_trial_end: [python, hooks/log_to_mlflow.py]     # an argv list ...
      on_new_best: "notify.sh --quiet"                    # ... or a string, split as a shell would (never run by one)
      on_experiment_end: "{python} hooks/summary.py"      # {python}: the interpreter running hpc-hpo
      timeout: 60                                          # seconds (or 90s, 5m); a hook still running then is killed
      max_running: 4                                       # hooks running at once; more wait their turn

A hook gets its values as HPC_HPO_* environment variables and a JSON file (hpc_hpo/driver/hooks.py).
"""
from __future__ import annotations

import os
import shlex
import shutil
import sys
from typing import Any, Callable

from ..errors import ConfigError
from .reading import Section, as_number, parse_duration
from .specs import HooksSpec

HOOK_EVENTS = ("on_trial_end", "on_new_best", "on_experiment_end")
HOOKS_KEYS = (*HOOK_EVENTS, "timeout", "max_running")
MAX_HOOK_TIMEOUT = 86400.0  # a day: a hook is a notification, not a job
MAX_HOOKS_RUNNING = 64
PYTHON_PLACEHOLDER = "{python}"


Resolver = Callable[[list[str]], list[str]]


def hooks_spec(value: Any, check_program: bool = True, resolve: Resolver = lambda argv: argv) -> HooksSpec:
    """resolve: makes relative file arguments absolute as for `command` (next to the config file first)."""
    section = Section(value, "hooks", HOOKS_KEYS)
    commands = {event: _hook_argv(section.get(event, None), section.key(event), check_program, resolve)
                for event in HOOK_EVENTS}
    raw_timeout = section.get("timeout", None)
    timeout = 60.0 if raw_timeout is None else parse_duration(raw_timeout, section.key("timeout"), MAX_HOOK_TIMEOUT)
    running = as_number(section.get("max_running", 4), section.key("max_running"), integer=True, positive=True,
                        maximum=MAX_HOOKS_RUNNING, why="hooks are small programs; more than a few at once "
                        "means they fall behind anyway")
    return HooksSpec(timeout=timeout, max_running=running, **commands)


def _hook_argv(value: Any, key: str, check_program: bool, resolve: Resolver) -> tuple[str, ...] | None:
    """An argv list or a string split like a shell would (quotes, no expansion): no shell ever runs it."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            raise ConfigError(key, value, f"cannot be split into arguments ({exc})",
                              "check the quotes, or give the command as a list") from None
    elif isinstance(value, list) and all(isinstance(a, (str, int, float)) and not isinstance(a, bool) for a in value):
        argv = [str(a) for a in value]
    else:
        raise ConfigError(key, value, "must be a command: a list of arguments or a string",
                          "e.g. [python, hooks/notify.py] or '{python} hooks/notify.py'")
    if not argv or not argv[0]:
        raise ConfigError(key, value, "is empty", "give the program to run, or remove the key")
    if any("\0" in a for a in argv):
        raise ConfigError(key, value, "contains a NUL byte")
    argv = resolve([sys.executable if a == PYTHON_PLACEHOLDER else a for a in argv])
    if check_program and not _runnable(argv[0]):
        raise ConfigError(key, value, f"program '{argv[0]}' was not found or is not executable",
                          "give a program on PATH or a path to an executable file (e.g. '{python} my_hook.py' "
                          "for a Python script)")
    return tuple(argv)


def _runnable(program: str) -> bool:
    if os.sep in program:
        return os.path.isfile(program) and os.access(program, os.X_OK)
    return shutil.which(program) is not None
