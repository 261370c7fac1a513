"""The multi-fidelity KDE searcher (BOHB-style): valid configs, which reports it learns from, the
budget its model is fitted at, determinism, and better than random under ASHA."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from hpc_hpo.config import validate_config
from hpc_hpo.errors import ConfigError
from hpc_hpo.schedulers.asha import StoppingAsha
from hpc_hpo.schedulers.base import Decision, StartNew
from hpc_hpo.searchers import RandomSearcher, Searcher, make_searcher
from hpc_hpo.searchers.kde import KdeSearcher, split_sizes
from hpc_hpo.space import Param, Space, Uniform

LEVELS = [1.0, 3.0, 9.0, 27.0]


def config_data(**searcher: Any) -> dict[str, Any]:
    return {"name": "kde", "command": "python train.py", "metric": {"name": "loss", "mode": "min"},
            "resource": {"name": "epoch", "max": 27}, "budget": {"max_trials": 4},
            "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 3},
            "searcher": {"type": "kde", "seed": 1, **searcher},
            "params": {"lr": {"type": "loguniform", "low": 1e-5, "high": 1e-1},
                       "layers": {"type": "randint", "low": 1, "high": 4},
                       "width": {"type": "lograndint", "low": 16, "high": 512},
                       "opt": {"type": "choice", "values": ["adam", "sgd", "rmsprop"]},
                       "momentum": {"type": "uniform", "low": 0.5, "high": 0.99,
                                    "condition": {"parent": "opt", "equals": "sgd"}},
                       "epochs": 27}}


def mixed_space() -> Space:
    return validate_config(config_data(), check_program=False).space


def mixed_loss(config: dict[str, Any]) -> float:
    loss = (math.log10(config["lr"]) + 3) ** 2 + abs(config["layers"] - 2)
    loss += {"adam": 0.0, "sgd": 1.0 - config.get("momentum", 0.0), "rmsprop": 0.5}[config["opt"]]
    return loss + abs(math.log2(config["width"]) - 7) / 4


def feed(searcher: KdeSearcher, trial_id: str, config: dict[str, Any], reports: list[tuple[float, float]],
         end: bool = True) -> None:
    searcher.on_trial_created(trial_id, config)
    for resource, loss in reports:
        searcher.on_report(trial_id, resource, loss)
    if end:
        searcher.on_trial_end(trial_id)


# --------------------------------------------------------------------------- configs stay in the space


def test_every_suggestion_respects_the_space_with_a_fitted_model():
    space = mixed_space()
    searcher = KdeSearcher(space, seed=4, rung_levels=LEVELS, min_points_in_model=4, random_fraction=0.0,
                           num_init_random=4)
    rng = np.random.default_rng(0)
    for i in range(40):
        config = searcher.suggest(i)
        assert 1e-5 <= config["lr"] <= 1e-1 and config["layers"] in range(1, 5)
        assert 16 <= config["width"] <= 512 and isinstance(config["width"], int)
        assert config["opt"] in ("adam", "sgd", "rmsprop")
        assert ("momentum" in config) == (config["opt"] == "sgd"), config
        if "momentum" in config:
            assert 0.5 <= config["momentum"] <= 0.99
        feed(searcher, f"{i:04d}", config, [(1.0, mixed_loss(config) + rng.normal(0, 0.1))])
    assert searcher.model_budget() == 1.0, "the model was in use for most of these suggestions"


# --------------------------------------------------------------------------- what the model learns from


X_SPACE = Space((Param("x", Uniform(0.0, 1.0), None),))


def history(searcher: KdeSearcher) -> None:
    """Trial a: reports at 1, 2, 3 and ends; trial b: reports at 1 and 2 and ends (stopped between rungs)."""
    feed(searcher, "a", {"x": 0.5}, [(1.0, 5.0), (2.0, 4.0), (3.0, 3.0)])
    feed(searcher, "b", {"x": 0.7}, [(1.0, 6.0), (2.0, 5.5)])


@pytest.mark.parametrize("data, expected", [
    ("rungs", {1.0: {"a": 5.0, "b": 6.0}, 3.0: {"a": 3.0}}),
    ("all", {1.0: {"a": 5.0, "b": 6.0}, 2.0: {"a": 4.0, "b": 5.5}, 3.0: {"a": 3.0}}),
    ("rungs_and_last", {1.0: {"a": 5.0, "b": 6.0}, 2.0: {"b": 5.5}, 3.0: {"a": 3.0}}),
])
def test_searcher_data_decides_which_reports_are_observations(data, expected):
    searcher = KdeSearcher(X_SPACE, seed=0, rung_levels=[1.0, 3.0, 9.0], searcher_data=data)
    history(searcher)
    assert searcher.observations() == expected


def test_the_model_is_fitted_at_the_largest_budget_with_enough_points():
    searcher = KdeSearcher(X_SPACE, seed=0, rung_levels=LEVELS, min_points_in_model=3)
    assert searcher.model_budget() is None
    for i in range(5):
        feed(searcher, f"low{i}", {"x": i / 10}, [(1.0, float(i))], end=False)
    assert searcher.model_budget() == 1.0
    for i in range(2):
        searcher.on_report(f"low{i}", 3.0, float(i))
    assert searcher.model_budget() == 1.0, "two points at 3 are not enough"
    searcher.on_report("low2", 3.0, 2.0)
    assert searcher.model_budget() == 3.0, "three points at 3: the model moves up"
    good, bad = searcher.fit(3.0)
    assert (len(good.rows), len(bad.rows)) == split_sizes(3, searcher.top_fraction)


# --------------------------------------------------------------------------- determinism and novelty


def test_same_history_and_seed_give_the_same_suggestion_and_no_repeats():
    def run() -> list[dict[str, Any]]:
        searcher = KdeSearcher(mixed_space(), seed=9, rung_levels=LEVELS, min_points_in_model=4, num_init_random=4)
        out = []
        for i in range(25):
            config = searcher.suggest(i)
            out.append(config)
            feed(searcher, f"{i:04d}", config, [(1.0, mixed_loss(config))])
        return out
    first, second = run(), run()
    assert first == second
    keys = {tuple(sorted(c.items())) for c in first}
    assert len(keys) == len(first), "a config was proposed twice"


# --------------------------------------------------------------------------- better than random under ASHA


def branin(x1: float, x2: float) -> float:
    return ((x2 - 5.1 / (4 * math.pi ** 2) * x1 ** 2 + 5 / math.pi * x1 - 6) ** 2
            + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10)


BRANIN = Space((Param("x1", Uniform(-5.0, 10.0), None), Param("x2", Uniform(0.0, 15.0), None)))
BRANIN_MIN = 0.397887


def multi_fidelity_loss(config: dict[str, Any], resource: float) -> float:
    """Branin at full resource; at low resource a learning-curve offset that shrinks as 1/r and
    depends a little on the config, so low budgets rank configs roughly but not exactly right."""
    x1, x2 = config["x1"], config["x2"]
    return branin(x1, x2) + (20 + 5 * math.sin(x1 + x2)) / resource


def asha_run(searcher: Searcher, trials: int) -> float:
    """Trials one after another through stopping ASHA (rungs 1, 3, 9, 27); the regret (Branin value
    above its minimum) of the best config that ASHA let run to the full resource."""
    scheduler = StoppingAsha(LEVELS, 3, "min")
    best = math.inf
    for index in range(trials):
        trial_id = f"{index:04d}"
        action = scheduler.next_action(index)
        assert isinstance(action, StartNew)
        config = searcher.suggest(index)
        searcher.on_trial_created(trial_id, config)
        scheduler.on_trial_created(trial_id, config)
        scheduler.on_start(trial_id, action)
        for level in LEVELS:
            loss = multi_fidelity_loss(config, level)
            outcome = scheduler.on_report(trial_id, level, loss)
            searcher.on_report(trial_id, level, loss)
            if level == LEVELS[-1]:
                best = min(best, branin(config["x1"], config["x2"]) - BRANIN_MIN)
            if outcome.decision != Decision.CONTINUE:
                break
        scheduler.on_trial_end(trial_id)
        searcher.on_trial_end(trial_id)
    return best


def test_kde_beats_random_on_a_multi_fidelity_function():
    # 30 seeds, 80 trials each, sequential ASHA. Measured: median regret 0.187 (KDE) against 0.306
    # (random); regret below 0.1 in 40% of the seeds against 17%. Seeds are fixed: no flakiness.
    kde = np.array([asha_run(KdeSearcher(BRANIN, seed=s, rung_levels=LEVELS), 80) for s in range(30)])
    rand = np.array([asha_run(RandomSearcher(BRANIN, seed=s), 80) for s in range(30)])
    assert np.median(kde) < 0.75 * np.median(rand), (np.median(kde), np.median(rand))
    assert np.mean(kde < 0.1) >= 2 * np.mean(rand < 0.1), (np.mean(kde < 0.1), np.mean(rand < 0.1))


# --------------------------------------------------------------------------- the config


def test_a_kde_config_loads_and_makes_a_kde_searcher():
    config = validate_config(config_data(searcher_data="rungs_and_last", top_fraction=0.2), check_program=False)
    searcher = make_searcher(config)
    assert isinstance(searcher, KdeSearcher) and searcher.searcher_data == "rungs_and_last"
    assert searcher.levels == (1.0, 3.0, 9.0, 27.0) and searcher.top_fraction == 0.2


@pytest.mark.parametrize("changes, key", [
    ({"searcher_data": "bogus"}, "searcher.searcher_data"),
    ({"bandwith_factor": 3}, "searcher.bandwith_factor"),
    ({"top_fraction": 1.5}, "searcher.top_fraction"),
])
def test_bad_kde_options_name_the_key(changes, key):
    with pytest.raises(ConfigError) as info:
        validate_config(config_data(**changes), check_program=False)
    assert info.value.key == key, str(info.value)
