"""The multi-fidelity GP searcher (hpc_hpo/searchers/mobster.py): what it learns from, what it
predicts at the full resource, how it treats pending trials, and that a replay suggests the same."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import spearmanr

from hpc_hpo.config import validate_config
from hpc_hpo.errors import ConfigError
from hpc_hpo.searchers import make_searcher
from hpc_hpo.searchers.bayesopt import Posterior, fit_hyperparameters
from hpc_hpo.searchers.mobster import MobsterSearcher, gaussian_copula, refit_checkpoints, select_training_points
from hpc_hpo.space import Param, Space, Uniform

LEVELS = (1.0, 3.0, 9.0)
SPACE_1D = Space((Param("x", Uniform(0.0, 1.0), None),))
SPACE_2D = Space((Param("x", Uniform(0.0, 1.0), None), Param("y", Uniform(0.0, 1.0), None)))


def shifting_bowl(x: float, r: float) -> float:
    """A loss whose best x moves with the resource: 0.2 at r = 1, 0.6 at r = 3, about 0.73 at r = 9."""
    return (x - (0.8 - 0.6 / r)) ** 2


def feed(searcher: MobsterSearcher, tid: str, config: dict, reports: list[tuple[float, float]], end: bool = True) -> None:
    searcher.on_trial_created(tid, config)
    for resource, loss in reports:
        searcher.on_report(tid, resource, loss)
    if end:
        searcher.on_trial_end(tid)


def ladder_history(searcher: MobsterSearcher) -> None:
    """24 configs at r = 1, 8 of them also at r = 3, 4 also at r = 9: more data low than high, as under ASHA."""
    for i, x in enumerate(np.linspace(0.02, 0.98, 24)):
        top = 9.0 if i % 6 == 0 else 3.0 if i % 3 == 0 else 1.0
        feed(searcher, f"t{i}", {"x": float(x)}, [(r, shifting_bowl(x, r)) for r in LEVELS if r <= top])


def test_the_model_predicts_the_full_resource_better_than_a_model_that_ignores_it():
    searcher = MobsterSearcher(SPACE_1D, seed=0, points_to_evaluate=(), rung_levels=LEVELS)
    ladder_history(searcher)
    target, _ = searcher.full_resource_model()
    grid = np.linspace(0.0, 1.0, 101)[:, None]
    truth = np.array([shifting_bowl(x, 9.0) for x in grid[:, 0]])
    mean, _ = target.predict(grid)

    # The same GP code on the same reports with the resource dropped (what bayesopt did under ASHA).
    points = searcher.training_points()
    x = np.array([[searcher.encoded[tid][0]] for tid, _, _, _ in points])
    y = gaussian_copula(np.array([loss for _, _, loss, _ in points]))
    pooled = Posterior(x, y, fit_hyperparameters(x, y, np.random.default_rng(0), 2, 50))
    pooled_mean, _ = pooled.predict(grid)

    assert spearmanr(mean, truth).statistic > 0.9
    assert spearmanr(mean, truth).statistic > spearmanr(pooled_mean, truth).statistic + 0.2
    assert abs(grid[np.argmin(mean), 0] - 0.733) < 0.12, "the full-resource optimum, not the rung-1 one (0.2)"
    assert abs(grid[np.argmin(pooled_mean), 0] - 0.733) > 0.2


def test_suggestions_are_a_function_of_history_seed_and_index():
    def searcher(seed: int) -> MobsterSearcher:
        s = MobsterSearcher(SPACE_2D, seed=seed, points_to_evaluate=(), rung_levels=LEVELS, num_init_random=3)
        rng = np.random.default_rng(7)
        for i in range(12):
            config = SPACE_2D.sample(rng)
            loss = (config["x"] - 0.3) ** 2 + (config["y"] - 0.6) ** 2
            feed(s, f"t{i}", config, [(r, loss + 1.0 / r) for r in LEVELS[:1 + i % 3]])
        return s

    assert searcher(1).suggest(12) == searcher(1).suggest(12)
    assert searcher(1).suggest(12) != searcher(1).suggest(13)
    assert searcher(1).suggest(12) != searcher(2).suggest(12)
    random_phase = MobsterSearcher(SPACE_2D, seed=1, points_to_evaluate=(), rung_levels=LEVELS, num_init_random=3)
    assert random_phase.suggest(1) == MobsterSearcher(SPACE_2D, seed=1, points_to_evaluate=(), rung_levels=LEVELS,
                                                      num_init_random=3).suggest(1)


def test_a_pending_trial_steers_the_next_suggestion_away():
    searcher = MobsterSearcher(SPACE_1D, seed=3, points_to_evaluate=(), rung_levels=LEVELS, num_init_random=1)
    ladder_history(searcher)
    first = searcher.suggest(24)
    target, _ = searcher.full_resource_model()
    _, sd_before = target.predict(np.array([[first["x"]]]))

    searcher.on_trial_created("pending", first)  # running, not reported yet
    target, _ = searcher.full_resource_model()
    _, sd_after = target.predict(np.array([[first["x"]]]))
    second = searcher.suggest(25)

    assert sd_after[0] < 0.5 * sd_before[0], "the fantasy collapses the variance at the pending config"
    assert abs(second["x"] - first["x"]) > 0.01, (first, second)
    # Once it reports, it is data, not a fantasy.
    searcher.on_report("pending", 1.0, shifting_bowl(first["x"], 1.0))
    assert not [tid for tid in searcher.encoded if tid not in searcher.latest and tid not in searcher.ended]


@pytest.mark.parametrize("mode, expected", [
    ("rungs", {("a", 1.0), ("a", 3.0), ("b", 1.0)}),
    ("all", {("a", 1.0), ("a", 2.0), ("a", 3.0), ("a", 4.0), ("b", 1.0), ("b", 2.0)}),
    ("rungs_and_last", {("a", 1.0), ("a", 3.0), ("a", 4.0), ("b", 1.0), ("b", 2.0)}),
])
def test_searcher_data_chooses_the_reports_it_learns_from(mode, expected):
    searcher = MobsterSearcher(SPACE_1D, seed=0, rung_levels=LEVELS, searcher_data=mode)
    feed(searcher, "a", {"x": 0.1}, [(1.0, 5.0), (2.0, 4.0), (3.0, 3.0), (4.0, 2.5)])  # stopped after 4
    feed(searcher, "b", {"x": 0.9}, [(1.0, 6.0), (2.0, 5.5)], end=False)
    searcher.on_trial_end("b")
    assert {(tid, r) for tid, r, _, _ in searcher.training_points()} == expected


def test_a_report_repeated_at_a_resource_replaces_the_earlier_one():
    searcher = MobsterSearcher(SPACE_1D, seed=0, rung_levels=LEVELS)
    feed(searcher, "a", {"x": 0.1}, [(1.0, 5.0), (1.0, 4.0)])
    assert [(tid, r, loss) for tid, r, loss, _ in searcher.training_points()] == [("a", 1.0, 4.0)]


def test_a_replayed_history_suggests_what_the_first_driver_did():
    """The first driver suggests as results arrive (its fits chained along the way); a resumed one
    replays every event first and suggests once: the same config."""
    def history():
        rng = np.random.default_rng(11)
        for i in range(30):
            config = SPACE_2D.sample(rng)
            reports = [(r, (config["x"] - 0.7) ** 2 + (config["y"] - 0.2) ** 2 + 0.5 / r) for r in LEVELS[:1 + i % 3]]
            yield f"t{i}", config, reports

    live = MobsterSearcher(SPACE_2D, seed=5, points_to_evaluate=(), rung_levels=LEVELS, num_init_random=2)
    suggested = []
    for i, (tid, config, reports) in enumerate(history()):
        suggested.append(live.suggest(i))
        feed(live, tid, config, reports)
    replayed = MobsterSearcher(SPACE_2D, seed=5, points_to_evaluate=(), rung_levels=LEVELS, num_init_random=2)
    for tid, config, reports in history():
        feed(replayed, tid, config, reports)
    assert replayed.suggest(30) == live.suggest(30)
    assert len(replayed.fits) == len(live.fits) == len(refit_checkpoints(len(live.events)))


def test_refits_come_at_every_observation_then_every_tenth_more():
    points = refit_checkpoints(2000)
    assert points[:19] == list(range(2, 21)) and points[-1] <= 2000
    assert all(b / a <= 1.1 + 1 / a for a, b in zip(points[19:], points[20:]))
    assert len(points) < 70, "a 2,000-observation run fits about 65 times, not 2,000"


def test_the_training_set_is_capped_keeping_each_trials_highest_report_and_each_levels_best():
    # 200 trials at r = 1, 60 of them also at r = 3, 20 at r = 9: 280 points, capped at 100.
    points, arrival = [], 0
    for i in range(200):
        for r in LEVELS[:1 + (i % 10 < 3) + (i % 10 == 0)]:
            points.append((f"t{i}", r, float((i * 37) % 200) / r, arrival))
            arrival += 1
    kept = select_training_points(points, 100)
    assert len(kept) == 100 and len({p[0] for p in kept}) == 100, "one point per trial"
    assert [p[3] for p in kept] == sorted(p[3] for p in kept), "arrival order"
    for level in LEVELS:
        at_level = [p for p in points if p[1] == level and max(q[1] for q in points if q[0] == p[0]) == level]
        best = min(at_level, key=lambda p: p[2])
        assert best in kept, f"the best report at {level}"
    newest = max(points, key=lambda p: p[3])
    assert newest in kept
    assert select_training_points(points[:50], 100) == points[:50], "below the cap nothing is dropped"


def test_the_copula_is_monotone_and_standard():
    y = np.array([3.0, 1e6, -2.0, 3.0, 0.5])
    z = gaussian_copula(y)
    assert list(np.argsort(z, kind="stable")) == list(np.argsort(y, kind="stable"))
    assert z[0] == z[3] and abs(z.mean()) < 0.01 and math.isfinite(z.max())
    assert abs(gaussian_copula(np.array([1.0, 2.0, 3.0, 4.0])).sum()) < 1e-12, "symmetric scores without ties"


def config(searcher: dict) -> dict:
    return {"name": "m", "command": "true", "params": {"x": {"type": "uniform", "low": 0, "high": 1}},
            "metric": {"name": "loss", "mode": "min"}, "resource": {"name": "epoch", "max": 27},
            "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 3}, "searcher": searcher,
            "budget": {"max_trials": 10}}


def test_config_makes_a_mobster_searcher_with_the_schedulers_rungs():
    searcher = make_searcher(validate_config(config({"type": "mobster", "seed": 1, "searcher_data": "all",
                                                     "max_size_data_for_model": 50}), check_program=False))
    assert isinstance(searcher, MobsterSearcher)
    assert searcher.levels == (1.0, 3.0, 9.0, 27.0) and searcher.searcher_data == "all" and searcher.max_size == 50


@pytest.mark.parametrize("options, key, words", [
    ({"max_size_data_for_model": 0}, "searcher.max_size_data_for_model", "0"),
    ({"top_fraction": 0.2}, "searcher.top_fraction", "kde"),
    ({"searcher_data": "some"}, "searcher.searcher_data", "some"),
])
def test_config_refuses_bad_mobster_options_naming_the_key(options, key, words):
    with pytest.raises(ConfigError) as error:
        validate_config(config({"type": "mobster", **options}), check_program=False)
    assert key in str(error.value) and words in str(error.value)


@pytest.mark.parametrize("kind", ["random", "bayesopt", "grid", "genetic"])
def test_searcher_data_is_refused_where_the_searcher_would_ignore_it(kind):
    with pytest.raises(ConfigError) as error:
        validate_config(config({"type": kind, "searcher_data": "all"}), check_program=False)
    text = str(error.value)
    assert "searcher.searcher_data" in text and f"not of '{kind}'" in text and "mobster" in text
