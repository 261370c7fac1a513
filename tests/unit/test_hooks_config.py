"""The hooks section: commands as argv lists or shell-like strings (never run by a shell), a timeout and a
cap on hooks running at once; each mistake one ConfigError naming the key."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from hpc_hpo.config import validate_config
from hpc_hpo.config.hooks import hooks_spec
from hpc_hpo.config.specs import HooksSpec
from hpc_hpo.errors import ConfigError


def base(tmp_path: Path, hooks: Any = None) -> dict[str, Any]:
    config: dict[str, Any] = {"name": "h", "command": [sys.executable, "-c", "pass"],
                              "experiment_dir": str(tmp_path / "exp"), "params": {"x": [1, 2]},
                              "metric": {"name": "loss", "mode": "min"}, "resource": {"max": 3},
                              "budget": {"max_trials": 2}}
    if hooks is not None:
        config["hooks"] = hooks
    return config


def test_no_hooks_section_means_no_hooks(tmp_path: Path) -> None:
    config = validate_config(base(tmp_path))
    assert config.hooks == HooksSpec()
    assert (config.hooks.on_trial_end, config.hooks.timeout, config.hooks.max_running) == (None, 60.0, 4)


def test_lists_and_strings_become_argv_without_a_shell(tmp_path: Path) -> None:
    config = validate_config(base(tmp_path, {
        "on_trial_end": ["{python}", "hook.py", "--tag", 3],
        "on_new_best": "echo 'new best' $HOME; rm -rf /",
        "on_experiment_end": "{python} -c 'print(1)'",
        "timeout": "2m", "max_running": 2}))
    hooks = config.hooks
    assert hooks.on_trial_end == (sys.executable, "hook.py", "--tag", "3")
    # Split like a shell would, but nothing is expanded or chained: ';' and '$HOME' are plain arguments.
    assert hooks.on_new_best == ("echo", "new best", "$HOME;", "rm", "-rf", "/")
    assert hooks.on_experiment_end == (sys.executable, "-c", "print(1)")
    assert (hooks.timeout, hooks.max_running) == (120.0, 2)


@pytest.mark.parametrize("hooks, key, words", [
    ({"on_trial_ends": "echo"}, "hooks.on_trial_ends", "did you mean 'on_trial_end'"),
    ({"on_trial_end": ""}, "hooks.on_trial_end", "is empty"),
    ({"on_trial_end": []}, "hooks.on_trial_end", "is empty"),
    ({"on_trial_end": "echo 'unclosed"}, "hooks.on_trial_end", "cannot be split"),
    ({"on_trial_end": {"cmd": "echo"}}, "hooks.on_trial_end", "must be a command"),
    ({"on_trial_end": [True]}, "hooks.on_trial_end", "must be a command"),
    ({"on_new_best": "no-such-program-hpc-hpo"}, "hooks.on_new_best", "was not found"),
    ({"on_trial_end": "echo", "timeout": 0}, "hooks.timeout", "greater than 0"),
    ({"on_trial_end": "echo", "timeout": "2d"}, "hooks.timeout", "at most 1d"),
    ({"on_trial_end": "echo", "timeout": "soon"}, "hooks.timeout", "is not a duration"),
    ({"on_trial_end": "echo", "max_running": 0}, "hooks.max_running", "greater than 0"),
    ({"on_trial_end": "echo", "max_running": 1000}, "hooks.max_running", "at most 64"),
    (["echo"], "hooks", "must be a mapping"),
])
def test_mistakes_name_the_key(tmp_path: Path, hooks: Any, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_config(base(tmp_path, hooks))
    assert caught.value.key == key
    assert words in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_missing_program_is_accepted_when_programs_are_not_checked() -> None:
    """As for `command`: tune() and a resume comparing configs do not check programs."""
    spec = hooks_spec({"on_trial_end": "no-such-program-hpc-hpo --x"}, check_program=False)
    assert spec.on_trial_end == ("no-such-program-hpc-hpo", "--x")


def test_hooks_may_change_on_resume(tmp_path: Path) -> None:
    """How the experiment runs, not what it is: a resume with other hooks is journaled, not refused."""
    from hpc_hpo.experiment import check_resume, open_experiment
    open_experiment(validate_config(base(tmp_path)))
    changed = validate_config(base(tmp_path, {"on_trial_end": "echo done", "timeout": 5}))
    changes = {change["key"]: change["new"] for change in check_resume(changed)}
    assert changes == {"hooks.on_trial_end": "echo done", "hooks.timeout": 5}


def test_a_relative_script_is_found_next_to_the_config_file(tmp_path: Path) -> None:
    """As for `command`: hooks/notify.py next to the config works from any directory hpc-hpo starts in."""
    from hpc_hpo.config import load_config
    import yaml
    (tmp_path / "hooks").mkdir()
    (tmp_path / "hooks" / "notify.py").write_text("print('hi')\n")
    config_file = tmp_path / "exp.yaml"
    config_file.write_text(yaml.safe_dump(base(tmp_path, {"on_new_best": "{python} hooks/notify.py --flag"})))
    hooks = load_config(config_file).hooks
    assert hooks.on_new_best == (sys.executable, str(tmp_path / "hooks" / "notify.py"), "--flag")
