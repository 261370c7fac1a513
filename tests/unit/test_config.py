"""Config loading and validation: typed defaults, one test per class of mistake, YAML files, the CLI, the seed.

Every refused config must raise ConfigError (HpoError for file/YAML problems) whose message names the key
path, shows the bad value and says what is allowed.
"""
from __future__ import annotations

import copy
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from hpc_hpo.config import config_as_yaml, load_config, parse_duration, validate_config
from hpc_hpo.errors import ConfigError, HpoError, show_value
from hpc_hpo.space import Choice, Fixed, LogUniform, Uniform

REPO = Path(__file__).resolve().parents[2]


class _Delete:
    def __repr__(self) -> str:
        return "DELETE"


DELETE = _Delete()  # as a value in `edited`: remove the key
SAME = object()  # in `case`: the value shown in the message is the value written


# --------------------------------------------------------------------------- helpers


def base_config() -> dict[str, Any]:
    """The smallest valid config: everything else takes its default."""
    return {
        "name": "unit",
        "command": "train --fast",
        "params": {"lr": {"type": "loguniform", "low": 1e-4, "high": 0.1},
                   "opt": {"type": "choice", "values": ["sgd", "adam"]}},
        "metric": {"name": "loss", "mode": "min"},
        "resource": {"max": 9},
        "budget": {"max_trials": 5},
    }


def edited(changes: dict[str, Any]) -> dict[str, Any]:
    """The base config with each dotted key path set to its value (DELETE removes the key)."""
    config = base_config()
    for path, value in changes.items():
        *parents, last = path.split(".")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
        if value is DELETE:
            node.pop(last, None)
        else:
            node[last] = copy.deepcopy(value)
    return config


def valid(changes: dict[str, Any] | None = None, **kwargs: Any):
    return validate_config(edited(changes or {}), check_program=False, **kwargs)


def assert_rejected(changes: dict[str, Any], key: str, shown: Any, allowed: tuple[str, ...],
                    check_program: bool = False) -> ConfigError:
    """`changes` is refused; the message names `key`, shows the bad value and contains each `allowed` hint."""
    with pytest.raises(ConfigError) as info:
        validate_config(edited(changes), check_program=check_program)
    error, message = info.value, str(info.value)
    assert error.key == key, message
    assert message.startswith(f"config key '{key}' = "), message
    # The value as messages show it: repr, cut to SHOWN_MAX characters with its size when longer.
    assert ("(missing)" if shown is DELETE else show_value(shown)) in message, message
    assert "\n" not in message and len(message) < 1500, message
    for hint in allowed:
        assert hint in message, message
    return error


def case(path: str, value: Any, *allowed: str, key: str | None = None, shown: Any = SAME) -> Any:
    """One bad config: `path` set to `value`. The error is at `key` (default: path) and shows `shown`."""
    return pytest.param({path: value}, key or path, value if shown is SAME else shown, allowed,
                        id=f"{path}={show_value(value, 40)}")


ARGS = "changes, key, shown, allowed"


# --------------------------------------------------------------------------- valid configs


def test_minimal_config_gets_typed_defaults():
    config = valid()
    assert config.name == "unit"
    assert config.command == ("train", "--fast")
    assert (config.metric.name, config.metric.mode) == ("loss", "min")
    assert (config.resource.name, config.resource.max) == ("epoch", 9)
    assert (config.scheduler.type, config.scheduler.grace_period) == ("asha", 1)
    assert config.scheduler.reduction_factor == 3 and config.scheduler.rung_levels is None
    assert config.searcher.type == "random" and config.searcher.points_to_evaluate is None
    assert (config.budget.max_trials, config.budget.max_time) == (5, None)
    assert config.execution.backend == "auto"
    assert config.execution.num_parallel_evals == 0  # as many as the backend holds
    assert config.execution.slurm.nodes_per_eval == 1 and config.execution.slurm.mode == "auto"
    assert (config.execution.poll_interval, config.execution.stop_grace_period) == (0.5, 10.0)
    assert config.metric_regex is None
    assert config.experiment_dir == Path("runs", "unit").absolute()
    lr, opt = config.space.params
    assert (lr.name, lr.domain, lr.flag, lr.default) == ("lr", LogUniform(1e-4, 0.1), "--lr", None)
    assert opt.domain == Choice(("sgd", "adam"))


def test_parameter_shorthands_flags_weights_and_experiment_dir_override(tmp_path):
    config = valid({"params.opt": ["sgd", "adam"], "params.epochs": 27,
                    "params.mix": {"type": "pchoice", "values": ["a", "b"], "weights": [1, 3]},
                    "params.lr.flag": "--learning-rate=", "params.lr.default": 0.01,
                    "metric_regex": r"loss=(?P<loss>\S+)"}, experiment_dir=str(tmp_path / "exp"))
    params = {p.name: p for p in config.space.params}
    assert params["opt"].domain == Choice(("sgd", "adam"))
    assert params["epochs"].domain == Fixed(27)
    assert params["mix"].domain == Choice(("a", "b"), (0.25, 0.75))
    assert params["lr"].argv(0.01) == ["--learning-rate=0.01"]
    assert params["lr"].default == 0.01
    assert config.metric_regex.search("loss=0.5").group("loss") == "0.5"
    assert config.experiment_dir == tmp_path / "exp"
    assert valid({"params.lr.flag": None}).space.params[0].flag is None


