"""Damaged and repeated journal events: the fold (state.py) and a replaying driver skip a malformed event with
one warning per kind and take a repeated one once; the experiment directory's checks; best --json's values."""
from __future__ import annotations

import io
import json
import logging
import math
import os
import sys
from pathlib import Path

import pytest
import yaml

from hpc_hpo.errors import HpoError
from hpc_hpo.journal import Journal, make_event
from hpc_hpo.results import best_as_dict, status_table, write_export
from hpc_hpo.state import ExperimentState, fold, load_state

REPO = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000.0


def ev(kind, t, trial_id=None, **fields):
    event = {"v": 1, "type": kind, "t": T0 + t, **fields}
    if trial_id is not None:
        event["trial_id"] = trial_id
    return event


def rep(tid, t, resource, value, decision="continue", **fields):
    return ev("report", t, tid, resource=resource, value=value, elapsed_s=float(t), decision=decision, **fields)


# Two runs of an experiment with a retry, a pause and a resume, a stop, an interruption and its resume.
CLEAN = [
    ev("experiment_created", 0, name="exp", metric="loss", mode="min", resource="epoch", params=["x"]),
    ev("run_started", 1, host="h", pid=1, resumed=False),
    ev("trial_created", 2, "0000", index=0, config={"x": 0.1}, bracket=0, target=3),
    ev("trial_created", 2.1, "0001", index=1, config={"x": 0.9}, bracket=0, target=3),
    ev("trial_started", 2.2, "0000", handle="101", backend="local", run=1),
    ev("trial_started", 2.3, "0001", handle="102", backend="local", run=1),
    rep("0000", 3, 1, 0.5),
    ev("trial_retry", 3.5, "0000", attempt=2, state="failed", exit_code=1, reason="boom"),
    ev("trial_started", 3.6, "0000", handle="103", backend="local", run=2),
    rep("0001", 4, 1, 0.9, "stop", cutoff=0.5),
    ev("trial_ended", 4.5, "0001", state="failed", exit_code=-15),
    rep("0000", 5, 2, 0.4),
    rep("0000", 6, 3, 0.3, "pause"),
    ev("trial_paused", 6.5, "0000", exit_code=0),
    ev("trial_resumed", 7, "0000", resume_from=3, target=9),
    ev("trial_started", 7.1, "0000", handle="104", backend="local", run=3),
    rep("0000", 8, 4, 0.25),
    ev("trial_interrupted", 8.5, "0000", exit_code=-15, reason="stopped", target=9, resume_from=4),
    ev("experiment_ended", 9, reason="interrupted (SIGTERM)", final=False),
    ev("run_started", 100, host="h", pid=2, resumed=True),
    ev("allocation_end", 100.5, end=T0 + 5000),
    ev("trial_started", 101, "0000", handle="105", backend="local", run=4),
    rep("0000", 102, 9, float("-inf"), "complete"),
    ev("trial_ended", 103, "0000", state="finished", exit_code=0),
    ev("experiment_ended", 104, reason="max_trials reached", final=True),
]


def summary(state: ExperimentState) -> dict:
    """What status, best, export and a resumed driver take from the state."""
    trials = {tid: (t.state, t.runs, t.failures, t.requeues, t.num_reports, t.last_resource, t.best_value,
                    t.best_resource, t.target, t.resume_from, t.process_ended, t.decided, t.handle, t.exit_code,
                    t.reason, t.started_at, t.ended_at, t.config)
              for tid, t in state.trials.items()}
    return {"name": state.name, "metric": state.metric, "mode": state.mode, "trials": trials,
            "rows": [(r.trial_id, r.resource, r.value, r.decision) for r in state.rows],
            "ended": state.ended, "finished": state.finished, "time_used": state.time_used(),
            "allocation_end": state.allocation_end, "created_at": state.created_at}


def state_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "hpc_hpo.state" and r.levelno == logging.WARNING]


def views(state: ExperimentState) -> None:
    """status, export and best on the state: each must work, and best --json must be valid JSON."""
    status_table(state)
    write_export(state, io.StringIO())
    json.dumps(best_as_dict(state), allow_nan=False)


