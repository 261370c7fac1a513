"""execution.workdir / run_path / src_path / src_copy, and relative paths in `command` resolved against the
config file's directory: what is accepted, what each path becomes, what is refused (one ConfigError naming
the key), and what experiment.yaml freezes. Real files in tmp_path; nothing is faked."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from hpc_hpo.config import config_as_yaml, load_config, validate_config
from hpc_hpo.config.loading import resolve_arguments
from hpc_hpo.errors import ConfigError


def config(execution: dict[str, Any] | None = None, command: Any = "{python} train.py --fast") -> dict[str, Any]:
    return {"name": "wd", "command": command,
            "params": {"lr": {"type": "uniform", "low": 0.0, "high": 1.0}},
            "metric": {"name": "loss", "mode": "min"}, "resource": {"max": 3},
            "budget": {"max_trials": 2}, "execution": {"backend": "local", **(execution or {})}}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config directory with train.py and data/, and a different current directory (the shell's)."""
    exp = tmp_path / "exp"
    (exp / "data").mkdir(parents=True)
    (exp / "train.py").write_text("print('hi')\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return exp


def load(project: Path, data: dict[str, Any]):
    path = project / "hpo.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


# --------------------------------------------------------------------------- accepted values


def test_default_is_shared_and_nothing_is_resolved(project: Path) -> None:
    workdir = load(project, config()).execution.workdir
    assert (workdir.mode, workdir.run_path, workdir.src_path, workdir.src_copy) == ("shared", None, (), False)


def test_trial_mode_src_path_resolves_against_the_config_dir_run_path_against_cwd(project: Path) -> None:
    loaded = load(project, config({"workdir": "trial", "run_path": "scratch", "src_path": ["train.py", "data"],
                                   "src_copy": True}))
    workdir = loaded.execution.workdir
    assert workdir.mode == "trial" and workdir.src_copy is True
    assert workdir.src_path == (project / "train.py", project / "data")
    assert workdir.run_path == Path.cwd() / "scratch"  # an output path, like experiment_dir


def test_a_single_src_path_string_and_an_absolute_one(project: Path, tmp_path: Path) -> None:
    other = tmp_path / "model.cfg"
    other.write_text("x")
    assert load(project, config({"workdir": "trial", "src_path": str(other)})).execution.workdir.src_path == (other,)


def test_tune_without_config_file_resolves_src_path_against_cwd(project: Path) -> None:
    (Path.cwd() / "here.txt").write_text("x")
    spec = validate_config(config({"workdir": "trial", "src_path": "here.txt"})).execution.workdir
    assert spec.src_path == (Path.cwd() / "here.txt",)


# --------------------------------------------------------------------------- refused values


@pytest.mark.parametrize("execution, key, words", [
    ({"workdir": "private"}, "execution.workdir", "must be one of: shared, trial"),
    ({"run_path": "scratch"}, "execution.run_path", "workdir: trial"),
    ({"workdir": "shared", "src_path": "train.py"}, "execution.src_path", "workdir: trial"),
    ({"src_copy": True}, "execution.src_copy", "workdir: trial"),
    ({"workdir": "trial", "src_copy": "yes"}, "execution.src_copy", "true or false"),
    ({"workdir": "trial", "run_path": ""}, "execution.run_path", "non-empty path"),
    ({"workdir": "trial", "run_path": "a\nb"}, "execution.run_path", "control"),
    ({"workdir": "trial", "src_path": []}, "execution.src_path", "non-empty list"),
    ({"workdir": "trial", "src_path": [3]}, "execution.src_path[0]", "must be a path"),
    ({"workdir": "trial", "src_path": "missing.py"}, "execution.src_path", "does not exist"),
    ({"workdir": "trial", "src_path": "."}, "execution.src_path", "without a name"),
    ({"workdir": "trial", "src_path": ["train.py", "../exp/train.py"]}, "execution.src_path[1]", "same name"),
    ({"workdir": "trial", "src_path": "config.json"}, "execution.src_path", "hpc-hpo writes there"),
])
def test_refused(project: Path, execution: dict[str, Any], key: str, words: str) -> None:
    (project / "config.json").write_text("{}")
    with pytest.raises(ConfigError) as caught:
        load(project, config(execution))
    assert caught.value.key == key
    assert words in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_trial_dir_name_is_fine_with_a_run_path_of_its_own(project: Path) -> None:
    (project / "config.json").write_text("{}")
    spec = load(project, config({"workdir": "trial", "run_path": "r", "src_path": "config.json"})).execution.workdir
    assert spec.src_path == (project / "config.json",)


def test_run_path_that_is_a_file_is_refused(project: Path) -> None:
    Path("taken").write_text("x")
    with pytest.raises(ConfigError, match="exists and is not a directory"):
        load(project, config({"workdir": "trial", "run_path": "taken"}))


# --------------------------------------------------------------------------- command paths


def test_relative_script_resolves_against_the_config_dir_wherever_the_driver_starts(project: Path) -> None:
    assert load(project, config()).command == (sys.executable, str(project / "train.py"), "--fast")


def test_options_bare_programs_and_missing_paths_pass_as_written(project: Path) -> None:
    (project / "python3").write_text("")  # a bare program name is found on PATH, never next to the config
    argv = ["python3", "train.py", "--data=data", "-d", "data", "absent.py", "{python}", ""]
    assert resolve_arguments(argv, project) == ["python3", str(project / "train.py"), "--data=data", "-d",
                                                str(project / "data"), "absent.py", "{python}", ""]


def test_a_program_path_with_a_slash_resolves_too(project: Path) -> None:
    script = project / "bin" / "run.sh"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert load(project, config(command="bin/run.sh --x 1")).command == (str(script), "--x", "1")


def test_config_dir_wins_over_the_current_directory_which_is_the_fallback(project: Path) -> None:
    Path("train.py").write_text("other")
    Path("only_here.py").write_text("x")
    argv = resolve_arguments(["{python}", "train.py", "only_here.py"], project)
    assert argv == ["{python}", str(project / "train.py"), str(Path.cwd() / "only_here.py")]


def test_without_a_config_file_the_command_is_unchanged(project: Path) -> None:
    Path("train.py").write_text("x")
    assert validate_config(config()).command == (sys.executable, "train.py", "--fast")


def test_experiment_yaml_freezes_the_resolved_paths_with_the_python_placeholder(project: Path) -> None:
    loaded = load(project, config({"workdir": "trial", "src_path": "data"}))
    frozen = yaml.safe_load(config_as_yaml(loaded))
    assert frozen["command"] == ["{python}", str(project / "train.py"), "--fast"]
    assert frozen["execution"]["src_path"] == [str(project / "data")]
    # The frozen file, loaded from the experiment directory, runs the same files.
    elsewhere = project.parent / "frozen"
    elsewhere.mkdir()
    (elsewhere / "hpo.yaml").write_text(config_as_yaml(loaded))
    again = load_config(elsewhere / "hpo.yaml")
    assert again.command == loaded.command and again.execution.workdir == loaded.execution.workdir


def test_a_command_without_relative_files_is_frozen_as_written(project: Path) -> None:
    loaded = load(project, config(command="{python} -c pass"))
    assert yaml.safe_load(config_as_yaml(loaded))["command"] == "{python} -c pass"
    assert os.path.isabs(loaded.command[0])
