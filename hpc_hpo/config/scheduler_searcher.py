"""The scheduler and searcher sections: the types there are, their options, rung levels, and the
points a searcher evaluates first."""
from __future__ import annotations

import logging
import math
import os
from typing import Any

from ..errors import ConfigError
from ..schedulers.base import rung_levels
from ..space import Choice, Fixed, RandInt, Scalar, Space
from .params import coerce_to_domain
from .reading import MAX_COUNT, Section, _as_list, as_number
from .specs import ResourceSpec, SchedulerSpec, SearcherSpec

# asha: stopping ASHA; promotion: ASHA that pauses trials at rungs and resumes the best (Li et al.
# 2018); pasha: promotion ASHA whose maximum resource grows while the top ranking still changes;
# sync_hyperband: synchronous Hyperband's exact bracket plan (Li et al. 2017).
# pbt: population-based training, trials pausing every perturbation_interval.
SCHEDULER_TYPES = ("fifo", "asha", "promotion", "pasha", "sync_hyperband", "pbt")
# Types whose implementation has landed; the others are refused with a clear message until then.
AVAILABLE_SCHEDULERS = ("fifo", "asha", "promotion", "pasha", "sync_hyperband", "pbt")
AVAILABLE_SEARCHERS = ("random", "bayesopt", "grid", "kde", "mobster", "genetic")
SEARCHER_TYPES = ("random", "grid", "bayesopt", "kde", "mobster", "genetic")
SEARCHER_DATA = ("rungs", "all", "rungs_and_last")
# More rung levels than this is a grace period a typo made tiny; a grid of more configurations than
# MAX_GRID can never be run through.
MAX_RUNGS = 100
MAX_GRID = 1_000_000
log = logging.getLogger(__name__)
_said: set[str] = set()  # warnings given in this process: a config validated again says nothing new
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
    # mobster: the multi-fidelity GP (hpc_hpo/searchers/mobster.py); max_size_data_for_model caps its training set.
    "mobster": {"num_init_random": (None, "int"), "opt_nstarts": (2, "int"), "opt_maxiter": (50, "int"),
                "num_candidates": (500, "int"), "max_size_data_for_model": (300, "int")},
    "genetic": {"population_size": (10, "int"), "num_demes": (1, "int"), "generations": (None, "int"),
                "mutation_rate": (0.1, "rate"), "crossover_rate": (0.5, "rate"),
                "migration_interval": (5, "int"), "mutation_std": (0.2, "positive")},
}


def _scheduler(value: Any, resource: ResourceSpec) -> SchedulerSpec:
    pbt_keys = ("perturbation_interval", "population_size", "quantile_fraction", "resample_probability")
    section = Section(value, "scheduler", ("type", "grace_period", "reduction_factor", "rung_levels", "brackets",
                                           "rung_system_per_bracket", "ranking_epsilon", "repeat") + pbt_keys)
    kind = section.choice("type", SCHEDULER_TYPES, "asha")
    _available(kind, AVAILABLE_SCHEDULERS, "scheduler.type")
    for key in pbt_keys:
        if key in section.data and kind != "pbt":
            raise ConfigError(section.key(key), section.data[key], f"is an option of type pbt, not '{kind}'")
    interval = section.number("perturbation_interval", section.number("grace_period", 1, positive=True),
                              positive=True)
    if kind == "pbt" and interval >= resource.max:
        raise ConfigError("scheduler.perturbation_interval", interval, f"must be below resource.max ({resource.max})")
    population = section.number("population_size", 8, integer=True, positive=True, maximum=MAX_COUNT)
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
    repeat = _repeat(section, kind)
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
        _warn_ignored_by_rung_levels(section, kind, brackets)
    elif kind != "fifo" and grace >= resource.max:
        raise ConfigError("scheduler.grace_period", grace,
                          f"must be less than resource.max ({resource.max})",
                          f"set grace_period below {resource.max} or raise resource.max")
    elif kind != "fifo" and math.log(resource.max / grace) / math.log(eta) > MAX_RUNGS:
        raise ConfigError("scheduler.grace_period", grace, f"makes more than {MAX_RUNGS} rung levels up to "
                          f"resource.max ({resource.max}) with reduction_factor {eta}",
                          "raise grace_period (rungs are grace_period * reduction_factor**k)")
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
                         resample_probability=resample, repeat=repeat)


def _repeat(section: Section, kind: str) -> int | None:
    """How many passes of synchronous Hyperband's bracket plan run (null: until the budget ends)."""
    if "repeat" not in section.data:
        return 1
    if kind != "sync_hyperband":
        raise ConfigError("scheduler.repeat", section.data["repeat"], f"is an option of type sync_hyperband, not "
                          f"'{kind}'", "remove it")
    return section.number("repeat", None, integer=True, positive=True, maximum=MAX_COUNT)


