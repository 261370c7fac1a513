"""Loading an experiment YAML file and validating it: the top level and its small sections (command,
metric, resource, budget, metric_regex) here, the others through their modules; the seed an experiment
froze; the validated config as YAML again."""
from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

from ..errors import MISSING, ConfigError, HpoError, show_text, show_value
from ..space import Choice, Fixed, format_value
from .execution import _execution
from .hooks import hooks_spec
from .resources import check_launch_args, resolve_shape_params
from .workdir import checked_path
from .params import PARAM_NAME_PATTERN, _space
from .reading import Section, _as_list, parse_duration
from .scheduler_searcher import _scheduler, _searcher
from .workdir import resolve_workdir
from .specs import (BudgetSpec, ExecutionSpec, ExperimentConfig, MetricComponent, MetricSpec, Objective,
                    ResourceSpec, SchedulerSpec, SearcherSpec, WorkdirSpec)

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
# The validated config as frozen in the experiment directory at creation (the original, never rewritten).
EXPERIMENT_FILE = "experiment.yaml"
# A config is a few kilobytes. Larger files, deeper nesting, or aliases that expand to more values than
# this are refused before anything is built from them (a "billion laughs" file is 1 KB and a billion values).
MAX_CONFIG_BYTES = 4 * 2 ** 20
MAX_YAML_DEPTH = 64
MAX_YAML_VALUES = 1_000_000
# libyaml's parser when PyYAML has it (about ten times faster), else PyYAML's own; both are safe loaders.
_SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAX_RESOURCE = 1e15
MAX_REGEX = 10_000
# A path the kernel takes (PATH_MAX); one argument (Linux's MAX_ARG_STRLEN, with its NUL byte); the whole
# argv of a trial takes at most half the system's ARG_MAX (2 MiB at most), the rest is the environment's.
DIRECTORY_FIX = "choose another directory name"
MAX_ARGUMENT_BYTES = 131072 - 1
# What the driver adds to a trial's own arguments (srun or a launcher and their options, record_exit.py),
# besides the experiment directory's paths counted with it.
ARGV_OVERHEAD_BYTES = 4096


def load_config(path: str | os.PathLike[str], experiment_dir: str | None = None) -> ExperimentConfig:
    """Read and validate the YAML file at `path`. Raises HpoError; touches nothing on disk."""
    path = Path(path)
    return validate_config(_read_yaml(path, _read_text(path)), experiment_dir=experiment_dir,
                           config_dir=path.absolute().parent)


