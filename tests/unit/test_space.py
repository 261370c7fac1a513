"""Search space: sampling distributions, midpoints, argv and the random searcher."""
from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from hpc_hpo.searchers import RandomSearcher
from hpc_hpo.space import (Choice, Fixed, LogRandInt, LogUniform, Param, RandInt, Space, Uniform,
                           format_value)

N = 5000


def draws(domain, n=N, seed=12345):
    rng = np.random.default_rng(seed)
    return [domain.sample(rng) for _ in range(n)]


# --------------------------------------------------------------------------- sampling

@pytest.mark.parametrize("domain", [
    Uniform(-2.0, 3.0),
    Uniform(0.0, 0.5),
    LogUniform(1e-4, 1.0),
    LogUniform(1e-8, 1e-7),
    RandInt(-3, 4),
    RandInt(5, 5),
    LogRandInt(1, 20),
    LogRandInt(8, 256),
])
def test_samples_stay_within_bounds(domain):
    values = draws(domain)
    assert all(domain.low <= v <= domain.high for v in values)
    assert all(domain.contains(v) for v in values)


@pytest.mark.parametrize("domain", [Uniform(0.0, 1.0), LogUniform(1e-3, 1.0)])
def test_real_domains_give_python_floats(domain):
    assert all(type(v) is float for v in draws(domain, n=50))


@pytest.mark.parametrize("domain", [RandInt(1, 6), LogRandInt(1, 20)])
def test_integer_domains_give_python_ints(domain):
    assert all(type(v) is int for v in draws(domain, n=200))


@pytest.mark.parametrize("domain", [RandInt(1, 6), RandInt(-2, 2), LogRandInt(1, 20), LogRandInt(3, 9)])
def test_integer_domains_hit_both_ends(domain):
    """Both ends are included. For LogRandInt(1, 20), P(20) = ln(21/20)/ln(21) ~ 1.6%: ~80 in 5000."""
    values = set(draws(domain))
    assert domain.low in values
    assert domain.high in values
    if isinstance(domain, RandInt) and not isinstance(domain, LogRandInt):
        assert values == set(range(domain.low, domain.high + 1))


def test_uniform_median_near_linear_midpoint():
    # median of U(0.5, 2.0): 1.25; its standard error ~ width / (2 sqrt(n)) ~ 0.011
    values = draws(Uniform(0.5, 2.0))
    assert abs(np.median(values) - 1.25) < 0.06


def test_loguniform_median_near_log_midpoint():
    # log10 of the draws is U(-4, 0): median -2 (i.e. sqrt(1e-4 * 1) = 1e-2); s.e. ~ 4/(2*70.7) ~ 0.03
    values = draws(LogUniform(1e-4, 1.0))
    assert abs(math.log10(np.median(values)) - (-2.0)) < 0.15
    # and it is nowhere near the linear midpoint 0.5
    assert np.median(values) < 0.05
    # a quarter of the draws fall in each decade
    decades = Counter(math.floor(math.log10(v)) for v in values if v < 1.0)
    for decade in (-4, -3, -2, -1):
        assert abs(decades[decade] / N - 0.25) < 4 * math.sqrt(0.25 * 0.75 / N)


def test_lograndint_skews_low():
    """LogRandInt(1, 100): P(v >= 51) = ln(100.5/50.5) / ln(100.5/0.5) ~ 0.130, so most values lie below 50.5."""
    values = draws(LogRandInt(1, 100))
    below = sum(v < 50.5 for v in values)
    above = sum(v > 50.5 for v in values)
    assert below > above
    p = math.log(100.5 / 50.5) / math.log(100.5 / 0.5)
    assert abs(above / N - p) < 4 * math.sqrt(p * (1 - p) / N)


def test_lograndint_each_integer_owns_its_log_interval():
    """Syne Tune's rule: P(k) = ln((k+0.5)/(k-0.5)) / ln((high+0.5)/(low-0.5)): for LogRandInt(1, 3),
    P(1) = ln3/ln7, P(2) = ln(5/3)/ln7, P(3) = ln(7/5)/ln7."""
    n = 10000
    counts = Counter(draws(LogRandInt(1, 3), n=n))
    expected = {1: math.log(3) / math.log(7), 2: math.log(5 / 3) / math.log(7), 3: math.log(7 / 5) / math.log(7)}
    for k, p in expected.items():
        assert abs(counts[k] / n - p) < 4 * math.sqrt(p * (1 - p) / n), (k, counts)


def test_pchoice_frequencies_match_weights():
    n = 10000
    weights = (0.2, 0.5, 0.3)
    domain = Choice(("a", "b", "c"), weights)
    counts = Counter(draws(domain, n=n))
    assert set(counts) == {"a", "b", "c"}
    for value, p in zip(("a", "b", "c"), weights):
        assert abs(counts[value] / n - p) < 4 * math.sqrt(p * (1 - p) / n), counts