def test_quickstart_config_loads(monkeypatch):
    monkeypatch.chdir(REPO)
    config = load_config("configs/quickstart.yaml")
    assert config.name == "quickstart"
    # '{python}': the driver's interpreter; a relative file argument becomes absolute (execution.workdir)
    assert config.command == (sys.executable, str(REPO / "launchers" / "train_mlp.py"))
    assert config.budget == type(config.budget)(max_trials=48, max_time=900.0)
    assert config.experiment_dir == REPO / "runs" / "quickstart"
    assert config.space.names == ["learning_rate", "width", "alpha", "batch_size", "epochs"]


@pytest.mark.parametrize("command, argv", [
    ("python train.py", ("python", "train.py")),
    ("""python "my train.py" --tag 'a b' x\\ y""", ("python", "my train.py", "--tag", "a b", "x y")),
    (["python", "my train.py", "--n", "3"], ("python", "my train.py", "--n", "3")),
])
def test_command_string_is_split_like_shlex_and_list_is_kept(command, argv):
    assert valid({"command": command}).command == argv
    if isinstance(command, str):
        assert argv == tuple(shlex.split(command))


def test_existing_program_passes_the_program_check():
    config = validate_config(edited({"command": [sys.executable, "-c", "pass"]}), check_program=True)
    assert config.command[0] == sys.executable


@pytest.mark.parametrize("text, seconds", [
    ("90s", 90), ("30m", 1800), ("2h", 7200), ("1d", 86400), ("1.5h", 5400), ("1:30:00", 5400),
    ("15:00", 900), (3600, 3600), ("3600", 3600), (0.5, 0.5),
])
def test_durations_parse_to_seconds(text, seconds):
    assert parse_duration(text, "budget.max_time") == seconds
    assert valid({"budget.max_time": text}).budget.max_time == seconds


# --------------------------------------------------------------------------- one test per class of mistake


@pytest.mark.parametrize(ARGS, [
    case("colour", "red", "unknown key", "allowed keys here: name, command, params"),
    case("scheduler.eta", 3, "unknown key", "grace_period, reduction_factor"),
    case("execution.workers", 4, "unknown key", "num_parallel_evals"),
    case("params.lr.step", 2, "unknown key", "low, high"),
])
def test_unknown_key(changes, key, shown, allowed):
    assert_rejected(changes, key, shown, allowed)


@pytest.mark.parametrize(ARGS, [
    case("scheduler.reduction_facter", 3, "did you mean 'reduction_factor'?"),
    case("metric.mod", "min", "did you mean 'mode'?"),
    case("paramz", {}, "did you mean 'params'?"),
])
def test_unknown_key_near_miss_suggests_the_right_one(changes, key, shown, allowed):
    assert_rejected(changes, key, shown, allowed)


@pytest.mark.parametrize(ARGS, [
    case("resource.max", "ten", "must be a number"),
    case("scheduler.grace_period", "one", "must be a number"),
    case("budget.max_trials", "many", "must be an integer"),
    case("execution.num_parallel_evals", 2.5, "must be a whole number"),
    case("execution.num_parallel_evals", True, "must be an integer"),
    case("params.lr.low", [1e-4], "must be a number"),
    case("metric", ["loss", "min"], "must be a mapping", "name, mode"),
    case("scheduler", [1, 3], "must be a mapping", "grace_period"),
    case("params", ["lr"], "must be a non-empty mapping"),
    case("command", {"program": "train"}, "must be a list of arguments or a string"),
    case("scheduler.rung_levels", "1,3,9", "must be a non-empty list"),
])
def test_wrong_type(changes, key, shown, allowed):
    assert_rejected(changes, key, shown, allowed)


def test_top_level_must_be_a_mapping():
    with pytest.raises(ConfigError, match=r"'\(top level\)' = \['name', 'unit'\]: must be a mapping"):
        validate_config(["name", "unit"], check_program=False)


@pytest.mark.parametrize(ARGS, [
    case("params.x", {"type": "uniform", "low": 1.0, "high": 0.0}, "greater than low (1.0)",
         key="params.x.high", shown=0.0),
    case("params.x", {"type": "randint", "low": 5, "high": 5}, "greater than low (5)",
         key="params.x.high", shown=5),
])
def test_inverted_range(changes, key, shown, allowed):
    assert_rejected(changes, key, shown, allowed)


@pytest.mark.parametrize(ARGS, [
    case("execution.num_parallel_evals", -1, "must be 0 or more"),
    case("resource.max", 0, "must be a number greater than 0"),
    case("resource.max", -9, "must be a number greater than 0"),
    case("scheduler.grace_period", 0, "must be a number greater than 0"),
    case("budget.max_trials", 0, "must be an integer greater than 0"),
    case("execution.poll_interval", -1, "greater than 0"),
    case("scheduler.reduction_factor", 1, "must be at least 2"),
    case("searcher.seed", -1, "must be 0 or a positive integer"),
])
def test_zero_or_negative_value(changes, key, shown, allowed):
    assert_rejected(changes, key, shown, allowed)


@pytest.mark.parametrize(ARGS, [
    case("params.lr.low", 0, "must be greater than 0 for loguniform", "use uniform/randint"),
    case("params.lr.low", -1, "must be greater than 0 for loguniform"),
    case("params.n", {"type": "lograndint", "low": 0, "high": 8}, "greater than 0 for lograndint",
         key="params.n.low", shown=0),
])
def test_log_domain_low_not_positive(changes, key, shown, allowed):
    assert_rejected(changes, key, shown, allowed)


