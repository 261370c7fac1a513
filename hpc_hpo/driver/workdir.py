"""Where a trial's run runs (execution.workdir), and making that directory ready before the run.

- shared: the directory the driver was started in, for every trial (hpc_hpo's behaviour before workdir).
- trial: a directory of the trial's own: its trial directory, or <run_path>/<trial id>. Before the trial's
  first run the src_path entries are linked (or copied) into it; a later run of the same trial (a
  resume, a retry, a requeue) finds the directory as the earlier runs left it.

A trial's directory is owner-only and never reached through a symlink: trials of other users on a shared
scratch filesystem must not be able to read it, nor to plant a link that makes the driver write elsewhere.
"""
from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from ..config import ExperimentConfig, WorkdirSpec
from ..errors import HpoError
from ..experiment import experiment_id

# In each <run_path>/<trial id>: which experiment's trial the directory belongs to. Two experiments given
# the same run_path would otherwise run their trials 0001 in one directory, over each other's files.
OWNER_FILE = ".hpc_hpo_trial"


def trial_workdir(config: ExperimentConfig, trial_dir: Path, trial_id: str, first_run: bool) -> Path:
    """The directory this run of the trial runs in, made ready for it (created, owner-only, src_path in
    place before the first run)."""
    spec = config.execution.workdir
    if spec.mode == "shared":
        return Path.cwd()
    if spec.run_path is None:
        directory = trial_dir
        created = _make_private_directory(directory)
    else:
        directory = spec.run_path / trial_id
        _make_run_path(spec.run_path)
        created = _make_private_directory(directory)
        _claim(directory, f"{experiment_id(config.experiment_dir)} {trial_id}\n", created, first_run)
    if first_run or created:
        _place_sources(directory, spec)
    return directory


def _make_run_path(run_path: Path) -> None:
    """run_path is created owner-only if missing; an existing one keeps its mode (a group's project
    directory is the user's choice: each trial's directory in it is owner-only anyway)."""
    try:
        os.makedirs(run_path, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise HpoError(f"execution.run_path '{run_path}' cannot be created ({exc.strerror}); choose a directory "
                       "you can write, on a filesystem the compute nodes share") from None


def _make_private_directory(directory: Path) -> bool:
    """Create the directory owner-only, or check the existing one is a real directory of ours (not a
    symlink) and make it owner-only. Whether it was created now."""
    try:
        os.mkdir(directory, 0o700)
        created = True
    except FileExistsError:
        created = False
    except OSError as exc:
        raise HpoError(f"a trial's working directory '{directory}' cannot be created ({exc.strerror}); check "
                       "execution.run_path") from None
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise HpoError(f"a trial's working directory '{directory}' exists and is not a directory of its own "
                       f"({exc.strerror}: a symlink or a file is never followed); remove it, or choose another "
                       "execution.run_path") from None
    try:
        info = os.fstat(fd)
        if info.st_uid != os.geteuid():
            raise HpoError(f"a trial's working directory '{directory}' belongs to another user (uid "
                           f"{info.st_uid}); choose an execution.run_path of your own")
        if stat.S_IMODE(info.st_mode) & 0o077:
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)
    return created


def _claim(directory: Path, owner: str, created: bool, first_run: bool) -> None:
    """Mark a new run directory as this experiment's trial's; refuse one another experiment's trial uses.
    A later run does not look: the directory is the trial's since its first run."""
    path = directory / OWNER_FILE
    if created or not os.path.lexists(path):
        if not created and first_run and any(os.scandir(directory)):
            raise HpoError(f"a trial's working directory '{directory}' already holds files that are not this "
                           "experiment's (from another experiment or by hand): give each experiment its own "
                           "execution.run_path, or empty that directory")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(owner)
        return
    if not first_run:
        return
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "r", encoding="utf-8", errors="replace") as handle:
            found = handle.read(200)
    except OSError:
        found = ""
    if found != owner:
        raise HpoError(f"a trial's working directory '{directory}' belongs to another experiment's trial "
                       f"({OWNER_FILE} says {found.strip()!r}): give each experiment its own execution.run_path")


def _place_sources(directory: Path, spec: WorkdirSpec) -> None:
    """Link (or copy) each src_path entry into the directory under its own name. An entry already there is
    left alone: a driver killed during this finds its own earlier work, and the program's files win."""
    for source in spec.src_path:
        target = directory / source.name
        if os.path.lexists(target):
            continue
        try:
            if spec.src_copy:
                _copy(source, target)
            else:
                os.symlink(source, target, target_is_directory=source.is_dir())
        except OSError as exc:
            raise HpoError(f"execution.src_path '{source}' cannot be {'copied' if spec.src_copy else 'linked'} "
                           f"into '{directory}' ({exc.strerror or exc}); check that it still exists and that "
                           "the filesystem has room") from None


def _copy(source: Path, target: Path) -> None:
    """Whole or not at all: copied under a temporary name, then renamed, so that an interrupted copy is
    never taken for a finished one."""
    partial = target.with_name(f".{target.name}.partial")
    if os.path.lexists(partial):
        if partial.is_dir() and not partial.is_symlink():
            shutil.rmtree(partial)
        else:
            partial.unlink()
    if source.is_dir():
        shutil.copytree(source, partial, symlinks=True)
    else:
        shutil.copy2(source, partial)
    os.rename(partial, target)
