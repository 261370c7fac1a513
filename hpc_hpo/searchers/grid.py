"""Grid search as CrayAI's grid optimizer does it: a fixed grid per parameter, their product in a fixed order.

Each range gets `grid_size` evenly spaced points (log-spaced for log ranges), both ends included;
an integer range gets evenly spaced integers, so at most `grid_size` of them and fewer when the
range is narrow; a choice gets every value and a fixed parameter its single value. A conditional
parameter multiplies only the grid points where it is active, so no two configs differ only in a
parameter that the program never sees. The driver asks for the next config as slots free up, which
is CrayAI's "evaluated in chunks as capacity allows"; suggest() answers None once the grid is done.
"""
from __future__ import annotations

import math
from typing import Any, Iterator, Mapping

import numpy as np

from ..space import Choice, Domain, Fixed, LogRandInt, LogUniform, RandInt, Scalar, Space, Uniform
from .base import Searcher


class GridSearcher(Searcher):
    """Trial i gets the i-th initial point, then the grid in order, skipping configs already given.

    No initial points means the grid alone: unlike random search, the defaults are not put first,
    so that the trials are exactly the grid. The grid is enumerated lazily: a resumed driver that
    asks for trial i walks the first i configs again, which is cheap next to running them.
    """

    def __init__(self, space: Space, seed: int,
                 points_to_evaluate: tuple[dict[str, Scalar], ...] | None = None, grid_size: int = 5) -> None:
        del seed  # the grid is the same for every seed; taken because every searcher is built alike
        self.space = space
        self.grid_size = grid_size
        self.axes = {param.name: grid_values(param.domain, grid_size) for param in space.params}
        self.initial = [space.initial_config(point) for point in (points_to_evaluate or ())]
        self._given = {_key(config) for config in self.initial}
        self._points: list[dict[str, Scalar]] = []  # grid configs enumerated so far, initial points left out
        self._walk: Iterator[dict[str, Scalar]] | None = self._enumerate()

    def suggest(self, trial_index: int) -> dict[str, Scalar] | None:
        if trial_index < len(self.initial):
            return dict(self.initial[trial_index])
        position = trial_index - len(self.initial)
        while len(self._points) <= position and self._walk is not None:
            config = next(self._walk, None)
            if config is None:
                self._walk = None
            elif _key(config) not in self._given:
                self._points.append(config)
        return dict(self._points[position]) if position < len(self._points) else None

    def _enumerate(self) -> Iterator[dict[str, Scalar]]:
        """Every grid config once: parameters parents first, the last one varying fastest."""
        order = self.space.parents_first
        names = self.space.names

        def walk(k: int, chosen: dict[str, Scalar]) -> Iterator[dict[str, Scalar]]:
            if k == len(order):
                yield {name: chosen[name] for name in names if name in chosen}
                return
            param = order[k]
            if not self.space.is_active(param, chosen):
                yield from walk(k + 1, chosen)
                return
            for value in self.axes[param.name]:
                chosen[param.name] = value
                yield from walk(k + 1, chosen)
            del chosen[param.name]

        return walk(0, {})


def grid_values(domain: Domain, grid_size: int) -> tuple[Scalar, ...]:
    """The points of one parameter's axis. A grid of one point per range is its midpoint."""
    if isinstance(domain, Fixed):
        return (domain.value,)
    if isinstance(domain, Choice):
        return tuple(domain.values)
    if grid_size == 1:
        return (domain.midpoint(),)
    if isinstance(domain, RandInt):  # LogRandInt too
        log = isinstance(domain, LogRandInt)
        points = _spaced(float(domain.low), float(domain.high), grid_size, log)
        return tuple(dict.fromkeys(min(max(int(math.floor(p + 0.5)), domain.low), domain.high) for p in points))
    if isinstance(domain, (Uniform, LogUniform)):
        points = _spaced(domain.low, domain.high, grid_size, isinstance(domain, LogUniform))
        return tuple(min(max(float(p), domain.low), domain.high) for p in points)
    raise TypeError(f"grid search does not know the domain {domain!r}")


def _spaced(low: float, high: float, count: int, log: bool) -> list[float]:
    """`count` evenly spaced points from low to high (in log space if `log`), the ends exactly."""
    if log:  # low * ratio**t rather than exp(log ...): decades come out exact, 1e-3 * 10.0 == 0.01
        points = [low * (high / low) ** (k / (count - 1)) for k in range(count)]
    else:
        points = [float(p) for p in np.linspace(low, high, count)]
    points[0], points[-1] = low, high
    return points


def _key(config: Mapping[str, Any]) -> tuple[tuple[str, str, Any], ...]:
    """Identity of a config for "already evaluated": the type counts, so True and 1 differ."""
    return tuple(sorted((name, type(value).__name__, value) for name, value in config.items()))

