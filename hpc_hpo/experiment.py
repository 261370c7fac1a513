"""The experiment directory on disk: creating it, reopening it, and finding it from a CLI argument."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from .config import ExperimentConfig, config_as_yaml, load_config
from .errors import HpoError
from .journal import Journal, make_event

CONFIG_FILE = "experiment.yaml"
JOURNAL_FILE = "journal.jsonl"


def open_experiment(config: ExperimentConfig) -> tuple[Journal, bool]:
    """Create the experiment directory, or reopen it to resume. Returns the journal and whether it resumed.

    The directory is owner-only: trial configs and outputs are nobody else's business on a shared cluster.
    """
    directory = config.experiment_dir
    frozen = directory / CONFIG_FILE
    if (directory / JOURNAL_FILE).exists():
        _check_same_experiment(config, frozen)
        return Journal(directory), True
    if directory.exists() and any(directory.iterdir()):
        raise HpoError(f"'{directory}' exists and is not an hpc_hpo experiment; "
                       "choose another experiment_dir or empty it")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    (directory / "trials").mkdir(exist_ok=True, mode=0o700)
    frozen.write_text(config_as_yaml(config), encoding="utf-8")
    journal = Journal(directory)
    journal.append([make_event("experiment_created", name=config.name, metric=config.metric.name,
                               mode=config.metric.mode, resource=config.resource.name,
                               params=config.space.names,
                               combined=[c.name for c in config.metric.components])])
    return journal, False


def _check_same_experiment(config: ExperimentConfig, frozen: Path) -> None:
    """Resuming with an edited config would mix two experiments in one journal: refuse."""
    try:
        before = yaml.safe_load(frozen.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        before = None
    now = yaml.safe_load(config_as_yaml(config))
    if before != now:
        changed = sorted(k for k in set(before or {}) | set(now) if (before or {}).get(k) != now.get(k))
        raise HpoError(f"'{frozen.parent}' holds an experiment with a different config "
                       f"(differs in: {', '.join(changed) or 'everything'}); resume it with the same config, "
                       "or set experiment_dir to a new directory")


def write_trial_config(trial_dir: Path, config: dict[str, Any]) -> None:
    trial_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    (trial_dir / "checkpoint").mkdir(exist_ok=True, mode=0o700)
    (trial_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def find_experiment(argument: str) -> Path:
    """An experiment directory from the CLI: the directory itself, or the YAML file that defines it."""
    path = Path(argument)
    if path.is_file() and path.suffix in (".yaml", ".yml"):
        path = load_config(path).experiment_dir
    if not (path / JOURNAL_FILE).is_file():
        raise HpoError(f"'{argument}' is not an experiment directory (no {JOURNAL_FILE} in it); "
                       "give the directory a run created, or its config file")
    return path
