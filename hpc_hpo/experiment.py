"""The experiment directory on disk: creating it, reopening it (with what may change on resume), and
finding it from a CLI argument."""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

import yaml
from filelock import FileLock, Timeout

from .config import EXPERIMENT_FILE, ExperimentConfig, config_as_yaml, load_config, validate_config
from .membership import MEMBERS_DIR
from .errors import HpoError
from .journal import Journal, iter_events, make_event
from .space import Space
from .state import ExperimentState

CONFIG_FILE = EXPERIMENT_FILE
JOURNAL_FILE = "journal.jsonl"
LEASE_FILE = "driver.json"  # who runs the experiment now: host, pid, since
LEASE_LOCK = "driver.lock"  # held for the driver's whole life; the OS frees it when the driver dies
HEARTBEAT_S = 1.0  # how often a running driver's heartbeat thread rewrites its lease file
TAKEOVER_S = 5.0  # how long a lease file must stay unchanged before another driver takes the experiment over
# A driver whose own beats were further apart than this (it was stopped, stalled, or could not write) may have
# been taken over, and stops. Less than TAKEOVER_S: it must know before another driver can have decided.
LOST_AFTER_S = 3.5
# The id of an experiment created before ids were frozen in experiment.yaml, derived once (experiment_id).
ID_FILE = "experiment.id"
ID_LINE = re.compile(r"# experiment_id: ([0-9a-f]{8,64})\b")
LOCK_ADVICE = ("see 'Locks on shared filesystems' in the README (NFS needs lockd, i.e. no 'nolock' mount option; "
               "Lustre needs the 'flock' mount option, not 'localflock')")
# Top-level keys that say how the experiment runs, not what it is (DESIGN.md, Lifecycle): a resume applies
# their changes and journals them. A moved script or a new interpreter path runs the same experiment, so
# `command` is one of them.
MUTABLE_KEYS = ("budget", "execution", "metric_regex", "experiment_dir", "command", "hooks")
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
    if has_experiment(directory):
        journal = Journal(directory)
        changes, history = _resume_changes(config)
        if changes:
            journal.append([make_event("config_changed", changes=changes)])
            log.warning("resuming with a changed config (journaled): %s",
                        ", ".join(f"{c['key']} {_shown(c, 'old')} -> {_shown(c, 'new')}" for c in changes))
        return Opened(journal, True, _reopened(history + [{"type": "config_changed", "changes": changes}]))
    check_experiment_dir(directory)
    make_experiment_dir(directory)  # owner-only if it creates it; a directory the user made keeps its mode
    (directory / "trials").mkdir(exist_ok=True, mode=0o700)
    frozen.write_text(identity_line() + config_as_yaml(config), encoding="utf-8")
    os.chmod(frozen, 0o600)
    if (directory / JOURNAL_FILE).is_file():  # a creation killed before its first line: the file holds no event
        os.truncate(directory / JOURNAL_FILE, 0)
    journal = Journal(directory)
    journal.append([make_event("experiment_created", name=config.name, metric=config.metric.name,
                               mode=config.metric.mode, resource=config.resource.name,
                               params=config.space.names,
                               combined=[c.name for c in config.metric.components],
                               **_objective_fields(config))])
    return Opened(journal, False, False)


def _objective_fields(config: ExperimentConfig) -> dict[str, list[str]]:
    """With several objectives, their names and modes, so that `best`, `export` and `plot` read the Pareto
    front from the journal alone; nothing for one metric (its journal stays as it was)."""
    objectives = config.metric.objectives
    if not objectives:
        return {}
    return {"objectives": [o.name for o in objectives], "modes": [o.mode for o in objectives]}


