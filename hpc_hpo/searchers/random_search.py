"""Random search, with the initial points (defaults, or points_to_evaluate) first."""
from __future__ import annotations

import numpy as np

from ..space import Scalar, Space
from .base import Searcher


class RandomSearcher(Searcher):
    """Trial i gets the i-th initial point, then draws from a generator seeded by (seed, i).

    Seeding per trial index, rather than drawing from one stream, makes a trial's config
    a function of its index alone: a resumed driver proposes exactly what it would have.
    """

    def __init__(self, space: Space, seed: int,
                 points_to_evaluate: tuple[dict[str, Scalar], ...] | None = None) -> None:
        self.space = space
        self.seed = seed
        # No points given: the defaults first (midpoints where there is no default), as Syne Tune does.
        given = points_to_evaluate if points_to_evaluate is not None else ({},)
        self.initial = [space.initial_config(point) for point in given]

    def suggest(self, trial_index: int) -> dict[str, Scalar] | None:
        if trial_index < len(self.initial):
            return dict(self.initial[trial_index])
        rng = np.random.default_rng([self.seed, trial_index])
        return self.space.sample(rng)
