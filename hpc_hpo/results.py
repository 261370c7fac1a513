"""Views of an experiment's state for people and scripts: the status table, the best trial, the CSV export."""
from __future__ import annotations

import csv
import json
import math
import os
import time
from pathlib import Path
from typing import Any, TextIO

from .space import format_value
from .state import ExperimentState, ReportRow, TrialState

# What srun (steps mode) and Slurm (a trial job's output, sbatch mode) wrote about a trial's runs.
BATCH_LOGS = ("srun.log", "slurm.out")
# The fixed leading columns of the export. Public and stable: other tools read this format.
EXPORT_LEADING = ("trial_id", "resource")
EXPORT_TRAILING = ("elapsed_s", "decision")
# Added later, so at the very end: when the driver processed each report, as seconds since the experiment was
# created (one time axis for every trial) and as unix seconds (to line up with other logs).
EXPORT_TIMES = ("experiment_s", "unix_time")


def export_columns(state: ExperimentState) -> list[str]:
    """Fixed columns, the parameters, (for a combined objective) each combined metric, (for several objectives)
    each objective after the first, whose column is the metric's, then the times."""
    return [*EXPORT_LEADING, state.metric, *EXPORT_TRAILING, *state.param_names, *_metric_columns(state),
            *EXPORT_TIMES]


def _metric_columns(state: ExperimentState) -> list[str]:
    """The metrics a report carries besides its value: combined metrics, or the objectives after the first."""
    return state.combined + state.objectives[1:]


def report_records(state: ExperimentState) -> list[dict[str, Any]]:
    """One dict per processed report, keyed by export_columns(state), values as the journal holds them
    (numbers stay numbers; a parameter the trial did not use is None)."""
    columns = export_columns(state)
    return [dict(zip(columns, _row_values(state, row))) for row in state.rows]


def _row_values(state: ExperimentState, row: ReportRow) -> list[Any]:
    config = state.trials[row.trial_id].config
    params = [config.get(name) for name in state.param_names]
    parts = [(row.components or {}).get(name) for name in _metric_columns(state)]
    since = row.t - state.created_at if row.t is not None and state.created_at is not None else None
    return [row.trial_id, row.resource, row.value, row.elapsed_s, row.decision, *params, *parts, since, row.t]