def test_the_clean_journal_folds_as_expected():
    state = fold(CLEAN)
    t0, t1 = state.trials["0000"], state.trials["0001"]
    assert (t0.state, t0.runs, t0.failures, t0.num_reports, t0.best_value) == ("completed", 4, 1, 5, -math.inf)
    assert (t1.state, t1.runs, t1.num_reports) == ("stopped", 1, 1)
    assert state.finished and len(state.rows) == 6
    assert state.time_used() == pytest.approx((9 - 1) + (104 - 100))


# --------------------------------------------------------------------------- item 1: malformed events

DAMAGED = {
    "a bare report": {"type": "report"},
    "a report of a trial never created": rep("0042", 5.5, 7, 0.1),
    "a report with a null value": rep("0000", 5.5, 7, None),
    "a report with a string value": rep("0000", 5.5, 7, "0.1"),
    "a report with a null resource": rep("0000", 5.5, None, 0.1),
    "a report at resource 0": rep("0000", 5.5, 0, 0.1),
    "a report with an unknown decision": rep("0000", 5.5, 7, 0.1, "banana"),
    "a report promoting without a target": rep("0000", 5.5, 7, 0.1, "promote"),
    "a report whose metrics are a list": rep("0000", 5.5, 7, 0.1, metrics=[1, 2]),
    "a report whose trial id is a number": {**rep("0000", 5.5, 7, 0.1), "trial_id": 0},
    "a report without elapsed_s": {k: v for k, v in rep("0000", 5.5, 7, 0.1).items() if k != "elapsed_s"},
    "a trial_created whose config is a list": ev("trial_created", 2.15, "0002", index=2, config=[0.5]),
    "a trial_created with a string index": ev("trial_created", 2.15, "0002", index="2", config={"x": 1}),
    "a trial_created without a trial id": ev("trial_created", 2.15, index=2, config={"x": 1}),
    "a PBT child without its parent's fields": ev("trial_created", 2.15, "0002", index=2, config={}, parent="0000"),
    "a trial_started without a handle": ev("trial_started", 5.5, "0000"),
    "a trial_started of a trial never created": ev("trial_started", 5.5, "0099", handle="1"),
    "a trial_resumed without resume_from": ev("trial_resumed", 5.5, "0000", target=9),
    "a trial_retry with a string exit code": ev("trial_retry", 5.5, "0000", exit_code="1"),
    "a trial_interrupted with a string target": ev("trial_interrupted", 5.5, "0000", target="9"),
    "a trial_ended with a number for its state": ev("trial_ended", 5.5, "0000", state=5),
    "a trial_ended with an unknown state": ev("trial_ended", 5.5, "0000", state="exploded"),
    "an experiment_ended without a reason": ev("experiment_ended", 5.5, final=True),
    "an experiment_ended with a string final": ev("experiment_ended", 5.5, reason="x", final="no"),
    "an allocation_end with a string end": ev("allocation_end", 5.5, end="soon"),
    "a run_started with a string time": {**ev("run_started", 5.5), "t": "yesterday"},
    "an event without a time": {"v": 1, "type": "run_started"},
    "an event with a NaN time": {**ev("run_started", 5.5), "t": float("nan")},
    "an event whose type is a number": {**ev("run_started", 5.5), "type": 7},
    "a second experiment_created": ev("experiment_created", 5.5, name="other", metric="acc", mode="max",
                                      resource="step", params=["y"]),
    "an experiment_created of a bad mode": ev("experiment_created", 0, name="e", metric="m", mode="up",
                                              resource="r", params=[]),
    "not an object": [1, 2, 3],
    "a string": "report",
    "null": None,
}


@pytest.mark.parametrize("name", list(DAMAGED))
def test_a_damaged_event_is_skipped_with_a_warning_and_changes_nothing(name, caplog):
    bad = DAMAGED[name]
    expected = summary(fold(CLEAN))
    for position in (1, 12, len(CLEAN)):  # early, in the middle, at the end
        caplog.clear()
        state = fold(CLEAN[:position] + [bad] + CLEAN[position:])
        assert summary(state) == expected, (name, position)
        views(state)
        assert len(state_warnings(caplog)) == 1, state_warnings(caplog)


def test_each_kind_of_damage_is_warned_about_once(caplog):
    damaged = [DAMAGED["a report with a null value"], DAMAGED["a bare report"]] * 5
    state = fold(CLEAN[:12] + damaged + CLEAN[12:])
    assert summary(state) == summary(fold(CLEAN))
    assert len(state_warnings(caplog)) == 2, state_warnings(caplog)
    assert state.skipped == 10


