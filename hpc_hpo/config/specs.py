"""The typed, frozen objects a validated config is made of: ExperimentConfig and its specs, with the
defaults they carry."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..space import Scalar, Space

# Scheduler types whose trials pause at rungs and are resumed from their checkpoints.
PAUSING_SCHEDULERS = ("promotion", "pasha", "sync_hyperband", "pbt")
# The driver's environment variables a Slurm trial gets by default (besides HPC_HPO_* and what the
# template sets): enough to find the same Python and libraries, nothing the driver happens to hold.
DEFAULT_SLURM_EXPORT = ("PATH", "PYTHONPATH", "VIRTUAL_ENV", "CONDA_PREFIX", "LD_LIBRARY_PATH", "HOME", "USER",
                        "LOGNAME", "LANG", "LC_ALL", "TMPDIR", "SLURM_CONF")
# The same for a PBS trial job (execution.pbs.export).
DEFAULT_PBS_EXPORT = ("PATH", "PYTHONPATH", "VIRTUAL_ENV", "CONDA_PREFIX", "LD_LIBRARY_PATH", "HOME", "USER",
                      "LOGNAME", "LANG", "LC_ALL", "TMPDIR")
DEFAULT_RESUME_FLAGS = {"resume_from": "--resume_from", "checkpoint_dir": "--checkpoint_dir"}
DEFAULT_MAX_FAILURES = 20
DEFAULT_MAX_REQUEUES = 3


@dataclass(frozen=True)
class MetricComponent:
    name: str
    mode: str
    weight: float


@dataclass(frozen=True)
class Objective:
    name: str
    mode: str


@dataclass(frozen=True)
class MetricSpec:
    """The objective: one reported metric, or a weighted sum of several (CrayAI's metric weights), or
    several objectives ranked by Pareto dominance (a list of metrics, each with its mode).

    With components, `name` is the combined value's name and `mode` its direction; a component
    whose mode differs from it enters with a negative sign, so every weight says "how much".
    With objectives (two or more), `name` and `mode` are the first objective's: the journal's value
    column and the searchers' loss follow it, while MO-ASHA and `best` use them all.
    """

    name: str
    mode: str  # "min" or "max"
    components: tuple[MetricComponent, ...] = ()
    objectives: tuple[Objective, ...] = ()

    @property
    def reported(self) -> tuple[str, ...]:
        """The names a report line must carry."""
        if self.objectives:
            return tuple(o.name for o in self.objectives)
        return tuple(c.name for c in self.components) or (self.name,)

    def scheduled(self, value: float, metrics: dict[str, Any] | None) -> float | tuple[float, ...]:
        """What the scheduler ranks a report by: its value, or with several objectives the tuple of their
        values from the report's metrics (one missing or not a number, as in a damaged journal line: NaN)."""
        if not self.objectives:
            return value
        found = metrics or {}
        return tuple(_as_float(found.get(o.name)) for o in self.objectives)

    def combine(self, values: dict[str, float]) -> float:
        if not self.components:
            return values[self.name]
        return sum(c.weight * (1 if c.mode == self.mode else -1) * values[c.name] for c in self.components)


def _as_float(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return math.nan


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
    repeat: int | None = 1  # sync_hyperband: passes of the bracket plan; None: until the budget ends
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
class PerEval:
    """One amount of a trial's shape: a fixed number, or the value of a hyperparameter of the trial
    (CrayAI lets nodes_per_eval be one), e.g. `gpus_per_eval: {param: gpus}`."""

    value: int | None = None
    param: str | None = None
    least: int | None = None  # with a param: its smallest value (how many trials fit at most)

    def of(self, config: dict[str, Any]) -> int | None:
        """The amount for a trial with this config (None: not asked for)."""
        if self.param is None:
            return self.value
        return int(config[self.param])

    @property
    def smallest(self) -> int | None:
        return self.value if self.param is None else self.least


@dataclass(frozen=True)
class TrialShape:
    """What one trial asks for beyond whole nodes (execution.*_per_eval): a share of one node. With none
    set, a trial takes nodes_per_eval whole nodes, as before."""

    gpus: PerEval = field(default_factory=PerEval)
    cpus: PerEval = field(default_factory=PerEval)
    mem_mb: PerEval = field(default_factory=PerEval)
    tasks: PerEval = field(default_factory=PerEval)

    @property
    def sub_node(self) -> bool:
        return any(p.value is not None or p.param is not None for p in (self.gpus, self.cpus, self.mem_mb, self.tasks))


@dataclass(frozen=True)
class LocalSpec:
    """Local mode: the GPUs trials share (None: found from CUDA_VISIBLE_DEVICES or nvidia-smi -L)."""

    gpus: tuple[str, ...] | None = None
    vendor: str | None = None  # nvidia or amd: which variables carry a trial's devices (None: as found)


@dataclass(frozen=True)
class WorkdirSpec:
    """Where each trial runs (CrayAI's run_path / src_path): the driver's directory (shared), or a
    directory of its own (trial) under run_path, with the src_path files put in it."""

    mode: str = "shared"
    run_path: Path | None = None
    src_path: tuple[Path, ...] = ()
    src_copy: bool = False  # copy src_path into each trial's directory instead of linking it


@dataclass(frozen=True)
class AllocationRequest:
    """execution.slurm.allocation: the allocation a driver on a login node asks for itself (salloc --no-shell)."""

    nodes: int
    time: str | None = None
    args: tuple[str, ...] = ()


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
    nodes_param: str | None = None  # nodes_per_eval: {param: name}, each trial's own node count
    allocation: AllocationRequest | None = None  # steps mode from a login node: the driver's own allocation


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
    shape: TrialShape = field(default_factory=TrialShape)  # gpus/cpus/mem/tasks_per_eval
    local: LocalSpec = field(default_factory=LocalSpec)
    workdir: WorkdirSpec = field(default_factory=WorkdirSpec)
    keep_checkpoints: str = "resumable"  # all | resumable | best (hpc_hpo/retention.py)
    keep_best: int = 3  # the best trials whose checkpoints are kept whatever their state
    join: bool = False  # drivers join the experiment that others may be running (README "Elastic experiments")


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
    hooks: HooksSpec = field(default_factory=lambda: HooksSpec())  # commands run on events (config/hooks.py)


@dataclass(frozen=True)
class HooksSpec:
    """hooks: commands (argv) run on events, each bounded by timeout, at most max_running at once (config/hooks.py)."""

    on_trial_end: tuple[str, ...] | None = None
    on_new_best: tuple[str, ...] | None = None
    on_experiment_end: tuple[str, ...] | None = None
    timeout: float = 60.0  # seconds; a hook still running then is killed
    max_running: int = 4