@pytest.mark.parametrize(ARGS, [
    case("scheduler.grace_period", 9, "must be less than resource.max (9)"),
    case("scheduler.grace_period", 12, "must be less than resource.max (9)"),
])
def test_grace_period_not_below_resource_max(changes, key, shown, allowed):
    assert_rejected(changes, key, shown, allowed)


def test_grace_period_at_max_is_fine_for_fifo():
    assert valid({"scheduler.type": "fifo", "scheduler.grace_period": 9}).scheduler.type == "fifo"


@pytest.mark.parametrize(ARGS, [
    case("scheduler.rung_levels", [1, 3, 3], "must be strictly increasing"),
    case("scheduler.rung_levels", [3, 1], "must be strictly increasing"),
    case("scheduler.rung_levels", [1, -3], "greater than 0", key="scheduler.rung_levels[1]", shown=-3),
    case("scheduler.rung_levels", [1, 3, 27], "last level must be at most resource.max (9)"),
    case("scheduler.rung_levels", [], "must be a non-empty list of increasing positive numbers"),
])
def test_bad_rung_levels(changes, key, shown, allowed):
    assert_rejected(changes, key, shown, allowed)


@pytest.mark.parametrize(ARGS, [
    case(path, DELETE, "is required") for path in
    ("metric", "metric.name", "resource", "resource.max", "command", "name", "params")
])
def test_missing_required_key(changes, key, shown, allowed):
    assert_rejected(changes, key, shown, allowed)


def test_missing_metric_mode_says_min_or_max():
    assert_rejected({"metric.mode": DELETE}, "metric.mode", DELETE, ("min", "max"))


@pytest.mark.parametrize(ARGS, [
    case("metric.mode", "minimize", "must be one of: min, max"),
    case("execution.backend", "k8s", "must be one of: local, slurm, pbs, auto"),
    case("scheduler.type", "hyperband", "must be one of: fifo, asha", "did you mean 'sync_hyperband'?"),
    case("scheduler.type", "promotoin", "did you mean 'promotion'?"),
    case("searcher.type", "bayes", "must be one of: random", "did you mean 'bayesopt'?"),
    case("params.lr.type", "normal", "must be one of: uniform, loguniform"),
])
def test_value_not_among_allowed_choices(changes, key, shown, allowed):
    assert_rejected(changes, key, shown, allowed)


@pytest.mark.parametrize(ARGS, [
    case("command", "", "is empty", "give the program to run"),
    case("command", "   ", "is empty"),
    case("command", [], "is empty"),
    case("command", [""], "is empty"),
    case("command", "python 'train.py", "cannot be split into arguments", "check the quotes"),
])
def test_empty_or_unsplittable_command(changes, key, shown, allowed):
    assert_rejected(changes, key, shown, allowed)


def test_program_that_does_not_exist(tmp_path):
    assert_rejected({"command": "no-such-program-xyz --fast"}, "command", "no-such-program-xyz --fast",
                    ("program 'no-such-program-xyz' was not found", "PATH"), check_program=True)
    script = tmp_path / "train.py"
    script.write_text("print('hi')\n")  # exists but is not executable
    assert_rejected({"command": [str(script)]}, "command", [str(script)],
                    (f"program '{script}' was not found or is not executable",), check_program=True)


@pytest.mark.parametrize(ARGS, [
    case("budget", {}, "budget.max_trials", "budget.max_time"),
    case("budget", None, "budget.max_trials", "budget.max_time", shown=DELETE),  # `budget:` left empty
    case("budget", DELETE, "budget.max_trials", "budget.max_time", shown=DELETE),
])
def test_budget_without_a_limit(changes, key, shown, allowed):
    assert_rejected(changes, key, shown, allowed)


@pytest.mark.parametrize("text", ["10 minutes", "2 hours", "0s", "-5m", "1:xx:00", "0:00:00", "10 min"])
def test_bad_duration(text):
    assert_rejected({"budget.max_time": text}, "budget.max_time", text, ("90s, 30m, 2h",))


@pytest.mark.parametrize(ARGS, [
    case("params.mix", {"type": "pchoice", "values": ["a", "b", "c"], "weights": [1, 2]},
         "must be 3 non-negative numbers", key="params.mix.weights", shown=[1, 2]),
    case("params.mix", {"type": "pchoice", "values": ["a", "b"], "weights": [1, -1]},
         "must be 2 non-negative numbers", key="params.mix.weights", shown=[1, -1]),
    case("params.mix", {"type": "pchoice", "values": ["a", "b"], "weights": [0, 0]},
         "not all zero", key="params.mix.weights", shown=[0, 0]),
])
def test_bad_pchoice_weights(changes, key, shown, allowed):
    assert_rejected(changes, key, shown, allowed)


@pytest.mark.parametrize(ARGS, [
    case("params.opt.values", ["sgd", "adam", "sgd"], "must not repeat a value"),
    case("params.opt.values", [1, 2, 1], "must not repeat a value"),
    case("params.opt.values", [], "must list at least one value"),
])
def test_bad_choice_values(changes, key, shown, allowed):
    assert_rejected(changes, key, shown, allowed)


@pytest.mark.parametrize(ARGS, [
    case("params.lr.default", 0.5, "must be a number in [0.0001, 0.1]"),
    case("params.opt.default", "rmsprop", "must be one of 'sgd', 'adam'"),
    case("params.n", {"type": "randint", "low": 1, "high": 8, "default": 2.5}, "an integer in [1, 8]",
         key="params.n.default", shown=2.5),
])
def test_default_outside_the_domain(changes, key, shown, allowed):
    assert_rejected(changes, key, shown, allowed)


