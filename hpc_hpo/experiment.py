"""The experiment directory on disk: creating it, reopening it (with what may change on resume), and
finding it from a CLI argument."""
from __future__ import annotations

import fcntl
import json
import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import yaml
from filelock import FileLock, Timeout

from .config import EXPERIMENT_FILE, ExperimentConfig, config_as_yaml, load_config, validate_config
from .errors import HpoError
from .journal import Journal, make_event
from .space import Space

CONFIG_FILE = EXPERIMENT_FILE
JOURNAL_FILE = "journal.jsonl"
LEASE_FILE = "driver.json"  # who runs the experiment now: host, pid, since
LEASE_LOCK = "driver.lock"  # held for the driver's whole life; the OS frees it when the driver dies
HEARTBEAT_S = 2.0  # how often a running driver rewrites its lease file
LOCK_ADVICE = ("see 'Locks on shared filesystems' in the README (NFS needs lockd, i.e. no 'nolock' mount option; "
               "Lustre needs the 'flock' mount option, not 'localflock')")
# Top-level keys that say how the experiment runs, not what it is (DESIGN.md, Lifecycle): a resume applies
# their changes and journals them. A moved script or a new interpreter path runs the same experiment, so
# `command` is one of them.
MUTABLE_KEYS = ("budget", "execution", "metric_regex", "experiment_dir", "command")
# What the experiment is, each key with the validated part it becomes: a change would mix two experiments
# in one journal. Any other top-level key is refused too.
IDENTITY_KEYS = {"name": "name", "params": "space", "metric": "metric", "resource": "resource",
                 "scheduler": "scheduler", "searcher": "searcher"}
# Changes that may give an ended experiment more to do: its budgets, and the failure budget.
REOPENING_KEYS = (("budget",), ("execution", "max_failures"))
SHOWN_CHARS = 40  # of a value in a refusal message
KeyPath = tuple[str, ...]
Leaves = dict[KeyPath, Any]  # a config as its leaf values by key path; lists are leaves
log = logging.getLogger(__name__)


class Opened(NamedTuple):
    journal: Journal
    resumed: bool
    # A config change journaled by this opening may give an ended experiment more to run (a raised budget).
    reopened: bool


def open_experiment(config: ExperimentConfig) -> Opened:
    """Create the experiment directory, or reopen it to resume, journaling what the config changed.

    The directory is owner-only: trial configs and outputs are nobody else's business on a shared cluster.
    """
    directory = config.experiment_dir
    frozen = directory / CONFIG_FILE
    if (directory / JOURNAL_FILE).exists():
        journal = Journal(directory)
        changes, history = _resume_changes(config)
        if changes:
            journal.append([make_event("config_changed", changes=changes)])
            log.warning("resuming with a changed config (journaled): %s",
                        ", ".join(f"{c['key']} {_shown(c, 'old')} -> {_shown(c, 'new')}" for c in changes))
        return Opened(journal, True, _reopened(history + [{"type": "config_changed", "changes": changes}]))
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
    return Opened(journal, False, False)


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


def check_resume(config: ExperimentConfig) -> list[dict[str, Any]]:
    """The changes a run of `config` makes to the experiment already in its directory ([] for a new one).

    Compared with the experiment's latest effective config (experiment.yaml as created, plus every
    journaled config_changed), so a changed config run twice is one change. Changes to how the
    experiment runs are returned for the journal; a change to what it is raises HpoError, and
    since this only reads, a refused run writes nothing. Each change is {"key": dotted key,
    "path": its parts, "old", "new"}, with "added"/"removed": true when the key was/is not set.
    """
    return _resume_changes(config)[0]