def _read_text(path: Path) -> str:
    """The file's text, refused unread beyond MAX_CONFIG_BYTES (a pipe or /dev/zero is cut there too)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
            if len(data) > MAX_CONFIG_BYTES:
                size = os.fstat(handle.fileno()).st_size
                shown = f"{size / 2 ** 20:.0f} MiB" if size > MAX_CONFIG_BYTES else "larger than that"
                raise HpoError(f"config file '{show_text(str(path), 300)}' is {shown}; a config file may be at most "
                               f"{MAX_CONFIG_BYTES // 2 ** 20} MiB (a config is a few kilobytes: large data "
                               "belongs in files the program reads)")
        return data.decode("utf-8")
    except FileNotFoundError:
        raise HpoError(f"config file '{show_text(str(path), 300)}' does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise HpoError(f"config file '{show_text(str(path), 300)}' cannot be read: "
                       f"{show_text(str(exc), 200)}") from None


def _read_yaml(path: Path, text: str) -> Any:
    try:
        _check_yaml_shape(path, text)
        loader = _ConfigLoader(text)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        # Covers '!!python/object' tags too: safe_load refuses to build objects.
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise HpoError(f"config file '{show_text(str(path), 300)}' is not valid YAML{line}: {show_text(problem, 200)}. "
                       "Only plain YAML (mappings, lists, strings, numbers) is accepted") from None


def _check_yaml_shape(path: Path, text: str) -> None:
    """Refuse nesting deeper than MAX_YAML_DEPTH and aliases (merge keys included) that expand to more than
    MAX_YAML_VALUES values, from the parser's events: nothing is built and nothing recurses, so the
    refusal of a bomb costs what reading its few lines costs."""
    anchors: dict[str, tuple[int, int]] = {}  # anchor -> (values, depth) of what it stands for
    open_nodes: list[list[Any]] = []  # [anchor, values so far, depth below] of each open collection
    total = 0
    parser = _SAFE_LOADER(text)
    try:
        while parser.check_event():
            event = parser.get_event()
            if isinstance(event, yaml.CollectionStartEvent):
                open_nodes.append([event.anchor, 1, 1])
                if len(open_nodes) > MAX_YAML_DEPTH:
                    _shape_error(path, event, f"nests deeper than {MAX_YAML_DEPTH} levels")
                continue
            if isinstance(event, yaml.CollectionEndEvent):
                anchor, values, depth = open_nodes.pop()
            elif isinstance(event, yaml.ScalarEvent):
                anchor, values, depth = event.anchor, 1, 0
            elif isinstance(event, yaml.AliasEvent):
                anchor, (values, depth) = None, anchors.get(event.anchor, (1, 0))
                if len(open_nodes) + depth > MAX_YAML_DEPTH:
                    _shape_error(path, event, f"nests deeper than {MAX_YAML_DEPTH} levels through its "
                                 f"alias *{show_text(event.anchor or '', 40)}")
            else:
                continue
            if anchor is not None:
                anchors[anchor] = (values, depth)
            if open_nodes:
                parent = open_nodes[-1]
                parent[1] += values
                parent[2] = max(parent[2], depth + 1)
                count = parent[1]
            else:
                total += values
                count = total
            if count > MAX_YAML_VALUES:
                _shape_error(path, event, f"holds more than {MAX_YAML_VALUES:,} values once its aliases are "
                             "expanded (a YAML alias bomb?)")
    finally:
        parser.dispose()


def _shape_error(path: Path, event: Any, problem: str) -> None:
    mark = event.start_mark
    raise HpoError(f"config file '{show_text(str(path), 300)}' {problem} at line {mark.line + 1}; a config needs a "
                   "few levels and values: write each value out, or use an alias only for a small shared part")


class _ConfigLoader(_SAFE_LOADER):  # type: ignore[misc, valid-type]
    """safe_load's loader that also refuses a key given twice in one mapping (YAML would keep the last
    silently; a merge key's entries may still be overridden) and an integer too long to convert."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    repeated = key in seen
                    seen.add(key)
                except TypeError:  # unhashable: the base class refuses it
                    continue
                if repeated:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"the key {show_value(key, 40)} is given twice (YAML would keep only the last)",
                        key_node.start_mark)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: Any) -> int:
        try:
            return super().construct_yaml_int(node)
        except ValueError:
            raise yaml.constructor.ConstructorError(
                None, None, f"the integer {show_text(node.value, 20)} has too many digits", node.start_mark) from None


_ConfigLoader.add_constructor("tag:yaml.org,2002:int", _ConfigLoader.construct_yaml_int)


TOP_KEYS = ("name", "command", "params", "metric", "resource", "scheduler", "searcher", "budget",
            "execution", "experiment_dir", "metric_regex", "hooks")


