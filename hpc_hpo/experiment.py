"""The experiment directory on disk: creating it, reopening it, and finding it from a CLI argument."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import yaml
from filelock import FileLock, Timeout

from .config import ExperimentConfig, config_as_yaml, load_config
from .errors import HpoError
from .journal import Journal, make_event

CONFIG_FILE = "experiment.yaml"
JOURNAL_FILE = "journal.jsonl"
LEASE_FILE = "driver.json"  # who runs the experiment now: host, pid, since
LEASE_LOCK = "driver.lock"  # held for the driver's whole life; the OS frees it when the driver dies


def open_experiment(config: ExperimentConfig) -> tuple[Journal, bool]:
    """Create the experiment directory, or reopen it to resume. Returns the journal and whether it resumed.

    The directory is owner-only: trial configs and outputs are nobody else's business on a shared cluster.
    """
    directory = config.experiment_dir
    frozen = directory / CONFIG_FILE
    if (directory / JOURNAL_FILE).exists():
        _check_same_experiment(config, frozen)
        return Journal(directory), True
    check_experiment_dir(directory)
    make_experiment_dir(directory)
    os.chmod(directory, 0o700)
    (directory / "trials").mkdir(exist_ok=True, mode=0o700)
    frozen.write_text(config_as_yaml(config), encoding="utf-8")
    journal = Journal(directory)
    journal.append([make_event("experiment_created", name=config.name, metric=config.metric.name,
                               mode=config.metric.mode, resource=config.resource.name,
                               params=config.space.names,
                               combined=[c.name for c in config.metric.components])])
    return journal, False


def check_experiment_dir(directory: Path) -> None:
    """Refuse, before anything is written into it, a directory that holds something other than an experiment."""
    if (directory / JOURNAL_FILE).exists() or not directory.exists():
        return
    if not directory.is_dir() or not _creation_may_start(directory):
        raise HpoError(f"'{directory}' exists and is not an hpc_hpo experiment; "
                       "choose another experiment_dir or empty it")


def make_experiment_dir(directory: Path) -> None:
    """Owner-only: trial configs and outputs are nobody else's business on a shared cluster."""
    try:
        directory.mkdir(parents=True, mode=0o700)
    except FileExistsError:
        return
    os.chmod(directory, 0o700)  # mkdir's mode passes through the umask


def _creation_may_start(directory: Path) -> bool:
    """Empty, or holding only what a creation killed before its first journal line leaves (and the lease)."""
    leftovers = {CONFIG_FILE, "trials", "journal.lock", LEASE_LOCK, LEASE_FILE}
    names = {entry.name for entry in directory.iterdir()}
    trials = directory / "trials"
    return names <= leftovers and not (trials.is_dir() and any(trials.iterdir()))


def _check_same_experiment(config: ExperimentConfig, frozen: Path) -> None:
    """Resuming with an edited config would mix two experiments in one journal: refuse."""
    try:
        before = yaml.safe_load(frozen.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        before = None
    now = yaml.safe_load(config_as_yaml(config))
    if before != now:
        changed = sorted(k for k in set(before or {}) | set(now) if (before or {}).get(k) != now.get(k))
        raise HpoError(f"'{frozen.parent}' holds an experiment with a different config "
                       f"(differs in: {', '.join(changed) or 'everything'}); resume it with the same config, "
                       "or set experiment_dir to a new directory")


class DriverLease:
    """One driver per experiment: an exclusive lock held while the driver lives, plus who holds it.

    A driver that dies (even by kill -9) loses the lock with its process, so the next run takes
    over without anyone deleting files; a live driver makes a second one refuse, naming it.
    """

    def __init__(self, directory: Path) -> None:
        self.lock = FileLock(str(directory / LEASE_LOCK), timeout=0)
        self.info_path = directory / LEASE_FILE

    def acquire(self) -> None:
        try:
            self.lock.acquire()
        except Timeout:
            raise HpoError(f"experiment '{self.info_path.parent}' is already being run by "
                           f"{self._holder()}; wait for it to end, or stop that driver first") from None
        info = {"host": os.uname().nodename, "pid": os.getpid(),
                "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "slurm_job_id": os.environ.get("SLURM_JOB_ID")}
        self.info_path.write_text(json.dumps(info) + "\n", encoding="utf-8")

    def release(self) -> None:
        self.lock.release()

    def _holder(self) -> str:
        try:
            info = json.loads(self.info_path.read_text(encoding="utf-8"))
            return f"the driver on host {info['host']}, pid {info['pid']}, since {info['since']}"
        except (OSError, ValueError, KeyError):
            return "another driver"


def write_trial_config(trial_dir: Path, config: dict[str, Any]) -> None:
    trial_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    (trial_dir / "checkpoint").mkdir(exist_ok=True, mode=0o700)
    (trial_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def find_experiment(argument: str) -> Path:
    """An experiment directory from the CLI: the directory itself, or the YAML file that defines it."""
    path = Path(argument)
    if path.is_file() and path.suffix in (".yaml", ".yml"):
        path = load_config(path).experiment_dir
    if not (path / JOURNAL_FILE).is_file():
        raise HpoError(f"'{argument}' is not an experiment directory (no {JOURNAL_FILE} in it); "
                       "give the directory a run created, or its config file")
    return path
