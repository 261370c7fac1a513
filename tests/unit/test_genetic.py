"""The genetic searcher: configs stay in the space, neighbouring-index mutation, elitism, WAIT and
None, ring migration, progress on a simple objective, and the same next generation after a replay."""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import pytest

from hpc_hpo.config import validate_config
from hpc_hpo.searchers import WAIT
from hpc_hpo.searchers.genetic import GeneticSearcher
from hpc_hpo.space import Choice, Fixed, LogRandInt, LogUniform, Param, RandInt, Space, Uniform

Objective = Callable[[dict[str, Any]], float]
Event = tuple[str, str, Any]


# --------------------------------------------------------------------------- helpers


class Recorder:
    """Plays the driver: sends the events a searcher gets and keeps them for a replay."""

    def __init__(self, searcher: GeneticSearcher) -> None:
        self.searcher = searcher
        self.events: list[Event] = []
        self.configs: list[dict[str, Any]] = []
        self.fitness: list[float] = []

    def create(self, index: int, config: dict[str, Any]) -> str:
        trial_id = f"{index:04d}"
        self.searcher.on_trial_created(trial_id, config)
        self.events.append(("created", trial_id, config))
        self.configs.append(config)
        self.fitness.append(math.inf)
        return trial_id

    def report(self, trial_id: str, loss: float) -> None:
        self.searcher.on_report(trial_id, 1.0, loss)
        self.events.append(("report", trial_id, loss))
        if math.isfinite(loss):
            index = int(trial_id)
            self.fitness[index] = min(self.fitness[index], loss)

    def end(self, trial_id: str) -> None:
        self.searcher.on_trial_end(trial_id)
        self.events.append(("end", trial_id, None))

    def generation(self, objective: Objective, rng: np.random.Generator | None = None) -> list[int]:
        """Hand out one whole generation, then report and end its trials in a shuffled order,
        with a worse report first, as a real run does; returns the trial indices."""
        rng = rng or np.random.default_rng(0)
        indices = []
        while True:
            index = len(self.configs)
            config = self.searcher.suggest(index)
            if config is WAIT or config is None:
                break
            indices.append(index)
            self.create(index, config)
        assert indices, "no generation to hand out"
        for index in rng.permutation(indices):
            trial_id = f"{int(index):04d}"
            loss = objective(self.configs[int(index)])
            self.report(trial_id, loss + 1.0)
            self.report(trial_id, loss)
            self.end(trial_id)
        return indices


def replay(events: list[Event], searcher: GeneticSearcher) -> GeneticSearcher:
    for kind, trial_id, payload in events:
        if kind == "created":
            searcher.on_trial_created(trial_id, payload)
        elif kind == "report":
            searcher.on_report(trial_id, 1.0, payload)
        else:
            searcher.on_trial_end(trial_id)
    return searcher


def mixed_space() -> Space:
    """Every parameter type, conditions included (momentum only for sgd, beta2 only for narrow nets)."""
    config = validate_config({
        "name": "ga", "command": "python train.py", "metric": {"name": "loss", "mode": "min"},
        "resource": {"max": 9}, "budget": {"max_trials": 4},
        "params": {"lr": {"type": "loguniform", "low": 1e-5, "high": 1e-1},
                   "layers": {"type": "randint", "low": 1, "high": 4},
                   "width": {"type": "lograndint", "low": 16, "high": 512},
                   "dropout": {"type": "uniform", "low": 0.0, "high": 0.5},
                   "opt": {"type": "choice", "values": ["adam", "sgd", "rmsprop"]},
                   "momentum": {"type": "uniform", "low": 0.5, "high": 0.99,
                                "condition": {"parent": "opt", "equals": "sgd"}},
                   "beta2": {"type": "uniform", "low": 0.9, "high": 0.999,
                             "condition": {"parent": "width", "less_than": 100}},
                   "act": {"type": "pchoice", "values": ["relu", "tanh", "gelu"], "weights": [0.5, 0.25, 0.25]},
                   "bias": [True, False],
                   "epochs": 9}}, check_program=False)
    return config.space


