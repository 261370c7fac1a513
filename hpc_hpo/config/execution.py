"""The execution section: backend, parallelism, retries, failure and requeue budgets, resume flags, and
its Slurm and PBS sub-sections with the checks on the extra command-line arguments they pass."""
from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..retention import POLICIES as RETENTION_POLICIES
from .reading import MAX_COUNT, Section, _flag, as_number, parse_duration
from .local import local_spec
from .resources import SHAPE_KEYS, parameter_reference, trial_shape
from .slurm_allocation import allocation_request
from .workdir import WORKDIR_KEYS, workdir_spec
from .specs import (DEFAULT_MAX_FAILURES, DEFAULT_MAX_REQUEUES, DEFAULT_PBS_EXPORT, DEFAULT_RESUME_FLAGS,
                    DEFAULT_SLURM_EXPORT, ExecutionSpec, PbsSpec, SlurmSpec)

BACKENDS = ("local", "slurm", "pbs", "auto")
SLURM_MODES = ("auto", "steps", "sbatch")
# re.ASCII: \d would match other scripts' digits too, which sbatch and qsub refuse.
SLURM_TIME_PATTERN = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$|^\d+-\d+$", re.ASCII)
# Partition and account names, job ids: what Slurm itself accepts, nothing a shell would read.
SLURM_WORD_PATTERN = re.compile(r"^[A-Za-z0-9_.+-]{1,128}$")
ENV_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# PBS Professional / OpenPBS (execution.pbs). Modes: one qsub job per trial, or trials inside the
# allocation the driver runs in (PBS_JOBID and PBS_NODEFILE set).
PBS_MODES = ("auto", "qsub", "allocation")
PBS_LAUNCHERS = ("mpiexec", "mpirun", "pbsdsh")
PBS_LAUNCHER_PLACEHOLDERS = ("hosts", "host", "nodes")
PBS_QSTAT_FORMATS = ("json", "text")
# Queue names (queue, queue@server, @server), account strings: nothing a shell or qsub would split.
PBS_DESTINATION_PATTERN = re.compile(r"^[A-Za-z0-9_.+-]{0,128}(@[A-Za-z0-9_.-]{1,128})?$")
PBS_WORD_PATTERN = re.compile(r"^[A-Za-z0-9_.+-]{1,128}$")
PBS_WALLTIME_PATTERN = re.compile(r"^\d+(:\d{1,2}){0,2}$", re.ASCII)
# Chunk resources for -l select: name=value pairs joined by ':' (ncpus=8:ngpus=1:mem=16gb).
PBS_CHUNK_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=[A-Za-z0-9_.+-]+(:[A-Za-z_][A-Za-z0-9_]*=[A-Za-z0-9_.+-]+)*$")
PBS_PLACE_PATTERN = re.compile(r"^(free|pack|scatter|vscatter)?(:?(excl|shared|exclhost|group=[A-Za-z0-9_]+))*$")
# qsub options that take a value (qsub.1B); the others are flags. Interactive ones make no batch job.
QSUB_VALUE_OPTIONS = frozenset("aAcCeJklMNopPqrRSuvW")
QSUB_REFUSED_OPTIONS = ("-I", "-G", "-X", "--")
# Seconds. The driver sleeps poll_interval between sweeps: below the minimum it spins a login node's CPU,
# above the maximum it would not see a trial end for hours. Polls of the batch system, the wait for a
# graceful stop and the time a PBS job may go unseen have upper bounds for the same reason.
POLL_INTERVAL_RANGE = (0.01, 3600.0)
MAX_BATCH_POLL_INTERVAL = 3600.0
MAX_STOP_GRACE_PERIOD = 86400.0
MAX_LOST_AFTER = 7 * 86400.0
# An argument string longer than this (split like a shell would) is no list of options.
MAX_ARGUMENT_TEXT = 100_000


def _execution(value: Any) -> ExecutionSpec:
    section = Section(value, "execution", ("backend", "workload_manager", "num_parallel_evals", "poll_interval",
                                           "stop_grace_period", "resume_flags", "num_retries", "max_failures",
                                           "max_requeues", "slurm", "pbs", "local", "keep_checkpoints", "keep_best",
                                           "join", *SHAPE_KEYS, *WORKDIR_KEYS))
    if "backend" in section.data and "workload_manager" in section.data:
        raise ConfigError("execution.workload_manager", section.data["workload_manager"],
                          "is another name for execution.backend", "set only one of the two")
    name = "workload_manager" if "workload_manager" in section.data else "backend"
    backend = section.choice(name, BACKENDS, "auto")
    # 0: as many as the allocation holds (allocated nodes / nodes_per_eval; locally, the CPU count).
    parallel = _count(section, "num_parallel_evals") if "num_parallel_evals" in section.data else 0
    low, high = POLL_INTERVAL_RANGE
    poll = float(section.number("poll_interval", 0.5, positive=True, minimum=low, maximum=high,
                                why="seconds between the driver's looks at its trials"))
    grace = float(section.number("stop_grace_period", 10, positive=True, maximum=MAX_STOP_GRACE_PERIOD,
                                 why="seconds trials get to save and exit on a graceful stop"))
    return ExecutionSpec(backend=backend, num_parallel_evals=parallel, poll_interval=poll,
                         stop_grace_period=grace, resume_flags=_resume_flags(section.get("resume_flags", {})),
                         num_retries=_count(section, "num_retries"), max_failures=_max_failures(section),
                         max_requeues=_count(section, "max_requeues", DEFAULT_MAX_REQUEUES),
                         slurm=_slurm(section.get("slurm", None)), pbs=_pbs(section.get("pbs", None)),
                         shape=trial_shape(section), local=local_spec(section.get("local", None)),
                         workdir=workdir_spec(section),
                         keep_checkpoints=section.choice("keep_checkpoints", RETENTION_POLICIES, "resumable"),
                         keep_best=_count(section, "keep_best", 3), join=_join(section))


