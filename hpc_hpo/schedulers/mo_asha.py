"""Multi-objective stopping ASHA (MO-ASHA, Schmucker et al. 2021, "Multi-objective multi-fidelity
hyperparameter optimization with application to fairness"): stopping ASHA whose rungs rank vectors of
objective values by non-dominated sorting with crowding distance (NSGA-II's ranking, Deb et al. 2002)
instead of by one value. Pure: no I/O, no clock.

The rule, as this module applies it:

- Every objective is turned into one to minimise: a `max` objective's value is negated.
- a dominates b iff a_i <= b_i for every objective i and a_k < b_k for at least one k. Equal points do
  not dominate each other.
- Fronts (non-dominated sorting): front 0 holds the points no other point dominates; front k+1 those
  dominated only by points of fronts 0..k. A point's front rank is the index of its front.
- Crowding distance, within one front F: for each objective i, sort F by objective i (ties in the order
  the values were recorded); the first and the last point get infinity; every other point adds
  (next_i - prev_i) / (max_i - min_i), its neighbours' values and the extremes taken over F. An objective
  whose max_i - min_i is 0 or not finite adds nothing to the inner points. Fronts of 1 or 2 points are
  all infinite.
- At a report, the rung is found exactly as in stopping ASHA (DESIGN.md): the highest level at or below
  the resource, below max_t, that the trial has not been judged at (a report may skip levels); a report
  at max_t completes the trial. A value vector with a NaN stops the trial and joins no rung. The first
  vector at a rung continues. Otherwise let S be the vectors P recorded at that rung before, plus the new
  one v, and N = |S|. Points are ordered by the key (front rank ascending, crowding distance descending),
  both computed over S. Let `ahead` be the number of points of S whose key is strictly better than v's
  (a point tying with v is not ahead of it). v continues iff ahead / N <= q_j, the share of rung j that
  goes on (the seed's q_j = r_j / r_{j+1}, base.promotion_quantiles; 1/eta for geometric levels), and
  stops otherwise. Then v joins the rung either way.

This is Syne Tune's MOASHA test ("rank of the new point among all recorded, over their count, at most
1/eta") with NSGA-II's ranking as the priority. With one objective the fronts are the distinct values in
order, and v continues iff at most q_j * N recorded values are strictly better than it.

Cost per judgement, with N vectors at the rung and M objectives: O(N log N) for two objectives (a sweep in
sorted order assigns the fronts), O(M N^2) time and O(M N) memory for more; the crowding distance of v's
front adds O(M F log F). So unlike stopping ASHA's O(log n) a report costs O(n log n) in the number of
trials with two objectives, O(n^2) with more. Measured on 2 shared cores (random points, the whole judgement): two objectives 1.8 ms at 1,000
values at a rung, 25 ms at 10,000, 0.12 s at 30,000; three objectives 62 ms at 1,000, 0.42 s at 3,000.
"""
from __future__ import annotations

import bisect
import math
from fractions import Fraction
from typing import Sequence

import numpy as np

from .base import Decision, Outcome, Scheduler, promotion_quantiles

Point = tuple[float, ...]


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """a is no worse than b in every objective and better in one (all minimised)."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def front_ranks(points: Sequence[Sequence[float]]) -> list[int]:
    """Each point's non-dominated front (0 = not dominated by any), all objectives minimised."""
    if not points:
        return []
    if len(points[0]) == 2:
        return _front_ranks_2d(points)
    return front_ranks_pairwise(points)


def _front_ranks_2d(points: Sequence[Sequence[float]]) -> list[int]:
    """Two objectives in O(N log N): visit points by (x, y); a point is dominated by an earlier one iff that
    one's y is smaller, or equal with a smaller x. Front k keeps its lowest y so far and that point's x
    (within a front no two points share a y with different x's, the smaller would dominate); whether
    front k dominates a point is monotone in k (a dominator in front k+1 is dominated from front k), so
    a binary search finds the first front that does not."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1]))
    lowest_y: list[float] = []
    lowest_x: list[float] = []
    ranks = [0] * len(points)
    for i in order:
        x, y = points[i][0], points[i][1]
        low, high = 0, len(lowest_y)
        while low < high:
            middle = (low + high) // 2
            if lowest_y[middle] < y or (lowest_y[middle] == y and lowest_x[middle] < x):
                low = middle + 1  # front `middle` dominates the point
            else:
                high = middle
        if low == len(lowest_y):
            lowest_y.append(y)
            lowest_x.append(x)
        else:
            lowest_y[low], lowest_x[low] = y, x
        ranks[i] = low
    return ranks


def front_ranks_pairwise(points: Sequence[Sequence[float]]) -> list[int]:
    """Any number of objectives in O(M N^2) time and O(M N) memory. A point's front is the length of the
    longest chain of points dominating one another down to it (peeling fronts off gives the same), so in
    lexicographic order, where every dominator comes first, it is one more than its dominators' highest."""
    values = np.asarray(points, dtype=float)
    order = np.lexsort(values.T[::-1])  # by the first objective, then the second, ...
    ordered = values[order]
    ranks_in_order = np.zeros(len(values), dtype=int)
    for k in range(1, len(values)):
        earlier, point = ordered[:k], ordered[k]
        dominators = (earlier <= point).all(axis=1) & (earlier < point).any(axis=1)
        if dominators.any():
            ranks_in_order[k] = ranks_in_order[:k][dominators].max() + 1
    ranks = np.empty(len(values), dtype=int)
    ranks[order] = ranks_in_order
    return [int(r) for r in ranks]