def mixed_loss(config: dict[str, Any]) -> float:
    loss = (math.log10(config["lr"]) + 3) ** 2 + abs(config["layers"] - 2) + config["dropout"]
    loss += {"adam": 0.0, "sgd": 1.0 - config.get("momentum", 0.0), "rmsprop": 0.5}[config["opt"]]
    return loss + math.log(config["width"]) / 10 + config.get("beta2", 1.0)


def assert_in_space(space: Space, config: dict[str, Any]) -> None:
    """Exactly the active parameters, each a value of its domain with the right Python type."""
    assert config == space.complete(config, lambda p: pytest.fail(f"{p.name} missing from {config}"))
    assert list(config) == [name for name in space.names if name in config]
    for param in space.params:
        if param.name not in config:
            continue
        value, domain = config[param.name], param.domain
        assert domain.contains(value), (param.name, value)
        if isinstance(domain, RandInt):
            assert type(value) is int
        elif isinstance(domain, (Uniform, LogUniform)):
            assert type(value) is float
        elif isinstance(domain, Choice):
            assert any(value == v and type(value) is type(v) for v in domain.values)


SPHERE = Space(tuple(Param(f"x{i}", Uniform(-5.0, 5.0), None) for i in range(4))
               + (Param("c", Choice(("a", "b", "c", "d", "e")), None),))


def sphere(config: dict[str, Any]) -> float:
    return sum(config[f"x{i}"] ** 2 for i in range(4)) + "edcba".index(config["c"])


# --------------------------------------------------------------------------- the space


def test_configs_stay_in_the_space_over_many_generations() -> None:
    space = mixed_space()
    searcher = GeneticSearcher(space, seed=3, points_to_evaluate=None, population_size=8, num_demes=2,
                               generations=30, mutation_rate=0.5, crossover_rate=0.5, migration_interval=3)
    run = Recorder(searcher)
    for _ in range(30):
        run.generation(mixed_loss)
    assert len(run.configs) == 8 * 2 * 30
    for config in run.configs:
        assert_in_space(space, config)
    # Conditions were exercised both ways, and mutation moved children into newly active params.
    assert any("momentum" in c for c in run.configs) and any("momentum" not in c for c in run.configs)
    assert any("beta2" in c for c in run.configs) and any("beta2" not in c for c in run.configs)
    assert {c["opt"] for c in run.configs[16:]} == {"adam", "sgd", "rmsprop"}


def test_generation_zero_is_initial_points_then_random() -> None:
    space = Space((Param("x", Uniform(0.0, 1.0), None, default=0.25), Param("c", Choice(("a", "b")), None)))
    searcher = GeneticSearcher(space, seed=1, points_to_evaluate=None, population_size=4)
    assert searcher.suggest(0) == {"x": 0.25, "c": "a"}  # no points given: the defaults first
    given = GeneticSearcher(space, seed=1, points_to_evaluate=({"x": 0.5}, {"c": "b"}), population_size=4)
    assert [given.suggest(i) for i in range(2)] == [{"x": 0.5, "c": "a"}, {"x": 0.25, "c": "b"}]
    assert given.suggest(2) == searcher.suggest(2)  # the random part depends on (seed, index) alone
    assert GeneticSearcher(space, seed=2, points_to_evaluate=None, population_size=4).suggest(2) != searcher.suggest(2)


def test_more_initial_points_than_a_generation_all_run_first() -> None:
    space = Space((Param("x", Uniform(0.0, 1.0), None),))
    points = tuple({"x": i / 10} for i in range(7))
    searcher = GeneticSearcher(space, seed=0, points_to_evaluate=points, population_size=2, num_demes=2,
                               generations=3)
    run = Recorder(searcher)
    first = run.generation(lambda c: c["x"])
    assert len(first) == 7 and run.configs == [dict(p) for p in points]
    assert len(run.generation(lambda c: c["x"])) == 4
    run.generation(lambda c: c["x"])
    assert searcher.suggest(len(run.configs)) is None
    assert len(run.configs) == 7 + 4 + 4


