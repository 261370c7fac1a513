"""Resuming with a changed config, without running trials: what is journaled, what is refused, what reopens.

The experiment is created by open_experiment as a first run creates it; the end-to-end runs are in
tests/integration/test_resume_config.py.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from hpc_hpo.config import validate_config
from hpc_hpo.errors import HpoError
from hpc_hpo.experiment import check_resume, effective_config, open_experiment
from hpc_hpo.journal import Journal, make_event


def base(directory: Path) -> dict[str, Any]:
    return {"name": "unit", "command": "train --fast", "experiment_dir": str(directory),
            "params": {"lr": {"type": "loguniform", "low": 1e-4, "high": 0.1},
                       "opt": {"type": "choice", "values": ["sgd", "adam"]}},
            "metric": {"name": "loss", "mode": "min"}, "resource": {"max": 9},
            "searcher": {"seed": 7}, "budget": {"max_trials": 5},
            "execution": {"backend": "local", "num_parallel_evals": 4}}


def changed(data: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`data` with each dotted key set (None as value of a key ending in '!' removes it)."""
    data = copy.deepcopy(data)
    for path, value in changes.items():
        *parents, last = path.rstrip("!").split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        if path.endswith("!"):
            node.pop(last, None)
        else:
            node[last] = value
    return data


def load(data: dict[str, Any]):
    return validate_config(data, check_program=False)


def journal(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (directory / "journal.jsonl").read_text().splitlines()]


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture
def created(tmp_path: Path) -> dict[str, Any]:
    """A created experiment whose last run ended for good, and the config it was created with."""
    data = base(tmp_path / "exp")
    opened = open_experiment(load(data))
    assert not opened.resumed and not opened.reopened
    opened.journal.append([make_event("run_started"), make_event("experiment_ended", reason="max_trials", final=True)])
    return data


def test_the_same_config_changes_nothing(tmp_path: Path, created: dict[str, Any]) -> None:
    before = snapshot(tmp_path / "exp")
    assert check_resume(load(created)) == []
    opened = open_experiment(load(created))
    assert opened.resumed and not opened.reopened
    assert snapshot(tmp_path / "exp") == before


def test_how_it_runs_may_change_and_is_journaled_once(tmp_path: Path, created: dict[str, Any]) -> None:
    new = changed(created, {"budget.max_trials": 8, "execution.num_parallel_evals": 2, "command": "train2 --fast",
                            "metric_regex": r"loss=(\S+)", "execution.num_retries": 2, "execution.backend!": None})
    expected = [{"key": "budget.max_trials", "path": ["budget", "max_trials"], "old": 5, "new": 8},
                {"key": "command", "path": ["command"], "old": "train --fast", "new": "train2 --fast"},
                {"key": "execution.backend", "path": ["execution", "backend"], "old": "local", "new": None,
                 "removed": True},
                {"key": "execution.num_parallel_evals", "path": ["execution", "num_parallel_evals"], "old": 4, "new": 2},
                {"key": "execution.num_retries", "path": ["execution", "num_retries"], "old": None, "new": 2,
                 "added": True},
                {"key": "metric_regex", "path": ["metric_regex"], "old": None, "new": r"loss=(\S+)", "added": True}]
    key = lambda change: change["key"]  # noqa: E731
    assert sorted(check_resume(load(new)), key=key) == expected
    assert len(journal(tmp_path / "exp")) == 3  # checking writes nothing
    opened = open_experiment(load(new))
    assert opened.resumed and opened.reopened  # max_trials changed after the end
    events = [e for e in journal(tmp_path / "exp") if e["type"] == "config_changed"]
    assert len(events) == 1 and sorted(events[0]["changes"], key=key) == expected
    # The experiment.yaml keeps the original; the effective config is the new one, so running it again is no change.
    assert "train --fast" in (tmp_path / "exp" / "experiment.yaml").read_text()
    assert effective_config(tmp_path / "exp")[("execution", "num_parallel_evals")] == 2
    assert ("execution", "backend") not in effective_config(tmp_path / "exp")
    assert check_resume(load(new)) == []
    assert open_experiment(load(new)).reopened  # the budget changed since the last end: still not over
    assert len([e for e in journal(tmp_path / "exp") if e["type"] == "config_changed"]) == 1
    # Going back to the original is a change too, against the latest effective config.
    back = check_resume(load(created))
    assert {c["key"]: (c["old"], c["new"]) for c in back}["budget.max_trials"] == (8, 5)


