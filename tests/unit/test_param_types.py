"""lograndint as Syne Tune's searchers represent it, and the quantized types quniform, qloguniform and
qrandint (Ray Tune / Hyperopt): their draws, their grids, their config errors, and that the
model-based searchers (kde, bayesopt, genetic) only ever suggest values on the grid.

Expected probabilities are worked out from each type's rule on paper, not read off the code."""
from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
import pytest

from hpc_hpo.config import validate_config
from hpc_hpo.errors import ConfigError
from hpc_hpo.searchers.bayesopt import BayesOptSearcher
from hpc_hpo.searchers.encoding import Encoder, _from_unit, _to_unit
from hpc_hpo.searchers.genetic import GeneticSearcher
from hpc_hpo.searchers.kde import KdeSearcher
from hpc_hpo.space import LogRandInt, Param, QLogUniform, QRandInt, QUniform, Space, format_value


def draws(domain, n: int, seed: int = 7) -> list:
    rng = np.random.default_rng(seed)
    return [domain.sample(rng) for _ in range(n)]


def within(count: int, n: int, p: float) -> bool:
    """A count of n draws is within four standard errors of n * p."""
    return abs(count / n - p) < 4 * math.sqrt(p * (1 - p) / n)


# --------------------------------------------------------------------------- lograndint

def test_lograndint_1_to_4_gives_syne_tunes_probabilities():
    """Each k owns [k - 0.5, k + 0.5] on the log axis: P(k) = ln((k + .5)/(k - .5)) / ln(4.5/0.5), which
    the issue quotes as .50/.23/.15/.11 (the old rule, [k, k + 1) over [1, 5), gave .43/.25/.18/.14)."""
    rule = {k: math.log((k + 0.5) / (k - 0.5)) / math.log(9) for k in range(1, 5)}
    assert [round(rule[k], 2) for k in range(1, 5)] == [0.50, 0.23, 0.15, 0.11]
    n = 40_000
    counts = Counter(draws(LogRandInt(1, 4), n))
    assert set(counts) == {1, 2, 3, 4}
    for k, p in rule.items():
        assert within(counts[k], n, p), (k, counts)


def test_lograndint_encoding_decodes_as_it_samples():
    """A uniform point of the unit cube decodes to k with the same probability the domain draws k: the
    share of [0, 1] that decodes to k is P(k) (what a model-based searcher's random candidates see)."""
    domain = LogRandInt(1, 4)
    grid = np.linspace(0, 1, 200_001)
    counts = Counter(_from_unit(domain, float(u)) for u in grid)
    for k in range(1, 5):
        assert counts[k] / len(grid) == pytest.approx(math.log((k + 0.5) / (k - 0.5)) / math.log(9), abs=1e-4)
    for k in range(1, 5):
        assert _from_unit(domain, _to_unit(domain, k)) == k


# --------------------------------------------------------------------------- quniform

def test_quniform_draws_multiples_of_q_with_half_shares_at_the_ends():
    """Rounding U(0, 1) to tenths: 0 and 1 own half a step each (1/20), the nine inside a full step (1/10)."""
    domain = QUniform(0.0, 1.0, 0.1)
    n = 40_000
    values = draws(domain, n)
    grid = [round(k / 10, 1) for k in range(11)]
    counts = Counter(values)
    assert set(counts) == set(grid)  # exactly the written values: 0.3, never 0.30000000000000004
    for value in grid:
        p = 0.05 if value in (0.0, 1.0) else 0.1
        assert within(counts[value], n, p), (value, counts)
    assert all(type(v) is float for v in values)


def test_quniform_values_print_as_written():
    domain = QUniform(0.0, 1.0, 0.1)
    assert format_value(domain.nearest(0.29)) == "0.3"
    assert format_value(QUniform(-1.0, 1.0, 0.25).nearest(-0.3)) == "-0.25"


def test_quniform_contains_only_its_grid():
    domain = QUniform(0.5, 2.0, 0.5)
    assert domain.contains(1.5) and domain.contains(0.5) and domain.contains(2.0)
    assert not domain.contains(1.2)
    assert not domain.contains(2.5)
    assert domain.midpoint() in (1.0, 1.5) and domain.contains(domain.midpoint())


