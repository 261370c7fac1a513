"""Several objectives outside the scheduler: the config's list forms and refusals, report parsing, the
journal fold, and what `best`, `export` and `plot` make of a Pareto front."""
from __future__ import annotations

import io
import json
import math
import re
from typing import Any

import pytest

from hpc_hpo.config import MetricSpec, Objective, validate_config
from hpc_hpo.errors import ConfigError
from hpc_hpo.metrics import ReportParser
from hpc_hpo.plot import objective_front
from hpc_hpo.results import best_as_dict, best_text, export_columns, pareto_front, write_export
from hpc_hpo.state import fold

BASE: dict[str, Any] = {
    "name": "mo", "command": "true", "params": {"x": {"type": "uniform", "low": 0, "high": 1}},
    "resource": {"name": "epoch", "max": 9}, "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 3},
    "searcher": {"type": "random", "seed": 1}, "budget": {"max_trials": 5}}
TWO = (Objective("loss", "min"), Objective("accuracy", "max"))


def metric_of(metric: Any, **overrides: Any) -> MetricSpec:
    return validate_config({**BASE, **overrides, "metric": metric}, check_program=False).metric


@pytest.mark.parametrize("metric", [
    [{"name": "loss", "mode": "min"}, {"name": "accuracy", "mode": "max"}],  # a list of objectives
    {"name": ["loss", "accuracy"], "mode": ["min", "max"]},  # Syne Tune: metric list, mode list
    {"name": ["loss", "accuracy"], "directions": ["minimize", "maximize"]},  # Optuna's directions
])
def test_list_forms_name_the_same_objectives(metric: Any) -> None:
    spec = metric_of(metric)
    assert spec.objectives == TWO
    assert (spec.name, spec.mode, spec.reported) == ("loss", "min", ("loss", "accuracy"))


def test_one_mode_for_all_and_one_objective_is_the_single_metric() -> None:
    assert metric_of({"name": ["a", "b"], "mode": "max"}).objectives == (Objective("a", "max"), Objective("b", "max"))
    assert metric_of({"name": ["loss"], "mode": "min"}) == MetricSpec("loss", "min")
    assert metric_of([{"name": "loss", "mode": "max"}]) == MetricSpec("loss", "max")
    assert metric_of({"name": "loss", "mode": "min"}) == MetricSpec("loss", "min")  # unchanged