def validate_config(data: Any, experiment_dir: str | None = None, check_program: bool = True,
                    config_dir: Path | None = None) -> ExperimentConfig:
    """config_dir: the directory of the config file, which relative paths in command and src_path name
    files in (None: no file, as for hpc_hpo.tune(); they stay relative to the current directory)."""
    top = Section(data, "", TOP_KEYS)
    if experiment_dir is not None:
        checked_path(experiment_dir, "--experiment-dir", DIRECTORY_FIX)
    name = top.text("name", pattern=NAME_PATTERN,
                    rule="must be 1-100 characters: letters, digits, '_', '.', '-', starting with a letter or digit")
    command = _command(top.get("command"), check_program, config_dir)
    metric = _metric(top.get("metric"))
    resource = _resource(top.get("resource"))
    space = _space(top.get("params"), metric)
    if resource.max_resource_attr is not None and resource.max_resource_attr not in space.names:
        raise ConfigError("resource.max_resource_attr", resource.max_resource_attr, "must name a parameter in params",
                          f"use one of: {', '.join(space.names)}")
    scheduler = _scheduler(top.get("scheduler", None), resource)
    where = _where(experiment_dir, checked_path(top.text("experiment_dir", None), "experiment_dir", DIRECTORY_FIX)
                   or os.path.join("runs", name), config_dir)
    searcher = _searcher(top.get("searcher", None), space, frozen_seed(where))
    budget = _budget(top.get("budget", None), searcher, scheduler)
    _check_objectives(metric, scheduler, searcher, budget)
    if searcher.type == "genetic" and scheduler.pauses:
        # A generation is bred when all its trials have ended; a paused trial never ends.
        raise ConfigError("searcher.type", "genetic", f"cannot breed generations under scheduler type "
                          f"'{scheduler.type}', whose paused trials never end", "use scheduler type fifo or asha")
    execution = _execution(top.get("execution", None))
    execution = dataclasses.replace(execution, workdir=resolve_workdir(execution.workdir, config_dir, check_program))
    execution = dataclasses.replace(execution, shape=resolve_shape_params(
        execution.shape, execution.slurm.nodes_param, execution.slurm.nodes_per_eval, space))
    check_launch_args(execution.shape, execution.slurm.launch_args)
    regex = _metric_regex(top.get("metric_regex", None), metric, resource)
    hooks = hooks_spec(top.get("hooks", None), check_program, lambda argv: resolve_arguments(argv, config_dir))
    _check_argv_size(command, space, execution, where)
    frozen = dict(data)
    frozen["searcher"] = dict(frozen.get("searcher") or {}, seed=searcher.seed)
    frozen.update(_frozen_paths(frozen, config_dir, execution.workdir))
    if config_dir is not None:
        # Resolved once, against the config file: a resume or `status` from elsewhere reads the same place.
        frozen["experiment_dir"] = str(where)
    return ExperimentConfig(name=name, command=command, space=space, metric=metric, resource=resource,
                            scheduler=scheduler, searcher=searcher, budget=budget, execution=execution,
                            experiment_dir=where, metric_regex=regex, frozen=frozen, hooks=hooks)


def _where(override: str | None, written: str, config_dir: Path | None) -> Path:
    """The experiment's directory: --experiment-dir as the shell gave it (relative to the current directory);
    the config's experiment_dir (or runs/<name>) relative to the config file's directory, so that
    `hpc-hpo status some/dir/exp.yaml` finds it from anywhere. Without a file (tune()), the current directory."""
    if override is not None:
        return Path(override).absolute()
    path = Path(written)
    if config_dir is not None and not path.is_absolute():
        path = Path(os.path.normpath(config_dir / path))  # ../runs/x, not configs/../runs/x
    return path.absolute()