# --------------------------------------------------------------------------- qloguniform

def test_qloguniform_rounds_a_log_uniform_draw():
    """[0.01, 1] in steps of 0.01: P(0.01) = P(draw < 0.015) = ln 1.5 / ln 100; the median of a
    log-uniform draw is 0.1, so about half the values are at most 0.1."""
    domain = QLogUniform(0.01, 1.0, 0.01)
    n = 40_000
    values = draws(domain, n)
    assert all(domain.contains(v) and round(v, 2) == v for v in values)
    assert within(sum(v == 0.01 for v in values), n, math.log(1.5) / math.log(100))
    assert within(sum(v <= 0.1 for v in values), n, math.log(0.105 / 0.01) / math.log(100))


# --------------------------------------------------------------------------- qrandint

def test_qrandint_draws_every_multiple_evenly_both_ends_included():
    domain = QRandInt(0, 100, 25)
    n = 20_000
    counts = Counter(draws(domain, n))
    assert set(counts) == {0, 25, 50, 75, 100}
    for value in counts:
        assert within(counts[value], n, 1 / 5), counts
    assert all(type(v) is int for v in counts)
    assert domain.contains(75) and not domain.contains(70) and not domain.contains(125)


def test_qrandint_from_a_nonzero_multiple():
    domain = QRandInt(-6, 9, 3)
    assert set(draws(domain, 2000)) == {-6, -3, 0, 3, 6, 9}
    assert domain.midpoint() == 0 or domain.midpoint() == 3
    assert domain.nearest(4) == 3 and domain.nearest(100) == 9 and domain.nearest(-100) == -6


# --------------------------------------------------------------------------- encoding

@pytest.mark.parametrize("domain", [QUniform(0.0, 1.0, 0.1), QUniform(-2.0, 3.0, 0.5), QLogUniform(0.001, 1.0, 0.001),
                                    QRandInt(0, 100, 5), QRandInt(-6, 9, 3)])
def test_every_point_of_the_cube_decodes_onto_the_grid(domain):
    decoded = {_from_unit(domain, float(u)) for u in np.linspace(-0.1, 1.1, 5001)}
    assert all(domain.contains(v) for v in decoded), sorted(v for v in decoded if not domain.contains(v))
    assert min(decoded) == domain.low and max(decoded) == domain.high
    for value in decoded:  # a grid value survives the round trip
        assert _from_unit(domain, _to_unit(domain, value)) == value


def test_qrandint_cells_are_equal():
    domain = QRandInt(0, 20, 5)
    counts = Counter(_from_unit(domain, float(u)) for u in (np.arange(100_000) + 0.5) / 100_000)
    assert counts == {v: 20_000 for v in (0, 5, 10, 15, 20)}


# --------------------------------------------------------------------------- config

def config(**param: Any) -> dict[str, Any]:
    return {"name": "q", "command": "train", "params": {"x": param, "y": {"type": "uniform", "low": 0, "high": 1}},
            "metric": {"name": "loss", "mode": "min"}, "resource": {"max": 9}, "budget": {"max_trials": 5}}


@pytest.mark.parametrize(("param", "expected"), [
    ({"type": "quniform", "low": 0, "high": 1, "q": 0.1}, QUniform(0.0, 1.0, 0.1)),
    ({"type": "qloguniform", "low": "1e-3", "high": 1, "q": 0.001}, QLogUniform(0.001, 1.0, 0.001)),
    ({"type": "qrandint", "low": 16, "high": 512, "q": 16}, QRandInt(16, 512, 16)),
])
def test_config_reads_the_quantized_types(param, expected):
    assert validate_config(config(**param), check_program=False).space.params[0].domain == expected


