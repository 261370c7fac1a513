"""Load an experiment YAML file and validate it into typed, frozen objects before anything runs.

Every rule lives here. A broken rule raises ConfigError naming the key path, the bad value,
what is allowed and how to fix it; nothing is created on disk before validation succeeds.
"""
from __future__ import annotations

import difflib
import math
import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from .errors import MISSING, ConfigError, HpoError
from .schedulers.base import rung_levels
from .space import (CONDITION_OPS, Choice, Condition, Domain, Fixed, LogRandInt, LogUniform, Param, RandInt,
                    Scalar, Space, Uniform, find_cycle)

# asha: stopping ASHA; promotion: ASHA that pauses trials at rungs and resumes the best (Li et al.
# 2018); pasha: promotion ASHA whose maximum resource grows while the top ranking still changes;
# sync_hyperband: synchronous Hyperband's exact bracket plan (Li et al. 2017).
# pbt: population-based training, trials pausing every perturbation_interval.
SCHEDULER_TYPES = ("fifo", "asha", "promotion", "pasha", "sync_hyperband", "pbt")
# Types whose implementation has landed; the others are refused with a clear message until then.
AVAILABLE_SCHEDULERS = ("fifo", "asha", "promotion", "pasha", "sync_hyperband", "pbt")
AVAILABLE_SEARCHERS = ("random", "bayesopt", "grid", "kde", "genetic")
PAUSING_SCHEDULERS = ("promotion", "pasha", "sync_hyperband", "pbt")
SEARCHER_TYPES = ("random", "grid", "bayesopt", "kde", "genetic")
SEARCHER_DATA = ("rungs", "all", "rungs_and_last")
# Options of each searcher type: name -> (default, kind). Kinds: 'int' (>= 1), 'int0' (>= 0),
# 'fraction' (0 < x <= 1), 'rate' (0 <= x <= 1), 'positive' (> 0). A default of None means
# "derived from the space" (the searcher decides). Names follow Syne Tune and CrayAI.
SEARCHER_OPTIONS: dict[str, dict[str, tuple[Any, str]]] = {
    "random": {},
    "grid": {"grid_size": (5, "int")},
    "bayesopt": {"num_init_random": (None, "int"), "opt_nstarts": (2, "int"), "opt_maxiter": (50, "int"),
                 "opt_skip_init_length": (150, "int0"), "opt_skip_period": (1, "int"),
                 "num_candidates": (2000, "int")},
    "kde": {"num_init_random": (None, "int"), "min_points_in_model": (None, "int"),
            "top_fraction": (0.15, "fraction"), "bandwidth_factor": (3.0, "positive"),
            "num_candidates": (64, "int"), "random_fraction": (1 / 3, "rate")},
    "genetic": {"population_size": (10, "int"), "num_demes": (1, "int"), "generations": (None, "int"),
                "mutation_rate": (0.1, "rate"), "crossover_rate": (0.5, "rate"),
                "migration_interval": (5, "int"), "mutation_std": (0.2, "positive")},
}
BACKENDS = ("local", "slurm", "pbs", "auto")
SLURM_MODES = ("auto", "steps", "sbatch")
# The driver's environment variables a Slurm trial gets by default (besides HPC_HPO_* and what the
# template sets): enough to find the same Python and libraries, nothing the driver happens to hold.
DEFAULT_SLURM_EXPORT = ("PATH", "PYTHONPATH", "VIRTUAL_ENV", "CONDA_PREFIX", "LD_LIBRARY_PATH", "HOME", "USER",
                        "LOGNAME", "LANG", "LC_ALL", "TMPDIR", "SLURM_CONF")
SLURM_TIME_PATTERN = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$|^\d+-\d+$")
# Partition and account names, job ids: what Slurm itself accepts, nothing a shell would read.
SLURM_WORD_PATTERN = re.compile(r"^[A-Za-z0-9_.+-]{1,128}$")
ENV_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# PBS Professional / OpenPBS (execution.pbs). Modes: one qsub job per trial, or trials inside the
# allocation the driver runs in (PBS_JOBID and PBS_NODEFILE set).
PBS_MODES = ("auto", "qsub", "allocation")
PBS_LAUNCHERS = ("mpiexec", "mpirun", "pbsdsh")
PBS_LAUNCHER_PLACEHOLDERS = ("hosts", "host", "nodes")
PBS_QSTAT_FORMATS = ("json", "text")
DEFAULT_PBS_EXPORT = ("PATH", "PYTHONPATH", "VIRTUAL_ENV", "CONDA_PREFIX", "LD_LIBRARY_PATH", "HOME", "USER",
                      "LOGNAME", "LANG", "LC_ALL", "TMPDIR")
# Queue names (queue, queue@server, @server), account strings: nothing a shell or qsub would split.
PBS_DESTINATION_PATTERN = re.compile(r"^[A-Za-z0-9_.+-]{0,128}(@[A-Za-z0-9_.-]{1,128})?$")
PBS_WORD_PATTERN = re.compile(r"^[A-Za-z0-9_.+-]{1,128}$")
PBS_WALLTIME_PATTERN = re.compile(r"^\d+(:\d{1,2}){0,2}$")
# Chunk resources for -l select: name=value pairs joined by ':' (ncpus=8:ngpus=1:mem=16gb).
PBS_CHUNK_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=[A-Za-z0-9_.+-]+(:[A-Za-z_][A-Za-z0-9_]*=[A-Za-z0-9_.+-]+)*$")
PBS_PLACE_PATTERN = re.compile(r"^(free|pack|scatter|vscatter)?(:?(excl|shared|exclhost|group=[A-Za-z0-9_]+))*$")
# qsub options that take a value (qsub.1B); the others are flags. Interactive ones make no batch job.
QSUB_VALUE_OPTIONS = frozenset("aAcCeJklMNopPqrRSuvW")
QSUB_REFUSED_OPTIONS = ("-I", "-G", "-X", "--")
PARAM_TYPES = ("uniform", "loguniform", "randint", "lograndint", "choice", "pchoice", "fixed")
# Column names of the CSV export that a parameter name may not take.
RESERVED_NAMES = ("trial_id", "resource", "elapsed_s", "decision")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
PARAM_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,99}$")
DEFAULT_RESUME_FLAGS = {"resume_from": "--resume_from", "checkpoint_dir": "--checkpoint_dir"}
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# The validated config as frozen in the experiment directory at creation (the original, never rewritten).
EXPERIMENT_FILE = "experiment.yaml"
DEFAULT_MAX_FAILURES = 20
DEFAULT_MAX_REQUEUES = 3