def check_experiment_dir(directory: Path) -> None:
    """Refuse, before anything is written into it, a directory that holds something other than an experiment,
    or that belongs to someone else.

    An existing empty directory of the user's is used as it is: its mode (a group's project directory, a
    1777 scratch directory) is the user's choice, and what hpc_hpo creates inside is owner-only anyway."""
    if has_experiment(directory) or not directory.exists():
        return
    journal = directory / JOURNAL_FILE
    if os.path.lexists(journal) and directory.is_dir() and not _creation_may_start(directory):
        raise HpoError(f"'{directory}' has a {JOURNAL_FILE} that holds no experiment (it is empty, or its first "
                       "event, experiment_created, is missing or damaged) beside other files such as trial "
                       f"directories: the experiment's history is lost, and a run would start a new experiment over "
                       f"the old trials. Restore {JOURNAL_FILE} from a backup, or move '{directory}' away (or set "
                       "experiment_dir to a new directory) to start afresh")
    if not directory.is_dir() or not _creation_may_start(directory):
        raise HpoError(f"'{directory}' exists and is not an hpc_hpo experiment; "
                       "choose another experiment_dir or empty it")
    owner = directory.stat().st_uid
    if owner != os.geteuid():
        raise HpoError(f"'{directory}' exists and belongs to another user (uid {owner}); hpc_hpo creates an "
                       "experiment only in a directory of yours: choose another experiment_dir, or a new path "
                       "that hpc_hpo creates")


def has_experiment(directory: Path) -> bool:
    """Whether the directory's journal holds an experiment: its first event is a sound experiment_created.
    Only the first event is read. An empty journal (a creation killed before its first line, or a journal
    emptied by accident) holds none."""
    first = _first_event(directory / JOURNAL_FILE)
    return isinstance(first, dict) and first.get("type") == "experiment_created" and ExperimentState().apply(first)


def _first_event(journal: Path) -> dict[str, Any] | None:
    """The journal's first complete, well-formed event; None if it has none or is no regular file."""
    if not journal.is_file():
        return None
    try:
        events = iter_events(journal)
    except (OSError, HpoError):
        return None
    try:
        return next(events, None)
    finally:
        events.close()


def make_experiment_dir(directory: Path) -> None:
    """Owner-only: trial configs and outputs are nobody else's business on a shared cluster."""
    try:
        directory.mkdir(parents=True, mode=0o700)
    except FileExistsError:
        return
    os.chmod(directory, 0o700)  # mkdir's mode passes through the umask


def _creation_may_start(directory: Path) -> bool:
    """Empty, or holding only what a creation killed before its first journal line leaves (and the lease)."""
    leftovers = {CONFIG_FILE, "trials", "journal.lock", LEASE_LOCK, LEASE_FILE, LEASE_FILE + ".tmp", MEMBERS_DIR}
    if _first_event(directory / JOURNAL_FILE) is None:
        leftovers.add(JOURNAL_FILE)  # created, but killed (or a full disk) before its first line was written
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
    if not has_experiment(directory):  # a new experiment, or one check_experiment_dir refuses
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


class LeaseLost(HpoError):
    """This driver no longer holds its experiment's lease: another driver took over, or may have. It stops at
    once and writes nothing more (no journal line, no cancel of runs that are the other driver's now)."""


