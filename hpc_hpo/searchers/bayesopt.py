"""Gaussian-process Bayesian optimisation: a Matern 5/2 ARD surrogate and expected improvement.

Configs live in the Encoder's unit cube. The GP models standardised losses (zero mean, unit
variance), so one set of hyperparameter bounds fits every metric's scale. Its hyperparameters
(a length scale per dimension, signal and noise variance) maximise the log marginal likelihood,
with analytic gradients, by L-BFGS-B in log space from several starts. Expected improvement is
maximised over random configs from the space plus a hill climb around the best of them; every
proposal is decoded and re-encoded, so integers, choices and conditions stay valid.

Trials still running enter the GP as "kriging believer" fantasies: observed at the posterior mean.
The mean stays the same but the variance collapses around them (and a fantasy below the best
loss becomes the incumbent), so parallel workers asking in turn are steered away from each
other's pending configs.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
from scipy.linalg import LinAlgError, cho_factor, cho_solve, solve_triangular
from scipy.optimize import minimize
from scipy.spatial.distance import cdist
from scipy.special import ndtr

from ..space import Fixed, Scalar, Space
from .base import Searcher
from .encoding import Encoder

_SQRT5 = math.sqrt(5.0)
# Bounds of log hyperparameters. Length scales are in unit-cube units: 0.01 resolves a hundredth
# of a range, 20 makes a dimension irrelevant. Variances are in units of the standardised losses;
# the noise floor 1e-6 lets deterministic objectives be interpolated almost exactly.
_LOG_LENGTHSCALE = (math.log(0.01), math.log(20.0))
_LOG_SIGNAL = (math.log(0.01), math.log(100.0))
_LOG_NOISE = (math.log(1e-6), math.log(2.0))
# The first fit starts here; the other starts scatter around it (one unit of log scale).
_START_LENGTHSCALE, _START_SIGNAL, _START_NOISE = 0.3, 1.0, 1e-3
# Above this many observations the hyperparameters are fit on a random subset of this size: a
# likelihood evaluation costs O(n^3), and a few hundred points pin down smooth kernel
# hyperparameters about as well as a thousand. The posterior always uses every observation.
_MAX_FIT_POINTS = 300
# Jitter added to the kernel diagonal when Cholesky fails: 1e-8 of the mean variance, then x10.
_JITTER_START, _JITTER_TRIES = 1e-8, 6
# Local refinement of expected improvement: hill climbs from the best candidates with Gaussian
# steps of shrinking size in the unit cube (only along range dimensions).
_LOCAL_STARTS, _LOCAL_SAMPLES, _LOCAL_STEPS = 5, 32, (0.1, 0.05, 0.02, 0.01)
# Draws of a random config before giving up on finding one not yet tried.
_MAX_DRAWS = 100
# The GP needs two distinct losses to standardise them; with fewer, configs are drawn at random.
_MIN_OBSERVATIONS = 2


# --------------------------------------------------------------------------- the Gaussian process


def matern52(a: np.ndarray, b: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Matern 5/2 covariance with one length scale per dimension; theta = log(ls..., signal, noise)."""
    d = a.shape[1]
    scale = np.exp(theta[:d])
    r = np.sqrt(cdist(a / scale, b / scale, "sqeuclidean"))
    return math.exp(theta[d]) * (1.0 + _SQRT5 * r + 5.0 / 3.0 * r * r) * np.exp(-_SQRT5 * r)


def cholesky(k: np.ndarray) -> tuple[np.ndarray, bool]:
    """Lower Cholesky factor of k, adding growing jitter to the diagonal until it is positive definite.

    Near-duplicate configs with a tiny noise variance make k numerically singular; a jitter far
    below the noise floor keeps the factorisation alive without changing the fit.
    """
    scale = float(np.mean(np.diag(k)))
    jitter = 0.0
    for attempt in range(_JITTER_TRIES + 1):
        try:
            return cho_factor(k + jitter * np.eye(len(k)), lower=True, check_finite=False)
        except LinAlgError:
            jitter = scale * _JITTER_START * 10.0 ** attempt
    raise LinAlgError(f"kernel matrix not positive definite even with jitter {jitter:.3g}")