@dataclass(frozen=True)
class MetricComponent:
    name: str
    mode: str
    weight: float


@dataclass(frozen=True)
class MetricSpec:
    """The objective: one reported metric, or a weighted sum of several (CrayAI's metric weights).

    With components, `name` is the combined value's name and `mode` its direction; a component
    whose mode differs from it enters with a negative sign, so every weight says "how much".
    """

    name: str
    mode: str  # "min" or "max"
    components: tuple[MetricComponent, ...] = ()

    @property
    def reported(self) -> tuple[str, ...]:
        """The names a report line must carry."""
        return tuple(c.name for c in self.components) or (self.name,)

    def combine(self, values: dict[str, float]) -> float:
        if not self.components:
            return values[self.name]
        return sum(c.weight * (1 if c.mode == self.mode else -1) * values[c.name] for c in self.components)


@dataclass(frozen=True)
class ResourceSpec:
    name: str
    max: float
    # A parameter that tells the program how far to run: each run gets its target resource there.
    max_resource_attr: str | None = None


@dataclass(frozen=True)
class SchedulerSpec:
    type: str
    grace_period: float
    reduction_factor: float
    rung_levels: tuple[float, ...] | None
    brackets: int = 1  # > 1: asynchronous Hyperband (asha, promotion)
    rung_system_per_bracket: bool = True
    ranking_epsilon: float = 0.0  # pasha: values closer than this rank as equal
    # pbt (Ray Tune's names)
    perturbation_interval: float = 1.0
    population_size: int = 8
    quantile_fraction: float = 0.25
    resample_probability: float = 0.25

    @property
    def pauses(self) -> bool:
        """Trials pause at rungs and are resumed from their checkpoints."""
        return self.type in PAUSING_SCHEDULERS


@dataclass(frozen=True)
class SearcherSpec:
    type: str
    seed: int
    points_to_evaluate: tuple[dict[str, Scalar], ...] | None
    searcher_data: str = "rungs"  # which reports model-based searchers learn from
    options: dict[str, Any] = field(default_factory=dict)  # validated SEARCHER_OPTIONS of the type


@dataclass(frozen=True)
class BudgetSpec:
    max_trials: int | None
    max_time: float | None  # seconds
    max_resource: float | None = None  # total resource over all trials, then the experiment stops
    metric_threshold: float | None = None  # stop once a report reaches it (<= for min, >= for max)


@dataclass(frozen=True)
class SlurmSpec:
    """CrayAI's knobs for running trials on Slurm (steps in an allocation, or one sbatch job each)."""

    mode: str = "auto"  # steps inside an allocation when there is one, else sbatch
    nodes_per_eval: int = 1
    launch_args: tuple[str, ...] = ()  # extra srun flags for each trial
    alloc_args: tuple[str, ...] = ()  # extra sbatch flags for each trial job
    alloc_jobid: str | None = None  # run steps in this allocation from outside it
    partition: str | None = None
    account: str | None = None
    time_limit: str | None = None
    template: Path | None = None  # sbatch mode: the trial job template
    nodes_flag: str | None = None  # passes nodes_per_eval to the program, e.g. --nodes
    export: tuple[str, ...] = DEFAULT_SLURM_EXPORT  # or ("ALL",)
    squeue_interval: float = 10.0  # seconds between squeue calls in sbatch mode


@dataclass(frozen=True)
class PbsSpec:
    """Running trials on PBS Professional / OpenPBS: one qsub job each, or inside the driver's allocation."""

    mode: str = "auto"  # allocation when PBS_JOBID and PBS_NODEFILE are set, else qsub
    nodes_per_eval: int = 1
    queue: str | None = None  # qsub -q
    account: str | None = None  # qsub -A
    walltime: str | None = None  # qsub -l walltime=
    select: str | None = None  # chunk resources besides the count: "ncpus=8:ngpus=1"
    place: str = "scatter"  # qsub -l place=: one chunk per host, so nodes_per_eval chunks are that many hosts
    template: Path | None = None  # qsub mode: the trial job template
    # allocation mode (and multi-node qsub jobs): mpiexec, mpirun, pbsdsh, or an argv with {hosts}
    launcher: str | tuple[str, ...] = "mpiexec"
    launch_args: tuple[str, ...] = ()  # extra launcher flags for each trial
    qsub_args: tuple[str, ...] = ()  # extra qsub options for each trial job
    nodes_flag: str | None = None  # passes nodes_per_eval to the program, e.g. --nodes
    export: tuple[str, ...] = DEFAULT_PBS_EXPORT  # or ("ALL",)
    qstat_interval: float = 10.0  # seconds between qstat calls in qsub mode
    qstat_format: str = "json"  # qstat -f -F json (PBS Pro 14+, OpenPBS), or text for older servers
    job_name_max: int = 236  # the server's job name limit (15 on old PBS versions)
    lost_after: float = 300.0  # seconds a job may be unknown to qstat, without an exit marker, before it counts as lost


@dataclass(frozen=True)
class ExecutionSpec:
    backend: str
    num_parallel_evals: int
    poll_interval: float
    stop_grace_period: float
    num_retries: int = 0  # re-attempts of a run that exits non-zero (CrayAI's name)
    # The experiment stops once this many trials have failed for good (each after its retries); None: no limit.
    max_failures: int | None = DEFAULT_MAX_FAILURES
    # Per trial: resubmissions of a run the cluster ended (preempted, node failure, time limit), apart from retries.
    max_requeues: int = DEFAULT_MAX_REQUEUES
    # Flags a resumed run gets, besides HPC_HPO_RESUME_FROM / HPC_HPO_CHECKPOINT_DIR in its environment.
    resume_flags: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_RESUME_FLAGS))
    slurm: SlurmSpec = field(default_factory=SlurmSpec)
    pbs: PbsSpec = field(default_factory=PbsSpec)


@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    command: tuple[str, ...]
    space: Space
    metric: MetricSpec
    resource: ResourceSpec
    scheduler: SchedulerSpec
    searcher: SearcherSpec
    budget: BudgetSpec
    execution: ExecutionSpec
    experiment_dir: Path
    metric_regex: re.Pattern[str] | None
    frozen: dict[str, Any]  # the normalised config, written to experiment.yaml


