"""Guarantee 7: hyperparameter values, names and paths holding quotes, $(), backticks, semicolons or
globs reach the trial program byte for byte and are never read as shell code. Property tests over the
argv builder and the batch-script renderer; the rendered script is run by a real bash, with `srun`
replaced by a program that records the argv and environment it was given."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpc_hpo.backends.base import LaunchSpec
from hpc_hpo.backends.slurm import default_template, render_trial_script, script_values, srun_step_argv
from hpc_hpo.config import SlurmSpec
from hpc_hpo.errors import BackendError
from hpc_hpo.space import flag_argv

NASTY = ["'", '"', "$(touch PWNED)", "`touch PWNED`", "; touch PWNED", "&&", "|", "*", "~", "\\", "$HOME",
         "${IFS}", "!", "#", " ", "\t", "--", "-n", "\u00e9", "{{ command }}"]
# Line breaks and NUL bytes cannot be carried by a batch script: they are refused (tested below).
plain_text = st.text(st.characters(blacklist_characters="\0\n\r", blacklist_categories=("Cs",)), min_size=1, max_size=6)
hostile_text = st.lists(st.one_of(st.sampled_from(NASTY), plain_text), min_size=1, max_size=5).map("".join)

# Writes its arguments, then the variable, NUL-separated: byte-exact, and quick enough for many examples.
RECORDER = """#!/bin/bash
printf '%s\\0' "$@" > "$RECORD_TO"
printf '%s' "$HOSTILE_VALUE" > "$RECORD_TO.env"
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
