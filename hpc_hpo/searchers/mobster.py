"""Multi-fidelity Gaussian-process search for ASHA and Hyperband, after MOBSTER (Klein et al. 2020).

One GP models the loss f(x, r) of config x at resource r. Its inputs are the Encoder's unit-cube
coordinates of x plus one more: the resource on a log scale, u = log(r / r_0) / log(r_max / r_0),
where r_0 is the first rung level and r_max the last (resource.max), so the first rung is u = 0
and the full resource u = 1. The kernel is the bayesopt searcher's Matern 5/2 with one length
scale per input, u included: the product of a Matern on x and one on u is what Syne Tune calls a
resource-warped kernel ("matern52-res-warp"). Why this and not Swersky et al.'s exponential-decay
kernel (Syne Tune's "exp-decay-sum"): the decay kernel assumes every learning curve flattens
towards an asymptote of the same shape, and it needs a mean function and four more
hyperparameters, fitted without gradients we have; the Matern on log-resource makes no shape
assumption, learns from the data how far a rung-1 loss tells about the full resource (its length
scale on u: long when the rungs rank configs alike, short when they do not), and reuses the
analytic likelihood gradient of hpc_hpo.searchers.bayesopt. Log-resource, because successive
halving spaces rungs geometrically: rungs 1, 3, 9, 27 are equally far apart in u.

Which reports are observations is `searcher_data`, as for the kde searcher: rung reports only,
every report, or rung reports plus each trial's last one when it ends. The GP sees the losses'
normal scores by rank (a Gaussian copula, see gaussian_copula), not the losses themselves.

Hyperparameters (length scales, signal and noise variance) maximise the marginal likelihood by
L-BFGS-B, cheaply and deterministically: they are refit only when the number of observations
has grown by 10% since the last fit (every observation while there are fewer than 20), on at most
150 of the training points, and each fit continues from the previous fit's optimum (warm start);
every fifth fit also starts from the fixed default point (and, with opt_nstarts > 2, random
ones), so that the chain cannot stay stuck in a poor optimum. A fit
at the k-th checkpoint sees the first m_k observations in arrival order, which a resumed driver
replays in the same order: so it recomputes the same chain of fits (once, on its first model-based
suggestion) and suggests what the first driver would have.

Beyond `max_size_data_for_model` observations the GP is fit on, and conditioned on, a subset of
that size, because the cost is cubic in it: first one point per trial (its report at the highest
resource, which carries most of what the trial says about the full resource); if those are still
too many, half the slots go to the best of them (ranked within their resource level, so every
rung keeps its best) and the rest to the most recent; if they are fewer, the trials' lower-
resource reports fill the rest, most recent first.

A new config maximises expected improvement at the full resource (u = 1), over `num_candidates`
random configs plus hill climbs from the best of them; the incumbent is the lowest posterior
mean at u = 1 among the configs in the model. Trials created but not yet reported enter the GP as
kriging-believer fantasies at u = 1 (observed at the posterior mean there): the variance at their
config's full-resource point collapses, so workers asking in turn do not get the same config.
The first `num_init_random` suggestions (initial points included) are random.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize
from scipy.special import ndtri
from scipy.stats import rankdata

from ..space import Scalar, Space
from .bayesopt import (_LOG_LENGTHSCALE, _LOG_NOISE, _LOG_SIGNAL, _MIN_OBSERVATIONS, _START_LENGTHSCALE,
                       _START_NOISE, _START_SIGNAL, BayesOptSearcher, Posterior, negative_log_likelihood)

SEARCHER_DATA = ("rungs", "all", "rungs_and_last")
# Refit schedule: every observation up to this many, then whenever the count has grown by _REFIT_GROWTH.
_REFIT_EVERY_UP_TO, _REFIT_GROWTH = 20, 1.1
# Hyperparameters are fit on at most this many of the training points (chosen by the same rule as the
# training set): a likelihood evaluation is cubic in it, and 150 points pin down 7 or 8 smooth
# length scales about as well as 300 do. The posterior conditions on the whole training set.
_MAX_FIT_POINTS = 150
# Every this many checkpoints (and at the first) a fit also starts from the default point and, with
# opt_nstarts > 2, from random ones; in between it only continues from the previous optimum.
_FULL_RESTART_EVERY = 5


def refit_checkpoints(count: int) -> list[int]:
    """Observation counts at which the hyperparameters are refit, up to `count`: 2, 3, ..., 20, 22, 25, ..."""
    points, m = [], _MIN_OBSERVATIONS
    while m <= count:
        points.append(m)
        m = m + 1 if m < _REFIT_EVERY_UP_TO else max(m + 1, math.ceil(m * _REFIT_GROWTH))
    return points


def select_training_points(points: list[tuple[str, float, float, int]], cap: int) -> list[tuple[str, float, float, int]]:
    """At most `cap` of the (trial id, resource, loss, arrival) points, by the rule in the module docstring."""
    if len(points) <= cap:
        return points
    top: dict[str, tuple[str, float, float, int]] = {}
    for point in points:
        if point[0] not in top or point[1] > top[point[0]][1]:
            top[point[0]] = point
    highest = list(top.values())
    if len(highest) <= cap:
        chosen = {id(p) for p in highest}
        rest = sorted((p for p in points if id(p) not in chosen), key=lambda p: -p[3])
        keep = highest + rest[:cap - len(highest)]
    else:
        keep = _best_then_recent(highest, cap)
    return sorted(keep, key=lambda p: p[3])


def _best_then_recent(points: list[tuple[str, float, float, int]], cap: int) -> list[tuple[str, float, float, int]]:
    """cap // 2 points of the best rank share within their resource level (each level's best first,
    then each one's second best...), then the most recent of the others up to `cap`."""
    by_level: dict[float, list[tuple[str, float, float, int]]] = {}
    for point in points:
        by_level.setdefault(point[1], []).append(point)
    share: dict[int, float] = {}
    for level_points in by_level.values():
        ranked = sorted(level_points, key=lambda p: (_finite_or_inf(p[2]), -p[3]))
        share.update({id(p): i / len(ranked) for i, p in enumerate(ranked)})
    keep = sorted(points, key=lambda p: (share[id(p)], -p[3]))[:cap // 2]
    kept = {id(p) for p in keep}
    return keep + sorted((p for p in points if id(p) not in kept), key=lambda p: -p[3])[:cap - len(keep)]


def gaussian_copula(y: np.ndarray) -> np.ndarray:
    """Losses mapped to standard normal scores by rank: Phi^-1((rank + 1/2) / n), ties sharing their mean rank.

    A monotone map leaves the argmin where it is, and it makes the GP's job one of ranks: losses
    with a heavy tail (a diverged run, a corner of the space 100x worse) no longer squash every
    difference among the good configs into a sliver of the standardised scale, where expected
    improvement cannot tell them apart. This is the Gaussian-copula transform of Salinas et al.
    (2020), which Syne Tune uses in its copula-based searchers.
    """
    ranks = rankdata(y, method="average") - 0.5
    return ndtri(ranks / len(y))


def _finite_or_inf(value: float) -> float:
    return value if math.isfinite(value) else math.inf


class _AtResource:
    """A posterior seen at one resource: predict() takes unit-cube configs and appends the u column."""

    def __init__(self, posterior: Posterior, u: float) -> None:
        self.posterior, self.u = posterior, u

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.posterior.predict(np.hstack([x, np.full((len(x), 1), self.u)]))


class MobsterSearcher(BayesOptSearcher):
    """Initial points, random configs up to `num_init_random` trials, then the multi-fidelity GP + EI.

    Reuses BayesOptSearcher's events for trial creation and its acquisition maximiser; learns from
    reports at their resource (see the module docstring). suggest(i) is a function of the history
    and (seed, i) alone.
    """

    def __init__(self, space: Space, seed: int,
                 points_to_evaluate: tuple[dict[str, Scalar], ...] | None = None,
                 rung_levels: list[float] | tuple[float, ...] = (1.0,), searcher_data: str = "rungs",
                 num_init_random: int | None = None, opt_nstarts: int = 2, opt_maxiter: int = 50,
                 num_candidates: int = 500, max_size_data_for_model: int = 300) -> None:
        if searcher_data not in SEARCHER_DATA:
            raise ValueError(f"searcher_data {searcher_data!r} is not one of {', '.join(SEARCHER_DATA)}")
        if not rung_levels:
            raise ValueError("mobster needs the rung levels (at least resource.max)")
        super().__init__(space, seed, points_to_evaluate, num_init_random=num_init_random, opt_nstarts=opt_nstarts,
                         opt_maxiter=opt_maxiter, num_candidates=num_candidates)
        self.levels = tuple(float(level) for level in rung_levels)
        self.searcher_data = searcher_data
        self.max_size = max_size_data_for_model
        self.events: list[tuple[str, float, float]] = []  # observations in arrival order: (trial, resource, loss)
        self.fits: list[np.ndarray] = []  # hyperparameters at each refit checkpoint, in order

    # ----------------------------------------------------------------- events

    def on_report(self, trial_id: str, resource: float, loss: float) -> None:
        super().on_report(trial_id, resource, loss)
        if self.searcher_data == "all" or self._is_rung(resource):
            self.events.append((trial_id, float(resource), float(loss)))

    def on_trial_end(self, trial_id: str) -> None:
        super().on_trial_end(trial_id)
        if self.searcher_data == "rungs_and_last" and trial_id in self.latest:
            resource, loss = self.latest[trial_id]
            if not self._is_rung(resource):
                self.events.append((trial_id, float(resource), float(loss)))

    def _is_rung(self, resource: float) -> bool:
        return any(math.isclose(resource, level, rel_tol=1e-9) for level in self.levels)

    # ----------------------------------------------------------------- the model's data

    def resource_coordinate(self, resource: float) -> float:
        """u: 0 at the first rung, 1 at the last, linear in log resource."""
        first, last = self.levels[0], self.levels[-1]
        if last <= first or resource <= 0:
            return 1.0 if resource >= last else 0.0
        return math.log(resource / first) / math.log(last / first)

    def training_points(self, count: int | None = None) -> list[tuple[str, float, float, int]]:
        """(trial, resource, loss, arrival) of the first `count` observations (all by default), a
        repeated (trial, resource) keeping its latest loss, capped at max_size_data_for_model."""
        folded: dict[tuple[str, float], tuple[str, float, float, int]] = {}
        for arrival, (tid, resource, loss) in enumerate(self.events[:count]):
            if tid in self.encoded:
                folded[(tid, resource)] = (tid, resource, loss, arrival)
        return select_training_points(list(folded.values()), self.max_size)

    def _arrays(self, points: list[tuple[str, float, float, int]]) -> tuple[np.ndarray, np.ndarray]:
        """GP inputs (config, u) and standardised losses; non-finite losses become the worst finite one."""
        x = np.array([np.r_[self.encoded[tid], self.resource_coordinate(r)] for tid, r, _, _ in points])
        y = np.array([loss for _, _, loss, _ in points], dtype=float)
        finite = np.isfinite(y)
        if not finite.any():
            return x.reshape(len(points), self.encoder.dims + 1), np.zeros(len(y))
        y[~finite] = y[finite].max()
        return x.reshape(len(points), self.encoder.dims + 1), gaussian_copula(y)

    # ----------------------------------------------------------------- hyperparameters

    def hyperparameters(self) -> np.ndarray:
        """The fit at the latest checkpoint, computing (once) every checkpoint fit not cached yet."""
        checkpoints = refit_checkpoints(len(self.events))
        for k in range(len(self.fits), len(checkpoints)):
            points = select_training_points(self.training_points(checkpoints[k]), _MAX_FIT_POINTS)
            x, y = self._arrays(points)
            warm = self.fits[-1] if self.fits else None
            restart = k % _FULL_RESTART_EVERY == 0
            self.fits.append(self._fit(x, y, warm, restart, np.random.default_rng([self.seed, k, 1])))
        return self.fits[-1]

    def _fit(self, x: np.ndarray, y: np.ndarray, warm: np.ndarray | None, restart: bool,
             rng: np.random.Generator) -> np.ndarray:
        """Best of L-BFGS-B runs from the previous optimum and, at a restart, also from the default
        start and (opt_nstarts - 2) random ones."""
        bounds = [_LOG_LENGTHSCALE] * x.shape[1] + [_LOG_SIGNAL, _LOG_NOISE]
        low, high = np.array(bounds).T
        default = np.log(np.r_[np.full(x.shape[1], _START_LENGTHSCALE), _START_SIGNAL, _START_NOISE])
        starts = [warm] if warm is not None else []
        if restart or warm is None:
            starts.append(default)
            while len(starts) < self.opt_nstarts:
                starts.append(np.clip(default + rng.normal(size=default.shape), low, high))
        best_theta, best_value = default, math.inf
        for theta0 in starts[:max(self.opt_nstarts, 1)]:
            if not np.isfinite(negative_log_likelihood(theta0, x, y)[0]):
                continue
            result = minimize(negative_log_likelihood, theta0, args=(x, y), jac=True, method="L-BFGS-B",
                              bounds=bounds, options={"maxiter": self.opt_maxiter})
            if result.fun < best_value:
                best_theta, best_value = result.x, float(result.fun)
        return best_theta

    # ----------------------------------------------------------------- suggestions

    def suggest(self, trial_index: int) -> dict[str, Scalar]:
        if trial_index < len(self.initial):
            return dict(self.initial[trial_index])
        rng = np.random.default_rng([self.seed, trial_index])
        model = self.full_resource_model() if trial_index >= self.num_init_random else None
        if model is None:
            return self._random_config(rng)
        return self._maximise_ei(*model, rng)

    def full_resource_model(self) -> tuple[_AtResource, float] | None:
        """The GP seen at the full resource (pending trials believed there) and the incumbent, both in
        normal scores of the losses; None while there are fewer than two distinct losses."""
        points = self.training_points()
        if len(points) < _MIN_OBSERVATIONS:
            return None
        x, y = self._arrays(points)
        if np.ptp(y) == 0:
            return None
        return self._with_pending_at_target(Posterior(x, y, self.hyperparameters()), x, y)

    def _with_pending_at_target(self, posterior: Posterior, x: np.ndarray,
                                y: np.ndarray) -> tuple[_AtResource, float]:
        """The posterior at u = 1 with unreported trials believed there, and the incumbent: the lowest
        mean at u = 1 among the configs the model has (fantasies included, as in bayesopt)."""
        configs = np.unique(x[:, :-1], axis=0)
        pending = [self.encoded[tid] for tid in self.encoded if tid not in self.latest and tid not in self.ended]
        if pending:
            fantasy_x = np.hstack([np.array(pending), np.ones((len(pending), 1))])
            fantasy_y, _ = posterior.predict(fantasy_x)
            posterior = Posterior(np.vstack([x, fantasy_x]), np.r_[y, fantasy_y], posterior.theta)
            configs = np.vstack([configs, np.array(pending)])
        target = _AtResource(posterior, 1.0)
        mean, _ = target.predict(configs)
        return target, float(mean.min())