def test_damaged_lines_in_the_journal_file_are_skipped_by_load_state(tmp_path, caplog):
    lines = [json.dumps(e) for e in CLEAN]
    for name, bad in DAMAGED.items():
        lines.insert(12, json.dumps(bad))
    (tmp_path / "journal.jsonl").write_text("\n".join(lines) + "\n")
    state = load_state(tmp_path)
    assert summary(state) == summary(fold(CLEAN))
    views(state)


# --------------------------------------------------------------------------- item 2: repeated lines

def test_a_journal_with_every_line_twice_folds_as_the_journal(caplog):
    doubled = [event for event in CLEAN for _ in range(2)]
    assert summary(fold(doubled)) == summary(fold(CLEAN))
    assert fold(doubled).skipped == len(CLEAN)


def test_a_journal_written_twice_over_folds_as_the_journal():
    assert summary(fold(CLEAN + CLEAN)) == summary(fold(CLEAN))


def test_repeated_lines_read_from_the_file_are_deduplicated(tmp_path):
    text = "".join(json.dumps(e) + "\n" for e in CLEAN)
    (tmp_path / "journal.jsonl").write_text(text + text)
    state = load_state(tmp_path)
    assert summary(state) == summary(fold(CLEAN))
    out = io.StringIO()
    assert write_export(state, out) == 6
    assert len(out.getvalue().splitlines()) == 1 + 6


def test_a_repeated_trial_created_does_not_reset_the_trial():
    again = ev("trial_created", 200, "0000", index=0, config={"x": 0.7}, bracket=0, target=3)
    state = fold(CLEAN + [again])
    assert summary(state) == summary(fold(CLEAN))
    assert state.trials["0000"].state == "completed" and state.trials["0000"].config == {"x": 0.1}


def test_a_report_at_a_resource_the_trial_has_is_ignored():
    # Another line, another time and value, at epoch 2 of a trial that reported epoch 4 already.
    state = fold(CLEAN[:17] + [rep("0000", 8.2, 2, -5.0), rep("0000", 8.3, 4, -6.0)] + CLEAN[17:])
    assert summary(state) == summary(fold(CLEAN))


def test_a_repeated_trial_event_with_another_time_is_an_event():
    """Only an exact repeat (type, trial, t) is one: a trial's second interruption at another time counts."""
    state = fold(CLEAN[:18] + [ev("trial_started", 8.7, "0000", handle="x", backend="local", run=4)] + CLEAN[18:])
    assert state.trials["0000"].runs == 5


def test_the_fold_keeps_no_line_per_report():
    """Memory: repeats are found by a few marks per trial and the trial's last resource, not a set of lines."""
    events = CLEAN[:6] + [rep("0000", 10 + i, i, 0.5) for i in range(1, 2001)]
    state = fold(events)
    assert len(state.trials["0000"].marks) <= 4 and len(state.seen) <= 2


# --------------------------------------------------------------------------- the driver's replay

def driver_for(tmp_path: Path):
    from hpc_hpo.backends import make_backend
    from hpc_hpo.config import load_config
    from hpc_hpo.driver import Driver
    config = {"name": "exp", "command": [sys.executable, str(REPO / "tests" / "programs" / "synthetic_trial.py")],
              "experiment_dir": str(tmp_path / "exp"),
              "params": {"x": {"type": "uniform", "low": 0.0, "high": 1.0}},
              "metric": {"name": "loss", "mode": "min"}, "resource": {"name": "epoch", "max": 9},
              "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 3},
              "searcher": {"type": "random", "seed": 1}, "budget": {"max_trials": 4},
              "execution": {"backend": "local", "num_parallel_evals": 2}}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(config))
    loaded = load_config(path)
    driver = Driver(loaded, make_backend(loaded), quiet=True)
    calls: list[tuple] = []
    for owner, names in ((driver.scheduler, ("on_trial_created", "on_start", "on_report", "on_paused",
                                              "on_trial_end")),
                         (driver.searcher, ("on_trial_created", "on_report", "on_trial_end"))):
        for name in names:
            original = getattr(owner, name)

            def recording(*args, _name=name, _original=original, _owner=type(owner).__name__):
                calls.append((_owner, _name, *map(repr, args)))
                return _original(*args)
            setattr(owner, name, recording)
    return driver, calls