class DriverLease:
    """One driver per experiment: an exclusive lock held while the driver lives, plus who holds it.

    A driver that dies (even by kill -9) loses the lock with its process, so the next run takes
    over without anyone deleting files; a live driver makes a second one refuse, naming it.
    A lock is only as good as the filesystem's: where locks do not reach between the machines (or
    mounts) sharing the directory, the lease file's heartbeat still shows a live driver, and the
    second one refuses to start rather than run the experiment twice. The heartbeat is a thread of
    its own from acquisition on, so a long replay or sweep does not silence it. A driver whose
    heartbeat was silent anyway (the process stopped or stalled, its lease file not writable) for
    long enough that another driver may have taken over, or whose lease file names another holder,
    has lost the lease: `check`, called before each journal append, says so, and the driver stops
    without writing anything more.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.lock = FileLock(str(directory / LEASE_LOCK), timeout=0)
        self.info_path = directory / LEASE_FILE
        self.info: dict[str, Any] = {}
        self.last_beat = 0.0  # monotonic time of the last beat written
        self.lost: str | None = None  # why this driver no longer holds the lease
        self._guard = threading.Lock()  # the heartbeat thread and the driver's checks take turns
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._write_error: str | None = None  # why the last beat could not be written
        self._id: str | None = None

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
            self.info = {"host": os.uname().nodename, "pid": os.getpid(),
                         "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
                         "token": uuid.uuid4().hex, "beat": 1}
            known = _frozen_id(self.directory)
            if known is not None:
                self.info["experiment_id"] = known
            _write_atomically(self.info_path, json.dumps(self.info) + "\n")
        except (HpoError, OSError):
            self.lock.release()
            raise
        self.last_beat = time.monotonic()
        self._thread = threading.Thread(target=self._heartbeat, name="hpc-hpo lease heartbeat", daemon=True)
        self._thread.start()

    @property
    def experiment_id(self) -> str:
        """The experiment's own id (see experiment_id), read once per driver run."""
        if self._id is None:
            self._id = experiment_id(self.directory)
        return self._id

    def check(self, on_lost: Callable[[], None] | None = None) -> None:
        """Raise LeaseLost unless this driver still holds the lease; on_lost is called first (the driver
        leaves the runs alone: they are the next driver's)."""
        with self._guard:
            if self.lost is None:
                self._judge(self._read())
        if self.lost is not None:
            if on_lost is not None:
                on_lost()
            raise LeaseLost(self.lost)

    def release(self) -> None:
        """Stop beating and free the experiment; a lost lease is not written (it is another driver's now)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._guard:
            if self.lost is None and self.info:
                try:
                    _write_atomically(self.info_path, json.dumps({**self.info, "released": True}) + "\n")
                except OSError:  # a full disk: the lock below is what frees the experiment
                    pass
        self.lock.release()

    def _heartbeat(self) -> None:
        """Every HEARTBEAT_S: rewrite the lease file (a driver that finds it changing knows this one lives),
        unless the lease is lost; then beat no more."""
        while not self._stop.wait(HEARTBEAT_S):
            with self._guard:
                if self._stop.is_set() or self.lost is not None:
                    return
                self._judge(self._read())
                if self.lost is not None:
                    return
                self._beat()

    def _beat(self) -> None:
        self.info["beat"] += 1
        try:
            _write_atomically(self.info_path, json.dumps(self.info) + "\n")
        except OSError as exc:  # not visible to anyone: as if this beat never came
            self._write_error = exc.strerror or str(exc)
            return
        now = time.monotonic()
        if now - self.last_beat > LOST_AFTER_S:
            # Written too late (the write stalled, or the process stopped in it): it may have replaced
            # the lease of a driver that took over meanwhile, which then stops too. Two stopped drivers
            # are a rerun; two running ones would be a damaged experiment.
            self._lose(None, now - self.last_beat)
            return
        self.last_beat, self._write_error = now, None

    def _judge(self, holder: dict[str, Any] | None) -> None:
        """Lost when the lease file names another driver, or when this one was silent for so long that
        another driver may have decided to take over (it waits TAKEOVER_S; we give up after LOST_AFTER_S)."""
        silent = time.monotonic() - self.last_beat
        other = holder if holder is not None and holder.get("token") != self.info.get("token") else None
        if other is not None or silent > LOST_AFTER_S:
            self._lose(other, silent)

    def _lose(self, other: dict[str, Any] | None, silent: float) -> None:
        why = (f"its lease heartbeat was silent for {silent:.0f} s ("
               + (f"its lease file could not be written: {self._write_error}" if self._write_error
                  else "the driver was stopped or stalled") + ")")
        leaving = ("it stopped without writing anything more (no journal line, no cancel) and leaves the running "
                   "trials to")
        if other is not None:
            self.lost = (f"this driver lost the lease of experiment '{self.directory}' to {_describe(other)}, which "
                         f"took it over{' after ' + why if silent > LOST_AFTER_S else ''}; {leaving} that driver")
        else:
            self.lost = (f"this driver may have lost the lease of experiment '{self.directory}': {why}, and "
                         f"another driver may take an experiment over after {TAKEOVER_S:g} s; {leaving} whichever "
                         "driver runs it now. If none does, run the same command again to resume")

    def _read(self) -> dict[str, Any] | None:
        """The lease file as it is (released or not); None if it cannot be read now."""
        try:
            info = json.loads(self.info_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return info if isinstance(info, dict) else None

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
        info = self._read()
        return info if info is not None and not info.get("released") else None


def _describe(holder: dict[str, Any] | None) -> str:
    if not holder or "host" not in holder:
        return "another driver"
    return f"the driver on host {holder['host']}, pid {holder.get('pid')}, since {holder.get('since')}"


def _still_running(holder: dict[str, Any], info_path: Path) -> bool:
    """Whether the driver a lease file names lives: a dead pid on this host, or an ended Slurm job, says no
    at once; otherwise its heartbeat must change within TAKEOVER_S (a few beats)."""
    if holder.get("host") == os.uname().nodename:
        if holder.get("pid") == os.getpid() or not _pid_alive(holder.get("pid")):
            return False
    elif holder.get("slurm_job_id") and not _slurm_job_running(str(holder["slurm_job_id"])):
        return False
    deadline = time.monotonic() + TAKEOVER_S
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


def identity_line() -> str:
    """The first line of a new experiment's experiment.yaml: an id of its own, drawn at creation. A comment,
    so that the file still reads as the config it froze (a run may be given it; a resume compares with it)."""
    return f"# experiment_id: {uuid.uuid4().hex}  (names the experiment's runs and jobs, whatever path reaches it)\n"


def experiment_id(directory: Path) -> str:
    """The experiment's own id, the same through every path or mount point that reaches it (DESIGN.md,
    Lifecycle): run tags and job names made from it find the runs again from anywhere.

    Frozen in experiment.yaml at creation. An experiment created before that has none: its id is derived
    once, from the directory's resolved path, which is what that version's run tags hashed (so the runs
    it left are still re-adopted when the first new driver reaches it the same way), and kept in
    experiment.id from then on, whatever path reaches the experiment later.
    """
    frozen = _frozen_id(directory)
    if frozen is not None:
        return frozen
    if not (directory / CONFIG_FILE).is_file():
        raise HpoError(f"'{directory}' holds no experiment ({CONFIG_FILE} is missing); give the directory a run "
                       "created")
    derived = hashlib.sha1(str(directory.resolve()).encode()).hexdigest()
    temporary = directory / f"{ID_FILE}.{os.getpid()}.tmp"
    try:
        temporary.write_text(derived + "\n", encoding="utf-8")
        os.link(temporary, directory / ID_FILE)  # whole or not at all, and only the first one to get there
    except FileExistsError:
        pass
    except OSError:  # a read-only directory: derived again next time
        return derived
    finally:
        try:
            temporary.unlink(missing_ok=True)
        except OSError:
            pass
    return _frozen_id(directory) or derived


def _frozen_id(directory: Path) -> str | None:
    """The id experiment.yaml's first line holds, else the one derived for an older experiment; None: none yet."""
    try:
        with open(directory / CONFIG_FILE, encoding="utf-8") as handle:
            match = ID_LINE.match(handle.readline())
    except (OSError, UnicodeDecodeError):
        match = None
    if match:
        return match.group(1)
    try:
        text = (directory / ID_FILE).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if re.fullmatch(r"[0-9a-f]{8,64}", text) else None


def write_trial_config(trial_dir: Path, config: dict[str, Any]) -> None:
    trial_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    (trial_dir / "checkpoint").mkdir(exist_ok=True, mode=0o700)
    # Rewritten for a retried trial: never through a symlink left in its directory.
    path = trial_dir / "config.json"
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(config, indent=2) + "\n")


def find_experiment(argument: str) -> Path:
    """An experiment directory from the CLI: the directory itself, or the YAML file that defines it."""
    path = Path(argument)
    if path.is_file() and path.suffix in (".yaml", ".yml"):
        path = load_config(path).experiment_dir
        if not (path / JOURNAL_FILE).is_file():
            raise HpoError(f"the experiment of '{argument}' ({path}) has not been created yet; start it with "
                           f"'hpc-hpo run {argument}'")
    if not (path / JOURNAL_FILE).is_file():
        raise HpoError(f"'{argument}' is not an experiment directory (no {JOURNAL_FILE} in it); "
                       "give the directory a run created, or its config file")
    if not has_experiment(path):
        raise HpoError(f"'{argument}' has a {JOURNAL_FILE} that holds no experiment (it is empty, or its first "
                       f"event, experiment_created, is missing or damaged); restore it from a backup")
    return path