# --------------------------------------------------------------------------- reading helpers


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
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"did you mean '{close[0]}'? " if close else ""
                raise ConfigError(self.key(str(key)), data[key], "unknown key",
                                  f"{hint}allowed keys here: {', '.join(allowed)}")

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def get(self, name: str, default: Any = MISSING) -> Any:
        value = self.data.get(name, default)
        if value is MISSING:
            raise ConfigError(self.key(name), MISSING, "is required")
        return value

    def number(self, name: str, default: Any = MISSING, *, integer: bool = False,
               positive: bool = False) -> Any:
        value = self.get(name, default)
        if value is None and default is None:
            return None
        return as_number(value, self.key(name), integer=integer, positive=positive)

    def choice(self, name: str, allowed: tuple[str, ...], default: Any = MISSING) -> str:
        value = self.data.get(name, default)
        if value not in allowed:
            raise ConfigError(self.key(name), value, f"must be one of: {', '.join(allowed)}")
        return value

    def text(self, name: str, default: Any = MISSING, pattern: re.Pattern[str] | None = None,
             rule: str = "") -> Any:
        value = self.get(name, default)
        if value is None and default is None:
            return None
        if not isinstance(value, str) or not value:
            raise ConfigError(self.key(name), value, "must be a non-empty string")
        if pattern is not None and not pattern.match(value):
            raise ConfigError(self.key(name), value, rule)
        return value