def _warn_ignored_by_rung_levels(section: Section, kind: str, brackets: int) -> None:
    """Given rung_levels set the levels and the share kept at each (q_j = r_j / r_{j+1}), as in the seed;
    a grace_period or reduction_factor written beside them would silently do nothing, so say so.
    (reduction_factor still sizes Hyperband's brackets: sync_hyperband, or brackets > 1.)"""
    if kind not in ("asha", "promotion", "pasha", "sync_hyperband"):
        return
    ignored = [key for key in ("grace_period", "reduction_factor") if key in section.data
               and not (key == "reduction_factor" and (kind == "sync_hyperband" or brackets > 1))]
    if not ignored:
        return
    keys = " and ".join(section.key(key) for key in ignored)
    message = (f"{keys} {'is' if len(ignored) == 1 else 'are'} ignored: the rung levels and the share kept "
               f"at each come from {section.key('rung_levels')}; remove {keys}")
    if message not in _said:
        _said.add(message)
        log.warning("%s", message)


def _available(kind: str, available: tuple[str, ...], key: str) -> None:
    if kind not in available:
        raise ConfigError(key, kind, "is not available in this version of hpc_hpo",
                          f"use one of: {', '.join(available)}")


def _rung_levels(value: Any, resource: ResourceSpec) -> tuple[float, ...]:
    key = "scheduler.rung_levels"
    if not isinstance(value, list) or not value:
        raise ConfigError(key, value, "must be a non-empty list of increasing positive numbers")
    if len(value) > MAX_RUNGS:
        raise ConfigError(key, value, f"lists {len(value)} levels, more than {MAX_RUNGS}")
    levels = [as_number(v, f"{key}[{i}]", positive=True) for i, v in enumerate(value)]
    for i in range(1, len(levels)):
        if levels[i] <= levels[i - 1]:
            raise ConfigError(key, value, "must be strictly increasing",
                              f"entry {i} ({levels[i]}) is not above entry {i - 1} ({levels[i - 1]})")
    if levels[-1] > resource.max:
        raise ConfigError(key, value, f"last level must be at most resource.max ({resource.max})",
                          "drop the levels above it or raise resource.max")
    return tuple(levels)


SEARCHERS_OF_RUNGS = ("kde", "mobster")  # the searchers that choose which reports they learn from


def _searcher(value: Any, space: Space, frozen: int | None = None) -> SearcherSpec:
    every_option = tuple(sorted({name for options in SEARCHER_OPTIONS.values() for name in options}))
    section = Section(value, "searcher", ("type", "seed", "points_to_evaluate", "searcher_data") + every_option)
    kind = section.choice("type", SEARCHER_TYPES, "random")
    _available(kind, AVAILABLE_SEARCHERS, "searcher.type")
    options = _searcher_options(section, kind)
    searcher_data = section.choice("searcher_data", SEARCHER_DATA, "rungs")
    if "searcher_data" in section.data and kind not in SEARCHERS_OF_RUNGS:
        # Accepting it silently would let a user believe bayesopt or random learns from rung reports.
        raise ConfigError(section.key("searcher_data"), section.data["searcher_data"],
                          f"is an option of searcher type {' / '.join(SEARCHERS_OF_RUNGS)}, not of '{kind}'",
                          "drop it, or use searcher.type mobster (a multi-fidelity GP) or kde")
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
    if kind == "grid":
        _check_grid(space, options["grid_size"])
    return SearcherSpec(type=kind, seed=seed, points_to_evaluate=points, searcher_data=searcher_data,
                        options=options)


def _check_grid(space: Space, grid_size: int) -> None:
    """The grid is the product of the parameters' axes; one that could never be run through is refused
    (the product over all parameters: an upper bound when conditions leave some inactive)."""
    sizes = []
    for param in space.params:
        domain = param.domain
        if isinstance(domain, Fixed):
            sizes.append(1)
        elif isinstance(domain, Choice):
            sizes.append(len(domain.values))
        elif isinstance(domain, RandInt):
            sizes.append(min(grid_size, domain.high - domain.low + 1))
        else:
            sizes.append(grid_size)
    total = math.prod(sizes)
    if total > MAX_GRID:
        axes = " x ".join(f"{p.name} {n}" for p, n in zip(space.params, sizes) if n > 1)
        raise ConfigError("searcher.grid_size", grid_size, f"makes a grid of up to {total:,} configurations "
                          f"({axes}), more than {MAX_GRID:,} can be run",
                          "lower grid_size or the number of choices, or use random or bayesopt search "
                          "with budget.max_trials")


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
        number = as_number(raw, key, integer=check in ("int", "int0"), positive=check in ("int", "positive"),
                           maximum=MAX_COUNT if check in ("int", "int0") and name != "grid_size" else None,
                           why="a searcher that builds this many of anything runs out of memory")
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
