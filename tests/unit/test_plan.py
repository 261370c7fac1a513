"""`hpc-hpo plan`: the exact bracket table, and the figures of the simulated scheduler."""
from __future__ import annotations

import re

from hpc_hpo.config import validate_config
from hpc_hpo.plan import PlanOptions, format_plan, simulation_budget, simulations
from hpc_hpo.plan_simulation import measure
from hpc_hpo.state import ExperimentState, ReportRow


def config(scheduler: dict, max_t: float = 81, budget: dict | None = None, parallel: int = 4):
    return validate_config({"name": "p", "command": "python x.py", "params": {"x": {"type": "uniform", "low": 0,
                            "high": 1}}, "metric": {"name": "loss", "mode": "min"},
                            "resource": {"name": "epoch", "max": max_t}, "scheduler": scheduler,
                            "searcher": {"type": "random", "seed": 0},
                            "budget": budget or {"max_trials": 10},
                            "execution": {"backend": "local", "num_parallel_evals": parallel}}, check_program=False)


def spent(text: str) -> tuple[float, float, float]:
    """(median, low, high) of the resource spent line."""
    found = re.search(r"resource spent +median (\S+) \(range (\S+) to (\S+)\)", text)
    return float(found[1]), float(found[2]), float(found[3])


def test_sync_hyperband_table_and_its_simulation_spend_the_plan_exactly() -> None:
    text = format_plan(config({"type": "sync_hyperband"}, budget={"max_trials": 1000}), PlanOptions(simulations=3))
    # Resumed: 297 + 276 + 279 + 324 + 405; from scratch: 405 + 363 + 351 + 378 + 405.
    assert "143 configs; total resource 1581 resuming from checkpoints (1902 if every stage restarted" in text
    assert "      3      0       34              3" in text
    assert spent(text) == (1581, 1581, 1581)  # the simulated driver runs the whole plan, resuming
    assert "epoch 81: 10 (medians)" in text  # 1 + 1 + 1 + 2 + 5 trials reach the maximum
    assert "ended by         the scheduler's end (3 of 3)" in text


def test_fifo_spends_every_trial_to_the_maximum() -> None:
    assert spent(format_plan(config({"type": "fifo"}, max_t=27), PlanOptions(simulations=3))) == (270, 270, 270)


def test_asha_with_few_trials_spends_more_than_the_long_run_formula() -> None:
    # The formula 1 + 2/3 + 6/9 + 18/27 = 3 per trial says 30 for 10 trials; early trials meet few values
    # at a rung (the first always goes on), so a short run spends more, and never more than FIFO's 270.
    text = format_plan(config({"type": "asha"}, max_t=27), PlanOptions(simulations=10))
    median, low, high = spent(text)
    assert 40 < median < 270 and low <= median <= high
    two = format_plan(config({"type": "asha", "brackets": 2}, max_t=27))
    assert "probability 0.692" in two and "probability 0.308" in two  # sizes 27 and 12 of 39


def test_budget_keys_are_honoured() -> None:
    by_resource = simulations(config({"type": "fifo"}, max_t=27, budget={"max_resource": 100}),
                              PlanOptions(simulations=3))
    assert all(r.stopped_by == "max_resource" and 100 <= r.spent < 100 + 4 * 27 for r in by_resource)
    # max_time needs seconds: 1 worker at 2 s per epoch for 60 s reaches epoch 30 at most (here 27 + 3).
    timed = config({"type": "fifo"}, max_t=27, budget={"max_time": "60s"}, parallel=1)
    runs = simulations(timed, PlanOptions(simulations=3, seconds_per_resource=2.0))
    assert all(r.stopped_by == "max_time" and r.wall == 60 and r.spent < 60 / 2 * 1.6 for r in runs)
    assert "not simulated: only budget.max_time" in format_plan(timed)  # no seconds: nothing would end it
    both = config({"type": "fifo"}, max_t=27, budget={"max_time": "60s", "max_trials": 5})
    assert "budget.max_time (60 s) is not simulated" in format_plan(both)