def as_number(value: Any, key: str, *, integer: bool = False, positive: bool = False) -> Any:
    """A number from YAML. Strings like '1e-4' are accepted because YAML 1.1 reads them as text."""
    kind = "an integer" if integer else "a number"
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ConfigError(key, value, f"must be {kind}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(key, value, f"must be {kind}")
    if not math.isfinite(value):
        raise ConfigError(key, value, f"must be {kind} (finite)")
    if integer:
        if isinstance(value, float) and not value.is_integer():
            raise ConfigError(key, value, "must be a whole number")
        value = int(value)
    if positive and value <= 0:
        raise ConfigError(key, value, f"must be {kind} greater than 0")
    return value


def parse_duration(value: Any, key: str) -> float:
    """Seconds from a number (seconds) or a string like '90s', '30m', '2h', '1d', or 'HH:MM:SS'."""
    if isinstance(value, str):
        text = value.strip()
        if ":" in text:
            parts = text.split(":")
            if len(parts) in (2, 3) and all(p.isdigit() for p in parts):
                seconds = 0.0
                for part in parts:
                    seconds = seconds * 60 + int(part)
                if seconds > 0:
                    return seconds
        elif text and text[-1] in DURATION_UNITS:
            try:
                seconds = float(text[:-1]) * DURATION_UNITS[text[-1]]
            except ValueError:
                seconds = -1.0
            if seconds > 0 and math.isfinite(seconds):
                return seconds
        else:
            try:
                return float(as_number(text, key, positive=True))
            except ConfigError:
                pass
        raise ConfigError(key, value, "is not a duration",
                          "write seconds (3600) or a number with a unit: 90s, 30m, 2h, 1d, or HH:MM:SS")
    return float(as_number(value, key, positive=True))


# --------------------------------------------------------------------------- sections


def load_config(path: str | os.PathLike[str], experiment_dir: str | None = None) -> ExperimentConfig:
    """Read and validate the YAML file at `path`. Raises HpoError; touches nothing on disk."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HpoError(f"config file '{path}' does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise HpoError(f"config file '{path}' cannot be read: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # Covers '!!python/object' tags too: safe_load refuses to build objects.
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise HpoError(f"config file '{path}' is not valid YAML{line}: {problem}. "
                       "Only plain YAML (mappings, lists, strings, numbers) is accepted") from None
    return validate_config(data, experiment_dir=experiment_dir)


TOP_KEYS = ("name", "command", "params", "metric", "resource", "scheduler", "searcher", "budget",
            "execution", "experiment_dir", "metric_regex")


def validate_config(data: Any, experiment_dir: str | None = None,
                    check_program: bool = True) -> ExperimentConfig:
    top = Section(data, "", TOP_KEYS)
    name = top.text("name", pattern=NAME_PATTERN,
                    rule="must be 1-100 characters: letters, digits, '_', '.', '-', starting with a letter or digit")
    command = _command(top.get("command"), check_program)
    metric = _metric(top.get("metric"))
    resource = _resource(top.get("resource"))
    space = _space(top.get("params"), metric)
    if resource.max_resource_attr is not None and resource.max_resource_attr not in space.names:
        raise ConfigError("resource.max_resource_attr", resource.max_resource_attr, "must name a parameter in params",
                          f"use one of: {', '.join(space.names)}")
    scheduler = _scheduler(top.get("scheduler", None), resource)
    where = Path(experiment_dir or top.text("experiment_dir", None) or os.path.join("runs", name)).absolute()
    searcher = _searcher(top.get("searcher", None), space, frozen_seed(where))
    budget = _budget(top.get("budget", None), searcher, scheduler.type)
    if searcher.type == "genetic" and scheduler.pauses:
        # A generation is bred when all its trials have ended; a paused trial never ends.
        raise ConfigError("searcher.type", "genetic", f"cannot breed generations under scheduler type "
                          f"'{scheduler.type}', whose paused trials never end", "use scheduler type fifo or asha")
    execution = _execution(top.get("execution", None))
    regex = _metric_regex(top.get("metric_regex", None), metric, resource)
    frozen = dict(data)
    frozen["searcher"] = dict(frozen.get("searcher") or {}, seed=searcher.seed)
    return ExperimentConfig(name=name, command=command, space=space, metric=metric, resource=resource,
                            scheduler=scheduler, searcher=searcher, budget=budget, execution=execution,
                            experiment_dir=where, metric_regex=regex, frozen=frozen)


def frozen_seed(directory: Path) -> int | None:
    """The seed the experiment in `directory` froze at creation, if there is one.

    A config without searcher.seed takes it, so the next run of the same seedless config (or of
    `status`, `plan`, `tune()`) builds the searcher the experiment began with instead of refusing
    a "changed" searcher; a config that names a seed keeps it, and a different one is refused on resume.
    """
    try:
        frozen = yaml.safe_load((directory / EXPERIMENT_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    searcher = frozen.get("searcher") if isinstance(frozen, dict) else None
    seed = searcher.get("seed") if isinstance(searcher, dict) else None
    return seed if isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0 else None


PYTHON_PLACEHOLDER = "{python}"


def _command(value: Any, check_program: bool) -> tuple[str, ...]:
    if isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            raise ConfigError("command", value, f"cannot be split into arguments ({exc})",
                              "check the quotes, or give the command as a list") from None
    elif isinstance(value, list) and all(isinstance(a, (str, int, float)) and not isinstance(a, bool)
                                         for a in value):
        argv = [str(a) for a in value]
    else:
        raise ConfigError("command", value, "must be a list of arguments or a string",
                          "for example: [python, train.py] or 'python train.py'")
    if not argv or not argv[0]:
        raise ConfigError("command", value, "is empty", "give the program to run, e.g. '{python} train.py'")
    # '{python}' is the interpreter running hpc-hpo: shipped configs work where only 'python3' exists
    # and trials get the packages of the driver's virtual environment.
    argv = [sys.executable if a == PYTHON_PLACEHOLDER else a for a in argv]
    if any("\0" in a for a in argv):
        raise ConfigError("command", value, "contains a NUL byte")
    if check_program:
        program = argv[0]
        found = (os.path.isfile(program) and os.access(program, os.X_OK)) if os.sep in program \
            else shutil.which(program) is not None
        if not found:
            raise ConfigError("command", value, f"program '{program}' was not found or is not executable",
                              "give a program on PATH or a path to an executable file")
    return tuple(argv)


def _metric(value: Any) -> MetricSpec:
    section = Section(value, "metric", ("name", "mode", "combine"))
    name = section.text("name", pattern=PARAM_NAME_PATTERN,
                        rule="must be a name of letters, digits, '_', '.', '-'")
    mode = section.choice("mode", ("min", "max"))
    combine = section.get("combine", None)
    if combine is None:
        return MetricSpec(name=name, mode=mode)
    items = _as_list(combine, "metric.combine")
    if not items:
        raise ConfigError("metric.combine", combine, "must list at least one metric",
                          "e.g. [{name: accuracy, mode: max, weight: 1}, {name: latency_ms, mode: min, weight: 0.01}]")
    components = []
    for i, item in enumerate(items):
        part = Section(item, f"metric.combine[{i}]", ("name", "mode", "weight"))
        component = MetricComponent(
            name=part.text("name", pattern=PARAM_NAME_PATTERN, rule="must be a name of letters, digits, '_', '.', '-'"),
            mode=part.choice("mode", ("min", "max")), weight=float(part.number("weight", 1.0, positive=True)))
        if component.name == name or component.name in [c.name for c in components]:
            raise ConfigError(part.key("name"), component.name,
                              "must differ from metric.name and from the other combined metrics")
        components.append(component)
    return MetricSpec(name=name, mode=mode, components=tuple(components))


def _resource(value: Any) -> ResourceSpec:
    section = Section(value, "resource", ("name", "max", "max_resource_attr"))
    name = section.text("name", "epoch", pattern=PARAM_NAME_PATTERN,
                        rule="must be a name of letters, digits, '_', '.', '-'")
    attr = section.text("max_resource_attr", None, pattern=PARAM_NAME_PATTERN,
                        rule="must name a parameter in params")
    return ResourceSpec(name=name, max=section.number("max", positive=True), max_resource_attr=attr)


def _scheduler(value: Any, resource: ResourceSpec) -> SchedulerSpec:
    pbt_keys = ("perturbation_interval", "population_size", "quantile_fraction", "resample_probability")
    section = Section(value, "scheduler", ("type", "grace_period", "reduction_factor", "rung_levels", "brackets",
                                           "rung_system_per_bracket", "ranking_epsilon") + pbt_keys)
    kind = section.choice("type", SCHEDULER_TYPES, "asha")
    _available(kind, AVAILABLE_SCHEDULERS, "scheduler.type")
    for key in pbt_keys:
        if key in section.data and kind != "pbt":
            raise ConfigError(section.key(key), section.data[key], f"is an option of type pbt, not '{kind}'")
    interval = section.number("perturbation_interval", section.number("grace_period", 1, positive=True),
                              positive=True)
    if kind == "pbt" and interval >= resource.max:
        raise ConfigError("scheduler.perturbation_interval", interval, f"must be below resource.max ({resource.max})")
    population = section.number("population_size", 8, integer=True, positive=True)
    fraction = float(section.number("quantile_fraction", 0.25, positive=True))
    if fraction > 0.5:
        raise ConfigError("scheduler.quantile_fraction", fraction, "must be at most 0.5 (the best and worst shares)")
    resample = float(section.number("resample_probability", 0.25))
    if not 0 <= resample <= 1:
        raise ConfigError("scheduler.resample_probability", resample, "must be in [0, 1]")
    brackets = section.number("brackets", 1, integer=True, positive=True)
    if brackets > 1 and kind not in ("asha", "promotion"):
        raise ConfigError("scheduler.brackets", brackets, f"applies to types asha and promotion, not '{kind}'",
                          "remove it, or use type asha or promotion for asynchronous Hyperband")
    per_bracket = section.get("rung_system_per_bracket", True)
    if not isinstance(per_bracket, bool):
        raise ConfigError("scheduler.rung_system_per_bracket", per_bracket, "must be true or false")
    epsilon = float(section.number("ranking_epsilon", 0.0))
    if epsilon < 0:
        raise ConfigError("scheduler.ranking_epsilon", epsilon, "must be 0 or more")
    grace = section.number("grace_period", 1, positive=True)
    eta = section.number("reduction_factor", 3)
    if eta < 2:
        raise ConfigError("scheduler.reduction_factor", eta, "must be at least 2",
                          "use 2, 3 (the usual choice) or 4")
    rungs = section.get("rung_levels", None)
    if rungs is not None:
        rungs = _rung_levels(rungs, resource)
    elif kind != "fifo" and grace >= resource.max:
        raise ConfigError("scheduler.grace_period", grace,
                          f"must be less than resource.max ({resource.max})",
                          f"set grace_period below {resource.max} or raise resource.max")
    levels = rung_levels(resource.max, grace, eta, rungs)
    if brackets > 1 and brackets > len(levels) - 1:
        raise ConfigError("scheduler.brackets", brackets, f"must be at most {len(levels) - 1}, the number of rungs "
                          f"below resource.max (levels {', '.join(f'{v:g}' for v in levels)})",
                          "lower brackets, or lower grace_period for more rungs")
    if kind == "pasha" and len(levels) < 3:
        raise ConfigError("scheduler.type", kind, f"pasha needs at least 3 rung levels; these are "
                          f"{', '.join(f'{v:g}' for v in levels)}", "lower grace_period or raise resource.max")
    return SchedulerSpec(type=kind, grace_period=grace, reduction_factor=float(eta), rung_levels=rungs,
                         brackets=brackets, rung_system_per_bracket=per_bracket, ranking_epsilon=epsilon,
                         perturbation_interval=interval, population_size=population, quantile_fraction=fraction,
                         resample_probability=resample)


def _available(kind: str, available: tuple[str, ...], key: str) -> None:
    if kind not in available:
        raise ConfigError(key, kind, "is not available in this version of hpc_hpo",
                          f"use one of: {', '.join(available)}")


def _rung_levels(value: Any, resource: ResourceSpec) -> tuple[float, ...]:
    key = "scheduler.rung_levels"
    if not isinstance(value, list) or not value:
        raise ConfigError(key, value, "must be a non-empty list of increasing positive numbers")
    levels = [as_number(v, f"{key}[{i}]", positive=True) for i, v in enumerate(value)]
    for i in range(1, len(levels)):
        if levels[i] <= levels[i - 1]:
            raise ConfigError(key, value, "must be strictly increasing",
                              f"entry {i} ({levels[i]}) is not above entry {i - 1} ({levels[i - 1]})")
    if levels[-1] > resource.max:
        raise ConfigError(key, value, f"last level must be at most resource.max ({resource.max})",
                          "drop the levels above it or raise resource.max")
    return tuple(levels)


def _searcher(value: Any, space: Space, frozen: int | None = None) -> SearcherSpec:
    every_option = tuple(sorted({name for options in SEARCHER_OPTIONS.values() for name in options}))
    section = Section(value, "searcher", ("type", "seed", "points_to_evaluate", "searcher_data") + every_option)
    kind = section.choice("type", SEARCHER_TYPES, "random")
    _available(kind, AVAILABLE_SEARCHERS, "searcher.type")
    options = _searcher_options(section, kind)
    searcher_data = section.choice("searcher_data", SEARCHER_DATA, "rungs")
    seed = section.get("seed", None)
    if seed is None:
        # The experiment's own seed when it exists; else drawn once and frozen in experiment.yaml, so that
        # a resumed run makes the same choices.
        seed = frozen if frozen is not None else int.from_bytes(os.urandom(4), "little")
    seed = as_number(seed, "searcher.seed", integer=True)
    if seed < 0:
        raise ConfigError("searcher.seed", seed, "must be 0 or a positive integer")
    points = section.get("points_to_evaluate", None)
    if points is not None:
        points = tuple(_point(p, i, space) for i, p in enumerate(_as_list(points, "searcher.points_to_evaluate")))
    return SearcherSpec(type=kind, seed=seed, points_to_evaluate=points, searcher_data=searcher_data,
                        options=options)


def _searcher_options(section: Section, kind: str) -> dict[str, Any]:
    own = SEARCHER_OPTIONS[kind]
    for name in section.data:
        if name not in own and name not in ("type", "seed", "points_to_evaluate", "searcher_data"):
            owners = [t for t, options in SEARCHER_OPTIONS.items() if name in options]
            raise ConfigError(section.key(name), section.data[name],
                              f"is an option of searcher type {' / '.join(owners)}, not of '{kind}'",
                              f"options of '{kind}': {', '.join(own) or 'none'}")
    options = {}
    for name, (default, check) in own.items():
        raw = section.data.get(name, default)
        if raw is None:
            options[name] = None
            continue
        key = section.key(name)
        number = as_number(raw, key, integer=check in ("int", "int0"), positive=check in ("int", "positive"))
        if check == "int0" and number < 0:
            raise ConfigError(key, raw, "must be 0 or more")
        if check == "fraction" and not 0 < number <= 1:
            raise ConfigError(key, raw, "must be in (0, 1]")
        if check == "rate" and not 0 <= number <= 1:
            raise ConfigError(key, raw, "must be in [0, 1]")
        options[name] = number
    return options


def _point(value: Any, index: int, space: Space) -> dict[str, Scalar]:
    key = f"searcher.points_to_evaluate[{index}]"
    section = Section(value, key, tuple(space.names))
    point: dict[str, Scalar] = {}
    for param in space.params:
        if param.name in section.data:
            given = coerce_to_domain(param.domain, section.data[param.name])
            if not param.domain.contains(given):
                raise ConfigError(f"{key}.{param.name}", given, f"must be {param.domain.describe()}")
            point[param.name] = given
    return point


def _budget(value: Any, searcher: SearcherSpec, scheduler_type: str) -> BudgetSpec:
    section = Section(value, "budget", ("max_trials", "max_time", "max_resource", "metric_threshold"))
    max_trials = section.number("max_trials", None, integer=True, positive=True)
    max_resource = section.number("max_resource", None, positive=True)
    threshold = section.number("metric_threshold", None)
    raw_time = section.get("max_time", None)
    max_time = None if raw_time is None else parse_duration(raw_time, "budget.max_time")
    runs_out = (searcher.type == "grid" or (searcher.type == "genetic" and searcher.options["generations"])
                or scheduler_type in ("sync_hyperband", "pbt"))
    if max_trials is None and max_time is None and max_resource is None and not runs_out:
        raise ConfigError("budget", value, f"{searcher.type} search never runs out of configurations",
                          "set budget.max_trials (e.g. 50), budget.max_time (e.g. 2h) or budget.max_resource")
    return BudgetSpec(max_trials=max_trials, max_time=max_time, max_resource=max_resource,
                      metric_threshold=threshold)


def _execution(value: Any) -> ExecutionSpec:
    section = Section(value, "execution", ("backend", "workload_manager", "num_parallel_evals", "poll_interval",
                                           "stop_grace_period", "resume_flags", "num_retries", "max_failures",
                                           "max_requeues", "slurm", "pbs"))
    if "backend" in section.data and "workload_manager" in section.data:
        raise ConfigError("execution.workload_manager", section.data["workload_manager"],
                          "is another name for execution.backend", "set only one of the two")
    name = "workload_manager" if "workload_manager" in section.data else "backend"
    backend = section.choice(name, BACKENDS, "auto")
    # 0: as many as the allocation holds (allocated nodes / nodes_per_eval; locally, the CPU count).
    parallel = _count(section, "num_parallel_evals") if "num_parallel_evals" in section.data else 0
    poll = float(section.number("poll_interval", 0.5, positive=True))
    grace = float(section.number("stop_grace_period", 10, positive=True))
    return ExecutionSpec(backend=backend, num_parallel_evals=parallel, poll_interval=poll,
                         stop_grace_period=grace, resume_flags=_resume_flags(section.get("resume_flags", {})),
                         num_retries=_count(section, "num_retries"), max_failures=_max_failures(section),
                         max_requeues=_count(section, "max_requeues", DEFAULT_MAX_REQUEUES),
                         slurm=_slurm(section.get("slurm", None)), pbs=_pbs(section.get("pbs", None)))


def _max_failures(section: Section) -> int | None:
    """How many trials may fail for good before the experiment stops; null turns the limit off (the driver
    still stops a program whose first trials all fail without a single report)."""
    value = section.get("max_failures", DEFAULT_MAX_FAILURES)
    if value is None:
        return None
    count = as_number(value, section.key("max_failures"), integer=True)
    if count < 0:
        raise ConfigError(section.key("max_failures"), value, "must be 0 or more, or null for no limit",
                          f"the default is {DEFAULT_MAX_FAILURES}")
    return count


def _slurm(value: Any) -> SlurmSpec:
    section = Section(value, "execution.slurm", ("mode", "nodes_per_eval", "launch_args", "alloc_args",
                                                 "alloc_jobid", "partition", "account", "time_limit", "template",
                                                 "nodes_flag", "export", "squeue_interval"))
    word = "must be letters, digits and _ . + - only (a Slurm name)"
    template = section.text("template", None)
    if template is not None and _has_control(template):
        raise ConfigError(section.key("template"), template, "must be a file path without control characters")
    jobid = section.get("alloc_jobid", None)
    if jobid is not None and not re.fullmatch(r"\d+", str(jobid)):
        raise ConfigError(section.key("alloc_jobid"), jobid, "must be a Slurm job id (digits)",
                          "use the id `squeue --me` shows for your allocation")
    return SlurmSpec(
        mode=section.choice("mode", SLURM_MODES, "auto"),
        nodes_per_eval=section.number("nodes_per_eval", 1, integer=True, positive=True),
        launch_args=_slurm_args(section, "launch_args"), alloc_args=_slurm_args(section, "alloc_args"),
        alloc_jobid=None if jobid is None else str(jobid),
        partition=section.text("partition", None, SLURM_WORD_PATTERN, word),
        account=section.text("account", None, SLURM_WORD_PATTERN, word),
        time_limit=section.text("time_limit", None, SLURM_TIME_PATTERN,
                                "must be a Slurm time limit: minutes, MM:SS, HH:MM:SS, D-HH or D-HH:MM:SS"),
        template=None if template is None else Path(template).absolute(),
        nodes_flag=_flag(section.get("nodes_flag", None), section.key("nodes_flag")),
        export=_export(section.get("export", list(DEFAULT_SLURM_EXPORT)), section.key("export"), DEFAULT_SLURM_EXPORT),
        squeue_interval=float(section.number("squeue_interval", 10, positive=True)))


def _pbs(value: Any) -> PbsSpec:
    section = Section(value, "execution.pbs", ("mode", "nodes_per_eval", "queue", "account", "walltime", "select",
                                               "place", "template", "launcher", "launch_args", "qsub_args",
                                               "nodes_flag", "export", "qstat_interval", "qstat_format",
                                               "job_name_max", "lost_after"))
    word = "must be letters, digits and _ . + - only"
    template = section.text("template", None)
    if template is not None and _has_control(template):
        raise ConfigError(section.key("template"), template, "must be a file path without control characters")
    nodes = section.number("nodes_per_eval", 1, integer=True, positive=True)
    launcher = _pbs_launcher(section.get("launcher", "mpiexec"), section.key("launcher"))
    if launcher == "pbsdsh" and nodes > 1:
        raise ConfigError(section.key("launcher"), "pbsdsh", f"starts a program on one host, but nodes_per_eval "
                          f"is {nodes}", "use mpiexec or mpirun (or your own launcher) for multi-node trials")
    name_max = section.number("job_name_max", 236, integer=True)
    if not 15 <= name_max <= 236:
        raise ConfigError(section.key("job_name_max"), name_max, "must be between 15 and 236",
                          "PBS Pro 19 and later allow 236 characters, older servers 15")
    return PbsSpec(
        mode=section.choice("mode", PBS_MODES, "auto"), nodes_per_eval=nodes,
        queue=section.text("queue", None, PBS_DESTINATION_PATTERN,
                           "must be a PBS destination: queue, queue@server or @server"),
        account=section.text("account", None, PBS_WORD_PATTERN, word),
        walltime=section.text("walltime", None, PBS_WALLTIME_PATTERN,
                              "must be a PBS walltime: seconds, MM:SS or HH:MM:SS"),
        select=section.text("select", None, PBS_CHUNK_PATTERN,
                            "must be chunk resources without the count, like 'ncpus=8:ngpus=1:mem=16gb'"),
        place=section.text("place", "scatter", PBS_PLACE_PATTERN,
                           "must be a PBS place statement like 'scatter', 'scatter:excl' or 'pack'"),
        template=None if template is None else Path(template).absolute(), launcher=launcher,
        launch_args=_pbs_args(section, "launch_args", frozenset(), "['--ppn', '4', '--cpu-bind', 'core']"),
        qsub_args=_pbs_args(section, "qsub_args", QSUB_VALUE_OPTIONS, "['-l', 'mem=8gb', '-W', 'group_list=hpo']"),
        nodes_flag=_flag(section.get("nodes_flag", None), section.key("nodes_flag")),
        export=_export(section.get("export", list(DEFAULT_PBS_EXPORT)), section.key("export"), DEFAULT_PBS_EXPORT),
        qstat_interval=float(section.number("qstat_interval", 10, positive=True)),
        qstat_format=section.choice("qstat_format", PBS_QSTAT_FORMATS, "json"), job_name_max=name_max,
        lost_after=parse_duration(section.get("lost_after", 300), section.key("lost_after")))


def _pbs_launcher(value: Any, key: str) -> str | tuple[str, ...]:
    """mpiexec, mpirun, pbsdsh, or the user's own argv in which {hosts} (comma-separated), {host} (the
    first) and {nodes} (how many) are filled for each trial; the program and its flags follow it."""
    if isinstance(value, str) and value in PBS_LAUNCHERS:
        return value
    example = "e.g. [mpiexec, --hosts, '{hosts}', -n, '{nodes}']"
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(key, value, f"must be one of {', '.join(PBS_LAUNCHERS)}, or a list of arguments "
                          "with a {hosts} or {host} placeholder", example)
    for item in value:
        if _has_control(item):
            raise ConfigError(key, item, "must not hold newlines, tabs or NUL bytes")
        unknown = [n for n in re.findall(r"\{([^{}]*)\}", item) if n not in PBS_LAUNCHER_PLACEHOLDERS]
        if unknown:
            raise ConfigError(key, item, f"uses the unknown placeholder {{{unknown[0]}}}",
                              f"placeholders are: {', '.join('{' + n + '}' for n in PBS_LAUNCHER_PLACEHOLDERS)}")
    if value[0].startswith("-") or "{" in value[0]:
        raise ConfigError(key, value[0], "must name the launcher program first", example)
    if not any("{hosts}" in v or "{host}" in v for v in value):
        raise ConfigError(key, value, "never says where to run: it needs {hosts} or {host}", example)
    return tuple(value)


def _pbs_args(section: Section, name: str, value_options: frozenset[str], example: str) -> tuple[str, ...]:
    """Extra qsub or launcher options: a list, or a string split like a shell would. An item that is not an
    option must be the value of the option before it, since a stray word would become the command."""
    key = section.key(name)
    value = _argument_list(section, name, "options", f"e.g. {example}")
    if not all(value):
        raise ConfigError(key, value, "must be a list of options", f"e.g. {example}")
    previous = ""
    for item in value:
        if _has_control(item) or item in QSUB_REFUSED_OPTIONS and value_options:
            raise ConfigError(key, item, "cannot be used: no control characters, no interactive "
                              f"qsub options ({', '.join(QSUB_REFUSED_OPTIONS)})")
        takes_value = previous.startswith("-") and (not value_options or previous[1:] in value_options)
        if not item.startswith("-") and not takes_value:
            raise ConfigError(key, item, "is not an option, nor the value of the option before it",
                              f"write options with their values, e.g. {example}")
        previous = "" if takes_value and not item.startswith("-") else item
    if previous.startswith("-") and value_options and previous[1:] in value_options:
        raise ConfigError(key, previous, "needs a value after it", f"e.g. {example}")
    return tuple(value)


def _argument_list(section: Section, name: str, what: str, example: str) -> list[str]:
    """Extra command-line arguments: a list of strings, or one string split like a shell would."""
    value = section.get(name, [])
    key = section.key(name)
    if isinstance(value, str):
        try:
            value = shlex.split(value)
        except ValueError as exc:
            raise ConfigError(key, value, f"cannot be split into {what} ({exc})") from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(key, value, f"must be a list of {what}", example)
    return value


def _has_control(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def _slurm_args(section: Section, name: str) -> tuple[str, ...]:
    """Extra srun/sbatch flags: a list, or a string split like a shell would. They are passed as argv
    items (never through a shell), and each must be an option, since a stray word would become the command."""
    key = section.key(name)
    value = _argument_list(section, name, "flags", "e.g. ['--gpus-per-task=1', '--mem=8G']")
    for item in value:
        if not item.startswith("-") or "=" not in item and " " in item or _has_control(item):
            raise ConfigError(key, item, "must be a flag starting with '-', without newlines or NUL bytes",
                              "write an option with its value as one item: '--constraint=haswell'")
    return tuple(value)


def _export(value: Any, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """The variables of the driver's environment a batch trial gets (Slurm and PBS alike), or ALL."""
    if value == "ALL" or value == ["ALL"]:
        return ("ALL",)
    if not isinstance(value, list) or not all(isinstance(v, str) and ENV_NAME_PATTERN.match(v) for v in value):
        raise ConfigError(key, value, "must be a list of environment variable names, or ALL",
                          f"the default is {list(default)}")
    return tuple(value)