# --------------------------------------------------------------------------- mutation


@pytest.mark.parametrize("start", range(5))
def test_choice_gene_moves_by_exactly_one_index(start: int) -> None:
    values = ("v0", "v1", "v2", "v3", "v4")
    space = Space((Param("c", Choice(values), None), Param("e", Fixed(1), None)))
    population = 10
    searcher = GeneticSearcher(space, seed=start, points_to_evaluate=({"c": values[start]},) * population,
                               population_size=population, mutation_rate=1.0, crossover_rate=0.0)
    run = Recorder(searcher)
    run.generation(lambda c: 0.0)
    run.generation(lambda c: 0.0)
    children = run.configs[population + 1:]  # slot 0 is the elite, copied unchanged
    assert run.configs[population]["c"] == values[start]
    moved = {abs(values.index(c["c"]) - start) for c in children}
    assert moved == {1}
    if 0 < start < 4:  # both neighbours are reached from the middle
        assert {values.index(c["c"]) for c in children} == {start - 1, start + 1}


def test_mutate_moves_list_values_to_a_neighbour_and_ranges_by_the_noise() -> None:
    searcher = GeneticSearcher(SPHERE, seed=0, points_to_evaluate=None, mutation_std=0.2)
    rng = np.random.default_rng(5)
    numbers = Choice((1, 2, 4, 8, 16, 32))
    for _ in range(200):
        start = int(rng.integers(6))
        assert abs(numbers.values.index(searcher.mutate(numbers, numbers.values[start], rng)) - start) == 1
    assert searcher.mutate(Choice(("only",)), "only", rng) == "only"
    # Unit-cube noise: sd 0.2 of the range; log ranges move in log space; integers stay integers.
    linear = [searcher.mutate(Uniform(0.0, 10.0), 5.0, rng) for _ in range(4000)]
    assert np.std(linear) == pytest.approx(2.0, rel=0.1)
    logs = [math.log10(searcher.mutate(LogUniform(1e-6, 1.0), 1e-3, rng)) for _ in range(4000)]
    assert np.std(logs) == pytest.approx(1.2, rel=0.1) and np.median(logs) == pytest.approx(-3, abs=0.1)
    ints = [searcher.mutate(RandInt(0, 100), 50, rng) for _ in range(4000)]
    assert all(type(v) is int and 0 <= v <= 100 for v in ints) and np.std(ints) == pytest.approx(20, rel=0.1)
    wide = [searcher.mutate(LogRandInt(1, 10 ** 6), 1000, rng) for _ in range(2000)]
    assert all(type(v) is int and 1 <= v <= 10 ** 6 for v in wide)
    clipped = [searcher.mutate(Uniform(0.0, 1.0), 1.0, rng) for _ in range(200)]
    assert all(0.0 <= v <= 1.0 for v in clipped)


def test_no_crossover_no_mutation_copies_tournament_winners() -> None:
    space = Space((Param("x", Uniform(0.0, 1.0), None), Param("y", Uniform(0.0, 1.0), None)))
    searcher = GeneticSearcher(space, seed=4, points_to_evaluate=None, population_size=6,
                               mutation_rate=0.0, crossover_rate=0.0)
    run = Recorder(searcher)
    run.generation(lambda c: c["x"] + c["y"])
    run.generation(lambda c: c["x"] + c["y"])
    parents = run.configs[:6]
    assert all(child in parents for child in run.configs[6:])
    worst = max(range(6), key=lambda i: run.fitness[i])
    assert parents[worst] not in run.configs[6:]  # a binary tournament never picks the worst


# --------------------------------------------------------------------------- selection and demes


def test_elitism_the_best_of_a_generation_starts_the_next() -> None:
    searcher = GeneticSearcher(SPHERE, seed=11, points_to_evaluate=None, population_size=6, generations=12)
    run = Recorder(searcher)
    generations = [run.generation(sphere) for _ in range(12)]
    for previous, current in zip(generations, generations[1:]):
        best = min(previous, key=lambda i: run.fitness[i])
        assert run.configs[current[0]] == run.configs[best]
        assert min(run.fitness[i] for i in current) <= run.fitness[best]