def test_pchoice_zero_weight_never_drawn():
    counts = Counter(draws(Choice(("x", "y"), (0.0, 1.0)), n=500))
    assert counts == {"y": 500}


def test_choice_covers_every_value_roughly_evenly():
    values = ("relu", "tanh", "gelu", 0.5, 7)
    out = draws(Choice(values))
    counts = Counter(out)
    assert set(counts) == set(values)
    for value in values:
        assert abs(counts[value] / N - 0.2) < 4 * math.sqrt(0.2 * 0.8 / N)


def test_choice_returns_the_values_themselves_with_their_types():
    values = (16, 32, 64)
    assert all(type(v) is int and v in values for v in draws(Choice(values), n=100))


@pytest.mark.parametrize("value", [3, 0.25, "baseline", True])
def test_fixed_always_returns_its_value(value):
    out = draws(Fixed(value), n=100)
    assert all(v == value and type(v) is type(value) for v in out)


def test_space_sample_has_every_param_in_order():
    space = Space((Param("lr", LogUniform(1e-4, 1.0), "--lr"),
                   Param("layers", RandInt(1, 4), "--layers"),
                   Param("act", Choice(("relu", "tanh")), "--act")))
    config = space.sample(np.random.default_rng(0))
    assert list(config) == ["lr", "layers", "act"]
    assert 1e-4 <= config["lr"] <= 1.0 and 1 <= config["layers"] <= 4 and config["act"] in ("relu", "tanh")


# --------------------------------------------------------------------------- midpoints

def test_uniform_midpoint_is_linear():
    assert Uniform(0.0, 10.0).midpoint() == 5.0
    assert Uniform(-1.0, 0.5).midpoint() == -0.25


def test_loguniform_midpoint_is_geometric():
    assert LogUniform(1e-4, 1.0).midpoint() == pytest.approx(1e-2, rel=1e-12)
    assert LogUniform(2.0, 8.0).midpoint() == pytest.approx(4.0, rel=1e-12)


def test_randint_midpoint_rounds_to_an_int():
    # (1 + 6) / 2 = 3.5 rounds to 4 (up or to even, both give 4); (0 + 10)/2 = 5.
    assert RandInt(1, 6).midpoint() == 4
    assert RandInt(0, 10).midpoint() == 5
    assert type(RandInt(1, 6).midpoint()) is int
    # (1 + 4) / 2 = 2.5: whichever way a tie rounds, an integer next to it
    assert RandInt(1, 4).midpoint() in (2, 3)


def test_lograndint_midpoint_is_geometric_and_an_int():
    assert LogRandInt(1, 100).midpoint() == 10
    assert LogRandInt(8, 256).midpoint() == 45  # sqrt(2048) = 45.25
    assert type(LogRandInt(8, 256).midpoint()) is int


def test_choice_midpoint_is_first_entry_and_fixed_its_value():
    assert Choice(("sgd", "adam")).midpoint() == "sgd"
    assert Choice((64, 16, 32), (0.1, 0.1, 0.8)).midpoint() == 64
    assert Fixed("x").midpoint() == "x"


def make_space() -> Space:
    return Space((
        Param("lr", LogUniform(1e-4, 1.0), "--lr", default=1e-3),
        Param("dropout", Uniform(0.0, 0.5), "--dropout="),
        Param("width", LogRandInt(8, 128), "--width"),
        Param("layers", RandInt(1, 5), "--layers", default=2),
        Param("opt", Choice(("adam", "sgd")), "--opt"),
        Param("tag", Fixed("baseline"), None),
    ))


def test_initial_config_defaults_then_midpoints():
    assert make_space().initial_config() == {
        "lr": 1e-3,          # default
        "dropout": 0.25,     # linear midpoint
        "width": 32,         # geometric midpoint sqrt(8*128) = 32
        "layers": 2,         # default, not the midpoint 3
        "opt": "adam",       # first entry
        "tag": "baseline",
    }


def test_initial_config_partial_overrides():
    config = make_space().initial_config({"lr": 0.05, "opt": "sgd", "dropout": 0.1})
    assert config == {"lr": 0.05, "dropout": 0.1, "width": 32, "layers": 2, "opt": "sgd",
                      "tag": "baseline"}
    assert list(config) == ["lr", "dropout", "width", "layers", "opt", "tag"]


def test_initial_config_falsy_default_is_still_a_default():
    """A default of 0 / False / 0.0 is a default, not 'no default'."""
    space = Space((Param("wd", Uniform(0.0, 1.0), "--wd", default=0.0),
                   Param("n", RandInt(0, 10), "--n", default=0),
                   Param("flag", Choice((True, False)), "--flag", default=False)))
    assert space.initial_config() == {"wd": 0.0, "n": 0, "flag": False}


