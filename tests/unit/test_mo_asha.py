"""MO-ASHA (hpc_hpo/schedulers/mo_asha.py): non-dominated sorting, crowding distance and the stopping rule
at a rung, on hand-made points whose answers are worked out in the comments."""
from __future__ import annotations

import math
import random
from fractions import Fraction

import pytest

from hpc_hpo.config import validate_config
from hpc_hpo.schedulers import make_scheduler
from hpc_hpo.schedulers.base import Decision
from hpc_hpo.schedulers.mo_asha import (MoAsha, crowding_distances, dominates, front_ranks, front_ranks_pairwise,
                                        keeps, minimised, non_dominated, points_ahead)


def test_dominance_needs_no_worse_everywhere_and_better_somewhere() -> None:
    assert dominates((1, 2), (2, 2))
    assert dominates((1, 1), (2, 3))
    assert not dominates((1, 2), (1, 2))  # equal points do not dominate each other
    assert not dominates((1, 3), (2, 2))  # a trade-off
    assert not dominates((2, 2), (1, 2))


# (3, 4) is dominated by (2, 3); (5, 5) by (3, 4); (6, 6) by (5, 5); the repeated (2, 3) stays on front 0.
HAND_POINTS = [(1, 5), (2, 3), (4, 1), (3, 4), (5, 5), (2, 3), (6, 6)]
HAND_RANKS = [0, 0, 0, 1, 2, 0, 3]


def test_fronts_of_hand_made_points() -> None:
    assert front_ranks(HAND_POINTS) == HAND_RANKS
    assert front_ranks_pairwise(HAND_POINTS) == HAND_RANKS
    assert non_dominated(HAND_POINTS) == [0, 1, 2, 5]


def test_fronts_in_three_objectives() -> None:
    # (1,1,1) dominates (2,2,2), which dominates (3,3,3); (0,5,5) and (5,0,5) trade off with everything.
    points = [(2, 2, 2), (0, 5, 5), (1, 1, 1), (3, 3, 3), (5, 0, 5)]
    assert front_ranks(points) == [1, 0, 0, 2, 0]


def test_the_two_objective_sweep_agrees_with_pairwise_dominance() -> None:
    rng = random.Random(4)
    for _ in range(300):
        n = rng.randint(1, 25)
        # Small integers: many ties and repeated points, where a sweep goes wrong first.
        points = [(rng.randint(0, 5), rng.randint(0, 5)) for _ in range(n)]
        if rng.random() < 0.2:
            points[rng.randrange(n)] = (rng.choice([-math.inf, math.inf]), rng.randint(0, 5))
        assert front_ranks(points) == front_ranks_pairwise(points), points
        # And the definition: rank 0 iff nobody dominates; rank k > 0 iff a point of rank k-1 dominates it
        # and none of rank >= k does.
        ranks = front_ranks(points)
        for i, p in enumerate(points):
            dominators = [ranks[j] for j, q in enumerate(points) if dominates(q, p)]
            assert ranks[i] == (max(dominators) + 1 if dominators else 0)


def test_fronts_in_more_objectives_follow_the_definition() -> None:
    rng = random.Random(5)
    for _ in range(100):
        m = rng.choice([1, 3, 4])
        points = [tuple(rng.randint(0, 3) for _ in range(m)) for _ in range(rng.randint(1, 20))]
        ranks = front_ranks(points)
        for i, p in enumerate(points):
            dominators = [ranks[j] for j, q in enumerate(points) if dominates(q, p)]
            assert ranks[i] == (max(dominators) + 1 if dominators else 0), points


def test_crowding_distance_by_hand() -> None:
    # x sorted 0, 1, 3, 10 (range 10): (1,6) gets (3-0)/10 = .3, (3,3) gets (10-1)/10 = .9;
    # y sorted 0, 3, 6, 10 (range 10): (3,3) gets (6-0)/10 = .6, (1,6) gets (10-3)/10 = .7.
    front = [(0, 10), (1, 6), (3, 3), (10, 0)]
    distances = crowding_distances(front)
    assert distances[0] == distances[3] == math.inf
    assert distances[1] == pytest.approx(1.0)
    assert distances[2] == pytest.approx(1.5)


