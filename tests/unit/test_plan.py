"""`hpc-hpo plan` figures, worked by hand."""
from __future__ import annotations

from hpc_hpo.config import validate_config
from hpc_hpo.plan import format_plan


def config(scheduler: dict, max_t: float = 81, budget: dict | None = None):
    return validate_config({"name": "p", "command": "python x.py", "params": {"x": {"type": "uniform", "low": 0,
                            "high": 1}}, "metric": {"name": "loss", "mode": "min"},
                            "resource": {"name": "epoch", "max": max_t}, "scheduler": scheduler,
                            "budget": budget or {"max_trials": 10}}, check_program=False)


def test_sync_hyperband_total_resource() -> None:
    text = format_plan(config({"type": "sync_hyperband"}))
    # Resumed: 297 + 276 + 279 + 324 + 405; from scratch: 405 + 363 + 351 + 378 + 405.
    assert "143 configs; total resource 1581 resuming from checkpoints (1902 if every stage restarted" in text
    assert "      3      0       34              3" in text


def test_asha_expected_resource_and_fifo() -> None:
    # Levels 1, 3, 9, 27: 1 + 2/3 + 6/9 + 18/27 = 3 per trial.
    assert "10 trials: total resource 30 (expected" in format_plan(config({"type": "asha"}, max_t=27))
    assert "10 trials: total resource 270" in format_plan(config({"type": "fifo"}, max_t=27))
    two = format_plan(config({"type": "asha", "brackets": 2}, max_t=27))
    # Sizes 27 and 12 of 39; bracket 1 costs 3 + 6/3 + 18/9 = 7.
    assert "probability 0.692" in two and "probability 0.308" in two and "per trial 7" in two
