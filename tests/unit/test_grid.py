"""Grid search: exact axes on hand-worked ranges, the product in order, conditional children,
initial points first and never repeated, None once the grid is done."""
from __future__ import annotations

import pytest

from hpc_hpo.searchers.grid import GridSearcher, grid_values
from hpc_hpo.space import Choice, Condition, Fixed, LogRandInt, LogUniform, Param, RandInt, Space, Uniform


def every(searcher: GridSearcher, limit: int = 10_000) -> list[dict]:
    """All configs the searcher proposes, in order, up to its first None."""
    configs = []
    for index in range(limit):
        config = searcher.suggest(index)
        if config is None:
            return configs
        configs.append(config)
    raise AssertionError("the grid did not end")


# --------------------------------------------------------------------------- one axis


@pytest.mark.parametrize("domain, size, expected", [
    (Uniform(0.0, 1.0), 3, (0.0, 0.5, 1.0)),
    (Uniform(-1.0, 1.0), 5, (-1.0, -0.5, 0.0, 0.5, 1.0)),
    (LogUniform(1e-3, 1e-1), 3, (1e-3, 1e-2, 1e-1)),
    (LogUniform(1e-5, 1e-1), 5, (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)),
    (RandInt(1, 4), 10, (1, 2, 3, 4)),  # fewer integers than grid points: each once
    (RandInt(0, 10), 4, (0, 3, 7, 10)),  # 0, 3.33, 6.67, 10 rounded
    (RandInt(1, 4), 2, (1, 4)),
    (LogRandInt(1, 1000), 4, (1, 10, 100, 1000)),
    (LogRandInt(1, 8), 4, (1, 2, 4, 8)),
    (LogRandInt(1, 3), 10, (1, 2, 3)),
    (Choice(("a", "b", "c")), 2, ("a", "b", "c")),  # every value, whatever the grid size
    (Choice((True, False)), 7, (True, False)),
    (Fixed(9), 5, (9,)),
])
def test_axis_points(domain, size, expected) -> None:
    values = grid_values(domain, size)
    if isinstance(domain, Choice):
        assert values == expected
    else:
        assert values == pytest.approx(expected, rel=1e-12)
    assert values[0] == expected[0] and values[-1] == expected[-1]  # both ends exactly
    for value, want in zip(values, expected):
        assert type(value) is type(want)


def test_axis_of_one_point_is_the_midpoint() -> None:
    assert grid_values(Uniform(0.0, 4.0), 1) == (2.0,)
    assert grid_values(LogUniform(1e-4, 1e-2), 1) == pytest.approx((1e-3,))
    assert grid_values(RandInt(1, 5), 1) == (3,)


def test_integer_axis_has_at_most_grid_size_points_and_both_ends() -> None:
    for low, high in [(0, 1), (1, 7), (-3, 50), (2, 1000)]:
        for size in range(2, 12):
            values = grid_values(RandInt(low, high), size)
            assert len(values) == min(size, high - low + 1)
            assert values[0] == low and values[-1] == high
            assert list(values) == sorted(set(values))


# --------------------------------------------------------------------------- the product


def test_product_in_fixed_order_last_parameter_fastest() -> None:
    space = Space((Param("x", Uniform(0.0, 1.0), "--x"), Param("c", Choice(("a", "b", "c")), "--c"),
                   Param("epochs", Fixed(9), "--epochs")))
    configs = every(GridSearcher(space, seed=0, points_to_evaluate=None, grid_size=3))
    assert configs == [{"x": x, "c": c, "epochs": 9} for x in (0.0, 0.5, 1.0) for c in ("a", "b", "c")]


def test_default_grid_size_is_five_and_the_seed_does_not_matter() -> None:
    space = Space((Param("x", Uniform(0.0, 1.0), None), Param("y", LogUniform(1.0, 16.0), None)))
    first = every(GridSearcher(space, seed=1, points_to_evaluate=None))
    assert len(first) == 25
    assert first == every(GridSearcher(space, seed=99, points_to_evaluate=None))
    assert [c["y"] for c in first[:5]] == pytest.approx([1.0, 2.0, 4.0, 8.0, 16.0])


def test_conditional_child_multiplies_only_where_active() -> None:
    space = Space((
        Param("opt", Choice(("adam", "sgd")), None),
        Param("momentum", Uniform(0.0, 1.0), None, conditions=(Condition("opt", "equals", "sgd"),)),
        Param("lr", LogUniform(1e-3, 1e-1), None),
    ))
    configs = every(GridSearcher(space, seed=0, points_to_evaluate=None, grid_size=3))
    # adam: 3 learning rates; sgd: 3 momenta x 3 learning rates. No adam config carries a momentum.
    assert len(configs) == 3 + 9
    assert [c for c in configs if c["opt"] == "adam"] == [
        {"opt": "adam", "lr": pytest.approx(lr)} for lr in (1e-3, 1e-2, 1e-1)]
    sgd = [c for c in configs if c["opt"] == "sgd"]
    # pytest.approx takes flat sequences only (pytest 9.2 refuses nested ones): compare the pairs flattened.
    got = [value for pair in sorted((c["momentum"], c["lr"]) for c in sgd) for value in pair]
    want = [value for m in (0.0, 0.5, 1.0) for lr in (1e-3, 1e-2, 1e-1) for value in (m, lr)]
    assert got == pytest.approx(want)
    assert all(list(c) == [n for n in ("opt", "momentum", "lr") if n in c] for c in configs)  # config order
    assert len({tuple(sorted(c.items())) for c in configs}) == len(configs)