def _resume_changes(config: ExperimentConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """check_resume's changes, and the journal's config_changed and experiment_ended events they follow."""
    directory = config.experiment_dir
    if not (directory / JOURNAL_FILE).exists():
        return [], []
    history = list(_journal_events(directory / JOURNAL_FILE, ("config_changed", "experiment_ended")))
    before = effective_config(directory, history)
    now = _leaves(yaml.safe_load(config_as_yaml(config)))
    changes = [_change(path, before, now) for path in {**before, **now}
               if before.get(path, _ABSENT) != now.get(path, _ABSENT)]
    refused = _refused(changes, before, config)
    if refused:
        raise HpoError(f"'{directory}' holds experiment '{before.get(('name',), config.name)}' with a different "
                       f"config: {'; '.join(refused)}: these define what the experiment is (its params, metric, "
                       "resource, scheduler, searcher) and cannot change on resume, while budget, execution, "
                       f"command and metric_regex may; resume it with its own config ({CONFIG_FILE} there, plus "
                       "the config_changed events of its journal), or start a new experiment: set "
                       "experiment_dir to a new directory, or pass --experiment-dir NEW_DIR")
    return changes, history


def effective_config(directory: Path, history: list[dict[str, Any]] | None = None) -> Leaves:
    """experiment.yaml as created, with every journaled config_changed applied: what the last run ran."""
    try:
        original = yaml.safe_load((directory / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        original = exc
    if not isinstance(original, dict):
        raise HpoError(f"'{directory}' holds an experiment whose {CONFIG_FILE} cannot be read ({original!r}); "
                       f"restore it from a backup, or set experiment_dir to a new directory")
    if history is None:
        history = list(_journal_events(directory / JOURNAL_FILE, ("config_changed",)))
    leaves = _leaves(original)
    for change in _changes_of(history):
        path = tuple(str(part) for part in change["path"])
        if change.get("removed"):
            leaves.pop(path, None)
        else:
            leaves[path] = change.get("new")
    return leaves


def _journal_events(journal: Path, types: tuple[str, ...]) -> Iterator[dict[str, Any]]:
    """The journal's events of these (rare) types, oldest first. Only lines naming one are decoded: a
    resume need not parse a journal of a million reports for a few lines."""
    needles = [f'"{kind}"'.encode() for kind in types]
    with open(journal, "rb") as handle:
        for line in handle:
            if not line.endswith(b"\n") or not any(needle in line for needle in needles):
                continue  # an unfinished last line is not an event yet
            try:
                event = json.loads(line.replace(b"\0", b""))
            except ValueError:
                continue  # a damaged line: skipped, as every journal reader does
            if isinstance(event, dict) and event.get("type") in types:
                yield event


def _changes_of(events: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for event in events:
        if event.get("type") == "config_changed" and isinstance(event.get("changes"), list):
            yield from (c for c in event["changes"] if isinstance(c, dict) and isinstance(c.get("path"), list))


def _reopened(history: list[dict[str, Any]]) -> bool:
    """Whether a budget changed since the experiment last ended: then it is not over. Read from the
    journal, not from this run alone, so a driver killed between journaling the change and going on
    still goes on next time."""
    ends = [i for i, event in enumerate(history) if event.get("type") == "experiment_ended"]
    since = history[ends[-1] + 1:] if ends else history
    return any(_reopens(tuple(str(part) for part in c["path"])) for c in _changes_of(since))


_ABSENT: Any = object()  # a key not set in one of two configs


def _leaves(data: Any, prefix: KeyPath = ()) -> Leaves:
    """A config's values by key path, so that a change is named by its key (params.lr.high), not its section."""
    if not isinstance(data, dict) or not data or (prefix and not all(isinstance(k, str) for k in data)):
        return {prefix: data}
    leaves: Leaves = {}
    for key, value in data.items():
        leaves.update(_leaves(value, prefix + (key,)))
    return leaves


def _nested(leaves: Leaves) -> dict[str, Any] | None:
    """The mapping `_leaves` came from (None if the paths do not fit together, e.g. a damaged journal)."""
    root: dict[str, Any] = {}
    for path, value in leaves.items():
        node = root
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                return None
        if path[-1] in node:
            return None
        node[path[-1]] = value
    return root


def _change(path: KeyPath, before: Leaves, now: Leaves) -> dict[str, Any]:
    """One journaled change; values as JSON keeps them (what YAML read is plain data already)."""
    change = {"key": ".".join(path), "path": list(path), "old": before.get(path), "new": now.get(path)}
    if path not in now:
        change["removed"] = True
    elif path not in before:
        change["added"] = True
    return json.loads(json.dumps(change, default=str))


def _refused(changes: list[dict[str, Any]], before: Leaves, config: ExperimentConfig) -> list[str]:
    """The changes to what the experiment is, described. A rewrite that validates to the same thing (a
    default written out, a shorthand spelled in full) is no change of the experiment and passes."""
    old = _validated(before, config)
    refused = []
    for section, part in IDENTITY_KEYS.items():
        if old is not None and getattr(old, part) == getattr(config, part):
            continue
        if old is not None and section == "params" and _reordered(old.space, config.space):
            refused.append("params (the same parameters in another order, which changes what the searcher draws)")
            continue
        refused += [f"{c['key']} ({_shown(c, 'old')} -> {_shown(c, 'new')})" for c in changes
                    if c["path"][0] == section]
    refused += [f"{c['key']} (unknown key)" for c in changes
                if c["path"][0] not in IDENTITY_KEYS and c["path"][0] not in MUTABLE_KEYS]
    return refused


def _reordered(old: Space, new: Space) -> bool:
    """The same parameters in another order: sampling walks them in config order, so the draws differ."""
    return sorted(old.params, key=lambda p: p.name) == sorted(new.params, key=lambda p: p.name)


def _validated(leaves: Leaves, config: ExperimentConfig) -> ExperimentConfig | None:
    """The experiment's effective config, validated as the new one is (None if this version refuses it:
    then every written change to what the experiment is counts)."""
    data = _nested(leaves)
    if data is None:
        return None
    try:
        return validate_config(data, experiment_dir=str(config.experiment_dir), check_program=False)
    except HpoError:
        return None


def _reopens(path: KeyPath) -> bool:
    return any(path[:len(prefix)] == prefix for prefix in REOPENING_KEYS)


def _shown(change: dict[str, Any], side: str) -> str:
    """A value for a one-line message: '(unset)' when the key was not set, long values cut."""
    if change.get("added" if side == "old" else "removed"):
        return "(unset)"
    text = repr(change[side])
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS - 3] + "..."


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