def _count(section: Section, name: str, default: int = 0) -> int:
    value = section.number(name, default, integer=True)
    if value < 0:
        raise ConfigError(section.key(name), value, "must be 0 or more")
    return value


def _resume_flags(value: Any) -> dict[str, str]:
    """Which flags carry resume_from and checkpoint_dir to a resumed run; null turns one (or all) off."""
    if value is None:
        return {}
    section = Section(value, "execution.resume_flags", tuple(DEFAULT_RESUME_FLAGS))
    flags = {}
    for name, default in DEFAULT_RESUME_FLAGS.items():
        flag = _flag(section.data.get(name, default), section.key(name))
        if flag is not None:
            flags[name] = flag
    return flags


def _metric_regex(value: Any, metric: MetricSpec, resource: ResourceSpec) -> re.Pattern[str] | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError("metric_regex", value, "must be a regular expression string")
    try:
        pattern = re.compile(value)
    except re.error as exc:
        raise ConfigError("metric_regex", value, f"is not a valid regular expression ({exc})") from None
    names = set(pattern.groupindex)
    if metric.components:
        missing = [c.name for c in metric.components if c.name not in names]
        if missing:
            raise ConfigError("metric_regex", value, f"needs a named group for each combined metric; "
                              f"missing: {', '.join(missing)}", f"e.g. '(?P<{missing[0]}>\\S+)'")
    elif metric.name not in names and pattern.groups != 1:
        raise ConfigError("metric_regex", value,
                          f"needs one capture group, or a group named '{metric.name}' for the metric",
                          f"e.g. 'FoM: (\\S+)' or '{resource.name}=(?P<{resource.name}>\\d+) "
                          f"{metric.name}=(?P<{metric.name}>\\S+)'")
    return pattern


