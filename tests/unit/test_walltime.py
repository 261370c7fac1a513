"""The wall-time rules (pure) and the parsers that tell the driver when its allocation ends."""
from __future__ import annotations

import json

import pytest

from hpc_hpo import walltime
from hpc_hpo.backends.pbs_output import parse_walltime, walltime_left
from hpc_hpo.backends.slurm_output import parse_time_left


@pytest.mark.parametrize("text, seconds", [
    ("59", 59), ("0:59", 59), ("12:34", 754), ("1:02:03", 3723), ("2-03:04:05", 2 * 86400 + 11045),
    ("0-00:00:00", 0), ("  5:00\n", 300),
])
def test_squeue_time_left_parses(text: str, seconds: float) -> None:
    assert parse_time_left(text) == seconds


@pytest.mark.parametrize("text", ["UNLIMITED", "NOT_SET", "INVALID", "", "1:2:3:4", "a:00", "-5:00", "x-1:00"])
def test_squeue_time_left_without_an_end_is_none(text: str) -> None:
    assert parse_time_left(text) is None


def test_pbs_walltime_left_is_the_limit_less_what_was_used() -> None:
    listing = {"Jobs": {"42.server": {"Resource_List": {"walltime": "04:00:00"},
                                      "resources_used": {"walltime": "01:30:00"}}}}
    assert walltime_left(json.dumps(listing), "42.server") == 2.5 * 3600
    assert walltime_left(json.dumps(listing), "42") == 2.5 * 3600  # the short id PBS_JOBID may carry
    assert walltime_left(json.dumps({"Jobs": {"42.server": {}}}), "42.server") is None  # no limit
    assert walltime_left("not json", "42") is None
    assert parse_walltime("100:00:00") == 360000 and parse_walltime("1:xx") is None


def test_pace_counts_the_start_up_and_needs_progress() -> None:
    assert walltime.pace(started_at=100.0, from_resource=3, now=112.0, resource=6) == 4.0
    assert walltime.pace(started_at=100.0, from_resource=3, now=112.0, resource=3) is None
    assert walltime.typical_pace([]) is None and walltime.typical_pace([1.0, 5.0, 3.0]) == 3.0


@pytest.mark.parametrize("start, target, expected", [
    (0, None, 1), (1, None, 3), (2, None, 3), (3, None, 9), (9, None, 27), (27, None, 30),
    (0, 3, 3),  # a pausing scheduler's target below the maximum
    (3, 30, 9),  # a target at the maximum: the next rung still judges it
])
def test_a_stage_ends_at_the_next_rung_or_the_target(start: float, target: float | None, expected: float) -> None:
    assert walltime.stage_end([1, 3, 9, 27, 30], 30, start, target) == expected


def test_a_stage_fits_when_its_measured_time_is_within_what_is_left() -> None:
    assert walltime.stage_fits(None, 0, 9, seconds_left=1, whole_run_s=60)  # nothing measured: start
    assert walltime.stage_fits(2.0, 3, 9, seconds_left=12, whole_run_s=60)
    assert not walltime.stage_fits(2.0, 3, 9, seconds_left=11.9, whole_run_s=60)
    # A stage longer than a whole allocation like this one never fits: it starts and goes on next time.
    assert walltime.stage_fits(20.0, 0, 9, seconds_left=30, whole_run_s=60)


def test_a_trial_is_asked_to_pause_when_the_report_after_next_would_be_too_late() -> None:
    assert not walltime.last_report_that_fits(seconds_per_unit=2.0, step=1, seconds_left=4.1)
    assert walltime.last_report_that_fits(seconds_per_unit=2.0, step=1, seconds_left=3.9)


@pytest.mark.parametrize("text", ["١:00", "²:00", "1:٠٠:00", "١-01:00:00"])
def test_non_ascii_digits_are_no_duration_in_batch_output(text: str) -> None:
    """isdigit() takes them, int() may not: every reader of a clock duration says None instead of crashing."""
    assert parse_time_left(text) is None and parse_walltime(text) is None


def test_recent_paces_give_a_run_its_own_pace_else_the_median_of_the_recent_runs() -> None:
    paces = walltime.RecentPaces(limit=3)
    assert paces.of("0") is None  # nothing measured: nothing to judge by
    for trial_id, pace in [("0", 10.0), ("1", 1.0), ("2", 2.0)]:
        paces.record(trial_id, pace)
    assert paces.of("1") == 1.0
    assert paces.of("9") == 2.0  # median of 10, 1, 2
    paces.record("0", 3.0)  # a run's latest pace replaces its earlier one
    assert paces.of("9") == 2.0  # median of 1, 2, 3
    paces.record("3", 4.0)  # the least recently measured run ("1") makes room
    assert paces.of("1") == 3.0  # its own pace is gone: the median of 2, 3, 4
    assert paces.of(None) == 3.0
