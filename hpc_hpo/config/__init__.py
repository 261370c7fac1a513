"""Load an experiment YAML file and validate it into typed, frozen objects before anything runs.

Every rule lives in this package. A broken rule raises ConfigError naming the key path, the bad value,
what is allowed and how to fix it; nothing is created on disk before validation succeeds.

specs.py: the typed, frozen objects (ExperimentConfig and its specs) and their defaults;
reading.py: Section, numbers, durations, lists and flags, the readers every section uses;
params.py: the params section, read into a Space;
scheduler_searcher.py: the scheduler and searcher sections;
execution.py: the execution section with its Slurm and PBS sub-sections;
loading.py: load_config, validate_config, the top level and its small sections.
Every name is importable from hpc_hpo.config, as when this was one module.
"""
from .specs import (BudgetSpec, DEFAULT_MAX_FAILURES, DEFAULT_MAX_REQUEUES, DEFAULT_PBS_EXPORT,
                    DEFAULT_RESUME_FLAGS, DEFAULT_SLURM_EXPORT, ExecutionSpec, ExperimentConfig,
                    MetricComponent, MetricSpec, Objective, PAUSING_SCHEDULERS, PbsSpec, ResourceSpec, SchedulerSpec,
                    SearcherSpec, SlurmSpec, PerEval, TrialShape, LocalSpec, WorkdirSpec, AllocationRequest)
from .reading import (DURATION_UNITS, Section, _as_list, _flag, as_number, parse_duration)
from .params import (PARAM_NAME_PATTERN, PARAM_TYPES, RESERVED_NAMES, _choice, _conditions, _domain, _param,
                     _scalar, _space, coerce_to_domain)
from .scheduler_searcher import (AVAILABLE_SCHEDULERS, AVAILABLE_SEARCHERS, SCHEDULER_TYPES, SEARCHER_DATA,
                                 SEARCHER_OPTIONS, SEARCHER_TYPES, _available, _point, _rung_levels,
                                 _scheduler, _searcher, _searcher_options)
from .execution import (BACKENDS, ENV_NAME_PATTERN, PBS_CHUNK_PATTERN, PBS_DESTINATION_PATTERN, PBS_LAUNCHERS,
                        PBS_LAUNCHER_PLACEHOLDERS, PBS_MODES, PBS_PLACE_PATTERN, PBS_QSTAT_FORMATS,
                        PBS_WALLTIME_PATTERN, PBS_WORD_PATTERN, QSUB_REFUSED_OPTIONS, QSUB_VALUE_OPTIONS,
                        SLURM_MODES, SLURM_TIME_PATTERN, SLURM_WORD_PATTERN, _argument_list, _count,
                        _execution, _export, _has_control, _max_failures, _pbs, _pbs_args, _pbs_launcher,
                        _resume_flags, _slurm, _slurm_args)
from .loading import (EXPERIMENT_FILE, NAME_PATTERN, PYTHON_PLACEHOLDER, TOP_KEYS, _budget, _command, _metric,
                      _metric_regex, _resource, config_as_yaml, frozen_seed, load_config, validate_config)

__all__ = [
    "AVAILABLE_SCHEDULERS", "AVAILABLE_SEARCHERS", "BACKENDS", "BudgetSpec", "DEFAULT_MAX_FAILURES",
    "DEFAULT_MAX_REQUEUES", "DEFAULT_PBS_EXPORT", "DEFAULT_RESUME_FLAGS", "DEFAULT_SLURM_EXPORT",
    "DURATION_UNITS", "ENV_NAME_PATTERN", "EXPERIMENT_FILE", "ExecutionSpec", "ExperimentConfig",
    "MetricComponent", "MetricSpec", "NAME_PATTERN", "Objective", "PARAM_NAME_PATTERN", "PARAM_TYPES",
    "PAUSING_SCHEDULERS", "PBS_CHUNK_PATTERN", "PBS_DESTINATION_PATTERN", "PBS_LAUNCHERS",
    "PBS_LAUNCHER_PLACEHOLDERS", "PBS_MODES", "PBS_PLACE_PATTERN", "PBS_QSTAT_FORMATS",
    "PBS_WALLTIME_PATTERN", "PBS_WORD_PATTERN", "PYTHON_PLACEHOLDER", "PbsSpec", "QSUB_REFUSED_OPTIONS",
    "QSUB_VALUE_OPTIONS", "RESERVED_NAMES", "ResourceSpec", "SCHEDULER_TYPES", "SEARCHER_DATA",
    "SEARCHER_OPTIONS", "SEARCHER_TYPES", "SLURM_MODES", "SLURM_TIME_PATTERN", "SLURM_WORD_PATTERN",
    "SchedulerSpec", "SearcherSpec", "Section", "SlurmSpec", "TOP_KEYS", "as_number", "coerce_to_domain",
    "config_as_yaml", "frozen_seed", "load_config", "parse_duration", "validate_config"
]
# The sections' private helpers, importable from here as when this was one module.
__all__ += [
    "_argument_list", "_as_list", "_available", "_budget", "_choice", "_command", "_conditions", "_count",
    "_domain", "_execution", "_export", "_flag", "_has_control", "_max_failures", "_metric",
    "_metric_regex", "_param", "_pbs", "_pbs_args", "_pbs_launcher", "_point", "_resource", "_resume_flags",
    "_rung_levels", "_scalar", "_scheduler", "_searcher", "_searcher_options", "_slurm", "_slurm_args",
    "_space"
]
# The specs of trial shapes, local GPUs, per-trial directories and self-made allocations.
__all__ += ["PerEval", "TrialShape", "LocalSpec", "WorkdirSpec", "AllocationRequest"]
