"""Guarantee 7: hyperparameter values, names and paths holding quotes, $(), backticks, semicolons or
globs reach the trial program byte for byte and are never read as shell code. Property tests over the
argv builder and the batch-script renderer; the rendered script is run by a real bash, with `srun`
replaced by a program that records the argv and environment it was given."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import yaml

from hpc_hpo.backends.base import LaunchSpec
from hpc_hpo.backends.batch import trial_environment
from hpc_hpo.backends.pbs import default_template as pbs_default_template, job_script_values
from hpc_hpo.backends.slurm import default_template, render_trial_script, script_values, srun_step_argv
from hpc_hpo.config import PbsSpec, SlurmSpec, validate_config
from hpc_hpo.errors import BackendError, ConfigError
from hpc_hpo.space import flag_argv

REPO = Path(__file__).resolve().parents[2]

NASTY = ["'", '"', "$(touch PWNED)", "`touch PWNED`", "; touch PWNED", "&&", "|", "*", "~", "\\", "$HOME",
         "${IFS}", "!", "#", " ", "\t", "--", "-n", "\u00e9", "{{ command }}"]
# Line breaks and NUL bytes cannot be carried by a batch script: they are refused (tested below).
plain_text = st.text(st.characters(blacklist_characters="\0\n\r", blacklist_categories=("Cs",)), min_size=1, max_size=6)
hostile_text = st.lists(st.one_of(st.sampled_from(NASTY), plain_text), min_size=1, max_size=5).map("".join)

# Writes its arguments, then the variable, NUL-separated: byte-exact, and quick enough for many examples.
RECORDER = """#!/bin/bash
printf '%s\\0' "$@" > "$RECORD_TO"
printf '%s' "$HOSTILE_VALUE" > "$RECORD_TO.env"
env -0 > "$RECORD_TO.all"
"""


def _recorder_bin(tmp: Path) -> Path:
    """A directory whose `srun` records what it receives instead of starting a step."""
    directory = tmp / "bin"
    directory.mkdir(exist_ok=True)
    srun = directory / "srun"
    srun.write_text(RECORDER)
    srun.chmod(0o755)
    return directory


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flag=st.sampled_from(["--lr", "--lr=", "-x"]), value=hostile_text)
def test_flags_keep_values_whole(flag: str, value: str) -> None:
    argv = flag_argv(flag, value)
    assert argv == ([flag + value] if flag.endswith("=") else [flag, value])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=hostile_text, directory_name=hostile_text, env_value=hostile_text)
def test_rendered_job_script_passes_hostile_values_through_bash_unchanged(
        tmp_path_factory: pytest.TempPathFactory, value: str, directory_name: str, env_value: str) -> None:
    tmp = tmp_path_factory.mktemp("render")
    workdir = tmp / ("w" + directory_name.replace("/", "_").replace("\0", ""))
    workdir.mkdir()
    trial_dir = tmp / "trial"
    trial_dir.mkdir()
    spec = LaunchSpec(trial_id="0000", argv=("prog", "--name", value, f"--path={workdir}"), cwd=workdir,
                      trial_dir=trial_dir, tag="hpo-abcdef01-0000-1")
    env = {"HOSTILE_VALUE": env_value, "HPC_HPO_RUN_TAG": spec.tag}
    exit_file = trial_dir / "run.exit"
    script = render_trial_script(default_template().read_text(), script_values(SlurmSpec(), spec, env, exit_file))
    record = tmp / "record"
    path = f"{_recorder_bin(tmp)}{os.pathsep}{os.environ['PATH']}"
    done = subprocess.run(["bash", "-c", script], cwd=tmp, env={"PATH": path, "RECORD_TO": str(record)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    argv = record.read_bytes().decode().split("\0")[:-1]
    assert argv[-4:] == list(spec.argv), "the program's argv changed on its way through the script"
    assert Path(f"{record}.env").read_bytes().decode() == env_value
    assert exit_file.read_text().strip() == "0"
    assert not list(tmp.rglob("PWNED")) and not list(Path.cwd().glob("PWNED")), "a value ran as shell code"


@pytest.mark.parametrize("bad", ["a\nb", "a\0b", "line\r\n"])
def test_values_that_no_script_can_hold_are_refused(tmp_path: Path, bad: str) -> None:
    spec = LaunchSpec(trial_id="0000", argv=("prog", bad), cwd=tmp_path, trial_dir=tmp_path, tag="t")
    if "\r" in bad and "\n" not in bad:
        return
    with pytest.raises(BackendError):
        script_values(SlurmSpec(), spec, {}, tmp_path / "x.exit")
    with pytest.raises(BackendError):
        script_values(SlurmSpec(), LaunchSpec("0000", ("prog",), tmp_path, tmp_path, {"V": bad}, "t"), {"V": bad},
                      tmp_path / "x.exit")


@settings(max_examples=60, deadline=None)
@given(value=hostile_text)
def test_srun_step_argv_is_a_list_with_the_values_whole(value: str) -> None:
    spec = LaunchSpec(trial_id="0000", argv=("prog", value), cwd=Path("/tmp"), trial_dir=Path("/tmp/t"), tag="hpo-x-0000-1")
    argv = srun_step_argv(SlurmSpec(), "42", ["n1"], spec)
    assert argv[-2:] == ["prog", value] and argv[0] == "srun"


# --------------------------------------------------------------------------- export: ALL (issue: hostile input)
# A driver's environment on a RHEL-family cluster holds exported bash functions (their values hold newlines)
# and may hold names no shell can read; with export: ALL a job script must skip them, never run them.

SHELL_FUNCTIONS = {
    "BASH_FUNC_which%%": "() {  ( alias;\n eval ${which_declare} ) | /usr/bin/which --tty-only --read-alias "
                         "--read-functions --show-tilde --show-dot \"$@\"\n}",
    "BASH_FUNC_ml%%": "() {  eval \"$($LMOD_DIR/ml_cmd \"$@\")\"\n}",
}
UNSCRIPTABLE_NAMES = {"A;touch PWNED;B": "1", "$(touch PWNED)": "2", "X Y": "3", "1ABC": "4", "\u00e9t\u00e9": "5",
                      "`touch PWNED`": "6"}


def _driver_environment(tmp: Path, **extra: str) -> dict[str, str]:
    """What `os.environ` might hold on a login node: the usual variables, functions, odd names."""
    return {"PATH": f"{_recorder_bin(tmp)}{os.pathsep}{os.environ['PATH']}", "RECORD_TO": str(tmp / "record"),
            "HOSTILE_VALUE": "$(touch PWNED) 'kept' `x`", "MULTI_LINE": "a\nb", **SHELL_FUNCTIONS,
            **UNSCRIPTABLE_NAMES, **extra}


def _run_script(script: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    # The job starts with a bare environment: everything the trial has comes from the script's exports.
    return subprocess.run(["bash", "-c", script], cwd=tmp, env={"PATH": os.environ["PATH"]},
                          capture_output=True, text=True, timeout=60)


def _skip_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "skipped" in r.getMessage()]


def test_export_all_skips_shell_functions_and_names_no_script_can_hold(tmp_path: Path, caplog) -> None:
    source = _driver_environment(tmp_path, SLURM_MARK="sbatch")
    spec = LaunchSpec(trial_id="0000", argv=("prog", "--x", "$(touch PWNED)"), cwd=tmp_path, trial_dir=tmp_path,
                      env={"HPC_HPO_TRIAL_ID": "0000"}, tag="hpo-abcdef01-0000-1")
    with caplog.at_level(logging.WARNING, logger="hpc_hpo"):
        env = trial_environment(("ALL",), spec, source)
        trial_environment(("ALL",), spec, source)  # the next trial: said once, not per submission
    skipped = set(SHELL_FUNCTIONS) | set(UNSCRIPTABLE_NAMES) | {"MULTI_LINE"}
    assert not skipped & set(env) and env["SLURM_MARK"] == "sbatch" and env["HPC_HPO_TRIAL_ID"] == "0000"
    warnings = _skip_warnings(caplog)
    assert len(warnings) == 1 and f"{len(skipped)} " in warnings[0], warnings
    assert "\n" not in warnings[0]
    exit_file = tmp_path / "run.exit"
    script = render_trial_script(default_template().read_text(),
                                 script_values(SlurmSpec(export=("ALL",)), spec, env, exit_file))
    done = _run_script(script, tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "record").read_bytes().decode().split("\0")[-4:-1] == list(spec.argv)
    assert Path(f"{tmp_path / 'record'}.env").read_text() == source["HOSTILE_VALUE"]
    assert not list(tmp_path.rglob("PWNED")), "a variable's name ran as shell code"


def test_pbs_export_all_skips_them_too(tmp_path: Path, caplog) -> None:
    source = _driver_environment(tmp_path, PBS_MARK="qsub", **{"PBS-ONLY": "x"})
    # A one-node qsub job runs the program itself: here the recorder, found on the exported PATH.
    spec = LaunchSpec(trial_id="0000", argv=("srun", "--y", "a b;c"), cwd=tmp_path, trial_dir=tmp_path,
                      tag="hpo-abcdef01-0000-1")
    with caplog.at_level(logging.WARNING, logger="hpc_hpo"):
        env = trial_environment(("ALL",), spec, source)
    assert len(_skip_warnings(caplog)) == 1 and "PBS_MARK" in env
    values = job_script_values(PbsSpec(export=("ALL",)), spec, env, tmp_path / "run.exit", "hpo-0000")
    done = _run_script(render_trial_script(pbs_default_template().read_text(), values), tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "record").read_bytes().decode().split("\0")[:-1] == list(spec.argv[1:])
    assert not list(tmp_path.rglob("PWNED"))


def test_a_name_no_shell_can_read_never_enters_a_script_unquoted(tmp_path: Path) -> None:
    spec = LaunchSpec(trial_id="0000", argv=("prog",), cwd=tmp_path, trial_dir=tmp_path, tag="t")
    with pytest.raises(BackendError, match="not a shell variable name"):
        script_values(SlurmSpec(), spec, {"A;touch PWNED;B": "1"}, tmp_path / "x.exit")


env_name = st.one_of(st.sampled_from(NASTY + ["BASH_FUNC_f%%", "9LIVES", "OK_NAME", "_", "UID", "SHLVL", "PPID"]),
                     st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,8}\Z"), plain_text)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(variables=st.dictionaries(env_name, hostile_text, max_size=6))
def test_any_driver_environment_under_export_all_runs_no_code(tmp_path_factory: pytest.TempPathFactory,
                                                              variables: dict[str, str]) -> None:
    tmp = tmp_path_factory.mktemp("exportall")
    variables = {n: v for n, v in variables.items() if n and "=" not in n and n not in ("PATH", "RECORD_TO")}
    source = {"PATH": f"{_recorder_bin(tmp)}{os.pathsep}{os.environ['PATH']}", "RECORD_TO": str(tmp / "record"),
              **variables}
    spec = LaunchSpec(trial_id="0000", argv=("prog",), cwd=tmp, trial_dir=tmp, tag="hpo-abcdef01-0000-1")
    env = trial_environment(("ALL",), spec, source)
    script = render_trial_script(default_template().read_text(),
                                 script_values(SlurmSpec(export=("ALL",)), spec, env, tmp / "run.exit"))
    done = subprocess.run(["bash", "-c", script], cwd=tmp, env={"PATH": os.environ["PATH"]}, capture_output=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert b"readonly" not in done.stderr, done.stderr
    arrived = dict(item.split("=", 1) for item in (tmp / "record.all").read_bytes().decode().split("\0") if item)
    for name in env:
        assert arrived.get(name) == env[name], name
    assert not list(tmp.rglob("PWNED")) and not list(Path.cwd().glob("PWNED"))


# --------------------------------------------------------------------------- values echoed in messages


def minimal_config(**changes: Any) -> dict[str, Any]:
    config: dict[str, Any] = {"name": "hostile", "command": "train", "metric": {"name": "loss", "mode": "min"},
                              "params": {"lr": {"type": "uniform", "low": 0, "high": 1}},
                              "resource": {"max": 9}, "budget": {"max_trials": 5}}
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return config


def refusal(**changes: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        validate_config(minimal_config(**changes), check_program=False)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message, message
    return info.value


def test_a_50_mb_value_is_echoed_capped_with_its_length() -> None:
    error = refusal(name="x" * 50_000_000)
    message = str(error)
    assert len(message) < 400, message[:500]
    assert "'xxxxxxxx" in message and "50000000 characters" in message and error.key == "name"


def test_a_shared_structure_of_a_million_items_is_echoed_capped() -> None:
    bomb: Any = ["lol"] * 10
    for _ in range(5):
        bomb = [bomb] * 10  # 10**6 items when expanded, as a YAML alias builds them (shared, not copied)
    message = str(refusal(name=bomb))
    assert len(message) < 400 and "10 items" in message, message


def test_a_key_with_a_line_break_or_a_huge_key_stays_one_short_line() -> None:
    error = refusal(**{"bad\nkey": 1})
    assert "bad\\nkey" in str(error)
    long_key = "k" * 1_000_000
    assert len(str(refusal(**{long_key: 1}))) < 600


def test_a_huge_integer_is_echoed_without_converting_all_its_digits() -> None:
    message = str(refusal(budget__max_trials=10 ** 5000))
    assert len(message) < 400 and "digits" in message, message


# --------------------------------------------------------------------------- refused at load time, through the CLI


def cli_refusal(tmp_path: Path, text: str | bytes, *args: str) -> str:
    """`hpc-hpo run` of this config file: one line, exit code 2, nothing created, no traceback."""
    config = tmp_path / "exp.yaml"
    (config.write_bytes if isinstance(text, bytes) else config.write_text)(text)
    before = set(tmp_path.rglob("*"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-m", "hpc_hpo.cli", "run", str(config), *args], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("hpc-hpo: error:"), result.stderr[:2000]
    assert len(lines[0]) < 600, lines[0][:1000]
    assert set(tmp_path.rglob("*")) == before, "something was written"
    assert not (tmp_path / "exp").exists() and not (tmp_path / "runs").exists()
    return lines[0]


def valid_yaml(tmp_path: Path, **changes: Any) -> str:
    changes = {"command": [sys.executable, "-c", "pass"], "experiment_dir": str(tmp_path / "exp"), **changes}
    changes["execution"] = {"backend": "local", "poll_interval": 0.05, **changes.get("execution", {})}
    config = minimal_config(**changes)
    return yaml.safe_dump(config, sort_keys=False)


BILLION_LAUGHS = """\
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
name: *h
"""


def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    line = cli_refusal(tmp_path, BILLION_LAUGHS)
    assert "alias" in line and "exp.yaml" in line


def test_merge_keys_cannot_build_a_bomb_either(tmp_path: Path) -> None:
    levels = ["a0: &a0 {k0: 1, k1: 1, k2: 1, k3: 1, k4: 1, k5: 1, k6: 1, k7: 1, k8: 1, k9: 1}"]
    for i in range(1, 6):
        levels.append(f"a{i}: &a{i} {{<<: [{', '.join([f'*a{i - 1}'] * 10)}]}}")
    line = cli_refusal(tmp_path, "\n".join(levels) + "\nname: x\n")
    assert "alias" in line


def test_nesting_beyond_the_limit_is_refused(tmp_path: Path) -> None:
    line = cli_refusal(tmp_path, "name: " + "[" * 500 + "]" * 500 + "\n")
    assert "nest" in line and "exp.yaml" in line
    block = "".join(f"{'  ' * i}k{i}:\n" for i in range(300)) + "  " * 300 + "v\n"
    assert "nest" in cli_refusal(tmp_path, block)


def test_a_100_mb_config_file_is_refused_unread(tmp_path: Path) -> None:
    # NUL filler: an invalid file, so that a loader without the size limit fails quickly (and differently).
    line = cli_refusal(tmp_path, b"name: big\ncommand: " + b"\0" * 100 * 2 ** 20)
    assert "MiB" in line and "at most" in line


def test_a_grid_that_cannot_be_enumerated_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        validate_config(minimal_config(searcher={"type": "grid", "grid_size": 3e8}), check_program=False)
    assert info.value.key == "searcher.grid_size"
    line = cli_refusal(tmp_path, valid_yaml(tmp_path, searcher={"type": "grid", "grid_size": 3e8}))
    assert "searcher.grid_size" in line and "configurations" in line
    two_axes = {"a": {"type": "uniform", "low": 0, "high": 1}, "b": {"type": "uniform", "low": 0, "high": 1},
                "c": {"type": "choice", "values": list(range(200))}}
    error = refusal(params=two_axes, searcher={"type": "grid", "grid_size": 100})
    assert error.key == "searcher.grid_size" and "2000000" in str(error).replace(",", "")


@pytest.mark.parametrize("key, value", [
    ("poll_interval", 1e308), ("poll_interval", "1e300d"), ("stop_grace_period", 1e308),
])
def test_durations_without_a_sensible_bound_are_refused(tmp_path: Path, key: str, value: Any) -> None:
    assert refusal(execution={key: value}).key == f"execution.{key}"
    text = valid_yaml(tmp_path, execution={"backend": "local", key: value})
    assert f"execution.{key}" in cli_refusal(tmp_path, text)


@pytest.mark.parametrize("changes, key", [
    ({"budget": {"max_time": 1e308}}, "budget.max_time"),
    ({"budget": {"max_time": "99999999999d"}}, "budget.max_time"),
    ({"execution": {"slurm": {"squeue_interval": 1e308}}}, "execution.slurm.squeue_interval"),
    ({"execution": {"pbs": {"qstat_interval": 1e308}}}, "execution.pbs.qstat_interval"),
    ({"execution": {"pbs": {"lost_after": "1e300d"}}}, "execution.pbs.lost_after"),
    ({"execution": {"poll_interval": 1e-300}}, "execution.poll_interval"),
])
def test_other_durations_and_intervals_are_bounded(changes: dict[str, Any], key: str) -> None:
    assert refusal(**changes).key == key


def test_a_nul_byte_in_the_experiment_dir_is_refused(tmp_path: Path) -> None:
    text = valid_yaml(tmp_path).replace(f"experiment_dir: {tmp_path / 'exp'}", f'experiment_dir: "{tmp_path}/e\\0x"')
    assert refusal(experiment_dir="a\0b").key == "experiment_dir"
    assert "\\0" in text
    assert "experiment_dir" in cli_refusal(tmp_path, text)


def test_an_argument_the_system_cannot_pass_is_refused(tmp_path: Path) -> None:
    ten_mb = "y" * 10_000_000
    assert refusal(command=["train", ten_mb]).key == "command"
    assert refusal(params={"lr": {"type": "choice", "values": ["a", ten_mb]}}).key == "params.lr.values[1]"
    assert refusal(params={"lr": {"type": "fixed", "value": ten_mb}}).key == "params.lr.value"
    assert refusal(params={"lr": {"type": "fixed", "value": 1, "flag": "--" + ten_mb}}).key == "params.lr.flag"
    line = cli_refusal(tmp_path, valid_yaml(tmp_path, command=[sys.executable, "x" * 3_000_000]))
    assert "command" in line and "argument" in line


def test_a_command_line_longer_than_the_argument_list_limit_is_refused(tmp_path: Path) -> None:
    # Each value alone fits in one argument, together they exceed what exec can take.
    many = {f"p{i}": {"type": "fixed", "value": "v" * 100_000} for i in range(30)}
    assert refusal(params=many).key.startswith("params.p")
    line = cli_refusal(tmp_path, valid_yaml(tmp_path, params=many))
    assert "argument list" in line and "params.p" in line


def test_an_experiment_dir_option_with_a_line_break_is_refused(tmp_path: Path) -> None:
    line = cli_refusal(tmp_path, valid_yaml(tmp_path), "--experiment-dir", str(tmp_path / "a\nb"))
    assert "--experiment-dir" in line and "U+000A" in line