def test_a_chain_of_conditions_and_a_child_declared_before_its_parent() -> None:
    space = Space((
        Param("beta", Choice((0.9, 0.99)), None, conditions=(Condition("depth", "greater_than", 2),)),
        Param("model", Choice(("linear", "mlp")), None),
        Param("depth", RandInt(1, 4), None, conditions=(Condition("model", "equals", "mlp"),)),
    ))
    configs = every(GridSearcher(space, seed=0, points_to_evaluate=None, grid_size=4))
    expected = [{"model": "linear"}, {"model": "mlp", "depth": 1}, {"model": "mlp", "depth": 2},
                {"beta": 0.9, "model": "mlp", "depth": 3}, {"beta": 0.99, "model": "mlp", "depth": 3},
                {"beta": 0.9, "model": "mlp", "depth": 4}, {"beta": 0.99, "model": "mlp", "depth": 4}]
    assert configs == expected
    assert [list(c) for c in configs] == [list(c) for c in expected]  # keys in config order


# --------------------------------------------------------------------------- initial points, the end


def space_3x2() -> Space:
    return Space((Param("x", Uniform(0.0, 1.0), None, default=0.25), Param("c", Choice(("a", "b")), None)))


def test_points_to_evaluate_come_first_and_are_not_repeated() -> None:
    points = ({"x": 0.5, "c": "b"}, {"x": 0.3}, {"c": "b"})  # on the grid; off it; off it (x default 0.25)
    configs = every(GridSearcher(space_3x2(), seed=0, points_to_evaluate=points, grid_size=3))
    assert configs[:3] == [{"x": 0.5, "c": "b"}, {"x": 0.3, "c": "a"}, {"x": 0.25, "c": "b"}]
    grid = [{"x": x, "c": c} for x in (0.0, 0.5, 1.0) for c in ("a", "b")]
    assert configs[3:] == [c for c in grid if c != {"x": 0.5, "c": "b"}]
    assert len(configs) == 3 + 6 - 1


def test_no_points_means_the_grid_alone_not_the_defaults_first() -> None:
    configs = every(GridSearcher(space_3x2(), seed=0, points_to_evaluate=None, grid_size=3))
    assert configs == [{"x": x, "c": c} for x in (0.0, 0.5, 1.0) for c in ("a", "b")]
    assert every(GridSearcher(space_3x2(), seed=0, points_to_evaluate=(), grid_size=3)) == configs


def test_none_once_exhausted_and_suggest_is_a_pure_function_of_the_index() -> None:
    searcher = GridSearcher(space_3x2(), seed=0, points_to_evaluate=({"x": 0.3},), grid_size=3)
    assert searcher.suggest(6) == {"x": 1.0, "c": "b"}  # asked out of order first, as a resumed driver does
    assert searcher.suggest(7) is None and searcher.suggest(100) is None and searcher.suggest(7) is None
    fresh = GridSearcher(space_3x2(), seed=0, points_to_evaluate=({"x": 0.3},), grid_size=3)
    assert [fresh.suggest(i) for i in range(9)] == [searcher.suggest(i) for i in range(9)]
    assert fresh.suggest(0) == {"x": 0.3, "c": "a"} and fresh.suggest(1) == {"x": 0.0, "c": "a"}
    # Results do not change the grid.
    searcher.on_trial_created("0000", {"x": 0.3, "c": "a"})
    searcher.on_report("0000", 1.0, 0.1)
    searcher.on_trial_end("0000")
    assert [searcher.suggest(i) for i in range(9)] == [fresh.suggest(i) for i in range(9)]


def test_returned_configs_are_copies() -> None:
    searcher = GridSearcher(space_3x2(), seed=0, points_to_evaluate=None, grid_size=3)
    searcher.suggest(0)["x"] = 42.0
    assert searcher.suggest(0) == {"x": 0.0, "c": "a"}


def test_a_large_grid_is_enumerated_lazily() -> None:
    space = Space(tuple(Param(f"x{i}", Uniform(0.0, 1.0), None) for i in range(12)))  # 5**12 = 244 million
    searcher = GridSearcher(space, seed=0, points_to_evaluate=None)
    assert searcher.suggest(1) == {**{f"x{i}": 0.0 for i in range(11)}, "x11": 0.25}
    assert searcher.suggest(5) == {**{f"x{i}": 0.0 for i in range(10)}, "x10": 0.25, "x11": 0.0}
