"""The driver's cost follows what runs, not what has run: its state keeps no report rows (status and export read
them from the journal), a sweep's launches are journaled in one append, and readers of trials that ended go."""
from __future__ import annotations

from pathlib import Path

from conftest import cli, read_export, synthetic_config, write_config

from hpc_hpo.backends import make_backend
from hpc_hpo.config import load_config
from hpc_hpo.driver import Driver
from hpc_hpo.journal import Journal, make_event, read_events

PARALLEL = 4


def _driver(tmp_path: Path, **overrides) -> Driver:
    config = synthetic_config(tmp_path, budget={"max_trials": 10},
                              execution={"num_parallel_evals": PARALLEL, "poll_interval": 0.05}, **overrides)
    loaded = load_config(write_config(tmp_path, config))
    return Driver(loaded, make_backend(loaded), quiet=True)


def test_launches_are_journaled_in_one_append_and_the_driver_keeps_no_rows(tmp_path: Path, monkeypatch) -> None:
    appends: list[list[str]] = []
    original = Journal.append

    def recording(self, events):
        events = list(events)
        appends.append([e["type"] for e in events])
        return original(self, events)

    monkeypatch.setattr(Journal, "append", recording)
    monkeypatch.chdir(tmp_path)
    driver = _driver(tmp_path)
    state = driver.run()
    assert state.finished and len(state.trials) == 10

    journal = read_events(tmp_path / "exp" / "journal.jsonl")
    reports = [e for e in journal if e["type"] == "report"]
    assert reports and state.rows == [] and state.num_reports == len(reports)

    launches = [types for types in appends if "trial_started" in types]
    # A launch append holds launches only, every one of the sweep's: the first sweep fills every slot at once.
    assert all(set(types) == {"trial_started"} for types in launches), launches
    assert len(launches[0]) == PARALLEL, launches
    assert sum(map(len, launches)) == sum(e["type"] == "trial_started" for e in journal) >= 10
    assert len(launches) < sum(map(len, launches))

    # status and export fold the journal themselves: every report is there, in order.
    rows = read_export(tmp_path)
    assert [(r["trial_id"], float(r["resource"])) for r in rows] == \
        [(e["trial_id"], float(e["resource"])) for e in reports]
    status = cli("status", str(tmp_path / "exp"), cwd=tmp_path)
    assert status.returncode == 0 and f"{len(state.trials)} trials, {len(reports)} reports" in status.stdout, \
        status.stdout


def test_readers_of_trials_that_ended_are_dropped(tmp_path: Path) -> None:
    driver = _driver(tmp_path)
    driver.driver_id = "d"
    state = driver.state
    state.apply(make_event("experiment_created", name="e", metric="loss", mode="min", resource="epoch",
                           params=["x"]))
    for index in range(200):
        trial_id = f"{index:04d}"
        state.apply(make_event("trial_created", trial_id, index=index, config={"x": 0.5}))
        state.apply(make_event("trial_started", trial_id, handle=f"local:{index}"))
        driver._watch(state.trials[trial_id], None)
        if index % 4:  # three in four end; of the rest, half still run, half paused
            state.apply(make_event("trial_ended", trial_id, state="finished" if index % 2 else "stopped",
                                   exit_code=0))
            del driver.live[trial_id]
        elif index % 8:
            state.apply(make_event("trial_paused", trial_id, exit_code=0))
            del driver.live[trial_id]
    driver._forget_ended_readers()
    kept = {f"{index:04d}" for index in range(0, 200, 4)}
    assert set(driver.readers) == kept
    assert set(driver.live) < kept