def test_fitness_is_the_lowest_report_and_nan_inf_or_no_report_are_worst() -> None:
    space = Space((Param("x", Uniform(0.0, 1.0), None),))
    searcher = GeneticSearcher(space, seed=0, points_to_evaluate=tuple({"x": i / 10} for i in range(5)),
                               population_size=5)
    run = Recorder(searcher)
    ids = [run.create(i, searcher.suggest(i)) for i in range(5)]
    run.report(ids[0], float("nan"))
    run.report(ids[1], float("-inf"))
    run.report(ids[2], 7.0)
    run.report(ids[2], 9.0)  # later and worse: the trial's fitness stays 7
    run.report(ids[3], 8.0)
    run.report(ids[3], float("inf"))
    # ids[4] never reports (it failed at start)
    for trial_id in ids:
        run.end(trial_id)
    assert searcher.suggest(5) == {"x": 0.2}


def test_wait_while_a_generation_is_unfinished() -> None:
    space = Space((Param("x", Uniform(0.0, 1.0), None),))
    searcher = GeneticSearcher(space, seed=0, points_to_evaluate=None, population_size=4, generations=3)
    run = Recorder(searcher)
    ids = [run.create(i, searcher.suggest(i)) for i in range(4)]
    assert searcher.suggest(4) is WAIT
    for trial_id in ids[:3]:
        run.report(trial_id, 1.0)
        run.end(trial_id)
    run.report(ids[3], 0.5)  # reported but still running
    assert searcher.suggest(4) is WAIT and searcher.suggest(4) is WAIT
    run.end(ids[3])
    assert searcher.suggest(4) == run.configs[3]  # the best is the elite of generation 1
    assert isinstance(searcher.suggest(5), dict)
    assert searcher.suggest(8) is WAIT  # generation 2 needs generation 1's results
    run.end(ids[3])  # a repeated end changes nothing
    assert searcher.suggest(8) is WAIT


def test_none_after_the_last_generation() -> None:
    space = Space((Param("x", Uniform(0.0, 1.0), None),))
    searcher = GeneticSearcher(space, seed=0, points_to_evaluate=None, population_size=3, num_demes=2,
                               generations=2)
    run = Recorder(searcher)
    run.generation(lambda c: c["x"])
    assert searcher.suggest(12) is None  # beyond the last generation: None even before results
    run.generation(lambda c: c["x"])
    assert len(run.configs) == 3 * 2 * 2
    assert searcher.suggest(12) is None and searcher.suggest(13) is None
    single = GeneticSearcher(space, seed=0, points_to_evaluate=None, population_size=3, generations=1)
    assert [single.suggest(i) is None for i in range(4)] == [False, False, False, True]


def test_index_maps_to_generation_deme_and_slot() -> None:
    searcher = GeneticSearcher(SPHERE, seed=0, points_to_evaluate=None, population_size=3, num_demes=2)
    assert [searcher.locate(i) for i in (0, 2, 3, 5, 6, 8, 9, 12)] == [
        (0, 0, 0), (0, 0, 2), (0, 1, 3), (0, 1, 5), (1, 0, 0), (1, 0, 2), (1, 1, 3), (2, 0, 0)]
    assert searcher.deme_members(1, 1) == [9, 10, 11]