def _check_argv_size(command: tuple[str, ...], space: Any, execution: ExecutionSpec, where: Path) -> None:
    """Each trial is started with an argv (command, flags and values, resume flags with their paths);
    one the kernel cannot pass (E2BIG) would fail every trial after the experiment began. Refused here:
    an argument beyond MAX_ARGUMENT_BYTES, or an argv beyond the argument list's share of ARG_MAX."""
    directory = len(str(where).encode("utf-8", "surrogateescape")) + 64  # trials/NNNN/checkpoint and the like
    parts: list[tuple[str, Any, int]] = []  # (key, value, bytes of the longest argv items it can make)
    for item in command:
        _one_argument("command", command, item)
        parts.append(("command", command, _bytes(item) + 1))
    for param in space.params:
        if param.flag is None:
            continue
        key = f"params.{param.name}"
        flag = _bytes(param.flag) + 1
        _one_argument(f"{key}.flag", param.flag, param.flag)
        longest, shown = 0, param.flag
        if isinstance(param.domain, Choice):
            for i, value in enumerate(param.domain.values):
                text = format_value(value)
                _one_argument(f"{key}.values[{i}]", value, param.flag + text if param.flag.endswith("=") else text)
                longest = max(longest, _bytes(text) + 1)
            key, shown = f"{key}.values", list(param.domain.values)
        elif isinstance(param.domain, Fixed):
            text = format_value(param.domain.value)
            _one_argument(f"{key}.value", param.domain.value, param.flag + text if param.flag.endswith("=") else text)
            longest = _bytes(text) + 1
            key, shown = f"{key}.value", param.domain.value
        else:
            key, longest = f"{key}.flag", 32  # a number
        parts.append((key, shown, flag + longest))
    for name, flag in execution.resume_flags.items():
        parts.append((f"execution.resume_flags.{name}", flag, _bytes(flag) + directory + 1))
    for settings, name in ((execution.slurm, "slurm"), (execution.pbs, "pbs")):
        for item in settings.launch_args:
            _one_argument(f"execution.{name}.launch_args", settings.launch_args, item)
    for key, items in (("execution.slurm.alloc_args", execution.slurm.alloc_args),
                       ("execution.pbs.qsub_args", execution.pbs.qsub_args)):
        for item in items:
            _one_argument(key, items, item)
    pbs_launcher = execution.pbs.launcher if isinstance(execution.pbs.launcher, tuple) else ()
    for item in pbs_launcher:
        _one_argument("execution.pbs.launcher", pbs_launcher, item)
    launcher = max(sum(_bytes(a) + 1 for a in execution.slurm.launch_args),
                   sum(_bytes(a) + 1 for a in execution.pbs.launch_args + pbs_launcher))
    total = sum(size for _, _, size in parts) + launcher + ARGV_OVERHEAD_BYTES + 4 * directory
    limit = argument_list_limit()
    if total > limit:
        key, value, _ = max(parts, key=lambda part: part[2])
        raise ConfigError(key, value, f"makes a trial's command line of up to {total:,} bytes, more than the "
                          f"argument list holds ({limit:,} bytes: half the system's ARG_MAX, the other half "
                          "is the environment's)", "shorten the longest values, or pass them in config.json "
                          "(flag: null) or in a file the program reads")


def argument_list_limit() -> int:
    """Bytes a trial's argv may take: half of ARG_MAX (os.sysconf), which is at most 2 MiB here."""
    try:
        arg_max = os.sysconf("SC_ARG_MAX")
    except (AttributeError, ValueError, OSError):
        arg_max = -1
    if arg_max <= 0:
        arg_max = 2 * 2 ** 20
    return min(arg_max, 2 * 2 ** 20) // 2


def _one_argument(key: str, value: Any, item: str) -> None:
    size = _bytes(item)
    if size > MAX_ARGUMENT_BYTES:
        raise ConfigError(key, value, f"makes a command-line argument of {size:,} bytes; one argument may hold "
                          f"at most {MAX_ARGUMENT_BYTES:,} bytes (the kernel's MAX_ARG_STRLEN)",
                          "pass long values in config.json (flag: null) or in a file the program reads")


