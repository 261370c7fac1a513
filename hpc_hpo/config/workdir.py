"""Where each trial runs: execution.workdir (shared | trial), run_path, src_path and src_copy (CrayAI's names).

- workdir: shared (the default): every trial runs in the directory hpc-hpo was started in, as before.
- workdir: trial: each trial runs in a directory of its own: its trial directory (EXP/trials/<id>), or
  <run_path>/<id> when run_path is set (a workspace with one subdirectory per trial, like CrayAI's).
- src_path: files or directories put into each trial's directory before its first run: symlinked, or
  copied with src_copy: true (for a program that writes into them).

Paths that name inputs (src_path, like the arguments of `command`) are relative to the config file's
directory; paths that name outputs (run_path, like experiment_dir) to the directory hpc-hpo is started in.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .params import CONTROL_CHARACTERS
from .reading import Section
from .specs import WorkdirSpec

WORKDIR_KEYS = ("workdir", "run_path", "src_path", "src_copy")
WORKDIR_MODES = ("shared", "trial")
MAX_PATH_BYTES = 4096  # PATH_MAX
MAX_SOURCES = 1000  # entries of src_path: a few files and directories, not a dataset's file list
# What hpc_hpo itself writes into a trial directory: a src_path entry of such a name would take its place
# when the trial runs there (workdir: trial without run_path).
TRIAL_DIR_NAMES = frozenset({"config.json", "metrics.jsonl", "stdout", "stderr", "checkpoint", "snapshots",
                             "decision.json", "interrupt", "slurm.out", "srun.log", "pbs.out", "function.pkl"})
TRIAL_DIR_SUFFIXES = (".exit", ".nodes", ".devices", ".share", ".sbatch", ".pbs", ".tmp")


def workdir_spec(section: Section) -> WorkdirSpec:
    """The keys as written (paths still relative); resolve_workdir makes them absolute and checks them."""
    mode = section.choice("workdir", WORKDIR_MODES, "shared")
    run_path = checked_path(section.get("run_path", None), section.key("run_path"))
    sources = _sources(section.get("src_path", None), section.key("src_path"), run_path is None)
    copy = section.get("src_copy", False)
    if not isinstance(copy, bool):
        raise ConfigError(section.key("src_copy"), copy, "must be true or false",
                          "true copies src_path into each trial's directory, false (the default) links it")
    if mode == "shared":
        for key in ("run_path", "src_path", "src_copy"):
            if key in section.data:
                raise ConfigError(section.key(key), section.data[key], "is used only when each trial runs in a "
                                  "directory of its own", "add 'workdir: trial' to the execution section, "
                                  f"or remove {key}")
    return WorkdirSpec(mode=mode, run_path=None if run_path is None else Path(run_path),
                       src_path=tuple(Path(s) for s in sources), src_copy=copy)


def resolve_workdir(spec: WorkdirSpec, config_dir: Path | None, check_files: bool) -> WorkdirSpec:
    """Absolute paths: src_path against the config file's directory (the current one when there is no
    config file, as for hpc_hpo.tune()), run_path against the current directory. With check_files, a
    src_path entry that does not exist, or a run_path that is not a directory, is refused now rather
    than in every trial."""
    base = (config_dir or Path.cwd()).absolute()
    sources = tuple(base / s for s in spec.src_path)  # an absolute s replaces base
    run_path = None if spec.run_path is None else spec.run_path.absolute()
    if check_files:
        for source, given in zip(sources, spec.src_path):
            if not source.exists():
                raise ConfigError("execution.src_path", str(given), f"does not exist ('{source}'; a relative "
                                  "src_path is relative to the config file's directory)",
                                  "give an existing file or directory")
        if run_path is not None and run_path.exists() and not run_path.is_dir():
            raise ConfigError("execution.run_path", str(spec.run_path), f"'{run_path}' exists and is not a directory",
                              "give a directory (hpc-hpo creates it if it does not exist)")
    return WorkdirSpec(mode=spec.mode, run_path=run_path, src_path=sources, src_copy=spec.src_copy)


def checked_path(value: Any, key: str, fix: str = "rename the file or directory") -> str | None:
    """A path the kernel takes and a batch script can hold (a trial's --chdir, an experiment directory):
    no NUL byte, line break or other control character, at most PATH_MAX bytes."""
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(key, value, "must be a non-empty path")
    control = CONTROL_CHARACTERS.search(value)
    if control:
        raise ConfigError(key, value, f"must be a path without a NUL byte, a line break or another control "
                          f"character (it holds U+{ord(control.group()):04X})", fix)
    if len(value.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
        raise ConfigError(key, value, f"is longer than a path may be ({MAX_PATH_BYTES} bytes)")
    return value


def _sources(value: Any, key: str, in_trial_dir: bool) -> list[str]:
    """src_path: one path or a list of them, each entering the trial's directory under its own name."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise ConfigError(key, value, "must be a path or a non-empty list of paths",
                          "e.g. train.py, or [train.py, data/]")
    if len(items) > MAX_SOURCES:
        raise ConfigError(key, f"({len(items)} entries)", f"may list at most {MAX_SOURCES} entries",
                          "list the directory that holds them instead")
    sources: list[str] = []
    names: dict[str, str] = {}
    for i, item in enumerate(items):
        item_key = key if isinstance(value, str) else f"{key}[{i}]"
        if not isinstance(item, str):
            raise ConfigError(item_key, item, "must be a path (a string)", "e.g. train.py, or [train.py, data/]")
        path = checked_path(item, item_key) or item
        name = Path(path).name
        if name in ("", ".", ".."):
            raise ConfigError(item_key, item, "names no file or directory of its own (it would enter the trial's "
                              "directory without a name)", "name the file or directory, e.g. ../data")
        if name in names:
            raise ConfigError(item_key, item, f"has the same name '{name}' as {names[name]!r}: both would enter "
                              "each trial's directory as one entry", "rename one of them, or list their directory")
        if in_trial_dir and (name in TRIAL_DIR_NAMES or name.endswith(TRIAL_DIR_SUFFIXES)):
            raise ConfigError(item_key, item, f"would enter the trial directory as '{name}', a name hpc-hpo "
                              "writes there itself", "rename it, or set execution.run_path so that trials run "
                              "in a directory of their own")
        names[name] = item
        sources.append(path)
    return sources