def test_crowding_of_small_fronts_and_flat_objectives() -> None:
    assert crowding_distances([(1, 2)]) == [math.inf]
    assert crowding_distances([(1, 2), (2, 1)]) == [math.inf, math.inf]
    # Identical points: each objective's range is 0 and adds nothing inside; the ends are infinite.
    assert crowding_distances([(1, 1), (1, 1), (1, 1)]) == [math.inf, 0.0, math.inf]


def test_points_ahead_orders_by_front_then_crowding() -> None:
    # One front A, B, C, V: A and B are extremes (infinite); x: C (6-0)/10 = .6, V (10-5)/10 = .5;
    # y: V (5-0)/10 = .5, C (10-4)/10 = .6. So C = 1.2 > V = 1.0: three points are ahead of V, two of C.
    points = [(0, 10), (10, 0), (5, 5), (6, 4)]
    assert points_ahead(points, 3) == 3
    assert points_ahead(points, 2) == 2
    assert points_ahead(points, 0) == 0  # A ties with B at infinity: a tie is not ahead


def test_a_dominated_point_has_its_better_fronts_ahead() -> None:
    # (7, 7) is dominated by (5, 5) and (6, 4): front 1, behind all four points of front 0.
    points = [(0, 10), (10, 0), (5, 5), (6, 4), (7, 7)]
    assert front_ranks(points) == [0, 0, 0, 0, 1]
    assert points_ahead(points, 4) == 4


def test_keeps_is_the_share_test_over_all_points() -> None:
    rung = [(0, 10), (10, 0), (5, 5)]
    # V = (6, 4): 3 ahead of 4 points. Kept iff 3 <= q * 4.
    assert not keeps(rung, (6, 4), Fraction(1, 3))
    assert not keeps(rung, (6, 4), Fraction(1, 2))
    assert keeps(rung, (6, 4), Fraction(3, 4))
    assert keeps([], (100, 100), Fraction(1, 3))  # the first point at a rung goes on
    assert keeps(rung, (-1, -1), Fraction(1, 3))  # dominates all: nothing ahead


def test_with_one_objective_it_keeps_values_with_few_strictly_better() -> None:
    rng = random.Random(7)
    for _ in range(200):
        recorded = [(float(rng.randint(0, 9)),) for _ in range(rng.randint(1, 15))]
        new = (float(rng.randint(0, 9)),)
        better = sum(1 for (v,) in recorded if v < new[0])
        q = Fraction(1, 3)
        assert keeps(recorded, new, q) == (better <= q * (len(recorded) + 1)), (recorded, new)


def scheduler(modes: tuple[str, ...] = ("min", "min"), levels: list[float] | None = None) -> MoAsha:
    return MoAsha(levels or [1, 3, 9], list(modes))


def test_cutoff_decisions_at_a_rung() -> None:
    asha = scheduler()
    assert asha.on_report("a", 1, (1.0, 5.0)).decision == Decision.CONTINUE  # first at the rung
    assert asha.on_report("b", 1, (2.0, 6.0)).decision == Decision.STOP  # dominated by a: 1 of 2 ahead > 2/3
    assert asha.on_report("c", 1, (3.0, 1.0)).decision == Decision.CONTINUE  # a trade-off: on the front
    # d = (0.5, 0.5) dominates everything: none ahead.
    outcome = asha.on_report("d", 1, (0.5, 0.5))
    assert outcome.decision == Decision.CONTINUE and outcome.rung == 1 and outcome.cutoff is None
    # e = (1.5, 5.5): d alone is front 0; a and c, dominated only by d, front 1; e (dominated by d and a)
    # front 2; b front 3. Ahead of e: d, a, c, 3 of 5 > 5/3.
    assert asha.on_report("e", 1, (1.5, 5.5)).decision == Decision.STOP
    assert len(asha.rungs[0]) == 5  # stopped values join the rung too