def _bytes(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogateescape"))


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


def _command(value: Any, check_program: bool, config_dir: Path | None = None) -> tuple[str, ...]:
    argv = resolve_arguments(_command_argv(value), config_dir)
    # '{python}' is the interpreter running hpc-hpo: shipped configs work where only 'python3' exists
    # and trials get the packages of the driver's virtual environment.
    argv = [sys.executable if a == PYTHON_PLACEHOLDER else a for a in argv]
    if check_program:
        program = argv[0]
        found = (os.path.isfile(program) and os.access(program, os.X_OK)) if os.sep in program \
            else shutil.which(program) is not None
        if not found:
            raise ConfigError("command", value, f"program '{program}' was not found or is not executable",
                              "give a program on PATH or a path to an executable file")
    return tuple(argv)


def _command_argv(value: Any) -> list[str]:
    """The command's arguments as written ('{python}' still in them)."""
    if isinstance(value, str) and _bytes(value) > argument_list_limit():
        raise ConfigError("command", value, f"is {_bytes(value):,} bytes, more than the argument list holds "
                          f"({argument_list_limit():,} bytes)", "shorten it, or put the data in a file")
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
    if any("\0" in a for a in argv):
        raise ConfigError("command", value, "contains a NUL byte")
    return argv


def resolve_arguments(argv: list[str], config_dir: Path | None) -> list[str]:
    """The command with its relative file arguments made absolute, so that a trial finds them whatever
    directory hpc-hpo is started in and whatever directory the trial runs in (execution.workdir).

    The rule: an argument that is not an option (no leading '-'), not '{python}', and relative, and that
    names an existing file or directory, becomes that absolute path, looked up next to the config file
    first, then in the directory hpc-hpo is started in (where such paths were looked up before, at run
    time). Anything else is passed as written: a program named without a '/' is found on PATH as a shell
    would, and '--data=x.csv' is an option's text, not a path. Without a config file nothing changes."""
    if config_dir is None:
        return argv
    program = argv[0] if os.sep not in argv[0] else _absolute_if_exists(argv[0], config_dir)
    return [program] + [_absolute_if_exists(a, config_dir) for a in argv[1:]]


def _absolute_if_exists(argument: str, config_dir: Path) -> str:
    if not argument or argument.startswith("-") or argument == PYTHON_PLACEHOLDER or os.path.isabs(argument):
        return argument
    for base in (config_dir, Path.cwd()):
        candidate = os.path.join(base, argument)
        if os.path.exists(candidate):  # False for a name too long or with a NUL byte, too
            return candidate
    return argument


def _frozen_paths(frozen: dict[str, Any], config_dir: Path | None, workdir: WorkdirSpec) -> dict[str, Any]:
    """experiment.yaml keeps the paths a relative command or src_path resolved to: a resume with that file
    (which lies elsewhere) runs the same files. '{python}' stays a placeholder."""
    if config_dir is None:
        return {}
    changed: dict[str, Any] = {}
    written = _command_argv(frozen.get("command"))
    resolved = resolve_arguments(written, config_dir)
    if resolved != written:
        changed["command"] = resolved
    execution = frozen.get("execution")
    if workdir.src_path and isinstance(execution, dict) and "src_path" in execution:
        changed["execution"] = dict(execution, src_path=[str(p) for p in workdir.src_path])
    return changed


# Optuna's words for a direction (create_study(directions=[...])), read as our modes.
DIRECTIONS = {"minimize": "min", "maximize": "max"}
METRIC_NAME_RULE = "must be a name of letters, digits, '_', '.', '-'"
OBJECTIVES_EXAMPLE = "e.g. metric: {name: [loss, latency_ms], mode: [min, min]}"


def _metric(value: Any) -> MetricSpec:
    """One metric ({name, mode}, optionally combine), or several objectives: a list of {name, mode}, or
    Syne Tune's name list with a mode list (or one mode for all), or Optuna's `directions`."""
    if isinstance(value, list):
        return _objectives_list(value)
    if isinstance(value, dict) and (isinstance(value.get("name"), list) or "directions" in value):
        return _objectives_lists(value)
    section = Section(value, "metric", ("name", "mode", "combine", "directions"))
    name = section.text("name", pattern=PARAM_NAME_PATTERN, rule=METRIC_NAME_RULE)
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


def _objectives_list(items: list[Any]) -> MetricSpec:
    """metric: [{name: loss, mode: min}, {name: latency_ms, mode: min}]."""
    if not items:
        raise ConfigError("metric", items, "must list at least one objective", OBJECTIVES_EXAMPLE)
    if not all(isinstance(item, dict) for item in items):  # e.g. [loss, min]: a mapping was meant
        raise ConfigError("metric", items, "must be a mapping of keys to values (name, mode), or a list of "
                          "objectives, each a mapping", "e.g. metric: {name: loss, mode: min}, or "
                          "[{name: loss, mode: min}, {name: latency_ms, mode: min}]")
    objectives = []
    for i, item in enumerate(items):
        part = Section(item, f"metric[{i}]", ("name", "mode"))
        objectives.append(Objective(part.text("name", pattern=PARAM_NAME_PATTERN, rule=METRIC_NAME_RULE),
                                    part.choice("mode", ("min", "max"))))
    return _objectives_spec(objectives, "metric")


def _objectives_lists(value: dict[str, Any]) -> MetricSpec:
    """metric: {name: [a, b], mode: [min, max]} (Syne Tune), mode one string for all, or directions (Optuna)."""
    section = Section(value, "metric", ("name", "mode", "directions"))
    raw = section.get("name")
    names = raw if isinstance(raw, list) else [raw]
    if not names:
        raise ConfigError("metric.name", raw, "must list at least one metric", OBJECTIVES_EXAMPLE)
    for i, name in enumerate(names):
        if not isinstance(name, str) or not PARAM_NAME_PATTERN.fullmatch(name):
            raise ConfigError(f"metric.name[{i}]", name, METRIC_NAME_RULE)
    if "mode" in value and "directions" in value:
        raise ConfigError("metric.directions", value["directions"], "is given together with metric.mode",
                          "keep one of them: mode [min, max] or directions [minimize, maximize]")
    if "directions" in value:
        key, given, words = "metric.directions", value["directions"], DIRECTIONS
    else:
        key, given, words = "metric.mode", section.get("mode"), {"min": "min", "max": "max"}
    modes = given if isinstance(given, list) else [given] * len(names)
    if len(modes) != len(names):
        raise ConfigError(key, given, f"must give one entry per metric in metric.name ({len(names)}), or one for all",
                          OBJECTIVES_EXAMPLE)
    for i, mode in enumerate(modes):
        if mode not in words:
            raise ConfigError(f"{key}[{i}]" if isinstance(given, list) else key, mode,
                              f"must be one of: {', '.join(words)}")
    return _objectives_spec([Objective(n, words[m]) for n, m in zip(names, modes)], "metric.name")


def _objectives_spec(objectives: list[Objective], key: str) -> MetricSpec:
    """One objective is the plain single metric; two or more are ranked by Pareto dominance."""
    names = [o.name for o in objectives]
    repeated = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if repeated is not None:
        raise ConfigError(key, names, f"names '{repeated}' twice", "each objective must be a different metric")
    first = objectives[0]
    if len(objectives) == 1:
        return MetricSpec(name=first.name, mode=first.mode)
    return MetricSpec(name=first.name, mode=first.mode, objectives=tuple(objectives))


# Under several objectives: schedulers that can rank Pareto fronts (asha: MO-ASHA; fifo ranks nothing) and
# searchers that need no single loss or take the first objective's (kde).
MULTI_OBJECTIVE_SCHEDULERS = ("asha", "fifo")
MULTI_OBJECTIVE_SEARCHERS = ("random", "grid", "kde")


def _check_objectives(metric: MetricSpec, scheduler: SchedulerSpec, searcher: SearcherSpec,
                      budget: BudgetSpec) -> None:
    """Refuse what cannot rank several objectives, naming the key and the way out."""
    if not metric.objectives:
        return
    names = ", ".join(o.name for o in metric.objectives)
    if scheduler.type not in MULTI_OBJECTIVE_SCHEDULERS:
        raise ConfigError("scheduler.type", scheduler.type, f"cannot rank several objectives ({names})",
                          "use scheduler type asha (MO-ASHA: Pareto fronts at each rung) or fifo, "
                          "or combine the metrics into one with metric.combine")
    if scheduler.type == "asha" and scheduler.brackets != 1:
        raise ConfigError("scheduler.brackets", scheduler.brackets, "MO-ASHA (several objectives) runs one bracket",
                          "remove scheduler.brackets or set it to 1")
    if searcher.type not in MULTI_OBJECTIVE_SEARCHERS:
        raise ConfigError("searcher.type", searcher.type, f"learns a single loss, not several objectives ({names})",
                          "use searcher type random, grid or kde (kde learns the first objective)")
    if budget.metric_threshold is not None:
        raise ConfigError("budget.metric_threshold", budget.metric_threshold,
                          f"compares one value, and the metric has several objectives ({names})",
                          "remove it, or stop by budget.max_trials, max_time or max_resource")


def _resource(value: Any) -> ResourceSpec:
    section = Section(value, "resource", ("name", "max", "max_resource_attr"))
    name = section.text("name", "epoch", pattern=PARAM_NAME_PATTERN,
                        rule="must be a name of letters, digits, '_', '.', '-'")
    attr = section.text("max_resource_attr", None, pattern=PARAM_NAME_PATTERN,
                        rule="must name a parameter in params")
    return ResourceSpec(name=name, max=section.number("max", positive=True, maximum=MAX_RESOURCE,
                                                      why="epochs, steps or seconds a trial may run"),
                        max_resource_attr=attr)


def _budget(value: Any, searcher: SearcherSpec, scheduler: SchedulerSpec) -> BudgetSpec:
    section = Section(value, "budget", ("max_trials", "max_time", "max_resource", "metric_threshold"))
    max_trials = section.number("max_trials", None, integer=True, positive=True)
    max_resource = section.number("max_resource", None, positive=True)
    threshold = section.number("metric_threshold", None)
    raw_time = section.get("max_time", None)
    max_time = None if raw_time is None else parse_duration(raw_time, "budget.max_time")
    runs_out = (searcher.type == "grid" or (searcher.type == "genetic" and searcher.options["generations"])
                or scheduler.type == "pbt" or (scheduler.type == "sync_hyperband" and scheduler.repeat is not None))
    if max_trials is None and max_time is None and max_resource is None and not runs_out:
        endless = ("synchronous Hyperband with scheduler.repeat: null" if scheduler.type == "sync_hyperband"
                   else f"{searcher.type} search")
        shown = MISSING if value is None else value
        raise ConfigError("budget", shown, f"{endless} never runs out of configurations",
                          "set budget.max_trials (e.g. 50), budget.max_time (e.g. 2h) or budget.max_resource")
    return BudgetSpec(max_trials=max_trials, max_time=max_time, max_resource=max_resource,
                      metric_threshold=threshold)


def _metric_regex(value: Any, metric: MetricSpec, resource: ResourceSpec) -> re.Pattern[str] | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError("metric_regex", value, "must be a regular expression string")
    if len(value) > MAX_REGEX:
        raise ConfigError("metric_regex", value, f"is {len(value):,} characters; a pattern may have at most "
                          f"{MAX_REGEX:,}")
    try:
        pattern = re.compile(value)
    except re.error as exc:
        raise ConfigError("metric_regex", value, f"is not a valid regular expression ({exc})") from None
    names = set(pattern.groupindex)
    if metric.components or metric.objectives:
        missing = [name for name in metric.reported if name not in names]
        if missing:
            raise ConfigError("metric_regex", value, f"needs a named group for each combined metric or objective; "
                              f"missing: {', '.join(missing)}", f"e.g. '(?P<{missing[0]}>\\S+)'")
    elif metric.name not in names and pattern.groups != 1:
        raise ConfigError("metric_regex", value,
                          f"needs one capture group, or a group named '{metric.name}' for the metric",
                          f"e.g. 'FoM: (\\S+)' or '{resource.name}=(?P<{resource.name}>\\d+) "
                          f"{metric.name}=(?P<{metric.name}>\\S+)'")
    return pattern


def config_as_yaml(config: ExperimentConfig) -> str:
    return yaml.safe_dump(config.frozen, sort_keys=False)