def negative_log_likelihood(theta: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """-log p(y | x, theta) of a zero-mean GP and its gradient in theta (for L-BFGS-B).

    With W = K^-1 - alpha alpha^T, d(-log p)/d theta_j = tr(W dK/d theta_j) / 2. For a length
    scale l_j, dK/d log l_j = s2 5/3 (1 + sqrt5 r) exp(-sqrt5 r) dz_j^2 with z = x / l, whose sum
    against a symmetric P reduces to matrix-vector products: no n x n x d array.
    """
    n, d = x.shape
    z = x / np.exp(theta[:d])
    signal, noise = math.exp(theta[d]), math.exp(theta[d + 1])
    sq = cdist(z, z, "sqeuclidean")
    r = np.sqrt(sq)
    decay = np.exp(-_SQRT5 * r)
    k_signal = signal * (1.0 + _SQRT5 * r + 5.0 / 3.0 * sq) * decay
    factor = cholesky(k_signal + noise * np.eye(n))
    alpha = cho_solve(factor, y, check_finite=False)
    value = 0.5 * float(y @ alpha) + float(np.sum(np.log(np.diag(factor[0])))) + 0.5 * n * math.log(2 * math.pi)
    w = cho_solve(factor, np.eye(n), check_finite=False) - np.outer(alpha, alpha)
    p = w * (signal * 5.0 / 3.0 * (1.0 + _SQRT5 * r) * decay)
    grad_scale = p.sum(axis=1) @ (z * z) - np.sum(z * (p @ z), axis=0)
    grad = np.concatenate([grad_scale, [0.5 * float(np.sum(w * k_signal)), 0.5 * noise * float(np.trace(w))]])
    return value, grad


def fit_hyperparameters(x: np.ndarray, y: np.ndarray, rng: np.random.Generator,
                        nstarts: int, maxiter: int) -> np.ndarray:
    """The log hyperparameters of the best of `nstarts` L-BFGS-B runs on the marginal likelihood.

    The first run starts from a fixed sensible point and the others from random perturbations
    of it, so the result depends only on the data and rng: a replayed history refits the same.
    """
    bounds = [_LOG_LENGTHSCALE] * x.shape[1] + [_LOG_SIGNAL, _LOG_NOISE]
    low, high = np.array(bounds).T
    start = np.log(np.r_[np.full(x.shape[1], _START_LENGTHSCALE), _START_SIGNAL, _START_NOISE])
    best_theta, best_value = start, math.inf
    for i in range(nstarts):
        theta0 = start if i == 0 else np.clip(start + rng.normal(size=start.shape), low, high)
        result = minimize(negative_log_likelihood, theta0, args=(x, y), jac=True, method="L-BFGS-B",
                          bounds=bounds, options={"maxiter": maxiter})
        if result.fun < best_value:
            best_theta, best_value = result.x, float(result.fun)
    return best_theta


class Posterior:
    """The GP conditioned on (x, y) with fixed hyperparameters: mean and sd of the latent loss."""

    def __init__(self, x: np.ndarray, y: np.ndarray, theta: np.ndarray) -> None:
        self.x, self.theta = x, theta
        k = matern52(x, x, theta) + math.exp(theta[-1]) * np.eye(len(x))
        self.factor = cholesky(k)
        self.alpha = cho_solve(self.factor, y, check_finite=False)

    def predict(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cross = matern52(points, self.x, self.theta)
        v = solve_triangular(self.factor[0], cross.T, lower=True, check_finite=False)
        variance = math.exp(self.theta[-2]) - np.sum(v * v, axis=0)
        return cross @ self.alpha, np.sqrt(np.maximum(variance, 0.0))


def expected_improvement(mean: np.ndarray, sd: np.ndarray, best: float) -> np.ndarray:
    """E[max(best - f, 0)] for f ~ N(mean, sd^2): minimisation. Zero sd gives the plain improvement."""
    gain = best - mean
    safe_sd = np.maximum(sd, 1e-12)
    z = gain / safe_sd
    ei = gain * ndtr(z) + safe_sd * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return np.where(sd > 1e-12, np.maximum(ei, 0.0), np.maximum(gain, 0.0))


# --------------------------------------------------------------------------- the searcher


def _key(config: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """A hashable identity of a config, insensitive to key order (a replayed config.json)."""
    return tuple(sorted(config.items()))


class BayesOptSearcher(Searcher):
    """Initial points, then random configs up to `num_init_random` trials, then GP + EI.

    `num_init_random` defaults to max(5, free parameters + 1), initial points included: a GP
    needs about one point per dimension before its length scales mean anything, and five points
    keep a one- or two-parameter space from trusting a model of two losses.

    Determinism: suggest(i) depends only on the history and (seed, i). The one exception is
    refit skipping: a skipped refit reuses the hyperparameters of this object's last fit, so a
    resumed driver, which has none yet, fits on its first suggestion instead.
    """

    def __init__(self, space: Space, seed: int,
                 points_to_evaluate: tuple[dict[str, Scalar], ...] | None = None,
                 num_init_random: int | None = None, opt_nstarts: int = 2, opt_maxiter: int = 50,
                 opt_skip_init_length: int = 150, opt_skip_period: int = 1,
                 num_candidates: int = 2000) -> None:
        self.space, self.seed = space, seed
        self.encoder = Encoder(space)
        given = points_to_evaluate if points_to_evaluate is not None else ({},)
        self.initial = [space.initial_config(point) for point in given]
        free = sum(not isinstance(p.domain, Fixed) for p in space.params)
        self.num_init_random = num_init_random if num_init_random is not None else max(5, free + 1)
        self.opt_nstarts, self.opt_maxiter = opt_nstarts, opt_maxiter
        self.opt_skip_init_length, self.opt_skip_period = opt_skip_init_length, opt_skip_period
        self.num_candidates = num_candidates
        # Range dimensions: the only ones a local step moves (one-hot columns only jump).
        self.continuous = ~self.encoder.categorical
        self.encoded: dict[str, np.ndarray] = {}  # trial id -> unit-cube config, creation order
        self.latest: dict[str, tuple[float, float]] = {}  # trial id -> (resource, loss) of its latest report
        self.ended: set[str] = set()
        self.tried: set[tuple[tuple[str, Any], ...]] = set()
        self.theta: np.ndarray | None = None

    # ----------------------------------------------------------------- events

    def on_trial_created(self, trial_id: str, config: dict[str, Scalar]) -> None:
        self.encoded[trial_id] = self.encoder.encode(config)
        self.tried.add(_key(config))

    def on_report(self, trial_id: str, resource: float, loss: float) -> None:
        # The report at the highest resource is the trial's best estimate of its final loss.
        if trial_id not in self.latest or resource >= self.latest[trial_id][0]:
            self.latest[trial_id] = (resource, loss)

    def on_trial_end(self, trial_id: str) -> None:
        self.ended.add(trial_id)

    # ----------------------------------------------------------------- suggestions

    def suggest(self, trial_index: int) -> dict[str, Scalar]:
        if trial_index < len(self.initial):
            return dict(self.initial[trial_index])
        rng = np.random.default_rng([self.seed, trial_index])
        x, y = self._observations()
        if trial_index < self.num_init_random or len(y) < _MIN_OBSERVATIONS or np.ptp(y) == 0:
            return self._random_config(rng)
        y = (y - y.mean()) / y.std()
        theta = self._hyperparameters(x, y, trial_index, rng)
        posterior, best = self._with_pending(Posterior(x, y, theta), x, y)
        return self._maximise_ei(posterior, best, rng)

    def _observations(self) -> tuple[np.ndarray, np.ndarray]:
        """Unit-cube configs and latest losses of reported trials; non-finite losses become the worst finite one."""
        ids = [tid for tid in self.encoded if tid in self.latest]
        y = np.array([self.latest[tid][1] for tid in ids], dtype=float)
        finite = np.isfinite(y)
        if not finite.any():
            return np.empty((0, self.encoder.dims)), np.empty(0)
        y[~finite] = y[finite].max()
        return np.array([self.encoded[tid] for tid in ids]).reshape(len(ids), self.encoder.dims), y

    def _hyperparameters(self, x: np.ndarray, y: np.ndarray, trial_index: int,
                         rng: np.random.Generator) -> np.ndarray:
        """Refit, unless there are opt_skip_init_length observations and this index is not a refit turn."""
        refit_turn = len(y) < self.opt_skip_init_length or trial_index % self.opt_skip_period == 0
        if self.theta is None or refit_turn:
            subset = np.arange(len(y))
            if len(y) > _MAX_FIT_POINTS:
                subset = np.sort(rng.choice(len(y), _MAX_FIT_POINTS, replace=False))
            self.theta = fit_hyperparameters(x[subset], y[subset], rng, self.opt_nstarts, self.opt_maxiter)
        return self.theta

    def _with_pending(self, posterior: Posterior, x: np.ndarray, y: np.ndarray) -> tuple[Posterior, float]:
        """The posterior with every pending config observed at its predicted mean (kriging believer),
        and the incumbent loss for EI.

        Believed losses count towards the incumbent too: otherwise a pending config the model
        expects to beat the best keeps a high EI right next to it, and the next worker lands there.
        """
        pending = [self.encoded[tid] for tid in self.encoded if tid not in self.latest and tid not in self.ended]
        if not pending:
            return posterior, float(y.min())
        fantasy_x = np.array(pending)
        fantasy_y, _ = posterior.predict(fantasy_x)
        believed = np.concatenate([y, fantasy_y])
        return Posterior(np.vstack([x, fantasy_x]), believed, posterior.theta), float(believed.min())

    def _random_config(self, rng: np.random.Generator) -> dict[str, Scalar]:
        """A draw from the space (the same as RandomSearcher's for this index), redrawn while already tried."""
        for _ in range(_MAX_DRAWS):
            config = self.space.sample(rng)
            if _key(config) not in self.tried:
                break
        return config

    def _maximise_ei(self, posterior: Posterior, best: float, rng: np.random.Generator) -> dict[str, Scalar]:
        """The untried config of highest EI among random candidates and hill climbs from the best of them."""
        configs = [self.space.sample(rng) for _ in range(self.num_candidates)]
        x = self.encoder.encode_many(configs)
        ei = expected_improvement(*posterior.predict(x), best)
        top = np.argsort(-ei, kind="stable")[:_LOCAL_STARTS]
        climbed_configs, climbed_ei = self._hill_climb(x[top], ei[top], posterior, best, rng)
        pool = configs + climbed_configs
        pool_ei = np.concatenate([ei, climbed_ei])
        for i in np.argsort(-pool_ei, kind="stable"):
            if _key(pool[i]) not in self.tried:
                return pool[i]
        return pool[int(np.argmax(pool_ei))]

    def _hill_climb(self, starts: np.ndarray, start_ei: np.ndarray, posterior: Posterior, best: float,
                    rng: np.random.Generator) -> tuple[list[dict[str, Scalar]], np.ndarray]:
        """Every config the climbs visited, with its EI: each start moves to its best Gaussian step, if better.

        Steps are decoded and re-encoded, which snaps integers, drops inactive parameters and
        keeps the point inside the cube, so the EI scored is the EI of a config that can be run.
        """
        centres, centre_ei = starts.copy(), start_ei.copy()
        shape = (len(centres), _LOCAL_SAMPLES, self.encoder.dims)
        visited: list[dict[str, Scalar]] = []
        visited_ei: list[np.ndarray] = []
        for step in _LOCAL_STEPS:
            moved = np.clip(centres[:, None, :] + rng.normal(scale=step, size=shape) * self.continuous, 0.0, 1.0)
            configs = [self.encoder.decode(row) for row in moved.reshape(shape[0] * shape[1], shape[2])]
            snapped = self.encoder.encode_many(configs)
            ei = expected_improvement(*posterior.predict(snapped), best)
            visited += configs
            visited_ei.append(ei)
            per_start = ei.reshape(len(centres), _LOCAL_SAMPLES)
            rows, winner = np.arange(len(centres)), per_start.argmax(axis=1)
            improved = per_start[rows, winner] > centre_ei
            centres[improved] = snapped.reshape(shape)[rows, winner][improved]
            centre_ei = np.maximum(centre_ei, per_start[rows, winner])
        return visited, np.concatenate(visited_ei)