@pytest.mark.parametrize(ARGS, [
    case("searcher.points_to_evaluate", [{"lr": 0.01}, {"momentum": 0.9}], "unknown key", "lr, opt",
         key="searcher.points_to_evaluate[1].momentum", shown=0.9),
    case("searcher.points_to_evaluate", [{"lr": 5}], "must be a number in [0.0001, 0.1]",
         key="searcher.points_to_evaluate[0].lr", shown=5),
    case("searcher.points_to_evaluate", [{"opt": "rmsprop"}], "one of 'sgd', 'adam'",
         key="searcher.points_to_evaluate[0].opt", shown="rmsprop"),
    case("searcher.points_to_evaluate", {"lr": 0.01}, "must be a list"),
])
def test_bad_points_to_evaluate(changes, key, shown, allowed):
    assert_rejected(changes, key, shown, allowed)


def test_good_points_to_evaluate_are_kept():
    points = valid({"searcher.points_to_evaluate": [{"lr": 0.01}, {"opt": "adam"}]}).searcher.points_to_evaluate
    assert points == ({"lr": 0.01}, {"opt": "adam"})


@pytest.mark.parametrize(ARGS, [
    case(f"params.{name}", 1, "is a reserved column name", "reserved: trial_id, resource", shown=name)
    for name in ("resource", "trial_id", "decision", "loss")  # 'loss' is the metric's name
])
def test_reserved_parameter_name(changes, key, shown, allowed):
    assert_rejected(changes, key, shown, allowed)


@pytest.mark.parametrize(ARGS, [
    case("metric_regex", "loss=(\\S+", "is not a valid regular expression"),
    case("metric_regex", "loss=\\S+", "needs one capture group, or a group named 'loss'"),
    case("metric_regex", "(\\w+)=(\\S+)", "needs one capture group"),
])
def test_bad_metric_regex(changes, key, shown, allowed):
    assert_rejected(changes, key, shown, allowed)


@pytest.mark.parametrize(ARGS, [
    case("params.lr.flag", "--learning rate", "must be a flag without spaces"),
    case("params.lr.flag", "", "must be a flag without spaces"),
    case("params.lr.flag", "--lr\t", "must be a flag without spaces"),
])
def test_bad_flag(changes, key, shown, allowed):
    assert_rejected(changes, key, shown, allowed)


@pytest.mark.parametrize(ARGS, [
    case("name", name, "must be 1-100 characters: letters, digits")
    for name in ("../x", "a/b", ".hidden", "with space", "x" * 101)
] + [case("params.bad name", 1, "parameter names are letters, digits", shown="bad name")])
def test_bad_name(changes, key, shown, allowed):
    assert_rejected(changes, key, shown, allowed)


# --------------------------------------------------------------------------- YAML 1.1 exponent strings


def load_yaml(tmp_path: Path, text: str):
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return load_config(path)


MINIMAL_YAML = """\
name: unit
command: [{python}, -c, pass]
params:
  lr: {{type: loguniform, low: {low}, high: 1e-1{default}}}
metric: {{name: loss, mode: min}}
resource: {{max: {max}}}
scheduler: {{grace_period: 1e0}}
budget: {{max_trials: {trials}}}
execution: {{poll_interval: 5e-2}}
searcher: {{points_to_evaluate: {points}}}
"""


def yaml_text(low="1e-4", default="", max="2.7e1", trials="5", points="[]") -> str:
    text = MINIMAL_YAML.format(python=sys.executable, low=low, default=default, max=max,
                               trials=trials, points=points)
    assert isinstance(yaml.safe_load(text)["params"]["lr"]["low"], str)  # YAML 1.1 really reads text
    return text


def test_yaml_exponent_strings_become_floats(tmp_path):
    config = load_yaml(tmp_path, yaml_text(max="1e2"))
    assert config.space.params[0].domain == LogUniform(1e-4, 0.1)
    assert isinstance(config.space.params[0].domain.low, float)
    assert config.resource.max == 100.0 and isinstance(config.resource.max, float)
    assert config.scheduler.grace_period == 1.0
    assert config.execution.poll_interval == 0.05


def test_yaml_exponent_strings_accepted_for_default_and_points(tmp_path):
    config = load_yaml(tmp_path, yaml_text(default=", default: 1e-3", points="[{lr: 1e-2}]"))
    assert config.space.params[0].default == 1e-3
    assert config.searcher.points_to_evaluate == ({"lr": 1e-2},)


def test_yaml_exponent_string_accepted_for_integer_field(tmp_path):
    assert load_yaml(tmp_path, yaml_text(trials="1e2")).budget.max_trials == 100


# --------------------------------------------------------------------------- YAML files


