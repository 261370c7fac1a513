"""A config's relative experiment_dir names a place next to the config file, wherever the command runs:
`hpc-hpo status some/dir/exp.yaml` from another directory finds the experiment `run` made."""
from __future__ import annotations

from pathlib import Path

from conftest import cli, synthetic_config, write_config


def test_experiment_dir_is_relative_to_the_config_file(tmp_path: Path) -> None:
    project, elsewhere, third = tmp_path / "project", tmp_path / "elsewhere", tmp_path / "third"
    for directory in (project, elsewhere, third):
        directory.mkdir()
    config = synthetic_config(project, budget={"max_trials": 3})
    config["experiment_dir"] = "runs/relative"
    path = write_config(project, config)
    done = cli("run", str(path), cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert (project / "runs" / "relative" / "journal.jsonl").exists()
    assert not (elsewhere / "runs").exists()
    status = cli("status", "../project/exp.yaml", cwd=third)
    assert status.returncode == 0, status.stderr
    assert "0002" in status.stdout, status.stdout
    # The experiment's own copy names the resolved place: status of the directory agrees.
    frozen = (project / "runs" / "relative" / "experiment.yaml").read_text()
    assert str(project / "runs" / "relative") in frozen
    # --experiment-dir is a shell argument: relative to where the command runs.
    done = cli("run", str(path), "--experiment-dir", "here", cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert (elsewhere / "here" / "journal.jsonl").exists()
