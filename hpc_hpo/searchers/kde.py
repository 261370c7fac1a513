"""Multi-fidelity density-ratio search for ASHA/Hyperband, in the style of BOHB (Falkner et al. 2018).

Every report at a budget (a resource level) is an observation (config, loss) at that budget. A
new config comes from the model of the LARGEST budget with at least `min_points_in_model`
observations: the cheapest budgets fill first, so the model starts early and moves up to more
faithful budgets as trials survive to them. At that budget the observations split into good (the
lowest losses) and bad (the rest), a kernel density is fitted to each, l(x) and g(x), and of
`num_candidates` draws from a widened l the one of highest l(x)/g(x) wins: the ratio is, up to a
monotone map, the expected improvement over the split loss (Bergstra et al. 2011).

The densities are products of one kernel per parameter, fitted on the model's view of a config:
a number in [0, 1] for a range (the Encoder's coordinate; integers at their cell centres) and
an index for a choice. Why not scipy's gaussian_kde: it needs more points than dimensions and
a non-singular covariance, which a good set of three points, or a parameter all good points
share, does not give. A product kernel has neither problem, and it treats choices apart:

- a range gets a Gaussian kernel whose bandwidth is Scott's rule on that parameter's values,
  floored (1e-3 of the range; half an average step for integers, so the model can move an
  integer to its neighbours). Densities are not corrected at the edges of [0, 1], as in BOHB.
- a choice gets an Aitchison-Aitken kernel: the datum's option with weight 1 - w + w/c, each
  other with w/c, where w = c / (m + c) for m data and c options. That makes the density the
  add-one (Laplace) smoothed frequency of each option: sampling from counts, never a zero.
- a conditional parameter is either inactive or has a value. Its kernel matches the datum's
  state with probability 1 - a and switches it with probability a = 1 / (n + 2) (Laplace on a
  binary variable); a switch to active has the uniform density of the parameter. So configs
  whose parent moved still get a density, and an inactive value is never a fake point mass at
  the middle of the range (which is how the Encoder stores it).

Candidates are drawn as BOHB draws them: pick a good datum, move each range by a truncated
Gaussian of `bandwidth_factor` times its bandwidth, and redraw each choice uniformly with
probability min(1, bandwidth_factor * w). A parameter inactive in the datum is drawn uniformly,
in case the candidate's parents activate it. Each candidate is decoded (Encoder.decode snaps
integers and drops inactive parameters) and scored as the config that would really run.

Like BOHB, the model ignores pending trials; it only avoids proposing a config that already
exists. Every suggestion refits from the observations, so suggest(i) is a function of the
history and (seed, i) alone: a resumed driver proposes what the first one would have.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from scipy.special import logsumexp, ndtr, ndtri

from ..space import Choice, Fixed, RandInt, Scalar, Space
from .base import Searcher
from .encoding import Encoder, Slot

SEARCHER_DATA = ("rungs", "all", "rungs_and_last")
# Smallest Gaussian bandwidth of a continuous range, in unit-cube units (BOHB's min_bandwidth).
_MIN_BANDWIDTH = 1e-3
# Bandwidths use the spread of the data shrunk towards the uniform's (variance 1/12), as if the
# prior were this many extra points. Without it a tight good set shrinks the bandwidth to the
# floor and the search stalls next to it (sequential Branin, 100 evaluations, median regret over
# 50 seeds: 0.27 without, 0.0065 with 0.25); 1.0 over-smooths six parameters (ASHA on the mixed
# benchmark of the tests: 0.26 against 0.19 with 0.25).
_PRIOR_POINTS = 0.25
# The good set has at least this many points: one point alone makes l(x) a single bump.
_MIN_GOOD = 2
# Draws of a random config before giving up on finding one not yet tried.
_MAX_DRAWS = 100
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def _key(config: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """A hashable identity of a config, insensitive to key order (a replayed config.json)."""
    return tuple(sorted(config.items()))


def _loss_order(losses: np.ndarray) -> np.ndarray:
    """Indices from best to worst; NaN and +-inf rank as the worst, ties keep arrival order."""
    ranked = np.where(np.isfinite(losses), losses, np.inf)
    return np.argsort(ranked, kind="stable")


def split_sizes(n: int, top_fraction: float) -> tuple[int, int]:
    """(good, bad) counts for n observations: good = ceil(top_fraction * n), at least 2, and
    bad = the rest, at least 1.

    BOHB floors the good set at min_points_in_model, which with few observations puts almost
    all of them in it; then l and g hardly differ. A floor of two keeps the model selective
    from the start while l is still more than one bump; the product kernel needs no more.
    """
    good = min(n - 1, max(_MIN_GOOD, math.ceil(top_fraction * n)))
    return good, n - good


# --------------------------------------------------------------------------- the density model


@dataclass(frozen=True)
class ModelSlot:
    """One free parameter as the density model sees it."""

    slot: Slot
    options: int  # number of options of a choice; 0 for a range
    floor: float  # smallest bandwidth of a range
    conditional: bool
    log_prior: tuple[float, ...] = ()  # log probability of each option under Space.sample


def model_slots(encoder: Encoder) -> tuple[ModelSlot, ...]:
    """The encoder's slots without fixed values, with each one's kernel settings."""
    slots = []
    for slot in encoder.slots:
        domain = slot.param.domain
        if isinstance(domain, Fixed):
            continue
        options = len(domain.values) if isinstance(domain, Choice) else 0
        floor = _MIN_BANDWIDTH
        if isinstance(domain, RandInt):  # LogRandInt too: cells average 1/count of the cube
            floor = max(floor, 0.5 / (domain.high - domain.low + 1))
        weights = (domain.weights or (1.0 / options,) * options) if options else ()
        slots.append(ModelSlot(slot, options, floor, bool(slot.param.conditions),
                               tuple(math.log(w) if w > 0 else -math.inf for w in weights)))
    return tuple(slots)


class ProductKde:
    """A product-kernel density over rows of model values (NaN = inactive), see the module docstring."""

    def __init__(self, rows: np.ndarray, slots: tuple[ModelSlot, ...]) -> None:
        self.rows, self.slots = rows, slots
        n = len(rows)
        self.switch = 1.0 / (n + 2)  # probability a conditional kernel flips active <-> inactive
        self.widths = np.array([self._width(rows[:, j], s, len(slots)) for j, s in enumerate(slots)])

    @staticmethod
    def _width(column: np.ndarray, slot: ModelSlot, dims: int) -> float:
        """Gaussian bandwidth (ranges) or uniform weight w (choices) from the active values."""
        values = column[~np.isnan(column)]
        m = len(values)
        if slot.options:
            return slot.options / (m + slot.options)
        variance = float(np.var(values)) if m else 0.0
        shrunk = math.sqrt((m * variance + _PRIOR_POINTS / 12.0) / (m + _PRIOR_POINTS))
        return max(slot.floor, 1.06 * shrunk * max(m, 1) ** (-1.0 / (dims + 4)))

    def log_pdf(self, points: np.ndarray) -> np.ndarray:
        """log density at each point (rows of model values): the data's kernels and the prior,
        one component each, by log-sum-exp."""
        total = np.zeros((len(points), len(self.rows)))
        for j, slot in enumerate(self.slots):
            total += self._log_kernel(points[:, j][:, None], self.rows[:, j][None, :], slot, self.widths[j])
        components = np.hstack([total, log_prior(points, self.slots)[:, None]])
        return logsumexp(components, axis=1) - math.log(len(self.rows) + 1)

    def _log_kernel(self, y: np.ndarray, v: np.ndarray, slot: ModelSlot, width: float) -> np.ndarray:
        """log K(y | datum v) for one parameter, broadcast over candidates y and data v."""
        y_on, v_on = ~np.isnan(y), ~np.isnan(v)
        y0, v0 = np.nan_to_num(y), np.nan_to_num(v)
        if slot.options:
            same = y0 == v0
            active = np.log(np.where(same, 1.0 - width + width / slot.options, width / slot.options))
            uniform = -math.log(slot.options)
        else:
            z = (y0 - v0) / width
            # Each datum's Gaussian is renormalised to [0, 1]: a kernel that leaks mass past the
            # edges makes g thinner there than l, and the ratio then favours corners for no reason.
            mass = ndtr((1.0 - v0) / width) - ndtr(-v0 / width)
            active = -0.5 * z * z - math.log(width) - _LOG_SQRT_2PI - np.log(mass)
            uniform = 0.0  # density 1 on [0, 1]
        if not slot.conditional:
            return active
        keep, flip = math.log1p(-self.switch), math.log(self.switch)
        both_on, both_off = y_on & v_on, ~y_on & ~v_on
        return np.where(both_on, keep + active, np.where(both_off, keep, flip + np.where(y_on, uniform, 0.0)))

    def sample(self, rng: np.random.Generator, count: int, factor: float) -> np.ndarray:
        """`count` rows near random data, every kernel widened by `factor` (BOHB's bandwidth_factor).

        A value inactive in the chosen datum is drawn uniformly: decoding keeps it only if the
        candidate's parents moved so that the parameter became active.
        """
        base = self.rows[rng.integers(len(self.rows), size=count)]
        out = np.empty_like(base)
        for j, slot in enumerate(self.slots):
            column, on = base[:, j], ~np.isnan(base[:, j])
            if slot.options:
                redraw = ~on | (rng.random(count) < min(1.0, factor * self.widths[j]))
                out[:, j] = np.where(redraw, rng.integers(slot.options, size=count), np.nan_to_num(column))
            else:
                moved = truncated_normal(rng, np.nan_to_num(column, nan=0.5), factor * self.widths[j])
                out[:, j] = np.where(on, moved, rng.random(count))
        return out


def log_prior(points: np.ndarray, slots: tuple[ModelSlot, ...]) -> np.ndarray:
    """log density of Space.sample at each point: uniform over each active range's coordinate,
    the option's probability for an active choice; an inactive parameter adds nothing."""
    total = np.zeros(len(points))
    for j, slot in enumerate(slots):
        if slot.options:
            column = points[:, j]
            on = ~np.isnan(column)
            table = np.array(slot.log_prior)
            total += np.where(on, table[np.nan_to_num(column).astype(int)], 0.0)
    return total


def truncated_normal(rng: np.random.Generator, centre: np.ndarray, scale: float) -> np.ndarray:
    """Draws of N(centre, scale^2) restricted to [0, 1], by inverting the CDF.

    Truncating rather than clipping keeps mass from piling up on the edges. The centre lies in
    [0, 1], so the CDF interval always contains 0.5 and inverting it is numerically safe.
    """
    low, high = ndtr((0.0 - centre) / scale), ndtr((1.0 - centre) / scale)
    u = low + rng.random(len(centre)) * (high - low)
    return np.clip(centre + scale * ndtri(u), 0.0, 1.0)


# --------------------------------------------------------------------------- the searcher


class KdeSearcher(Searcher):
    """Initial points, random configs until a model exists, then BOHB's density ratio.

    Which reports are observations (`searcher_data`):
      'rungs'           a report whose resource is a rung level (the last level is max_t);
      'all'             every report, each distinct resource a budget of its own;
      'rungs_and_last'  rung reports, plus each trial's latest report when the trial ends
                        (a stopped or failed trial's last word, wherever it fell).
    A trial has at most one observation per budget: a repeated report replaces the earlier one.

    `min_points_in_model` defaults to max(3, encoded dimensions + 2) and `num_init_random` to the
    same, initial points included. With probability `random_fraction` a suggestion is random
    anyway, which keeps the search global (BOHB's default is 1/3).
    """

    def __init__(self, space: Space, seed: int,
                 points_to_evaluate: tuple[dict[str, Scalar], ...] | None = None,
                 rung_levels: list[float] | tuple[float, ...] = (), searcher_data: str = "rungs",
                 num_init_random: int | None = None, min_points_in_model: int | None = None,
                 top_fraction: float = 0.15, bandwidth_factor: float = 3.0, num_candidates: int = 64,
                 random_fraction: float = 1 / 3) -> None:
        if searcher_data not in SEARCHER_DATA:
            raise ValueError(f"searcher_data {searcher_data!r} is not one of {', '.join(SEARCHER_DATA)}")
        self.space, self.seed = space, seed
        self.encoder = Encoder(space)
        self.slots = model_slots(self.encoder)
        given = points_to_evaluate if points_to_evaluate is not None else ({},)
        self.initial = [space.initial_config(point) for point in given]
        self.levels = tuple(float(level) for level in rung_levels)
        self.searcher_data = searcher_data
        default_points = max(3, self.encoder.dims + 2)
        self.min_points = min_points_in_model if min_points_in_model is not None else default_points
        self.num_init_random = num_init_random if num_init_random is not None else default_points
        self.top_fraction, self.bandwidth_factor = top_fraction, bandwidth_factor
        self.num_candidates, self.random_fraction = num_candidates, random_fraction
        self.rows: dict[str, np.ndarray] = {}  # trial id -> model values of its config
        self.tried: set[tuple[tuple[str, Any], ...]] = set()
        self.latest: dict[str, tuple[float, float]] = {}  # trial id -> its latest (resource, loss)
        self.budgets: dict[float, dict[str, float]] = {}  # budget -> trial id -> loss

    # ----------------------------------------------------------------- events

    def on_trial_created(self, trial_id: str, config: dict[str, Scalar]) -> None:
        self.rows[trial_id] = self.model_values(config)
        self.tried.add(_key(config))

    def on_report(self, trial_id: str, resource: float, loss: float) -> None:
        self.latest[trial_id] = (float(resource), float(loss))
        budget = float(resource) if self.searcher_data == "all" else self._rung_of(resource)
        if budget is not None:
            self.budgets.setdefault(budget, {})[trial_id] = float(loss)

    def on_trial_end(self, trial_id: str) -> None:
        if self.searcher_data == "rungs_and_last" and trial_id in self.latest:
            resource, loss = self.latest[trial_id]
            self.budgets.setdefault(self._rung_of(resource) or resource, {})[trial_id] = loss

    def _rung_of(self, resource: float) -> float | None:
        """The rung level equal to this resource (up to float rounding, e.g. 0.1 * 30), or None."""
        return next((level for level in self.levels if math.isclose(resource, level, rel_tol=1e-9)), None)

    # ----------------------------------------------------------------- what the model sees

    def observations(self) -> dict[float, dict[str, float]]:
        """Budget -> {trial id: loss}, budgets ascending: what models can be fitted on."""
        return {budget: dict(self.budgets[budget]) for budget in sorted(self.budgets)}

    def model_budget(self) -> float | None:
        """The largest budget with at least min_points_in_model observations of known configs."""
        for budget in sorted(self.budgets, reverse=True):
            if sum(tid in self.rows for tid in self.budgets[budget]) >= self.min_points:
                return budget
        return None

    def model_values(self, config: Mapping[str, Any]) -> np.ndarray:
        """One row for the density model: unit coordinate or option index, NaN when inactive."""
        x = self.encoder.encode(config)
        row = np.full(len(self.slots), np.nan)
        for j, ms in enumerate(self.slots):
            if ms.slot.param.name in config:
                block = x[ms.slot.start:ms.slot.start + ms.slot.width]
                row[j] = float(np.argmax(block)) if ms.options else float(block[0])
        return row

    def fit(self, budget: float) -> tuple[ProductKde, ProductKde]:
        """l and g at this budget: densities of the good and the bad observations."""
        ids = [tid for tid in self.budgets[budget] if tid in self.rows]
        order = _loss_order(np.array([self.budgets[budget][tid] for tid in ids], dtype=float))
        rows = np.array([self.rows[ids[i]] for i in order]).reshape(len(ids), len(self.slots))
        n_good, _ = split_sizes(len(ids), self.top_fraction)
        return ProductKde(rows[:n_good], self.slots), ProductKde(rows[n_good:], self.slots)

    # ----------------------------------------------------------------- suggestions

    def suggest(self, trial_index: int) -> dict[str, Scalar]:
        if trial_index < len(self.initial):
            return dict(self.initial[trial_index])
        rng = np.random.default_rng([self.seed, trial_index])
        explore = rng.random() < self.random_fraction  # drawn first, so the stream never shifts
        budget = self.model_budget()
        if explore or trial_index < self.num_init_random or budget is None or not self.slots:
            return self._random_config(rng)
        good, bad = self.fit(budget)
        return self._best_candidate(good, bad, rng)

    def _best_candidate(self, good: ProductKde, bad: ProductKde, rng: np.random.Generator) -> dict[str, Scalar]:
        """The untried candidate of highest l/g; a random untried config if every candidate exists."""
        configs = [self._decode(row) for row in good.sample(rng, self.num_candidates, self.bandwidth_factor)]
        rows = np.array([self.model_values(c) for c in configs])
        score = good.log_pdf(rows) - bad.log_pdf(rows)
        for i in np.argsort(-score, kind="stable"):
            if _key(configs[i]) not in self.tried:
                return configs[i]
        fallback = self._random_config(rng)
        return fallback if _key(fallback) not in self.tried else configs[int(np.argmax(score))]

    def _decode(self, row: np.ndarray) -> dict[str, Scalar]:
        """The config of a row of model values: one-hot for choices, then Encoder.decode."""
        x = np.full(self.encoder.dims, 0.5)
        for value, ms in zip(row, self.slots):
            if ms.options:
                x[ms.slot.start:ms.slot.start + ms.slot.width] = 0.0
                x[ms.slot.start + int(value)] = 1.0
            else:
                x[ms.slot.start] = value
        return self.encoder.decode(x)

    def _random_config(self, rng: np.random.Generator) -> dict[str, Scalar]:
        """A draw from the space, redrawn while it already exists (when the space allows)."""
        for _ in range(_MAX_DRAWS):
            config = self.space.sample(rng)
            if _key(config) not in self.tried:
                break
        return config