def test_invalid_yaml_names_the_line(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("name: unit\nparams: {lr: [1, 2}\n")
    with pytest.raises(HpoError, match=r"is not valid YAML at line 2") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_python_tag_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "exp.yaml"
    path.write_text(f"name: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(HpoError, match="not valid YAML at line 1.*python/object/apply:os.system"):
        load_config(path)
    assert not marker.exists()


def test_missing_file_is_named(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(HpoError, match=f"config file '{path}' does not exist"):
        load_config(path)


# --------------------------------------------------------------------------- through the CLI


def cli_config(tmp_path: Path, changes: dict[str, Any]) -> str:
    config = edited({"command": [sys.executable, "-c", "pass"],
                     "experiment_dir": str(tmp_path / "exp"), **changes})
    return yaml.safe_dump(config, sort_keys=False)


@pytest.mark.parametrize("changes, extra, names", [
    ({"colour": "red"}, "", "'colour'"),
    ({"scheduler.grace_period": 9}, "", "'scheduler.grace_period'"),
    ({"metric": DELETE}, "", "'metric'"),
    ({}, "name2: !!python/object/apply:os.system ['touch {marker}']\n", "python/object/apply:os.system"),
    ({}, "name: again\n", "the key 'name' is given twice"),
    ({}, "seed: " + "7" * 5000 + "\n", "has too many digits"),
    ({"budget.max_trials": float("nan")}, "", "'budget.max_trials' = nan"),
    ({"params.lr.flag": "--l\u0435arning_rate"}, "", "'params.lr.flag'"),
    ({"execution.slurm.export": ["PATH", "PATH"]}, "", "names PATH more than once"),
], ids=["unknown-key", "grace-period", "missing-metric", "python-tag", "duplicate-key", "5000-digits", "nan-count",
        "confusable-flag", "repeated-export"])
def test_cli_refuses_bad_config_in_one_line_and_creates_nothing(tmp_path, changes, extra, names):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(cli_config(tmp_path, changes) + extra.format(marker=tmp_path / "pwned"))
    before = set(tmp_path.rglob("*"))
    result = subprocess.run([sys.executable, "-m", "hpc_hpo.cli", "run", str(cfg)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("hpc-hpo: error:"), result.stderr
    assert names in lines[0]
    assert set(tmp_path.rglob("*")) == before


# --------------------------------------------------------------------------- the seed


@pytest.mark.parametrize("searcher", [DELETE, None, {"type": "random"}])
def test_absent_seed_is_drawn_and_frozen(searcher):
    data = edited({"searcher": searcher})
    original = copy.deepcopy(data)
    config = validate_config(data, check_program=False)
    seed = config.searcher.seed
    assert isinstance(seed, int) and 0 <= seed < 2 ** 32
    assert config.frozen["searcher"]["seed"] == seed
    assert data == original  # the caller's dict is not changed
    # What is written to experiment.yaml gives the same seed when read back (a resumed run).
    again = validate_config(yaml.safe_load(config_as_yaml(config)), check_program=False)
    assert again.searcher.seed == seed


def test_absent_seed_differs_between_experiments():
    assert len({valid().searcher.seed for _ in range(5)}) > 1


@pytest.mark.parametrize("seed", [0, 7, "42"])
def test_given_seed_is_kept(seed):
    config = valid({"searcher.seed": seed})
    assert config.searcher.seed == int(seed)
    assert config.frozen["searcher"] == {"seed": int(seed)}


def frozen_experiment(directory: Path, seed: Any) -> None:
    """An experiment directory as a first run leaves it: experiment.yaml holding the seed it froze."""
    directory.mkdir(parents=True)
    data = edited({"searcher.seed": seed, "experiment_dir": str(directory)})
    (directory / "experiment.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.mark.parametrize("searcher", [DELETE, None, {"type": "random"}])
def test_a_seedless_config_takes_the_seed_its_experiment_froze(tmp_path, searcher):
    frozen_experiment(tmp_path / "exp", 1234567)
    for config in (valid({"searcher": searcher, "experiment_dir": str(tmp_path / "exp")}),
                   valid({"searcher": searcher}, experiment_dir=str(tmp_path / "exp"))):
        assert config.searcher.seed == 1234567 and config.frozen["searcher"]["seed"] == 1234567
    # Through a YAML file too (`hpc-hpo run/status/plan`), from another working directory.
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(edited({"searcher": searcher, "experiment_dir": str(tmp_path / "exp"),
                                           "command": [sys.executable, "train.py"]})))
    assert load_config(path).searcher.seed == 1234567


def test_a_named_seed_is_kept_and_other_directories_draw_their_own(tmp_path):
    frozen_experiment(tmp_path / "exp", 1234567)
    assert valid({"searcher.seed": 7}, experiment_dir=str(tmp_path / "exp")).searcher.seed == 7
    assert valid({"searcher.seed": 0}, experiment_dir=str(tmp_path / "exp")).searcher.seed == 0
    drawn = {valid(experiment_dir=str(tmp_path / f"new{i}")).searcher.seed for i in range(5)}
    assert 1234567 not in drawn and len(drawn) > 1


@pytest.mark.parametrize("content", ["name: [unclosed", "just text", "searcher: {seed: -3}",
                                     "searcher: {seed: true}", "searcher: {seed: '12'}", "searcher: 5"])
def test_a_damaged_frozen_seed_is_not_taken(tmp_path, content):
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "experiment.yaml").write_text(content)
    seeds = {valid(experiment_dir=str(tmp_path / "exp")).searcher.seed for _ in range(5)}
    assert len(seeds) > 1  # drawn: the resume check then names what differs


# --------------------------------------------------------------------------- failure budgets


def test_failure_budgets_default_and_load():
    execution = valid().execution
    assert (execution.max_failures, execution.max_requeues) == (20, 3)
    execution = valid({"execution.max_failures": 0, "execution.max_requeues": 0}).execution
    assert (execution.max_failures, execution.max_requeues) == (0, 0)
    execution = valid({"execution.max_failures": None, "execution.max_requeues": "5"}).execution
    assert (execution.max_failures, execution.max_requeues) == (None, 5)


@pytest.mark.parametrize(ARGS, [
    case("execution.max_failures", -1, "must be 0 or more, or null for no limit", "the default is 20"),
    case("execution.max_failures", 2.5, "must be a whole number"),
    case("execution.max_failures", "many", "must be an integer"),
    case("execution.max_failures", True, "must be an integer"),
    case("execution.max_requeues", -1, "must be 0 or more"),
    case("execution.max_requeues", None, "must be an integer"),
    case("execution.max_requeues", 1.5, "must be a whole number"),
    case("execution.max_requeue", 1, "unknown key", "did you mean 'max_requeues'?"),
])
def test_bad_failure_budgets(changes, key, shown, allowed):
    assert_rejected(changes, key, shown, allowed)


def test_brackets_beyond_the_rungs_are_refused_with_the_levels() -> None:
    config = base_config()
    config["resource"] = {"name": "epoch", "max": 9}
    config["scheduler"] = {"type": "asha", "grace_period": 1, "reduction_factor": 3, "brackets": 3}
    with pytest.raises(ConfigError) as error:
        validate_config(config, check_program=False)
    assert error.value.key == "scheduler.brackets" and "at most 2" in str(error.value) and "1, 3, 9" in str(error.value)
    config["scheduler"]["brackets"] = 2
    assert validate_config(config, check_program=False).scheduler.brackets == 2


def test_pasha_needs_three_rung_levels() -> None:
    config = base_config()
    config["resource"] = {"name": "epoch", "max": 3}
    config["scheduler"] = {"type": "pasha", "grace_period": 1, "reduction_factor": 3}
    with pytest.raises(ConfigError) as error:
        validate_config(config, check_program=False)
    assert error.value.key == "scheduler.type" and "pasha" in str(error.value)


def test_genetic_search_is_refused_under_a_pausing_scheduler() -> None:
    config = base_config()
    config["searcher"] = {"type": "genetic", "generations": 2}
    config["scheduler"] = {"type": "promotion"}
    with pytest.raises(ConfigError) as error:
        validate_config(config, check_program=False)
    assert error.value.key == "searcher.type" and "promotion" in str(error.value)


# --------------------------------------------------------------------------- slurm settings


def test_slurm_settings_load_typed():
    config = valid({"execution.workload_manager": "slurm", "execution.num_parallel_evals": 0,
                    "execution.slurm": {"mode": "steps", "nodes_per_eval": 2, "launch_args": "--gpus-per-task=1 --mem=8G",
                                        "alloc_args": ["--constraint=haswell"], "alloc_jobid": 1234,
                                        "partition": "debug", "account": "proj-1", "time_limit": "1-00:30:00",
                                        "nodes_flag": "--nodes", "export": ["PATH", "PYTHONPATH"]}})
    slurm = config.execution.slurm
    assert config.execution.backend == "slurm" and config.execution.num_parallel_evals == 0
    assert (slurm.mode, slurm.nodes_per_eval, slurm.alloc_jobid) == ("steps", 2, "1234")
    assert slurm.launch_args == ("--gpus-per-task=1", "--mem=8G") and slurm.alloc_args == ("--constraint=haswell",)
    assert (slurm.partition, slurm.account, slurm.time_limit) == ("debug", "proj-1", "1-00:30:00")
    assert slurm.nodes_flag == "--nodes" and slurm.export == ("PATH", "PYTHONPATH")


@pytest.mark.parametrize(ARGS, [
    case("execution.slurm.launch_args", ["--mem=8G", "rm -rf /"], "must be a flag starting with '-'",
         shown="rm -rf /"),
    case("execution.slurm.launch_args", ["--comment=a\nb"], "without newlines", shown="--comment=a\nb"),
    case("execution.slurm.alloc_args", "--qos='unclosed", "cannot be split"),
    case("execution.slurm.partition", "debug; rm -rf ~", "a Slurm name"),
    case("execution.slurm.account", "", "non-empty"),
    case("execution.slurm.alloc_jobid", "12;3", "digits"),
    case("execution.slurm.time_limit", "an hour", "HH:MM:SS"),
    case("execution.slurm.export", ["PATH", "NOT VALID"], "environment variable names"),
    case("execution.slurm.mode", "jobs", "auto, steps, sbatch"),
    case("execution.slurm.nodes_per_eval", 0, "greater than 0"),
    case("execution.slurm.template", "a\nb", "control characters"),
    case("execution.slurm.nodes", 4, "unknown key", "nodes_per_eval"),
])
def test_bad_slurm_settings(changes, key, shown, allowed):
    assert_rejected(changes, key, shown, allowed)


def test_backend_and_workload_manager_together_are_refused():
    assert_rejected({"execution.backend": "local", "execution.workload_manager": "slurm"},
                    "execution.workload_manager", "slurm", ("set only one",))


# --------------------------------------------------------------------------- hostile values (issue: hostile input)
# Each is refused in one line naming the key, the value (capped) and the rule, or is valid and accepted as
# written (test_hostile_but_valid_values_are_accepted_as_written).

CYRILLIC_E = "\u0435"  # looks like 'e'
ARABIC_12 = "\u0661\u0662"  # float() reads it as 12; sbatch and qsub do not


@pytest.mark.parametrize(ARGS, [
    # non-finite, huge or wrongly typed numbers where counts are expected
    case("budget.max_trials", float("nan"), "must be an integer (finite)"),
    case("budget.max_trials", float("inf"), "must be an integer (finite)"),
    case("budget.max_trials", 1e300, "at most 19 digits"),
    case("budget.max_trials", 10 ** 5000, "at most 19 digits"),
    case("execution.num_parallel_evals", 1e18, "at most 1,000,000"),
    case("execution.num_retries", 10 ** 30, "at most 19 digits"),
    case("execution.max_requeues", 2_000_000, "at most 1,000,000"),
    case("execution.max_failures", float("nan"), "finite"),
    case("execution.slurm.nodes_per_eval", 10 ** 12, "at most 1,000,000"),
    case("execution.pbs.nodes_per_eval", -3, "greater than 0"),
    case("searcher.seed", 10 ** 40, "at most 19 digits"),
    case("searcher.seed", True, "must be an integer"),
    case("searcher", {"type": "bayesopt", "num_candidates": 10 ** 12}, "at most 1,000,000", "memory",
         key="searcher.num_candidates", shown=10 ** 12),
    case("scheduler", {"type": "pbt", "population_size": 10 ** 9}, "at most 1,000,000",
         key="scheduler.population_size", shown=10 ** 9),
    # resources and rungs
    case("resource.max", 1e300, "at most 1,000,000,000,000,000"),
    case("resource.max", True, "must be a number"),
    case("resource.max", ARABIC_12, "ASCII digits"),
    case("scheduler.grace_period", 1e-300, "more than 100 rung levels", "raise grace_period"),
    case("scheduler.rung_levels", list(range(1, 1001)), "more than 100"),
    case("scheduler.reduction_factor", float("nan"), "finite"),
    # parameter domains and defaults
    case("params.lr.default", float("nan"), "must be a number in"),
    case("params.u", {"type": "uniform", "low": 0, "high": 2, "default": True}, "must be a number in [0.0, 2.0]",
         key="params.u.default", shown=True),
    case("params.u", {"type": "uniform", "low": -1e308, "high": 1e308}, "overflows", key="params.u.high",
         shown=1e308),
    case("params.n", {"type": "randint", "low": 0, "high": 2 ** 60}, "at most 9,007,199,254,740,992",
         key="params.n.high", shown=2 ** 60),
    case("params.x", {"type": "fixed", "value": 10 ** 40}, "beyond 64 bits", "as a string",
         key="params.x.value", shown=10 ** 40),
    case("params.opt.values", list(range(20_000)), "more than 10000", "randint"),
    case("params.mix", {"type": "pchoice", "values": ["a", "b"], "weights": [1e308, 1e308]}, "add up to more",
         key="params.mix.weights", shown=[1e308, 1e308]),
    case("params.x", {"type": "fixed", "value": __import__("datetime").date(2024, 1, 1)}, "quote a date",
         key="params.x.value", shown=__import__("datetime").date(2024, 1, 1)),
    # confusables and control characters in names, flags and values
    case("name", f"{CYRILLIC_E}xp", "must be 1-100 characters"),
    case("name", "unit\n", "must be 1-100 characters"),  # a pattern's '$' alone would let it through
    case("metric.name", "loss\u200b", "must be a name of letters"),
    case("params.lr.flag", f"--l{CYRILLIC_E}arning_rate", "printable ASCII"),
    case("params.lr.flag", "--lr\x1b[31m", "printable ASCII"),
    case("params.lr.flag", "--lr\u200b", "printable ASCII"),
    case("params.x", {"type": "fixed", "value": "red\x1b[2J"}, "U+001B", key="params.x.value", shown="red\x1b[2J"),
    case("params.x", {"type": "fixed", "value": "a\u2028b"}, "U+2028", key="params.x.value", shown="a\u2028b"),
    case("params.opt.values", ["sgd", "ad\x85am"], "U+0085", key="params.opt.values[1]", shown="ad\x85am"),
    case("params", {True: 1}, "parameter names", key="params.True", shown=True),
    case("params", {None: 1}, "parameter names", key="params.None", shown=None),
    case("params", {"": 1}, "parameter names", key="params.", shown=""),
    # paths, durations and batch-system words
    case("experiment_dir", "", "non-empty"),
    case("experiment_dir", "runs/a\nb", "U+000A"),
    case("experiment_dir", "/tmp/" + "d" * 5000, "longer than a path may be"),
    case("execution.poll_interval", 1e-9, "at least 0.01"),
    case("execution.stop_grace_period", 1e9, "at most 86,400"),
    case("budget.max_time", "1:\u00b2:00", "is not a duration"),  # '\u00b2'.isdigit() is true, int() refuses it
    case("budget.max_time", f"{ARABIC_12}h", "is not a duration"),
    case("execution.slurm.time_limit", "\u0661:00:00", "Slurm time limit"),
    case("execution.slurm.alloc_jobid", ARABIC_12, "digits"),
    case("execution.pbs.walltime", "\u0661:00:00", "PBS walltime"),
    case("execution.slurm.partition", "debug\n", "a Slurm name"),
    case("execution.slurm.export", ["PATH\n"], "environment variable names"),
    case("execution.slurm.export", ["PATH", "PATH"], "names PATH more than once"),
    case("execution.slurm.export", ["BASH_FUNC_module%%"], "environment variable names"),
    case("execution.slurm.launch_args", "--x " * 30_000, "more than 100000"),
    case("metric_regex", "(?P<loss>x)" + "a" * 20_000, "at most 10,000"),
])
def test_hostile_value_is_refused_in_one_line(changes, key, shown, allowed):
    assert_rejected(changes, key, shown, allowed)


def test_a_key_with_a_line_break_is_named_escaped() -> None:
    with pytest.raises(ConfigError) as info:
        valid({"params.lr\nx": 1})
    assert info.value.key == "params.lr\nx" and "'params.lr\\nx'" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("changes, check", [
    ({"scheduler.reduction_factor": 1e308}, lambda c: c.scheduler.reduction_factor == 1e308),
    ({"params.x": {"type": "fixed", "value": "a\tb"}}, lambda c: c.space.params[-1].domain == Fixed("a\tb")),
    ({"params.x": {"type": "fixed", "value": "\u202eevil"}},
     lambda c: c.space.params[-1].domain == Fixed("\u202eevil")),
    ({"params.opt.values": [1, True]}, lambda c: c.space.params[1].domain == Choice((1, True))),
    ({"experiment_dir": "runs/it's $(x) `y`"}, lambda c: c.experiment_dir.name == "it's $(x) `y`"),
    ({"execution.slurm.export": "ALL"}, lambda c: c.execution.slurm.export == ("ALL",)),
    ({"searcher.seed": 2 ** 63 - 1}, lambda c: c.searcher.seed == 2 ** 63 - 1),
    ({"params.a": {"type": "uniform", "low": 0, "high": 1}, "params.opt.values": list(range(10_000)),
      "searcher": {"type": "grid", "grid_size": 10}}, lambda c: c.searcher.options["grid_size"] == 10),
    ({"execution.poll_interval": 3600, "budget.max_time": "3650d"}, lambda c: c.budget.max_time == 3650 * 86400),
], ids=["huge-reduction-factor", "tab-in-value", "bidi-override-in-value", "one-and-true", "shell-chars-in-path",
        "export-all", "largest-seed", "grid-of-a-million", "largest-durations"])
def test_hostile_but_valid_values_are_accepted_as_written(changes, check):
    assert check(valid(changes))


# --------------------------------------------------------------------------- hostile YAML


def load_refusal(tmp_path: Path, text: str | bytes) -> str:
    path = tmp_path / "exp.yaml"
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    with pytest.raises(HpoError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message and len(message) < 600, message
    return message


GOOD_YAML = f"""\
name: unit
command: [{sys.executable}, -c, pass]
metric: {{name: loss, mode: min}}
resource: {{max: 9}}
budget: {{max_trials: 5}}
"""


@pytest.mark.parametrize("text, says", [
    (GOOD_YAML + "name: other\n", "the key 'name' is given twice"),
    (GOOD_YAML + "params:\n  lr: {type: uniform, low: 0, high: 1}\n  lr: 3\n", "the key 'lr' is given twice"),
    (GOOD_YAML + "params: {a: 1}\nexecution: {<<: 5}\n", "not valid YAML"),
    (GOOD_YAML + "params: {a: 1}\n'<<': {a: 1}\n", "config key '<<'"),
    (GOOD_YAML + "params: {a: 1}\n1: x\n", "config key '1' = 'x': unknown key"),
    (GOOD_YAML + "params: {a: 1}\n~: x\n", "config key 'None' = 'x': unknown key"),
    (GOOD_YAML + "params: {a: 1}\n? [a, b]\n: x\n", "not valid YAML"),
    (GOOD_YAML + "params: {a: " + "9" * 5000 + "}\n", "has too many digits"),
    (GOOD_YAML.replace("name: unit", "name: !!binary aGVsbG8=") + "params: {a: 1}\n", "must be a non-empty string"),
    (GOOD_YAML + "params: {a: !!set {x, y}}\n", "must be a number, a string or true/false"),
    (GOOD_YAML + "params: {day: 2024-01-01}\n", "quote a date"),
    (GOOD_YAML.replace("max_trials: 5", "max_trials: on") + "params: {a: 1}\n", "must be an integer"),
    (GOOD_YAML.replace("max: 9", "max: .nan") + "params: {a: 1}\n", "(finite)"),
    (GOOD_YAML + "params: {a: 1}\n---\nname: second\n", "not valid YAML"),
    (GOOD_YAML + "params: {a: 1}\n\"bad\\nkey\": 1\n", "'bad\\nkey'"),
    (GOOD_YAML.encode() + b"params: {a: '\xff\xfe'}\n", "cannot be read"),
    ("", "'name' = (missing): is required"),
], ids=["duplicate-top-key", "duplicate-param", "merge-of-a-scalar", "quoted-merge-key", "integer-key", "null-key",
        "list-key", "5000-digit-integer", "binary-name", "set-value", "unquoted-date", "on-as-a-count", "nan-resource",
        "two-documents", "line-break-in-key", "not-utf8", "empty-file"])
def test_hostile_yaml_is_refused_in_one_line(tmp_path, text, says):
    assert says in load_refusal(tmp_path, text)


def test_yaml_merge_keys_are_valid_and_merge_as_written(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(GOOD_YAML + "params:\n  a: &range {type: uniform, low: 0, high: 1}\n"
                    "  b: {<<: *range, high: 2}\n  c: *range\n")
    space = load_config(path).space
    assert [p.domain for p in space.params] == [Uniform(0.0, 1.0), Uniform(0.0, 2.0), Uniform(0.0, 1.0)]
