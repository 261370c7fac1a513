"""hpc_hpo.tune()'s function trials: the runner each trial process is (hpc_hpo/function_trial.py), and the
backend that puts it in place of a program on the backend `hpc-hpo run` would use (backends/function.py).

The runner is run for real (`python -m hpc_hpo.function_trial`), with real signals; the backends under
FunctionBackend are the real LocalBackend and SlurmBatchBackend (the latter only built, not submitted to:
its jobs are tested on the live cluster in tests/slurm/test_tune_slurm.py)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import hpc_hpo
from hpc_hpo.backends import LocalBackend
from hpc_hpo.backends.base import EXITED, RUNNING, LaunchSpec
from hpc_hpo.backends.function import FUNCTION_FILE, PACKAGE_ROOT, FunctionBackend, pickled_function, \
    with_package_root, write_payload
from hpc_hpo.backends.slurm import SlurmBatchBackend
from hpc_hpo.config import SlurmSpec
from hpc_hpo.errors import ConfigError
from hpc_hpo.function_trial import CANNOT_LOAD


def writes_its_config(config: dict[str, Any]) -> None:
    """At module level: pickled by reference, found in the trial through the driver's sys.path."""
    Path(os.environ["HPC_HPO_TRIAL_DIR"], "seen.json").write_text(json.dumps({"config": config, "pid": os.getpid()}))


def sleeps(config: dict[str, Any]) -> None:
    Path(os.environ["HPC_HPO_TRIAL_DIR"], "sleeping").write_text("")
    time.sleep(float(config["seconds"]))


def raises(config: dict[str, Any]) -> None:
    raise ValueError(f"no good with x={config['x']}")


def trial(tmp_path: Path, fn: Any, config: dict[str, Any]) -> tuple[Path, dict[str, str]]:
    """A trial directory with its config.json, the function's pickle, and the trial's environment."""
    trial_dir = tmp_path / "trials" / "0000"
    trial_dir.mkdir(parents=True)
    (trial_dir / "config.json").write_text(json.dumps(config))
    write_payload(tmp_path / FUNCTION_FILE, pickled_function(fn))
    env = {**os.environ, "HPC_HPO_TRIAL_DIR": str(trial_dir), "PYTHONPATH": with_package_root(None)}
    return trial_dir, env


def start_runner(tmp_path: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "hpc_hpo.function_trial", str(tmp_path / FUNCTION_FILE)],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_the_runner_calls_a_module_function_with_the_trial_config(tmp_path: Path) -> None:
    trial_dir, env = trial(tmp_path, writes_its_config, {"x": 0.25, "name": "a"})
    done = start_runner(tmp_path, env)
    out, err = done.communicate(timeout=60)
    assert done.returncode == 0, err
    seen = json.loads((trial_dir / "seen.json").read_text())
    assert seen["config"] == {"x": 0.25, "name": "a"} and seen["pid"] != os.getpid()


def test_a_function_defined_inside_a_function_travels_by_value(tmp_path: Path) -> None:
    offset = 7  # captured: the closure is carried by value, it is not importable by name

    def local_function(config: dict[str, Any]) -> None:
        Path(os.environ["HPC_HPO_TRIAL_DIR"], "sum").write_text(str(config["x"] + offset))

    trial_dir, env = trial(tmp_path, local_function, {"x": 5})
    done = start_runner(tmp_path, env)
    _, err = done.communicate(timeout=60)
    assert done.returncode == 0, err
    assert (trial_dir / "sum").read_text() == "12"


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, -signal.SIGTERM), (signal.SIGINT, 128 + signal.SIGINT)])
def test_a_cancelled_trial_ends_without_a_traceback(tmp_path: Path, sig: signal.Signals, code: int) -> None:
    """SIGTERM (the driver's cancel, scancel) ends it as a program ends; SIGINT too, without the
    KeyboardInterrupt traceback Python prints by default."""
    trial_dir, env = trial(tmp_path, sleeps, {"seconds": 60})
    running = start_runner(tmp_path, env)
    wait_for(trial_dir / "sleeping")
    running.send_signal(sig)
    out, err = running.communicate(timeout=30)
    assert running.returncode == code
    assert "Traceback" not in err and "KeyboardInterrupt" not in err and err.strip() == "", err


