#!/usr/bin/env python3
"""An hpc_hpo hook that logs to MLflow: one MLflow run per ended trial (its hyperparameters, its learning
curve, its state), and a summary run with the best trial when the experiment ends.

    hooks:
      on_trial_end: "{python} examples/hooks/mlflow_hook.py"
      on_experiment_end: "{python} examples/hooks/mlflow_hook.py"

MLflow reads MLFLOW_TRACKING_URI from the environment the driver was started with (a server, or a
directory such as file:/scratch/me/mlruns); without it runs go to ./mlruns. The MLflow experiment is
named after the hpc_hpo experiment. Needs `pip install mlflow` (or mlflow-skinny) where the driver runs.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterator


def learning_curve(trial_dir: Path, metric: str, resource: str) -> Iterator[tuple[float, float]]:
    """(resource, value) of each report the trial wrote to metrics.jsonl (report() and `hpc-hpo report`)."""
    try:
        lines = (trial_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        return
    for line in lines:
        try:
            data = json.loads(line)
            yield float(data[resource]), float(data[metric])
        except (ValueError, KeyError, TypeError):
            continue  # a line the driver skipped too


def number(value: Any) -> float | None:
    """The file writes a non-finite value as the string "inf", "-inf" or "nan"."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def experiment_id(mlflow: Any, name: str) -> str:
    """Get or create the MLflow experiment. Hooks run side by side: when two create it at once, the one
    that loses finds it on the next look."""
    for _ in range(10):
        found = mlflow.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        try:
            return str(mlflow.create_experiment(name))
        except mlflow.exceptions.MlflowException:
            time.sleep(0.3)
    raise SystemExit(f"mlflow_hook: cannot create or find the MLflow experiment {name!r}")


def main() -> int:
    try:
        import mlflow
    except ImportError:
        print("mlflow_hook: mlflow is not installed where the driver runs: pip install mlflow", file=sys.stderr)
        return 1
    with open(os.environ["HPC_HPO_HOOK_FILE"], encoding="utf-8") as handle:
        event = json.load(handle)
    experiment = event["experiment"]
    metric, resource = experiment["metric"], experiment["resource"]
    within = experiment_id(mlflow, experiment["name"])
    if event["event"] == "trial_end":
        trial = event["trial"]
        with mlflow.start_run(experiment_id=within, run_name=f"trial-{trial['trial_id']}"):
            mlflow.log_params(trial["config"])
            mlflow.set_tags({"hpc_hpo.trial_id": trial["trial_id"], "hpc_hpo.state": trial["state"]})
            for step, value in learning_curve(Path(trial["dir"]), metric, resource):
                mlflow.log_metric(metric, value, step=int(step))
            best = number(trial.get("best_value"))
            if best is not None:
                mlflow.log_metric(f"best_{metric}", best)
    elif event["event"] in ("experiment_end", "new_best") and event["best"] is not None:
        best = event["best"]
        with mlflow.start_run(experiment_id=within, run_name=f"{experiment['name']}-{event['event']}"):
            mlflow.log_params(best["config"])
            mlflow.set_tags({"hpc_hpo.best_trial": best["trial_id"],
                             "hpc_hpo.end": str((event.get("end") or {}).get("reason", ""))})
            value = number(best["value"])
            if value is not None:
                mlflow.log_metric(f"best_{metric}", value)
    return 0


if __name__ == "__main__":
    sys.exit(main())