def test_max_objectives_are_negated() -> None:
    # min loss, max accuracy: (1, 10) dominates (2, 5).
    asha = scheduler(("min", "max"))
    asha.on_report("a", 1, (1.0, 10.0))
    assert asha.on_report("b", 1, (2.0, 5.0)).decision == Decision.STOP
    asha = scheduler(("min", "max"))
    asha.on_report("b", 1, (2.0, 5.0))
    assert asha.on_report("a", 1, (1.0, 10.0)).decision == Decision.CONTINUE
    assert minimised((1.0, 10.0), ("min", "max")) == (1.0, -10.0)


def test_nan_stops_and_joins_no_rung() -> None:
    asha = scheduler()
    asha.on_report("a", 1, (1.0, 1.0))
    assert asha.on_report("b", 1, (math.nan, 0.0)).decision == Decision.STOP
    assert asha.rungs[0] == [(1.0, 1.0)]


def test_rungs_are_judged_once_skipped_levels_and_max_t_completes() -> None:
    asha = scheduler()
    assert asha.on_report("a", 1, (5.0, 5.0)).decision == Decision.CONTINUE
    assert asha.on_report("a", 2, (1.0, 1.0)).decision == Decision.CONTINUE  # between rungs: not judged
    assert asha.on_report("b", 5, (4.0, 4.0)).decision == Decision.CONTINUE  # skipped 1: judged at 3, first there
    assert asha.rungs == [[(5.0, 5.0)], [(4.0, 4.0)]]
    assert asha.on_report("b", 6, (9.0, 9.0)).decision == Decision.CONTINUE  # rung 3 is behind it
    assert asha.on_report("b", 9, (9.0, 9.0)).decision == Decision.COMPLETE
    with pytest.raises(ValueError):
        asha.on_report("c", 1, (1.0,))


def test_the_share_follows_the_seeds_rule() -> None:
    assert scheduler(levels=[1, 3, 9]).shares == [Fraction(1, 3), Fraction(1, 3)]
    # Rungs 1, 3, 9 with max_t 20 keep 1/3, 1/3, 9/20 (DESIGN.md): 5 values at rung 9, one new point with
    # 2 ahead goes on (2 <= 9/20 * 5 = 2.25), where 1/3 would stop it (2 > 5/3).
    asha = scheduler(levels=[1, 3, 9, 20])
    assert asha.shares == [Fraction(1, 3), Fraction(1, 3), Fraction(9, 20)]
    for i, point in enumerate([(0.0, 0.0), (1.0, 1.0), (5.0, 5.0), (6.0, 6.0)]):
        asha.on_report(f"{i}", 9, point)
    assert asha.on_report("new", 9, (2.0, 2.0)).decision == Decision.CONTINUE


def test_replaying_the_same_reports_gives_the_same_decisions() -> None:
    rng = random.Random(11)
    reports = [(f"{i:03d}", level, (rng.random(), rng.random())) for i in range(60) for level in (1, 3)]
    a, b = scheduler(), scheduler()
    decisions = [a.on_report(*r).decision for r in reports]
    assert decisions == [b.on_report(*r).decision for r in reports]
    assert Decision.STOP in decisions and Decision.CONTINUE in decisions  # the test compares real choices


def test_make_scheduler_picks_mo_asha_for_several_objectives() -> None:
    config = validate_config({
        "name": "mo", "command": "true", "params": {"x": {"type": "uniform", "low": 0, "high": 1}},
        "metric": {"name": ["loss", "latency"], "mode": ["min", "min"]}, "resource": {"name": "epoch", "max": 9},
        "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 3},
        "searcher": {"type": "random", "seed": 1}, "budget": {"max_trials": 4}}, check_program=False)
    made = make_scheduler(config)
    assert isinstance(made, MoAsha) and made.levels == [1, 3, 9] and made.modes == ("min", "min")