@pytest.mark.parametrize("metric, overrides, key, words", [
    ({"name": ["a", "b"], "mode": ["min"]}, {}, "metric.mode", "one entry per metric"),
    ({"name": ["a", "a"], "mode": "min"}, {}, "metric.name", "twice"),
    ({"name": [], "mode": "min"}, {}, "metric.name", "at least one"),
    ([], {}, "metric", "at least one"),
    ({"name": ["a", "b"], "mode": "min", "directions": ["minimize", "minimize"]}, {}, "metric.directions",
     "together with metric.mode"),
    ({"name": ["a", "b"], "directions": ["minimize", "up"]}, {}, "metric.directions[1]", "minimize, maximize"),
    ({"name": ["a", 3], "mode": "min"}, {}, "metric.name[1]", "name of letters"),
    ([{"name": "a", "mode": "min"}, {"name": "b", "mode": "min", "weight": 2}], {}, "metric[1].weight", "unknown key"),
    ({"name": ["a", "b"], "mode": "min", "combine": []}, {}, "metric.combine", "unknown key"),
    ({"name": ["a", "b"], "mode": "min"}, {"scheduler": {"type": "promotion"}}, "scheduler.type", "use scheduler type asha"),
    ({"name": ["a", "b"], "mode": "min"}, {"scheduler": {"type": "pasha"}}, "scheduler.type", "fifo"),
    ({"name": ["a", "b"], "mode": "min"}, {"scheduler": {"type": "asha", "brackets": 2}}, "scheduler.brackets",
     "one bracket"),
    ({"name": ["a", "b"], "mode": "min"}, {"searcher": {"type": "bayesopt"}}, "searcher.type", "random, grid or kde"),
    ({"name": ["a", "b"], "mode": "min"}, {"budget": {"max_trials": 3, "metric_threshold": 0.5}},
     "budget.metric_threshold", "several objectives"),
    ({"name": ["a", "b"], "mode": "min"}, {"params": {"b": {"type": "uniform", "low": 0, "high": 1}}}, "params.b",
     "reserved"),
    ({"name": ["a", "b"], "mode": "min"}, {"metric_regex": r"a=(?P<a>\S+)"}, "metric_regex", "missing: b"),
])
def test_refusals_name_the_key_and_the_fix(metric: Any, overrides: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        metric_of(metric, **overrides)
    assert caught.value.key == key
    assert words in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("scheduler, searcher", [("fifo", "random"), ("asha", "kde"), ("fifo", "grid")])
def test_supported_combinations_load(scheduler: str, searcher: str) -> None:
    spec = metric_of({"name": ["a", "b"], "mode": "min"}, scheduler={"type": scheduler},
                     searcher={"type": searcher, "seed": 1})
    assert len(spec.objectives) == 2


def test_a_report_needs_every_objective_and_keeps_them_all() -> None:
    spec = MetricSpec("loss", "min", objectives=TWO)
    parser = ReportParser("loss", "epoch", None, "trial 0001", objective=spec)
    reports = parser.parse(['{"epoch": 1, "loss": 0.5, "accuracy": 0.8}', '{"epoch": 2, "loss": 0.4}',
                            '{"epoch": 3, "loss": 0.3, "accuracy": "0.9"}'])
    assert [(r.resource, r.value, r.components) for r in reports] == [
        (1.0, 0.5, {"loss": 0.5, "accuracy": 0.8}), (3.0, 0.3, {"loss": 0.3, "accuracy": 0.9})]
    regex = ReportParser("loss", "epoch", re.compile(r"e=(?P<epoch>\d+) l=(?P<loss>\S+) a=(?P<accuracy>\S+)"),
                         "trial 0001", objective=spec)
    assert regex.parse(["e=2 l=1.5 a=0.25"])[0].components == {"loss": 1.5, "accuracy": 0.25}


def test_the_scheduler_gets_the_tuple_and_a_missing_value_is_nan() -> None:
    assert MetricSpec("loss", "min").scheduled(0.5, None) == 0.5
    spec = MetricSpec("loss", "min", objectives=TWO)
    assert spec.scheduled(0.5, {"loss": 0.5, "accuracy": 0.75}) == (0.5, 0.75)
    missing = spec.scheduled(0.5, {"loss": 0.5})
    assert missing[0] == 0.5 and math.isnan(missing[1])


# ----------------------------------------------------------------------------------- journal and views


def created(**fields: Any) -> dict[str, Any]:
    return {"type": "experiment_created", "t": 1.0, "name": "mo", "metric": "loss", "mode": "min",
            "resource": "epoch", "params": ["x"], "combined": [], **fields}


def trial(trial_id: str, reports: list[tuple[float, float, float, str]], t: float) -> list[dict[str, Any]]:
    """A trial with reports (resource, loss, accuracy, decision)."""
    events = [{"type": "trial_created", "t": t, "trial_id": trial_id, "index": int(trial_id), "config": {"x": t}}]
    for resource, loss, accuracy, decision in reports:
        events.append({"type": "report", "t": t + resource / 100, "trial_id": trial_id, "resource": resource,
                       "value": loss, "elapsed_s": 0.1, "decision": decision,
                       "metrics": {"loss": loss, "accuracy": accuracy}})
    return events


def state_with_trials():
    events = [created(objectives=["loss", "accuracy"], modes=["min", "max"])]
    # At epoch 9: 0001 (0.2, 0.9), 0002 (0.1, 0.8) and 0004 (0.3, 0.95) trade off; 0003 (0.3, 0.85) is
    # dominated by 0001; 0005 reported NaN. 0006 stopped at epoch 1 with the best values of all, but was
    # not trained as long: it is not compared.
    events += trial("0001", [(1, 0.5, 0.6, "continue"), (9, 0.2, 0.9, "complete")], 2)
    events += trial("0002", [(1, 0.4, 0.5, "continue"), (9, 0.1, 0.8, "complete")], 3)
    events += trial("0003", [(9, 0.3, 0.85, "complete")], 4)
    events += trial("0004", [(9, 0.3, 0.95, "complete")], 5)
    events += trial("0005", [(9, math.nan, 0.99, "complete")], 6)
    events += trial("0006", [(1, 0.01, 0.99, "stop")], 7)
    return fold(events)


def test_the_fold_reads_objectives_and_skips_a_mismatch() -> None:
    state = state_with_trials()
    assert (state.objectives, state.modes) == (["loss", "accuracy"], ["min", "max"])
    damaged = fold([created(objectives=["loss", "accuracy"], modes=["min"])])
    assert damaged.created_at is None and damaged.skipped == 1
    assert fold([created()]).objectives == []  # one metric: as before


def test_the_front_is_the_non_dominated_trials_at_the_highest_resource() -> None:
    top, front = pareto_front(state_with_trials())
    assert top == 9
    assert [t.trial_id for t, _ in front] == ["0002", "0001", "0004"]  # best loss first


def test_best_text_and_json_show_each_objective() -> None:
    state = state_with_trials()
    lines = best_text(state).splitlines()
    assert lines[0] == "Pareto front: 3 of the 5 trials at epoch 9, objectives loss (min), accuracy (max)"
    assert lines[1].split() == ["trial", "state", "loss", "accuracy", "x"]
    assert [line.split()[:4] for line in lines[2:]] == [["0002", "completed", "0.1", "0.8"],
                                                          ["0001", "completed", "0.2", "0.9"],
                                                          ["0004", "completed", "0.3", "0.95"]]
    data = json.loads(json.dumps(best_as_dict(state)))
    assert data["resource"] == 9 and data["objectives"][1] == {"name": "accuracy", "mode": "max"}
    assert data["front"][0] == {"trial_id": "0002", "state": "completed", "values": {"loss": 0.1, "accuracy": 0.8},
                                "config": {"x": 3}}
    assert best_text(fold([created(objectives=["loss", "accuracy"], modes=["min", "max"])])) == \
        "no trial has reported yet"


def test_export_has_one_column_per_objective() -> None:
    state = state_with_trials()
    columns = export_columns(state)
    assert columns[:5] == ["trial_id", "resource", "loss", "elapsed_s", "decision"]
    assert columns[5:7] == ["x", "accuracy"] and columns.count("loss") == 1
    out = io.StringIO()
    write_export(state, out)
    first = dict(zip(columns, out.getvalue().splitlines()[1].split(",")))
    assert (first["loss"], first["accuracy"]) == ("0.5", "0.6")


def test_the_plot_front_uses_the_first_two_objectives_at_the_highest_resource() -> None:
    pareto = objective_front(state_with_trials())
    assert pareto.names == ("loss", "accuracy") and pareto.label == "trials at epoch 9"
    assert sorted(pareto.points) == [(0.1, 0.8), (0.2, 0.9), (0.3, 0.85), (0.3, 0.95)]  # NaN left out
    assert pareto.front == [(0.1, 0.8), (0.2, 0.9), (0.3, 0.95)]