def test_ring_migration_at_the_interval() -> None:
    demes, size = 3, 5
    searcher = GeneticSearcher(SPHERE, seed=2, points_to_evaluate=None, population_size=size, num_demes=demes,
                               generations=5, migration_interval=2)
    run = Recorder(searcher)
    generations = [run.generation(sphere) for _ in range(5)]

    def best_of(generation: int, deme: int) -> dict[str, Any]:
        members = searcher.deme_members(generation, deme)
        return run.configs[min(members, key=lambda i: (run.fitness[i], i))]

    def configs_of(generation: int, deme: int) -> list[dict[str, Any]]:
        return [run.configs[i] for i in searcher.deme_members(generation, deme)]

    assert [len(g) for g in generations] == [demes * size] * 5
    for deme in range(demes):
        after = (deme + 1) % demes
        # Generation 1 is no migration generation: a deme holds no other deme's best.
        assert best_of(0, deme) not in configs_of(1, after)
        # Generations 2 and 4 are: the best of deme k arrives in deme k+1, first or second
        # (after that deme's own elite); it took the place of the worst among the parents.
        for generation in (2, 4):
            assert best_of(generation - 1, deme) in configs_of(generation, after)[:2]
            assert configs_of(generation, after)[0] == best_of(generation - 1, after) or (
                configs_of(generation, after)[0] == best_of(generation - 1, deme))


def test_demes_evolve_apart_without_migration() -> None:
    space = Space((Param("x", Uniform(0.0, 1.0), None),))
    searcher = GeneticSearcher(space, seed=0, points_to_evaluate=None, population_size=4, num_demes=2,
                               generations=4, mutation_rate=0.0, crossover_rate=0.0, migration_interval=100)
    run = Recorder(searcher)
    for _ in range(4):
        run.generation(lambda c: c["x"])
    for deme in range(2):
        ancestors = [run.configs[i] for i in searcher.deme_members(0, deme)]
        assert all(run.configs[i] in ancestors for g in range(1, 4) for i in searcher.deme_members(g, deme))


# --------------------------------------------------------------------------- progress and determinism


def test_improves_a_simple_objective_over_generations() -> None:
    ratios = []
    for seed in range(8):
        searcher = GeneticSearcher(SPHERE, seed=seed, points_to_evaluate=None, population_size=10, generations=10)
        run = Recorder(searcher)
        generations = [run.generation(sphere) for _ in range(10)]
        first = np.mean([run.fitness[i] for i in generations[0]])
        last = np.mean([run.fitness[i] for i in generations[-1]])
        ratios.append(last / first)
    # Measured: the last generation's mean is 9% to 18% of the first's on these seeds (median 13%),
    # at most 25% over seeds 0-39; asserted with twice that headroom.
    assert max(ratios) < 0.6
    assert np.median(ratios) < 0.3


def test_same_next_config_after_replaying_the_events() -> None:
    def build() -> GeneticSearcher:
        return GeneticSearcher(mixed_space(), seed=21, points_to_evaluate=None, population_size=5, num_demes=2,
                               migration_interval=2, mutation_rate=0.3)

    original = build()
    run = Recorder(original)
    for _ in range(3):
        run.generation(mixed_loss)
    # Part of generation 3 is handed out and running when the driver stops.
    for index in range(len(run.configs), len(run.configs) + 4):
        run.create(index, original.suggest(index))
    resumed = replay(run.events, build())
    next_index = len(run.configs)
    assert resumed.suggest(next_index) == original.suggest(next_index)
    assert [resumed.suggest(i) for i in range(next_index, 40)] == [original.suggest(i) for i in range(next_index, 40)]
    # The configs handed out before the stop are the ones a replay would have handed out too.
    fresh = replay([e for e in run.events if int(e[1]) < 30], build())
    assert [fresh.suggest(i) for i in range(30, next_index)] == run.configs[30:]


def test_the_order_results_arrive_in_does_not_matter() -> None:
    configs = []
    for shuffle_seed in (1, 2):
        searcher = GeneticSearcher(SPHERE, seed=8, points_to_evaluate=None, population_size=6, generations=4)
        run = Recorder(searcher)
        for _ in range(4):
            run.generation(sphere, np.random.default_rng(shuffle_seed))
        configs.append(run.configs)
    assert configs[0] == configs[1]


def test_different_seeds_breed_differently() -> None:
    runs = []
    for seed in (1, 2):
        run = Recorder(GeneticSearcher(SPHERE, seed=seed, points_to_evaluate=None, population_size=6))
        run.generation(sphere)
        run.generation(sphere)
        runs.append(run.configs[7:])
    assert runs[0] != runs[1]
