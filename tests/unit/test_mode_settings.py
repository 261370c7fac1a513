"""Settings a mode does not use are refused with one line naming the mode that uses them (slurm_checks.py).

The checks run where the mode is decided (make_slurm_backend, make_pbs_backend), so these tests go through
those functions with the mode decided as on a cluster: inside an allocation (SLURM_JOB_ID, PBS_JOBID) or
not. Slurm's and PBS's commands are not run for any refused config (the check comes first); `shutil.which`
stands in for their presence on PATH so the tests do not depend on this machine having them."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from hpc_hpo import cli
from hpc_hpo.backends import pbs, slurm
from hpc_hpo.backends.slurm_checks import check_slurm_mode_settings
from hpc_hpo.config import load_config
from hpc_hpo.errors import ConfigError


def config_file(tmp_path: Path, execution: dict[str, Any]) -> Path:
    data = {"name": "modes", "command": [sys.executable, "-c", "pass"], "experiment_dir": str(tmp_path / "exp"),
            "params": {"x": {"type": "uniform", "low": 0, "high": 1}}, "metric": {"name": "loss", "mode": "min"},
            "resource": {"name": "epoch", "max": 3}, "scheduler": {"type": "fifo"}, "budget": {"max_trials": 1},
            "execution": execution}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def slurm_on_path(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """srun and squeue "installed"; no allocation around unless a test sets one."""
    monkeypatch.setattr(slurm.shutil, "which", lambda name: f"/usr/bin/{name}")
    for name in ("SLURM_JOB_ID", "SLURM_JOB_NODELIST", "PBS_JOBID", "PBS_NODEFILE"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("key, value", [("partition", "gpu"), ("account", "proj1"), ("time_limit", "01:00:00"),
                                        ("alloc_args", ["--mem=4G"]), ("template", "my_trial.sbatch")])
def test_a_job_setting_in_steps_mode_is_refused_naming_sbatch_mode(tmp_path: Path, slurm_on_path, key: str,
                                                                  value: Any) -> None:
    path = config_file(tmp_path, {"backend": "slurm", "slurm": {"mode": "steps", "alloc_jobid": "4242", key: value}})
    with pytest.raises(ConfigError) as caught:
        slurm.make_slurm_backend(load_config(path))
    message = str(caught.value)
    assert f"'execution.slurm.{key}'" in message and "used only in sbatch mode" in message, message
    assert "this run is in steps mode (mode: steps)" in message and "set execution.slurm.mode: sbatch" in message


def test_auto_inside_an_allocation_says_why_it_is_steps_mode(tmp_path: Path, slurm_on_path) -> None:
    slurm_on_path.setenv("SLURM_JOB_ID", "777")
    path = config_file(tmp_path, {"backend": "slurm", "slurm": {"partition": "gpu"}})
    with pytest.raises(ConfigError, match=r"steps mode \(mode: auto, and the driver runs inside allocation 777\)"):
        slurm.make_slurm_backend(load_config(path))


def test_the_same_settings_in_sbatch_mode_are_used_and_accepted(tmp_path: Path, slurm_on_path) -> None:
    path = config_file(tmp_path, {"backend": "slurm", "slurm": {"partition": "gpu", "account": "proj1",
                                                                "time_limit": "01:00:00", "alloc_args": ["--mem=4G"]}})
    backend = slurm.make_slurm_backend(load_config(path))  # auto, outside any allocation: sbatch
    assert backend.name == "slurm-sbatch"


def test_alloc_jobid_in_sbatch_mode_is_refused_naming_steps_mode(tmp_path: Path, slurm_on_path) -> None:
    path = config_file(tmp_path, {"backend": "slurm", "slurm": {"mode": "sbatch", "alloc_jobid": "4242"}})
    with pytest.raises(ConfigError, match=r"'execution.slurm.alloc_jobid'.*used only in steps mode"):
        slurm.make_slurm_backend(load_config(path))


def test_the_drivers_own_allocation_is_named_as_the_reason(tmp_path: Path) -> None:
    settings = load_config(config_file(tmp_path, {"backend": "slurm", "slurm": {"time_limit": "10"}})).execution.slurm
    with pytest.raises(ConfigError, match=r"the driver makes its own allocation \(execution.slurm.allocation\)"):
        check_slurm_mode_settings(settings, "steps", "55", own_allocation=True)
    check_slurm_mode_settings(settings, "sbatch", None, own_allocation=False)  # used there: no error


def test_hpc_hpo_run_refuses_it_with_one_line_and_exit_code_2(tmp_path: Path, slurm_on_path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    slurm_on_path.setenv("SLURM_JOB_ID", "777")
    path = config_file(tmp_path, {"backend": "slurm", "slurm": {"time_limit": "00:30:00"}})
    assert cli.main(["run", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("hpc-hpo: error: config key 'execution.slurm.time_limit' = '00:30:00'"), err
    assert not (tmp_path / "exp").exists()  # refused before anything was written


@pytest.mark.parametrize("key, value", [("queue", "workq"), ("walltime", "01:00:00"), ("qsub_args", ["-V"])])
def test_a_qsub_setting_in_pbs_allocation_mode_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          key: str, value: Any) -> None:
    # PBS is not installed here: the environment of a PBS job (PBS_JOBID, PBS_NODEFILE) is what auto reads.
    monkeypatch.setenv("PBS_JOBID", "12.server")
    monkeypatch.setenv("PBS_NODEFILE", str(tmp_path / "nodes"))
    path = config_file(tmp_path, {"backend": "pbs", "pbs": {key: value}})
    with pytest.raises(ConfigError) as caught:
        pbs.make_pbs_backend(load_config(path))
    message = str(caught.value)
    assert f"'execution.pbs.{key}'" in message and "used only in qsub mode" in message, message
    assert "allocation mode (mode: auto, and the driver runs inside a PBS job)" in message, message