@pytest.mark.parametrize(("param", "key", "words"), [
    ({"type": "quniform", "low": 0, "high": 1}, "params.x.q", "is required"),
    ({"type": "quniform", "low": 0, "high": 1, "q": 0}, "params.x.q", "greater than 0"),
    ({"type": "qloguniform", "low": 0.1, "high": 1, "q": -0.1}, "params.x.q", "greater than 0"),
    ({"type": "qrandint", "low": 0, "high": 10, "q": 2.5}, "params.x.q", "whole number"),
    ({"type": "quniform", "low": 0, "high": 1.05, "q": 0.1}, "params.x.high", "multiple of q (0.1)"),
    ({"type": "qrandint", "low": 1, "high": 100, "q": 5}, "params.x.low", "multiple of q (5)"),
    ({"type": "qrandint", "low": 0, "high": 10, "q": 20}, "params.x.high", "multiple of q (20)"),
    ({"type": "qloguniform", "low": 0, "high": 1, "q": 0.1}, "params.x.low", "greater than 0"),
    ({"type": "uniform", "low": 0, "high": 1, "q": 0.1}, "params.x.q", "use type quniform"),
    ({"type": "quniform", "low": 0, "high": 1, "q": 0.1, "default": 0.35}, "params.x.default", "multiple of 0.1"),
    ({"type": "qrandint", "low": 32, "high": 512, "q": 32, "default": 64.0}, "params.x.default",
     "an integer multiple of 32"),  # 64.0 is a multiple of 32: what is wrong is that it is no integer
])
def test_bad_quantized_params_are_refused_naming_the_key(param, key, words):
    with pytest.raises(ConfigError) as caught:
        validate_config(config(**param), check_program=False)
    message = str(caught.value)
    assert caught.value.key == key and words in message
    assert "\n" not in message


def test_non_multiple_bound_error_suggests_the_neighbouring_multiples():
    with pytest.raises(ConfigError) as caught:
        validate_config(config(type="qrandint", low=1, high=100, q=5), check_program=False)
    assert "use 0 or 5" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        validate_config(config(type="qloguniform", low=0.05, high=1, q=0.1), check_program=False)
    assert "use 0.1," in str(caught.value)  # 0 is no value of a log range


# --------------------------------------------------------------------------- searchers stay on the grid

QUANTIZED_SPACE = Space((Param("lr", QLogUniform(0.0001, 0.1, 0.0001), None),
                         Param("dropout", QUniform(0.0, 0.5, 0.05), None),
                         Param("width", QRandInt(16, 512, 16), None),
                         Param("depth", LogRandInt(1, 8), None)))


def loss(config: dict[str, Any]) -> float:
    return ((math.log10(config["lr"]) + 2.5) ** 2 + (config["dropout"] - 0.22) ** 2
            + (config["width"] - 200) ** 2 / 1e4 + abs(config["depth"] - 3) / 4)


def on_grid(config: dict[str, Any]) -> bool:
    return all(param.domain.contains(config[param.name]) for param in QUANTIZED_SPACE.params)


@pytest.mark.parametrize("make", [
    lambda: KdeSearcher(QUANTIZED_SPACE, seed=3, rung_levels=[1.0], min_points_in_model=4, num_init_random=4,
                        random_fraction=0.0),
    lambda: BayesOptSearcher(QUANTIZED_SPACE, seed=3, num_init_random=4, num_candidates=200, opt_maxiter=10),
    lambda: GeneticSearcher(QUANTIZED_SPACE, seed=3, population_size=6, mutation_rate=0.9, mutation_std=0.3),
], ids=["kde", "bayesopt", "genetic"])
def test_model_based_suggestions_are_on_the_grid(make):
    searcher = make()
    suggested = 0
    for i in range(30):
        config = searcher.suggest(i)
        if not isinstance(config, dict):
            break  # the genetic searcher waits for its generation; every trial below has ended
        assert on_grid(config), config
        assert type(config["width"]) is int and type(config["lr"]) is float
        searcher.on_trial_created(str(i), config)
        searcher.on_report(str(i), 1.0, loss(config))
        searcher.on_trial_end(str(i))
        suggested += 1
    assert suggested == 30


def test_encoder_rows_of_grid_values_decode_to_themselves():
    encoder = Encoder(QUANTIZED_SPACE)
    rng = np.random.default_rng(0)
    for _ in range(200):
        config = QUANTIZED_SPACE.sample(rng)
        assert encoder.decode(encoder.encode(config)) == config