def crowding_distances(front: Sequence[Sequence[float]]) -> list[float]:
    """NSGA-II's crowding distance of each point of one front (the module docstring's rule)."""
    n = len(front)
    if n <= 2:
        return [math.inf] * n
    distances = [0.0] * n
    for i in range(len(front[0])):
        order = sorted(range(n), key=lambda k: front[k][i])  # stable: ties stay in recorded order
        low, high = front[order[0]][i], front[order[-1]][i]
        distances[order[0]] = distances[order[-1]] = math.inf
        scale = high - low
        if scale == 0 or not math.isfinite(scale):
            continue
        for position in range(1, n - 1):
            k = order[position]
            distances[k] += (front[order[position + 1]][i] - front[order[position - 1]][i]) / scale
    return distances


def points_ahead(points: Sequence[Sequence[float]], index: int) -> int:
    """How many points rank strictly before points[index] by (front rank, crowding distance descending)."""
    ranks = front_ranks(points)
    own = ranks[index]
    members = [k for k, rank in enumerate(ranks) if rank == own]
    crowding = crowding_distances([points[k] for k in members])
    mine = crowding[members.index(index)]
    return sum(1 for rank in ranks if rank < own) + sum(1 for distance in crowding if distance > mine)


def keeps(recorded: Sequence[Sequence[float]], new: Sequence[float], share: Fraction | float) -> bool:
    """Whether `new` goes on at a rung holding `recorded` (minimised vectors) that keeps `share` of its points."""
    if not recorded:
        return True
    points = [*recorded, new]
    return points_ahead(points, len(points) - 1) <= share * len(points)


def non_dominated(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the points no other point dominates (all minimised), in their given order."""
    return [i for i, rank in enumerate(front_ranks(points)) if rank == 0]


def minimised(values: Sequence[float], modes: Sequence[str]) -> Point:
    """The vector with every `max` objective negated, so that smaller is better everywhere."""
    return tuple(v if mode == "min" else -v for v, mode in zip(values, modes))


class MoAsha(Scheduler):
    """Stopping ASHA over value vectors, one bracket; on_report takes a tuple with one value per objective."""

    def __init__(self, levels: list[float], modes: Sequence[str]) -> None:
        super().__init__(max_t=levels[-1], mode=modes[0])
        self.levels = levels  # the last level is max_t
        self.modes = tuple(modes)
        self.shares = promotion_quantiles(levels)  # exact fractions: ahead <= q_j * N without rounding
        self.rungs: list[list[Point]] = [[] for _ in levels[:-1]]
        self.next_rung: dict[str, int] = {}  # per trial: index of the first rung not yet reached

    def on_report(self, trial_id: str, resource: float, value: float | Sequence[float]) -> Outcome:  # type: ignore[override]
        if resource >= self.max_t:
            return Outcome(Decision.COMPLETE, rung=self.max_t)
        values = tuple(value) if isinstance(value, (tuple, list)) else (value,)
        if len(values) != len(self.modes):
            raise ValueError(f"MO-ASHA ranks {len(self.modes)} objectives; a report carried {len(values)} values")
        reached = bisect.bisect_right(self.levels, resource) - 1
        if reached < self.next_rung.get(trial_id, 0):
            return Outcome(Decision.CONTINUE)
        self.next_rung[trial_id] = reached + 1
        return self._judge(reached, values)

    def _judge(self, rung_index: int, values: Point) -> Outcome:
        level = self.levels[rung_index]
        if any(math.isnan(v) for v in values):
            return Outcome(Decision.STOP, rung=level)  # worse than anything, and kept out of the rung
        point = minimised(values, self.modes)
        rung = self.rungs[rung_index]
        goes_on = keeps(rung, point, self.shares[rung_index])
        rung.append(point)
        return Outcome(Decision.CONTINUE if goes_on else Decision.STOP, rung=level)

    def on_trial_end(self, trial_id: str) -> None:
        self.next_rung.pop(trial_id, None)