def test_warns_when_no_trial_can_reach_the_maximum_and_says_how_many_trials_would() -> None:
    promotion = config({"type": "promotion", "grace_period": 1, "reduction_factor": 3}, max_t=9,
                       budget={"max_trials": 2})
    text = format_plan(promotion)
    found = re.search(r"warning: in every simulation no trial reached epoch 9.*at least (\d+)", text)
    assert found, text
    needed = int(found[1])

    def reach_all(trials: int) -> bool:
        options = PlanOptions(simulations=3)
        budget = simulation_budget(promotion, options)
        budget = type(budget)(**{**budget.__dict__, "max_trials": trials})
        return all(r.reaching(9) for r in simulations(promotion, options, budget))
    assert reach_all(needed) and not reach_all(needed - 1)
    assert "warning" not in format_plan(config({"type": "asha"}, max_t=9))


def test_from_an_experiment_uses_its_curves_and_seconds() -> None:
    state = ExperimentState(metric="loss", mode="min")
    for trial in range(6):
        # 3 s per epoch after a 1 s start; trial k's loss is k + 1/epoch: the ranking never changes.
        state.rows += [ReportRow(f"{trial:04d}", epoch, trial + 1 / epoch, 1 + 3 * epoch, "continue")
                       for epoch in range(1, 10)]
    measured = measure(state)
    assert measured.pace == 3 and measured.startup == 1
    text = format_plan(config({"type": "fifo"}, max_t=9, budget={"max_trials": 4}, parallel=2),
                       PlanOptions(measured=measured, measured_from="EXP", simulations=2))
    # 4 trials, 2 at a time, each 1 s + 9 * 3 s + half a poll interval: two rounds of 28.25 s.
    assert "measured in EXP" in text and "wall time        median 56 s" in text
    assert "node-hours" in text


def test_several_objectives_are_simulated_with_mo_asha() -> None:
    """MO-ASHA ranks tuples: the plan feeds it one, and its stops keep the spend between ASHA's floor and FIFO's."""
    two = validate_config({"name": "p", "command": "python x.py", "params": {"x": {"type": "uniform", "low": 0,
                           "high": 1}}, "metric": [{"name": "loss", "mode": "min"}, {"name": "ms", "mode": "min"}],
                           "resource": {"name": "epoch", "max": 27}, "scheduler": {"type": "asha"},
                           "searcher": {"type": "random", "seed": 0}, "budget": {"max_trials": 10},
                           "execution": {"backend": "local", "num_parallel_evals": 4}}, check_program=False)
    median, low, high = spent(format_plan(two, PlanOptions(simulations=5)))
    assert 27 < median < 270 and low <= median <= high


def test_a_plan_that_nothing_would_end_says_so_instead_of_simulating_forever() -> None:
    endless = config({"type": "sync_hyperband", "repeat": None}, max_t=9, budget={"max_time": "10m"})
    assert "not simulated: only budget.max_time" in format_plan(endless)  # passes until a time nobody knows


def flat_curves(top: int) -> ExperimentState:
    """Trials whose values never change, measured up to `top` epochs: no ranking ever moves."""
    state = ExperimentState(metric="loss", mode="min")
    for trial in range(4):
        state.rows += [ReportRow(f"{trial:04d}", epoch, float(trial), 1 + epoch, "continue")
                       for epoch in range(1, top + 1)]
    return state


def test_the_search_for_enough_trials_gives_up_at_its_ceiling() -> None:
    # Promotion ASHA at eta 3 promotes nothing with fewer than 3 trials at a rung; 2 trials at a time
    # with flat curves and max_trials 1 never get a trial to epoch 9, and the search tried doubling forever.
    measured = measure(flat_curves(3))
    promotion = config({"type": "promotion", "grace_period": 1, "reduction_factor": 3}, max_t=9,
                       budget={"max_trials": 1}, parallel=2)
    text = format_plan(promotion, PlanOptions(measured=measured, measured_from="EXP", simulations=1))
    assert re.search(r"no trial reached epoch 9.*raise budget.max_trials from 1 to at least \d+", text), text
    pasha = config({"type": "pasha"}, max_t=9, budget={"max_trials": 4}, parallel=2)
    text = format_plan(pasha, PlanOptions(measured=measured, measured_from="EXP", simulations=1))
    assert "no trial reached epoch 9" in text and "PASHA raises its maximum only while" in text, text


def test_the_bracket_table_counts_every_pass_of_repeat() -> None:
    text = format_plan(config({"type": "sync_hyperband", "repeat": 2}, budget={"max_trials": 1000}),
                       PlanOptions(simulations=1))
    assert "scheduler.repeat 2: 286 configs, total resource 3162 resuming (3804 from scratch)" in text
    assert spent(text)[0] == 3162  # the simulation runs both passes
