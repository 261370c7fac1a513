"""A slot freed by a run the driver ended is refilled at once, not a poll_interval later, and the wait
for it looks only at the ending runs: metric files are still read once per sweep."""
from __future__ import annotations

from pathlib import Path

from conftest import synthetic_config, write_config

from hpc_hpo.backends import make_backend
from hpc_hpo.config import load_config
from hpc_hpo.driver import Driver
from hpc_hpo.journal import read_events

POLL_S = 2.0


def test_a_stopped_runs_slot_is_refilled_without_waiting_a_poll_interval(tmp_path: Path, monkeypatch) -> None:
    # One slot, a long poll interval, promotion ASHA: each run waits in report() at rung 1 for the
    # driver's verdict, so it is still going when the sweep decides "pause", and exits just after.
    config = synthetic_config(tmp_path, budget={"max_trials": 5},
                              scheduler={"type": "promotion", "grace_period": 1, "reduction_factor": 3},
                              params={"x": {"type": "uniform", "low": 0.0, "high": 1.0}, "shape": "fast",
                                      "epochs": 3, "sleep": 0.01},
                              resource={"name": "epoch", "max": 3},
                              execution={"num_parallel_evals": 1, "poll_interval": POLL_S})
    path = write_config(tmp_path, config)
    loaded = load_config(path)
    reads = []
    original = Driver._read_reports

    def counting(self, live, events):
        reads.append(live.trial.trial_id)
        return original(self, live, events)

    monkeypatch.setattr(Driver, "_read_reports", counting)
    monkeypatch.chdir(tmp_path)
    state = Driver(loaded, make_backend(loaded), quiet=True).run()
    assert len(state.trials) == 5 and state.finished

    events = read_events(tmp_path / "exp" / "journal.jsonl")
    pauses = [e for e in events if e["type"] == "report" and e["decision"] == "pause"]
    starts = [e for e in events if e["type"] == "trial_started"]
    followed = [(pause, next(e for e in starts if e["t"] > pause["t"])) for pause in pauses
                if starts[-1]["t"] > pause["t"]]
    assert len(followed) >= 3, pauses
    for pause, next_start in followed:
        # Before: the next run started a whole poll interval after the pause (the driver slept it out).
        # Now: the run's exit, a quick look (every 0.05 s) and a launch.
        assert next_start["t"] - pause["t"] < POLL_S / 2, (pause, next_start)
    # Metric files are read at sweeps (about two per run here), not at every quick look.
    assert len(reads) <= 3 * len(starts), (len(reads), len(starts))