def test_a_raising_function_exits_1_with_its_traceback(tmp_path: Path) -> None:
    _, env = trial(tmp_path, raises, {"x": 3})
    done = start_runner(tmp_path, env)
    _, err = done.communicate(timeout=60)
    assert done.returncode == 1
    assert "Traceback" in err and "ValueError: no good with x=3" in err


def test_a_function_the_trial_cannot_import_is_one_line_saying_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                 ) -> None:
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "vanishing_module.py").write_text("def train(config):\n    pass\n")
    monkeypatch.syspath_prepend(str(modules))
    import vanishing_module
    _, env = trial(tmp_path, vanishing_module.train, {"x": 1})
    (modules / "vanishing_module.py").unlink()  # gone from the trial's host
    del sys.modules["vanishing_module"]
    done = start_runner(tmp_path, env)
    _, err = done.communicate(timeout=60)
    assert done.returncode == CANNOT_LOAD
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "vanishing_module.train" in err and "ModuleNotFoundError" in err and "PYTHONPATH" in err


def test_the_backend_runs_the_function_in_place_of_the_program(tmp_path: Path) -> None:
    """Through the real LocalBackend: the spec's program is replaced by the runner, the rest is kept."""
    trial_dir = tmp_path / "trials" / "0000"
    trial_dir.mkdir(parents=True)
    (trial_dir / "config.json").write_text(json.dumps({"x": 0.5}))
    backend = FunctionBackend(LocalBackend(kill_grace_s=2.0), pickled_function(writes_its_config), tmp_path)
    assert backend.name == "local" and not backend.runs_outlive_driver
    spec = LaunchSpec(trial_id="0000", argv=("python-function:never.run",), cwd=tmp_path, trial_dir=trial_dir,
                      env={"HPC_HPO_TRIAL_DIR": str(trial_dir), "PYTHONPATH": "/somewhere/else"}, tag="hpo-test-0000-1")
    handle = backend.submit(spec)
    assert (tmp_path / FUNCTION_FILE).is_file()
    deadline = time.monotonic() + 60
    while (status := backend.poll([handle])[handle]).state == RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert status.state == EXITED and status.exit_code == 0, (trial_dir / "stderr").read_text()
    assert json.loads((trial_dir / "seen.json").read_text())["config"] == {"x": 0.5}


def test_pythonpath_keeps_the_users_entries_first_and_adds_the_package_once() -> None:
    assert with_package_root("/a:/b").split(os.pathsep) == ["/a", "/b", PACKAGE_ROOT]
    assert with_package_root(f"/a:{PACKAGE_ROOT}").split(os.pathsep) == ["/a", PACKAGE_ROOT]
    assert with_package_root(None) == PACKAGE_ROOT


def test_the_backend_is_the_slurm_sbatch_backend_for_the_driver(tmp_path: Path) -> None:
    """Its jobs outlive a driver (the next one adopts them) and its name is the sbatch backend's."""
    inner = SlurmBatchBackend(SlurmSpec(time_limit="00:05:00"), kill_grace_s=5.0)
    backend = FunctionBackend(inner, pickled_function(writes_its_config), tmp_path)
    assert backend.name == "slurm-sbatch" and backend.runs_outlive_driver
    with pytest.raises(ConfigError, match="num_parallel_evals"):
        backend.slots(0)


def test_a_function_that_cannot_be_pickled_is_refused_before_anything_is_made(tmp_path: Path) -> None:
    lock = threading.Lock()

    def holds_a_lock(config: dict[str, Any]) -> None:
        with lock:
            pass

    with pytest.raises(ConfigError) as caught:
        hpc_hpo.tune(holds_a_lock, {"x": {"type": "uniform", "low": 0.0, "high": 1.0}},
                     metric={"name": "loss", "mode": "min"}, resource={"name": "epoch", "max": 3},
                     budget={"max_trials": 1}, execution={"backend": "local"}, experiment_dir=tmp_path / "exp",
                     quiet=True)
    message = str(caught.value)
    assert "'tune(fn)'" in message and "holds_a_lock" in message and "cannot be pickled" in message
    assert "\n" not in message and not (tmp_path / "exp").exists()
