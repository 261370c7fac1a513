"""Genetic search as CrayAI's genetic optimizer does it: demes, selection with elitism, uniform crossover,
mutation to neighbouring values, and ring migration between demes.

Generations are synchronous: the trials of one generation run in parallel, and the next generation
is bred only when every trial of the previous one has ended, from their results alone. Trial
indices map to (generation, deme, slot) by arithmetic, and each generation is a function of the
seed and of the previous generation's configs and results, so a resumed driver that replays the
journal proposes exactly what the first one would have.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from ..space import Choice, Domain, Fixed, Scalar, Space
from .base import WAIT, Searcher
from .encoding import _from_unit, _index_of, _to_unit

# Breeding draws from [seed, BREED_TAG, generation, deme]; generation 0 from [seed, trial_index] as
# random search does. The tag keeps the two families apart (numpy pads short seeds with zeros).
BREED_TAG = 0x67656E
# Binary tournaments: the milder pressure suits the small populations an HPC allocation affords.
TOURNAMENT_SIZE = 2


class GeneticSearcher(Searcher):
    """`num_demes` sub-populations of `population_size`, evolved for `generations` (None: no end).

    Generation 0 is the initial points (the defaults when none are given) then random configs; it
    grows past num_demes * population_size only if more initial points are given, so none is lost.
    Each later generation of a deme is: its best individual of the previous generation (elitism;
    it runs again, as every slot is a trial), at a migration the best of the previous deme on the
    ring, then children of two tournament winners, crossed gene by gene and mutated.

    Fitness is a trial's lowest loss over its reports; a trial without a finite one is the worst.
    A trial an early-stopping scheduler ended counts with the losses it reported before the stop.
    """

    def __init__(self, space: Space, seed: int, points_to_evaluate: tuple[dict[str, Scalar], ...] | None = None,
                 population_size: int = 10, num_demes: int = 1, generations: int | None = None,
                 mutation_rate: float = 0.1, crossover_rate: float = 0.5, migration_interval: int = 5,
                 mutation_std: float = 0.2) -> None:
        self.space = space
        self.seed = seed
        given = points_to_evaluate if points_to_evaluate is not None else ({},)
        self.initial = [space.initial_config(point) for point in given]
        self.population_size = population_size
        self.num_demes = num_demes
        self.generations = generations
        self.mutation_rate = mutation_rate
        self.crossover_rate = crossover_rate
        self.migration_interval = migration_interval
        self.mutation_std = mutation_std
        self.width = population_size * num_demes  # trials per generation after the first
        self.first_size = max(self.width, len(self.initial))
        # What the driver told us, by trial index (trials are created in index order).
        self.index_of: dict[str, int] = {}
        self.configs: list[dict[str, Scalar]] = []
        self.fitness: list[float] = []
        self.ended: list[bool] = []
        self.ended_in: dict[int, int] = {}  # generation -> how many of its trials have ended
        self.bred: dict[int, list[dict[str, Scalar]]] = {}  # generation >= 1 -> its configs in slot order

    # ------------------------------------------------------------------ the Searcher seam

    def suggest(self, trial_index: int) -> dict[str, Scalar] | None | Any:
        generation, _, slot = self.locate(trial_index)
        if self.generations is not None and generation >= self.generations:
            return None
        if generation == 0:
            if trial_index < len(self.initial):
                return dict(self.initial[trial_index])
            return self.space.sample(np.random.default_rng([self.seed, trial_index]))
        if generation not in self.bred:
            if self.ended_in.get(generation - 1, 0) < self.size(generation - 1):
                return WAIT  # the previous generation still has trials running
            self.bred[generation] = self._breed(generation)
        return dict(self.bred[generation][slot])

    def on_trial_created(self, trial_id: str, config: dict[str, Scalar]) -> None:
        if trial_id in self.index_of:
            return
        self.index_of[trial_id] = len(self.configs)
        self.configs.append(dict(config))
        self.fitness.append(math.inf)
        self.ended.append(False)

    def on_report(self, trial_id: str, resource: float, loss: float) -> None:
        index = self.index_of.get(trial_id)
        if index is not None and math.isfinite(loss) and loss < self.fitness[index]:
            self.fitness[index] = loss

    def on_trial_end(self, trial_id: str) -> None:
        index = self.index_of.get(trial_id)
        if index is None or self.ended[index]:
            return
        self.ended[index] = True
        generation = self.locate(index)[0]
        self.ended_in[generation] = self.ended_in.get(generation, 0) + 1

    # ------------------------------------------------------------------ where a trial index sits

    def locate(self, trial_index: int) -> tuple[int, int, int]:
        """(generation, deme, slot within the generation) of a trial index."""
        if trial_index < self.first_size:
            return 0, trial_index * self.num_demes // self.first_size, trial_index
        generation, slot = divmod(trial_index - self.first_size, self.width)
        return generation + 1, slot // self.population_size, slot

    def start(self, generation: int) -> int:
        """The trial index of a generation's first slot."""
        return 0 if generation == 0 else self.first_size + (generation - 1) * self.width

    def size(self, generation: int) -> int:
        return self.first_size if generation == 0 else self.width

    def deme_members(self, generation: int, deme: int) -> list[int]:
        """The trial indices of one deme in one generation."""
        first = self.start(generation)
        return [i for i in range(first, first + self.size(generation)) if self.locate(i)[1] == deme]

    # ------------------------------------------------------------------ breeding

    def _breed(self, generation: int) -> list[dict[str, Scalar]]:
        pools = [self.deme_members(generation - 1, deme) for deme in range(self.num_demes)]
        migrate = self.num_demes > 1 and generation % self.migration_interval == 0
        bests = [self._best(pool) for pool in pools]
        population: list[dict[str, Scalar]] = []
        for deme, pool in enumerate(pools):
            rng = np.random.default_rng([self.seed, BREED_TAG, generation, deme])
            migrant = None
            if migrate:
                # Ring: the best of the previous deme takes the place of this deme's worst.
                migrant = bests[(deme - 1) % self.num_demes]
                pool = list(pool)
                pool[pool.index(self._worst(pool))] = migrant
            population += self._next_deme(pool, migrant, rng)
        return population

    def _next_deme(self, pool: list[int], migrant: int | None, rng: np.random.Generator) -> list[dict[str, Scalar]]:
        elite = self._best(pool)
        members = [dict(self.configs[elite])]
        if migrant is not None and migrant != elite and len(members) < self.population_size:
            members.append(dict(self.configs[migrant]))
        while len(members) < self.population_size:
            mother, father = self._tournament(pool, rng), self._tournament(pool, rng)
            members.append(self.offspring(self.configs[mother], self.configs[father], rng))
        return members

    def _best(self, pool: list[int]) -> int:
        return min(pool, key=lambda i: (self.fitness[i], i))

    def _worst(self, pool: list[int]) -> int:
        return max(pool, key=lambda i: (self.fitness[i], i))

    def _tournament(self, pool: list[int], rng: np.random.Generator) -> int:
        picks = rng.choice(len(pool), size=min(TOURNAMENT_SIZE, len(pool)), replace=False)
        return min((pool[int(k)] for k in picks), key=lambda i: self.fitness[i])  # ties: the first drawn

    def offspring(self, mother: Mapping[str, Scalar], father: Mapping[str, Scalar],
                  rng: np.random.Generator) -> dict[str, Scalar]:
        """Uniform crossover (each gene from the father with probability crossover_rate), then
        mutation; rebuilt through the space so that inactive genes drop out and newly active ones
        get a random value."""
        genes: dict[str, Scalar] = {}
        for param in self.space.params:
            if isinstance(param.domain, Fixed):
                continue
            first, second = (father, mother) if rng.random() < self.crossover_rate else (mother, father)
            if param.name in first:
                genes[param.name] = first[param.name]
            elif param.name in second:
                genes[param.name] = second[param.name]
        for param in self.space.params:
            if param.name in genes and rng.random() < self.mutation_rate:
                genes[param.name] = self.mutate(param.domain, genes[param.name], rng)
        return self.space.complete(genes, lambda param: param.domain.sample(rng))

    def mutate(self, domain: Domain, value: Scalar, rng: np.random.Generator) -> Scalar:
        """A value from a list moves to a neighbouring index (reflected at the ends, so it always
        moves); a range value gets Gaussian noise of mutation_std in the unit cube (log space for log
        ranges), clipped to the range, integers rounded to their cell."""
        if isinstance(domain, Fixed):
            return value
        if isinstance(domain, Choice):
            count = len(domain.values)
            if count < 2:
                return value
            index = _index_of(domain, value)
            step = 1 if rng.random() < 0.5 else -1
            if not 0 <= index + step < count:
                step = -step
            return domain.values[index + step]
        unit = float(_to_unit(domain, value) + rng.normal(0.0, self.mutation_std))
        return _from_unit(domain, unit)