def _join(section: Section) -> bool:
    """Whether every driver of this config joins the experiment others may be running (run --join)."""
    join = section.get("join", False)
    if not isinstance(join, bool):
        raise ConfigError("execution.join", join, "must be true or false",
                          "true lets several drivers (allocations) run this experiment at once")
    return join


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
                                                 "nodes_flag", "export", "squeue_interval", "allocation"))
    word = "must be letters, digits and _ . + - only (a Slurm name)"
    template = section.text("template", None)
    if template is not None and (_has_control(template) or len(template.encode("utf-8", "surrogateescape")) > 4096):
        raise ConfigError(section.key("template"), template, "must be a file path without control characters "
                          "(at most 4096 bytes)")
    jobid = section.get("alloc_jobid", None)
    if jobid is not None and not (isinstance(jobid, (str, int)) and not isinstance(jobid, bool)
                                  and re.fullmatch(r"[0-9]{1,20}", str(jobid))):
        raise ConfigError(section.key("alloc_jobid"), jobid, "must be a Slurm job id (digits)",
                          "use the id `squeue --me` shows for your allocation")
    nodes = section.get("nodes_per_eval", 1)
    nodes_param = parameter_reference(nodes, section.key("nodes_per_eval")) if isinstance(nodes, dict) else None
    return SlurmSpec(
        mode=section.choice("mode", SLURM_MODES, "auto"), nodes_param=nodes_param,
        nodes_per_eval=1 if nodes_param else section.number("nodes_per_eval", 1, integer=True, positive=True,
                                                            maximum=MAX_COUNT),
        launch_args=_slurm_args(section, "launch_args"), alloc_args=_slurm_args(section, "alloc_args"),
        alloc_jobid=None if jobid is None else str(jobid),
        partition=section.text("partition", None, SLURM_WORD_PATTERN, word),
        account=section.text("account", None, SLURM_WORD_PATTERN, word),
        time_limit=section.text("time_limit", None, SLURM_TIME_PATTERN,
                                "must be a Slurm time limit: minutes, MM:SS, HH:MM:SS, D-HH or D-HH:MM:SS"),
        template=None if template is None else Path(template).absolute(),
        nodes_flag=_flag(section.get("nodes_flag", None), section.key("nodes_flag")),
        export=_export(section.get("export", list(DEFAULT_SLURM_EXPORT)), section.key("export"), DEFAULT_SLURM_EXPORT),
        squeue_interval=float(section.number("squeue_interval", 10, positive=True, maximum=MAX_BATCH_POLL_INTERVAL,
                                             why="seconds between squeue calls")),
        allocation=allocation_request(section))


def _pbs(value: Any) -> PbsSpec:
    section = Section(value, "execution.pbs", ("mode", "nodes_per_eval", "queue", "account", "walltime", "select",
                                               "place", "template", "launcher", "launch_args", "qsub_args",
                                               "nodes_flag", "export", "qstat_interval", "qstat_format",
                                               "job_name_max", "lost_after"))
    word = "must be letters, digits and _ . + - only"
    template = section.text("template", None)
    if template is not None and (_has_control(template) or len(template.encode("utf-8", "surrogateescape")) > 4096):
        raise ConfigError(section.key("template"), template, "must be a file path without control characters "
                          "(at most 4096 bytes)")
    nodes = section.number("nodes_per_eval", 1, integer=True, positive=True, maximum=MAX_COUNT)
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
        qstat_interval=float(section.number("qstat_interval", 10, positive=True, maximum=MAX_BATCH_POLL_INTERVAL,
                                            why="seconds between qstat calls")),
        qstat_format=section.choice("qstat_format", PBS_QSTAT_FORMATS, "json"), job_name_max=name_max,
        lost_after=parse_duration(section.get("lost_after", 300), section.key("lost_after"), MAX_LOST_AFTER))


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
    if isinstance(value, str) and len(value) > MAX_ARGUMENT_TEXT:
        raise ConfigError(key, value, f"is {len(value)} characters, more than {MAX_ARGUMENT_TEXT}", example)
    if isinstance(value, str):
        try:
            value = shlex.split(value)
        except ValueError as exc:
            raise ConfigError(key, value, f"cannot be split into {what} ({exc})") from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(key, value, f"must be a list of {what}", example)
    return value


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _has_control(text: str) -> bool:
    """C0 and C1 control characters (tab too) and Unicode's line and paragraph separators."""
    return _CONTROL.search(text) is not None


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
    # fullmatch: '$' alone would let a trailing line break through ('PATH\n').
    if not isinstance(value, list) or not all(isinstance(v, str) and ENV_NAME_PATTERN.fullmatch(v) for v in value):
        raise ConfigError(key, value, "must be a list of environment variable names, or ALL",
                          f"the default is {list(default)}")
    seen: set[str] = set()
    for name in value:
        if name in seen:
            raise ConfigError(key, value, f"names {name} more than once", "list each variable once")
        seen.add(name)
    return tuple(value)


def _count(section: Section, name: str, default: int = 0) -> int:
    value = section.number(name, default, integer=True, maximum=MAX_COUNT)
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
