"""The experiment directory on disk: creating it, reopening it, and finding it from a CLI argument."""
from __future__ import annotations

import fcntl
import json
import os
import subprocess
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
HEARTBEAT_S = 2.0  # how often a running driver rewrites its lease file
LOCK_ADVICE = ("see 'Locks on shared filesystems' in the README (NFS needs lockd, i.e. no 'nolock' mount option; "
               "Lustre needs the 'flock' mount option, not 'localflock')")


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
    leftovers = {CONFIG_FILE, "trials", "journal.lock", LEASE_LOCK, LEASE_FILE, LEASE_FILE + ".tmp"}
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
    A lock is only as good as the filesystem's: where locks do not reach between the machines (or
    mounts) sharing the directory, the lease file's heartbeat still shows a live driver, and the
    second one refuses to start rather than run the experiment twice.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.lock = FileLock(str(directory / LEASE_LOCK), timeout=0)
        self.info_path = directory / LEASE_FILE
        self.info: dict[str, Any] = {}
        self.last_beat = 0.0

    def acquire(self) -> None:
        try:
            self.lock.acquire()
        except Timeout:
            raise HpoError(f"experiment '{self.directory}' is already being run by "
                           f"{_describe(self._holder())}; wait for it to end, or stop that driver first") from None
        except (OSError, NotImplementedError) as exc:
            raise HpoError(f"file locks do not work on the filesystem of '{self.directory}' ({exc}); "
                           f"{LOCK_ADVICE}") from None
        try:
            self._check_lock_excludes()
            holder = self._holder()
            if holder is not None and _still_running(holder, self.info_path):
                raise HpoError(f"the lock of experiment '{self.directory}' was granted although "
                               f"{_describe(holder)} is running it (its heartbeat goes on): file locks on this "
                               f"filesystem do not exclude between the machines or mounts that share it; stop that "
                               f"driver, and {LOCK_ADVICE}")
        except HpoError:
            self.lock.release()
            raise
        self.info = {"host": os.uname().nodename, "pid": os.getpid(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                     "slurm_job_id": os.environ.get("SLURM_JOB_ID"), "beat": 0}
        self.beat(force=True)

    def beat(self, force: bool = False) -> None:
        """Rewrite the lease file every HEARTBEAT_S: a driver that finds it changing knows this one lives."""
        now = time.monotonic()
        if force or now - self.last_beat >= HEARTBEAT_S:
            self.info["beat"] += 1
            _write_atomically(self.info_path, json.dumps(self.info) + "\n")
            self.last_beat = now

    def release(self) -> None:
        try:
            _write_atomically(self.info_path, json.dumps({**self.info, "released": True}) + "\n")
        except OSError:  # a full disk: the lock below is what frees the experiment
            pass
        self.lock.release()

    def _check_lock_excludes(self) -> None:
        """A second open of the lock file must not get the lock this process holds (it does on some FUSE mounts)."""
        fd = os.open(self.directory / LEASE_LOCK, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return  # excluded, as it should be
        finally:
            os.close(fd)
        raise HpoError(f"file locks on the filesystem of '{self.directory}' do not exclude: a second lock on "
                       f"the same file was granted; {LOCK_ADVICE}")

    def _holder(self) -> dict[str, Any] | None:
        try:
            info = json.loads(self.info_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return info if isinstance(info, dict) and not info.get("released") else None


def _describe(holder: dict[str, Any] | None) -> str:
    if not holder or "host" not in holder:
        return "another driver"
    return f"the driver on host {holder['host']}, pid {holder.get('pid')}, since {holder.get('since')}"


def _still_running(holder: dict[str, Any], info_path: Path) -> bool:
    """Whether the driver a lease file names lives: a dead pid on this host, or an ended Slurm job, says no
    at once; otherwise its heartbeat must change within a few beats."""
    if holder.get("host") == os.uname().nodename:
        if holder.get("pid") == os.getpid() or not _pid_alive(holder.get("pid")):
            return False
    elif holder.get("slurm_job_id") and not _slurm_job_running(str(holder["slurm_job_id"])):
        return False
    deadline = time.monotonic() + HEARTBEAT_S * 2.5
    while time.monotonic() < deadline:
        time.sleep(HEARTBEAT_S / 4)
        try:
            now = json.loads(info_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if now != holder:
            return not now.get("released")
    return False


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _slurm_job_running(job_id: str) -> bool:
    """True unless squeue says the job is gone (no squeue here: assume it runs, the heartbeat decides)."""
    try:
        done = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return True
    return done.returncode == 0 and done.stdout.strip() in ("RUNNING", "COMPLETING", "SUSPENDED")


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


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