def test_a_budget_change_reopens_until_the_experiment_ends_again(tmp_path: Path, created: dict[str, Any]) -> None:
    directory = tmp_path / "exp"
    assert not open_experiment(load(changed(created, {"execution.num_parallel_evals": 1}))).reopened
    assert not open_experiment(load(changed(created, {"experiment_dir": str(directory / ".." / "exp")}))).reopened
    assert open_experiment(load(changed(created, {"execution.max_failures": 50}))).reopened
    Journal(directory).append([make_event("experiment_ended", reason="max_failures", final=True)])
    raised = changed(created, {"execution.max_failures": 50, "budget.max_time": "2h"})
    assert open_experiment(load(raised)).reopened
    Journal(directory).append([make_event("experiment_ended", reason="max_trials", final=True)])
    assert not open_experiment(load(raised)).reopened  # ended again since: over, until the next change


@pytest.mark.parametrize("changes, named", [
    ({"params.lr.high": 0.5}, "params.lr.high (0.1 -> 0.5)"),
    ({"params.opt.values": ["sgd"]}, "params.opt.values (['sgd', 'adam'] -> ['sgd'])"),
    ({"params.wd": 0.1}, "params.wd ((unset) -> 0.1)"),
    ({"metric.mode": "max"}, "metric.mode ('min' -> 'max')"),
    ({"scheduler.reduction_factor": 2}, "scheduler.reduction_factor ((unset) -> 2)"),
    ({"searcher.seed": 8}, "searcher.seed (7 -> 8)"),
    ({"resource.max": 27}, "resource.max (9 -> 27)"),
    ({"name": "other"}, "name ('unit' -> 'other')"),
    ({"params": {"opt": {"type": "choice", "values": ["sgd", "adam"]},
                 "lr": {"type": "loguniform", "low": 1e-4, "high": 0.1}}}, "params (the same parameters in another order"),
], ids=["space-range", "space-choice", "space-new-param", "metric-mode", "reduction-factor", "seed", "resource",
        "name", "param-order"])
def test_what_it_is_may_not_change_and_nothing_is_written(tmp_path: Path, created: dict[str, Any],
                                                          changes: dict[str, Any], named: str) -> None:
    before = snapshot(tmp_path / "exp")
    new = load(changed(changed(created, {"budget.max_trials": 9}), changes))
    for attempt in (check_resume, open_experiment):
        with pytest.raises(HpoError) as error:
            attempt(new)
        message = str(error.value)
        assert named in message and "different config" in message and "\n" not in message, message
        assert "budget" not in message.split(":")[1]  # the allowed change is not named as refused
        assert "experiment_dir to a new directory" in message and "--experiment-dir" in message
    assert snapshot(tmp_path / "exp") == before


def test_a_rewrite_that_validates_the_same_is_no_change_of_the_experiment(tmp_path: Path,
                                                                          created: dict[str, Any]) -> None:
    """Defaults written out and shorthands spelled in full pass (and are journaled, as every change is)."""
    new = changed(created, {"scheduler.reduction_factor": 3, "scheduler.type": "asha", "params.opt": ["sgd", "adam"],
                            "metric.combine": None, "searcher.type": "random"})
    keys = {c["key"] for c in check_resume(load(new))}
    assert keys == {"scheduler.reduction_factor", "scheduler.type", "params.opt", "params.opt.type",
                    "params.opt.values", "metric.combine", "searcher.type"}
    open_experiment(load(new))
    assert check_resume(load(new)) == []


def test_a_seedless_config_resumes_its_seeded_experiment(tmp_path: Path) -> None:
    data = changed(base(tmp_path / "exp"), {"searcher!": None})
    first = load(data)
    open_experiment(first)
    again = load(data)
    assert again.searcher.seed == first.searcher.seed
    assert check_resume(again) == []
    with pytest.raises(HpoError, match=r"searcher\.seed"):
        check_resume(load(changed(data, {"searcher.seed": (first.searcher.seed + 1) % 2 ** 32})))


def test_an_unreadable_experiment_yaml_is_named(tmp_path: Path, created: dict[str, Any]) -> None:
    (tmp_path / "exp" / "experiment.yaml").write_text("- not a mapping\n")
    with pytest.raises(HpoError, match="experiment.yaml cannot be read"):
        check_resume(load(created))