def write_export(state: ExperimentState, out: TextIO) -> int:
    """One row per report, in the order the scheduler processed them. Returns the number of rows."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(export_columns(state))
    for row in state.rows:
        writer.writerow([_cell(value) for value in _row_values(state, row)])
    return len(state.rows)


def _cell(value: Any) -> str:
    if value is None:
        return ""  # a parameter the trial did not use
    if isinstance(value, (int, float, str, bool)):
        return format_value(value)
    return json.dumps(value)


def best_as_dict(state: ExperimentState) -> dict[str, Any] | None:
    """The best trial as plain JSON data: a value JSON has no number for (a diverged trial's -inf, a
    config's inf) is the string "inf", "-inf" or "nan", so that `best --json` is valid JSON. With several
    objectives, the Pareto front instead (pareto_front)."""
    if state.objectives:
        return _front_as_dict(state)
    best = state.best_trial()
    if best is None:
        return None
    return _json_safe({"trial_id": best.trial_id, "metric": state.metric, "mode": state.mode,
                       "value": best.best_value, "resource_name": state.resource, "resource": best.best_resource,
                       "state": best.state, "config": best.config})


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


def best_text(state: ExperimentState) -> str:
    if state.objectives:
        return _front_text(state)
    best = state.best_trial()
    if best is None:
        return "no trial has reported yet"
    lines = [f"best trial {best.trial_id} ({best.state}): {state.metric}={best.best_value:.6g} "
             f"at {state.resource} {best.best_resource:g}"]
    lines += [f"  {name}: {format_value(value)}" for name, value in best.config.items()]
    return "\n".join(lines)


def pareto_front(state: ExperimentState) -> tuple[float | None, list[tuple[TrialState, ReportRow]]]:
    """With several objectives: the trials no other dominates among those that reported at the highest
    resource any trial reported at (max_t once a trial completed), each with its report there, so that no
    trial stopped early is compared with one trained longer. A report with a NaN or a missing objective
    takes no part. Sorted by the first objective, best first. Returns (that resource, the front)."""
    from .schedulers.mo_asha import minimised, non_dominated

    last: dict[str, ReportRow] = {}
    for row in state.rows:  # each trial's resources increase: its last row is its furthest report
        last[row.trial_id] = row
    if not last:
        return None, []
    top = max(row.resource for row in last.values())
    candidates = []
    for trial_id, row in last.items():
        values = objective_values(state, row)
        if row.resource == top and all(isinstance(v, float) and not math.isnan(v) for v in values):
            candidates.append((state.trials[trial_id], row, minimised(values, state.modes)))
    front = [candidates[i] for i in non_dominated([point for _, _, point in candidates])]
    front.sort(key=lambda item: (item[2][0], item[0].trial_id))
    return top, [(trial, row) for trial, row, _ in front]


def objective_values(state: ExperimentState, row: ReportRow) -> list[float | None]:
    """Each objective's value in a report (None where it is missing or not a number)."""
    found = row.components or {}
    values = [found.get(name) for name in state.objectives]
    return [float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None for v in values]


def _front_as_dict(state: ExperimentState) -> dict[str, Any] | None:
    top, front = pareto_front(state)
    if top is None:
        return None
    return _json_safe({
        "objectives": [{"name": name, "mode": mode} for name, mode in zip(state.objectives, state.modes)],
        "resource_name": state.resource, "resource": top,
        "front": [{"trial_id": trial.trial_id, "state": trial.state,
                   "values": dict(zip(state.objectives, objective_values(state, row))), "config": trial.config}
                  for trial, row in front]})


def _front_text(state: ExperimentState) -> str:
    top, front = pareto_front(state)
    if top is None:
        return "no trial has reported yet"
    reached = sum(1 for trial in state.trials.values() if trial.last_resource == top)
    objectives = ", ".join(f"{name} ({mode})" for name, mode in zip(state.objectives, state.modes))
    header = ["trial", "state", *state.objectives, *state.param_names]
    rows = [header] + [[trial.trial_id, trial.state, *(f"{v:.6g}" for v in objective_values(state, row)),
                        *(_short(trial.config.get(name)) for name in state.param_names)] for trial, row in front]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    return "\n".join([f"Pareto front: {len(front)} of the {reached} trials at {state.resource} {top:g}, "
                      f"objectives {objectives}", *lines])


def status_table(state: ExperimentState, directory: Path | None = None) -> str:
    """directory: the experiment's, where a failed trial's srun.log and slurm.out are read when its stderr is empty."""
    header = ["trial", "state", f"last {state.resource}", f"best {state.metric}", *state.param_names]
    rows = [header] + [_status_row(state, trial) for trial in state.trials.values()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    ended = f"ended: {state.ended}" if state.ended else "running (or its driver was killed)"
    if state.ended and not state.finished:
        ended += "; run it again to resume"
    summary = f"experiment {state.name}: {len(state.trials)} trials, {len(state.rows)} reports; {ended}"
    if state.allocation_end is not None:
        summary += f"\nallocation ends {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(state.allocation_end))}"
    failures = [f"trial {t.trial_id} failed (exit code {t.exit_code}): {t.reason or 'no stderr'}"
                + (batch_system_said(directory / "trials" / t.trial_id, t.reason) if directory else "")
                for t in state.trials.values() if t.state == "failed"]
    interrupted = [f"trial {t.trial_id} interrupted at {state.resource} {t.last_resource or 0:g}: "
                   f"{t.reason or 'stopped'}; resumed first by the next run"
                   for t in state.trials.values() if t.state == "interrupted"]
    notes = failures + interrupted
    return "\n".join([summary, "", *lines, *([""] + notes if notes else [])])


def batch_system_said(trial_dir: Path, reason: str | None) -> str:
    """For a failed trial whose own stderr is empty: the end of what srun (srun.log, steps mode) or Slurm (slurm.out,
    the trial job's output in sbatch mode) wrote, on indented lines; "" when the stderr has something or the
    recorded reason already is that text. A run that never started its program (an srun refused, a job script
    that failed before it) leaves its reason only there."""
    from .driver.common import stderr_tail  # read as the driver reads it: the end, never through a symlink

    if stderr_tail(trial_dir / "stderr"):
        return ""
    for name in BATCH_LOGS:
        text = stderr_tail(trial_dir / name)
        if text and not (reason or "").startswith(f"({name})"):
            return f"\n  ({name}) " + text.replace("\n", "\n  ")
    return ""


def _status_row(state: ExperimentState, trial: TrialState) -> list[str]:
    last = "-" if trial.last_resource is None else f"{trial.last_resource:g}"
    best = "-" if trial.best_value is None else f"{trial.best_value:.6g}"
    params = [_short(trial.config.get(name)) for name in state.param_names]
    return [trial.trial_id, trial.state, last, best, *params]


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else _cell(value)


def load(experiment: str | os.PathLike[str]) -> Any:
    """The experiment's processed reports, one row per report, with the columns of `hpc-hpo export --csv`
    (README, "Export format (stable)"): trial_id, resource, the metric, elapsed_s, decision, one column per
    parameter, one per combined metric (or objective after the first), then experiment_s (seconds since the
    experiment was created) and unix_time (when the driver processed the report).

    `experiment` is the experiment directory or its config file. Returns a pandas DataFrame when pandas is
    installed, else a list of plain dicts (one per row, keyed by column name). Reads the journal without
    the driver's lock, so it works while the experiment runs (it sees the reports processed so far).
    """
    from .experiment import find_experiment
    from .state import load_state

    state = load_state(find_experiment(os.fspath(experiment)))
    records = report_records(state)
    try:
        import pandas
    except ImportError:
        return records
    return pandas.DataFrame.from_records(records, columns=export_columns(state))