# --------------------------------------------------------------------------- argv

def test_argv_default_flag_is_two_entries():
    assert Param("lr", Uniform(0, 1), "--lr").argv(0.001) == ["--lr", "0.001"]


def test_argv_flag_ending_in_equals_is_joined():
    assert Param("lr", Uniform(0, 1), "--lr=").argv(0.001) == ["--lr=0.001"]


def test_argv_flag_none_gives_nothing():
    assert Param("tag", Fixed("x"), None).argv("x") == []


def test_space_argv_in_param_order():
    space = make_space()
    config = {"lr": 0.001, "dropout": 0.25, "width": 32, "layers": 2, "opt": "sgd", "tag": "baseline"}
    assert space.argv(config) == ["--lr", "0.001", "--dropout=0.25", "--width", "32", "--layers", "2",
                                  "--opt", "sgd"]


@pytest.mark.parametrize("value", [0.1, 1 / 3, 1e-17, 123456789.12345679, 2.0 ** -40, -0.0, 5e-324])
def test_format_value_floats_round_trip(value):
    text = format_value(value)
    assert float(text) == value
    assert math.copysign(1.0, float(text)) == math.copysign(1.0, value)


def test_format_value_full_precision_not_truncated():
    assert format_value(1 / 3) == "0.3333333333333333"
    assert format_value(0.1 + 0.2) == "0.30000000000000004"


def test_format_value_bools_lower_case_and_others_plain():
    assert format_value(True) == "true"
    assert format_value(False) == "false"
    assert format_value(42) == "42"
    assert format_value("adam") == "adam"
    assert Param("flag", Choice((True, False)), "--flag").argv(True) == ["--flag", "true"]


# --------------------------------------------------------------------------- random searcher

def test_searcher_index0_is_initial_config_without_points():
    space = make_space()
    searcher = RandomSearcher(space, seed=1, points_to_evaluate=None)
    assert searcher.suggest(0) == space.initial_config()
    # the rest are draws: none of the next few equals the initial config
    assert all(searcher.suggest(i) != space.initial_config() for i in range(1, 6))


def test_searcher_given_points_come_first_in_order_completed_with_defaults():
    space = make_space()
    points = ({"lr": 0.1}, {"opt": "sgd", "width": 100}, {})
    searcher = RandomSearcher(space, seed=1, points_to_evaluate=points)
    assert searcher.suggest(0) == space.initial_config({"lr": 0.1})
    assert searcher.suggest(0)["lr"] == 0.1 and searcher.suggest(0)["dropout"] == 0.25
    assert searcher.suggest(1) == space.initial_config({"opt": "sgd", "width": 100})
    assert searcher.suggest(2) == space.initial_config()
    # after the given points come random draws, which are not the default config
    assert searcher.suggest(3) != space.initial_config()


def test_searcher_empty_points_means_no_initial_points():
    space = make_space()
    with_empty = RandomSearcher(space, seed=5, points_to_evaluate=())
    # index 0 is already a random draw, not the defaults
    first = with_empty.suggest(0)
    assert first != space.initial_config()
    assert first["lr"] != 1e-3 and first["layers"] in range(1, 6)
    # a random config depends only on (seed, index): index 1 is the same draw as with the default
    # single initial point
    assert with_empty.suggest(1) == RandomSearcher(space, seed=5).suggest(1)


def test_searcher_suggest_is_deterministic_per_seed_and_index():
    space = make_space()
    a, b = RandomSearcher(space, seed=7), RandomSearcher(space, seed=7)
    # any order of calls gives the same config for the same index
    forward = [a.suggest(i) for i in range(1, 20)]
    backward = [b.suggest(i) for i in reversed(range(1, 20))][::-1]
    assert forward == backward
    assert a.suggest(5) == a.suggest(5)
    # indices differ from each other
    assert len({repr(c) for c in forward}) == len(forward)


def test_searcher_differs_across_seeds():
    space = make_space()
    a, b = RandomSearcher(space, seed=7), RandomSearcher(space, seed=8)
    assert all(a.suggest(i) != b.suggest(i) for i in range(1, 10))
    # but the initial point is the same, it does not depend on the seed
    assert a.suggest(0) == b.suggest(0)


def test_searcher_suggestions_are_copies():
    space = make_space()
    searcher = RandomSearcher(space, seed=1)
    first = searcher.suggest(0)
    first["lr"] = 99.0
    assert searcher.suggest(0)["lr"] == 1e-3


def test_searcher_random_configs_are_in_the_space():
    space = make_space()
    searcher = RandomSearcher(space, seed=3)
    for i in range(1, 50):
        config = searcher.suggest(i)
        assert list(config) == space.names
        assert all(p.domain.contains(config[p.name]) for p in space.params)