# --------------------------------------------------------------------------- parameters


def _space(value: Any, metric: MetricSpec) -> Space:
    if not isinstance(value, dict) or not value:
        raise ConfigError("params", value, "must be a non-empty mapping of parameter names to domains",
                          "e.g. params: {learning_rate: {type: loguniform, low: 0.0001, high: 0.1}}")
    params = []
    for name, spec in value.items():
        key = f"params.{name}"
        if not isinstance(name, str) or not PARAM_NAME_PATTERN.match(name):
            raise ConfigError(key, name, "parameter names are letters, digits, '_', '.', '-', "
                              "starting with a letter or '_'")
        reserved = RESERVED_NAMES + (metric.name,) + tuple(c.name for c in metric.components)
        if name in reserved:
            raise ConfigError(key, name, "is a reserved column name of the export",
                              f"rename it; reserved: {', '.join(reserved)}")
        params.append(_param(name, spec, key))
    names = {p.name for p in params}
    for param in params:
        for i, condition in enumerate(param.conditions):
            if condition.parent not in names:
                raise ConfigError(f"params.{param.name}.condition", condition.parent,
                                  "names a parent parameter that does not exist",
                                  f"use one of: {', '.join(sorted(names - {param.name}))}")
    cycle = find_cycle(tuple(params))
    if cycle:
        raise ConfigError("params", " -> ".join(cycle), "conditions form a cycle: a parameter depends "
                          f"on itself through {', '.join(sorted(set(cycle)))}",
                          "remove one of these conditions")
    return Space(params=tuple(params))


