#!/usr/bin/env python3
"""An hpc_hpo hook that logs to Weights & Biases: one W&B run per ended trial, grouped by experiment (its
hyperparameters as the run's config, its learning curve, its state), and a summary run when the
experiment ends.

    hooks:
      on_trial_end: "{python} examples/hooks/wandb_hook.py"
      on_experiment_end: "{python} examples/hooks/wandb_hook.py"
      timeout: 120        # uploading takes a while

W&B reads WANDB_API_KEY, WANDB_PROJECT (default: the experiment's name), WANDB_ENTITY and WANDB_MODE from
the environment the driver was started with. Compute nodes often have no internet: set WANDB_MODE=offline
and upload later with `wandb sync`. Needs `pip install wandb` where the driver runs.
"""
from __future__ import annotations

import json
import os
import sys
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


def main() -> int:
    try:
        import wandb
    except ImportError:
        print("wandb_hook: wandb is not installed where the driver runs: pip install wandb", file=sys.stderr)
        return 1
    with open(os.environ["HPC_HPO_HOOK_FILE"], encoding="utf-8") as handle:
        event = json.load(handle)
    experiment = event["experiment"]
    metric, resource = experiment["metric"], experiment["resource"]
    project = os.environ.get("WANDB_PROJECT") or experiment["name"]
    if event["event"] == "trial_end":
        trial = event["trial"]
        run = wandb.init(project=project, group=experiment["name"], name=f"trial-{trial['trial_id']}",
                         config=trial["config"], tags=[trial["state"]])
        run.define_metric(metric, step_metric=resource)
        for step, value in learning_curve(Path(trial["dir"]), metric, resource):
            run.log({resource: step, metric: value})
        run.summary.update(_summary(trial))
        run.finish()
    elif event["event"] == "experiment_end" and event["best"] is not None:
        best = event["best"]
        run = wandb.init(project=project, group=experiment["name"], name=f"{experiment['name']}-summary",
                         config=best["config"], job_type="summary")
        run.summary.update({"best_trial": best["trial_id"], f"best_{metric}": best["value"],
                            "end_reason": event["end"]["reason"], "trials": experiment["trials"]})
        run.finish()
    return 0


def _summary(trial: dict[str, Any]) -> dict[str, Any]:
    return {"trial_id": trial["trial_id"], "state": trial["state"], "best_value": trial["best_value"],
            "best_resource": trial["best_resource"], "exit_code": trial.get("exit_code")}


if __name__ == "__main__":
    sys.exit(main())