def test_a_replaying_driver_feeds_scheduler_and_searcher_each_event_once(tmp_path):
    single, single_calls = driver_for(tmp_path)
    single._replay(iter(CLEAN))
    assert any(call[1] == "on_report" for call in single_calls)
    for events in ([e for e in CLEAN for _ in range(2)], CLEAN + CLEAN,
                   CLEAN[:12] + list(DAMAGED.values()) + CLEAN[12:]):
        driver, calls = driver_for(tmp_path)
        driver._replay(iter(events))
        assert calls == single_calls
        assert summary(driver.state) == summary(single.state)
        assert driver.replayed_plans == single.replayed_plans
        assert driver.replayed_decisions.keys() == single.replayed_decisions.keys()


# --------------------------------------------------------------------------- best --json

@pytest.mark.parametrize("mode, value, shown", [("min", -math.inf, "-inf"), ("max", math.inf, "inf")])
def test_best_as_json_is_valid_json_for_an_infinite_value(mode, value, shown):
    events = [ev("experiment_created", 0, name="e", metric="loss", mode=mode, resource="epoch", params=["x"]),
              ev("trial_created", 1, "0000", index=0, config={"x": math.inf}),
              ev("trial_started", 2, "0000", handle="1"), rep("0000", 3, 1, value)]
    best = best_as_dict(fold(events))
    text = json.dumps(best, allow_nan=False)
    assert json.loads(text)["value"] == shown and json.loads(text)["config"] == {"x": "inf"}


def test_best_as_json_keeps_finite_values_numbers():
    best = best_as_dict(fold(CLEAN[:7]))
    assert best["value"] == 0.5 and best["resource"] == 1 and best["config"] == {"x": 0.1}


# --------------------------------------------------------------------------- the experiment directory

def test_an_empty_journal_beside_trial_directories_is_refused(tmp_path):
    from hpc_hpo.experiment import check_experiment_dir
    directory = tmp_path / "exp"
    (directory / "trials" / "0000").mkdir(parents=True)
    (directory / "trials" / "0000" / "metrics.jsonl").write_text('{"epoch": 1, "loss": 0.5}\n')
    (directory / "journal.jsonl").write_bytes(b"")
    with pytest.raises(HpoError, match="journal.jsonl.*holds no experiment") as caught:
        check_experiment_dir(directory)
    assert str(directory) in str(caught.value) and "backup" in str(caught.value)
    (directory / "journal.jsonl").write_bytes(b'{"v":1,"type":"run_started","t":1}\n')  # first line lost
    with pytest.raises(HpoError, match="holds no experiment"):
        check_experiment_dir(directory)


def test_an_empty_journal_left_by_a_killed_creation_lets_the_creation_start_again(tmp_path):
    from hpc_hpo.experiment import check_experiment_dir, has_experiment
    directory = tmp_path / "exp"
    (directory / "trials").mkdir(parents=True)
    (directory / "journal.jsonl").write_bytes(b'{"v":1,"type":"experiment_cre')  # torn, no newline
    check_experiment_dir(directory)
    assert not has_experiment(directory)
    Journal(directory).append([make_event("experiment_created", name="e", metric="m", mode="min", resource="r",
                                          params=[])])
    assert has_experiment(directory)


def test_an_existing_directory_of_another_user_is_refused(tmp_path):
    from hpc_hpo.experiment import check_experiment_dir
    if os.geteuid() != 0:
        pytest.skip("giving a directory to another user needs root")
    directory = tmp_path / "theirs"
    directory.mkdir()
    os.chown(directory, 65534, 65534)
    with pytest.raises(HpoError, match="belongs to another user"):
        check_experiment_dir(directory)


def test_events_as_the_driver_makes_them_are_taken():
    """Live events reach the state before JSON does: numpy floats (a scheduler's cutoff, a quantile) and
    tuples must pass as what JSON makes of them."""
    import numpy as np
    state = fold(CLEAN[:6])
    assert state.apply({**rep("0000", 3, 1, np.float64(0.5)), "cutoff": np.float64(0.4), "metrics": {"a": 1.0}})
    assert state.apply(ev("trial_interrupted", 4, "0000", exit_code=None, reason=None, target=np.float64(9.0),
                          resume_from=1))
    assert state.apply(rep("0000", 5, np.float64(2.5), float("nan"), "promote", target=9))
    assert fold([ev("experiment_created", 0, name="e", metric="m", mode="max", resource="r",
                    params=("a", "b"))]).param_names == ["a", "b"]