def _param(name: str, spec: Any, key: str) -> Param:
    flag: str | None = f"--{name}"
    if isinstance(spec, list):
        spec = {"type": "choice", "values": spec}
    elif not isinstance(spec, dict):
        spec = {"type": "fixed", "value": spec}
    if "type" not in spec:
        raise ConfigError(f"{key}.type", MISSING, "is required", f"one of: {', '.join(PARAM_TYPES)}")
    kind = Section(spec, key, tuple(spec.keys())).choice("type", PARAM_TYPES)
    allowed = {"uniform": ("low", "high"), "loguniform": ("low", "high"), "randint": ("low", "high"),
               "lograndint": ("low", "high"), "choice": ("values",), "pchoice": ("values", "weights"),
               "fixed": ("value",)}[kind]
    section = Section(spec, key, ("type", "default", "flag", "condition") + allowed)
    if "flag" in spec:
        flag = _flag(spec["flag"], f"{key}.flag")
    domain = _domain(kind, section)
    conditions = _conditions(section.get("condition", None), f"{key}.condition")
    default = coerce_to_domain(domain, section.get("default", None))
    if default is not None and not domain.contains(default):
        raise ConfigError(f"{key}.default", default, f"must be {domain.describe()}")
    return Param(name=name, domain=domain, flag=flag, default=default, conditions=conditions)


def _conditions(value: Any, key: str) -> tuple[Condition, ...]:
    """`condition: {parent: optimizer, equals: sgd}`, or a list of such that must all hold."""
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    conditions = []
    for i, item in enumerate(items):
        where = f"{key}[{i}]" if isinstance(value, list) else key
        section = Section(item, where, ("parent",) + CONDITION_OPS)
        parent = section.text("parent")
        ops = [op for op in CONDITION_OPS if op in section.data]
        if len(ops) != 1:
            raise ConfigError(where, item, "needs exactly one test besides 'parent'",
                              f"one of: {', '.join(CONDITION_OPS)}")
        op = ops[0]
        operand = section.data[op]
        if op == "inside":
            operand = tuple(_scalar(v, f"{where}.inside[{j}]") for j, v in enumerate(_as_list(operand, f"{where}.inside")))
        elif op in ("greater_than", "less_than"):
            operand = as_number(operand, f"{where}.{op}")
        else:
            operand = _scalar(operand, f"{where}.{op}")
        conditions.append(Condition(parent=parent, op=op, value=operand))
    return tuple(conditions)


def coerce_to_domain(domain: Domain, value: Any) -> Any:
    """A number written as text ('1e-3', which YAML 1.1 reads as a string) for a numeric range."""
    if isinstance(value, str) and isinstance(domain, (Uniform, LogUniform, RandInt)):
        try:
            number = float(value)
        except ValueError:
            return value
        return int(number) if isinstance(domain, RandInt) and number.is_integer() else number
    return value


def _flag(value: Any, key: str) -> str | None:
    if value is None or value is False:
        return None
    if not isinstance(value, str) or not value.strip() or any(c.isspace() or c == "\0" for c in value):
        raise ConfigError(key, value, "must be a flag without spaces like '--lr' or '--lr=', or null",
                          "null passes the value only in config.json")
    return value


def _domain(kind: str, section: Section) -> Domain:
    if kind == "fixed":
        return Fixed(_scalar(section.get("value"), section.key("value")))
    if kind in ("choice", "pchoice"):
        return _choice(kind, section)
    integer = kind in ("randint", "lograndint")
    low = section.number("low", integer=integer)
    high = section.number("high", integer=integer)
    if not low < high:
        raise ConfigError(section.key("high"), high, f"must be greater than low ({low})",
                          "swap low and high, or use a fixed value")
    if kind in ("loguniform", "lograndint") and low <= 0:
        raise ConfigError(section.key("low"), low, f"must be greater than 0 for {kind}",
                          "use uniform/randint for ranges that include 0 or negatives")
    cls: dict[str, Callable[[Any, Any], Domain]] = {
        "uniform": Uniform, "loguniform": LogUniform, "randint": RandInt, "lograndint": LogRandInt}
    return cls[kind](float(low) if not integer else low, float(high) if not integer else high)


def _choice(kind: str, section: Section) -> Choice:
    values = _as_list(section.get("values"), section.key("values"))
    if not values:
        raise ConfigError(section.key("values"), values, "must list at least one value")
    values = [_scalar(v, f"{section.key('values')}[{i}]") for i, v in enumerate(values)]
    if len(set(map(repr, values))) != len(values):
        raise ConfigError(section.key("values"), values, "must not repeat a value")
    if kind == "choice":
        return Choice(tuple(values))
    weights = _as_list(section.get("weights"), section.key("weights"))
    weights = [as_number(w, f"{section.key('weights')}[{i}]") for i, w in enumerate(weights)]
    if len(weights) != len(values) or any(w < 0 for w in weights) or not sum(weights) > 0:
        raise ConfigError(section.key("weights"), weights,
                          f"must be {len(values)} non-negative numbers, one per value, not all zero")
    total = float(sum(weights))
    return Choice(tuple(values), tuple(w / total for w in weights))


def _scalar(value: Any, key: str) -> Scalar:
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(key, value, "must be a finite number")
    if isinstance(value, (int, float, str, bool)):
        if isinstance(value, str) and any(c in value for c in "\0\n\r"):
            raise ConfigError(key, value, "must not contain a NUL byte or a line break (values pass through "
                              "batch scripts)", "remove it from the value")
        return value
    raise ConfigError(key, value, "must be a number, a string or true/false")


def _as_list(value: Any, key: str) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(key, value, "must be a list")
    return value


def config_as_yaml(config: ExperimentConfig) -> str:
    return yaml.safe_dump(config.frozen, sort_keys=False)
