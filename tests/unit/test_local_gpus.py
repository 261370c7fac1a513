"""Local mode GPUs and CPUs, the pure parts: reading nvidia-smi -L, which list wins, the variables a run
gets, the book of free devices, how many trials fit, and the config that names GPUs.

No GPU driver is installed here: nvidia-smi output is a recorded sample, given as text."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hpc_hpo.backends.base import LaunchSpec
from hpc_hpo.backends.local import (AMD, NVIDIA, Devices, GpuPool, LocalBackend, check_shape_fits, device_env,
                                    find_gpus, make_local_backend, parse_nvidia_smi, read_devices, visible_list,
                                    write_devices)
from hpc_hpo.config import validate_config
from hpc_hpo.config.local import local_spec
from hpc_hpo.config.specs import LocalSpec, PerEval, TrialShape
from hpc_hpo.errors import ConfigError
from hpc_hpo.space import Choice, Param, Space

# As printed by nvidia-smi 535 on a 4-GPU node.
FOUR_GPUS = """\
GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-5c3c0a3e-1b7e-5f2a-9d3e-0a1b2c3d4e50)
GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-5c3c0a3e-1b7e-5f2a-9d3e-0a1b2c3d4e51)
GPU 2: NVIDIA A100-SXM4-40GB (UUID: GPU-5c3c0a3e-1b7e-5f2a-9d3e-0a1b2c3d4e52)
GPU 3: NVIDIA A100-SXM4-40GB (UUID: GPU-5c3c0a3e-1b7e-5f2a-9d3e-0a1b2c3d4e53)
"""
# GPU 0 split into two MIG instances, GPU 1 whole.
MIG = """\
GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-aaaa0000-0000-0000-0000-000000000000)
  MIG 3g.20gb     Device  0: (UUID: MIG-11111111-2222-3333-4444-555555555555)
  MIG 3g.20gb     Device  1: (UUID: MIG-66666666-7777-8888-9999-000000000000)
GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-bbbb0000-0000-0000-0000-000000000000)
"""


def never_listed() -> str | None:
    raise AssertionError("nvidia-smi must not be asked when an earlier source names the GPUs")


def spec(gpus: int | None = None, cpus: int | None = None, trial: str = "0000") -> LaunchSpec:
    return LaunchSpec(trial_id=trial, argv=("true",), cwd=Path("."), trial_dir=Path("."), tag=f"t{trial}",
                      gpus=gpus, cpus=cpus)


# --------------------------------------------------------------------------- nvidia-smi -L


def test_nvidia_smi_devices_are_named_by_uuid() -> None:
    assert parse_nvidia_smi(FOUR_GPUS) == [f"GPU-5c3c0a3e-1b7e-5f2a-9d3e-0a1b2c3d4e5{i}" for i in range(4)]


def test_a_gpu_in_mig_mode_is_replaced_by_its_instances() -> None:
    assert parse_nvidia_smi(MIG) == ["MIG-11111111-2222-3333-4444-555555555555",
                                     "MIG-66666666-7777-8888-9999-000000000000",
                                     "GPU-bbbb0000-0000-0000-0000-000000000000"]


def test_without_uuid_the_index_is_used_and_other_lines_are_ignored() -> None:
    text = "GPU 0: Tesla K80\nGPU 1: Tesla K80\nNo devices were found\n\n"
    assert parse_nvidia_smi(text) == ["0", "1"]
    assert parse_nvidia_smi("No devices were found\n") == []


def test_visible_list() -> None:
    assert visible_list("0, 2,3") == ["0", "2", "3"]
    assert visible_list("") == []


# --------------------------------------------------------------------------- which list wins


def test_execution_local_gpus_wins_over_the_environment_and_nvidia_smi() -> None:
    pool = find_gpus(LocalSpec(gpus=("1", "3")), {"CUDA_VISIBLE_DEVICES": "0,1,2,3"}, never_listed)
    assert pool.ids == ("1", "3") and pool.vendor == NVIDIA and pool.source == "execution.local.gpus"


def test_the_drivers_cuda_visible_devices_wins_over_nvidia_smi() -> None:
    pool = find_gpus(LocalSpec(), {"CUDA_VISIBLE_DEVICES": "2,3"}, never_listed)
    assert pool.ids == ("2", "3")
    # Set but empty: the driver was given no GPU, whatever the machine has.
    assert find_gpus(LocalSpec(), {"CUDA_VISIBLE_DEVICES": ""}, never_listed).ids == ()


def test_nvidia_smi_when_nothing_names_the_gpus() -> None:
    pool = find_gpus(LocalSpec(), {}, lambda: FOUR_GPUS)
    assert len(pool.ids) == 4 and pool.source == "nvidia-smi -L"
    # No nvidia-smi, or it failed: no GPUs.
    assert find_gpus(LocalSpec(), {}, lambda: None).ids == ()


def test_amd_from_the_drivers_rocr_and_hip_lists() -> None:
    pool = find_gpus(LocalSpec(), {"ROCR_VISIBLE_DEVICES": "4,5,6,7"}, never_listed)
    assert pool.ids == ("4", "5", "6", "7") and pool.vendor == AMD and not pool.hip_level
    # HIP picks by index among what ROCR left visible: devices 5 and 7.
    both = find_gpus(LocalSpec(), {"ROCR_VISIBLE_DEVICES": "4,5,6,7", "HIP_VISIBLE_DEVICES": "1,3"}, never_listed)
    assert both.ids == ("5", "7")
    hip = find_gpus(LocalSpec(), {"HIP_VISIBLE_DEVICES": "0,1"}, never_listed)
    assert hip.ids == ("0", "1") and hip.vendor == AMD and hip.hip_level


# --------------------------------------------------------------------------- the variables a run gets


def test_nvidia_runs_get_cuda_visible_devices_only() -> None:
    assert device_env(GpuPool(("0", "1", "2")), ["2", "0"]) == {"CUDA_VISIBLE_DEVICES": "2,0"}


def test_amd_runs_get_rocr_with_the_ids_and_hip_cuda_renumbered() -> None:
    env = device_env(GpuPool(("4", "5", "6"), AMD), ["5", "6"])
    assert env == {"ROCR_VISIBLE_DEVICES": "5,6", "HIP_VISIBLE_DEVICES": "0,1", "CUDA_VISIBLE_DEVICES": "0,1"}
    hip = device_env(GpuPool(("0", "1"), AMD, hip_level=True), ["1"])
    assert hip == {"HIP_VISIBLE_DEVICES": "1", "CUDA_VISIBLE_DEVICES": "1"}


# --------------------------------------------------------------------------- the book of free devices


def one_gpu_each(pool: tuple[str, ...] = ("a", "b", "c", "d"), cpus: list[int] | None = None,
                 shape: TrialShape | None = None) -> LocalBackend:
    return LocalBackend(gpus=GpuPool(pool), shape=shape or TrialShape(gpus=PerEval(value=1)), cpus=cpus or [0, 1])


def test_runs_take_disjoint_gpus_and_give_them_back() -> None:
    backend = one_gpu_each()
    taken = [backend._take(spec(gpus=1, trial=str(i))) for i in range(4)]
    assert sorted(g for d in taken for g in d.gpus) == ["a", "b", "c", "d"]
    assert not backend.has_room(spec(gpus=1))
    backend._give_back(taken[2])
    assert backend.has_room(spec(gpus=1)) and not backend.has_room(spec(gpus=2))
    assert backend._take(spec(gpus=1)).gpus == taken[2].gpus


def test_cpus_are_booked_only_when_trials_ask_for_them() -> None:
    shared = one_gpu_each(cpus=[0, 1])
    assert shared._take(spec(gpus=1, cpus=None)).cpus == []
    booked = one_gpu_each(cpus=[0, 1, 2, 3], shape=TrialShape(gpus=PerEval(value=1), cpus=PerEval(value=2)))
    first = booked._take(spec(gpus=1, cpus=2))
    second = booked._take(spec(gpus=1, cpus=2))
    assert sorted(first.cpus + second.cpus) == [0, 1, 2, 3]
    # GPUs are left, CPUs are not.
    assert not booked.has_room(spec(gpus=1, cpus=2))


@pytest.mark.parametrize(("shape", "cpus", "fit"), [
    (TrialShape(gpus=PerEval(value=1)), 2, 4),
    (TrialShape(gpus=PerEval(value=2)), 2, 2),
    (TrialShape(gpus=PerEval(value=3)), 2, 1),
    (TrialShape(gpus=PerEval(param="g", least=2)), 2, 2),
    (TrialShape(gpus=PerEval(value=1), cpus=PerEval(value=3)), 6, 2),  # CPUs are what runs out first
    (TrialShape(cpus=PerEval(value=2)), 8, 4),
])
def test_zero_parallel_evals_means_as_many_as_fit(shape: TrialShape, cpus: int, fit: int) -> None:
    backend = one_gpu_each(cpus=list(range(cpus)), shape=shape)
    assert backend.slots(0) == fit
    assert backend.slots(3) == 3  # a number given is kept; has_room holds back what does not fit


def test_adopted_run_keeps_its_recorded_gpus(tmp_path: Path) -> None:
    write_devices(tmp_path, "tag1", Devices(["c"], [1]))
    assert read_devices(tmp_path, "tag1") == Devices(["c"], [1])
    backend = one_gpu_each()
    backend._hold_again("123", tmp_path, "tag1")
    assert backend.free_gpus == ["a", "b", "d"]
    assert [backend._take(spec(gpus=1, trial=str(i))).gpus for i in range(3)] == [["a"], ["b"], ["d"]]
    # A damaged or missing file holds nothing rather than failing the adoption.
    (tmp_path / "tag2.devices").write_text("{not json")
    assert read_devices(tmp_path, "tag2") == Devices() and read_devices(tmp_path, "absent") == Devices()


# --------------------------------------------------------------------------- refused at start


def gpu_space(values: list[int]) -> Space:
    return Space((Param("g", Choice(tuple(values)), flag=None),))


def test_more_gpus_per_trial_than_exist_is_one_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        check_shape_fits(TrialShape(gpus=PerEval(value=5)), gpu_space([1]), GpuPool(("0", "1", "2", "3"),
                         source="nvidia-smi -L"), [0])
    message = str(caught.value)
    assert "execution.gpus_per_eval" in message and "= 5" in message and "4 GPUs are found (nvidia-smi -L)" in message
    assert "execution.local.gpus" in message  # the fix


def test_a_gpu_parameter_whose_largest_value_does_not_fit_is_refused() -> None:
    shape = TrialShape(gpus=PerEval(param="g", least=1))
    check_shape_fits(shape, gpu_space([1, 2, 4]), GpuPool(tuple("0123")), [0])
    with pytest.raises(ConfigError, match=r"takes values up to 8 \(g\) per trial, but 4 GPUs"):
        check_shape_fits(shape, gpu_space([1, 8]), GpuPool(tuple("0123")), [0])


def test_gpus_asked_for_with_none_found_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"asks for 1 per trial, but 0 GPUs are found \(none found\)"):
        check_shape_fits(TrialShape(gpus=PerEval(value=1)), gpu_space([1]), GpuPool(()), [0])


def test_more_cpus_per_trial_than_the_driver_may_use_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"execution.cpus_per_eval' = 3: asks for 3 per trial, but 2 CPUs"):
        check_shape_fits(TrialShape(cpus=PerEval(value=3)), gpu_space([1]), GpuPool(()), [0, 1])


# --------------------------------------------------------------------------- execution.local


def test_local_gpus_as_a_count_or_a_list() -> None:
    assert local_spec({"gpus": 3}).gpus == ("0", "1", "2")
    assert local_spec({"gpus": [0, "GPU-8932f937", "MIG-8932f937/1/0"]}).gpus == ("0", "GPU-8932f937", "MIG-8932f937/1/0")
    assert local_spec({"gpus": []}).gpus == ()
    assert local_spec(None) == LocalSpec()
    assert local_spec({"gpus": [1], "vendor": "amd"}).vendor == "amd"


@pytest.mark.parametrize(("value", "rule"), [
    ({"gpus": [0, 0]}, "lists device 0 twice"),
    ({"gpus": ["0,1"]}, "which is no device id"),
    ({"gpus": [-1]}, "which is no device id"),
    ({"gpus": -2}, "must be a number of GPUs"),
    ({"gpus": "all"}, "must be a number of GPUs or a list"),
    ({"vendor": "intel"}, "must be one of: nvidia, amd"),
    ({"gpu": 2}, "unknown key"),
])
def test_bad_local_gpus_are_refused(value: dict[str, Any], rule: str) -> None:
    with pytest.raises(ConfigError, match="execution.local") as caught:
        local_spec(value)
    assert rule in str(caught.value)


def config_with(execution: dict[str, Any], values: list[int] | None = None) -> Any:
    params: dict[str, Any] = {"lr": {"type": "uniform", "low": 0.0, "high": 1.0}}
    if values is not None:
        params["g"] = {"type": "choice", "values": values}
    return validate_config({"name": "gpus", "command": "train", "params": params,
                            "metric": {"name": "loss", "mode": "min"}, "resource": {"max": 3}, "budget": {"max_trials": 2},
                            "execution": {"backend": "local", **execution}}, check_program=False)


def test_make_local_backend_from_a_config() -> None:
    backend = make_local_backend(config_with({"gpus_per_eval": 2, "local": {"gpus": 4}}))
    assert backend.gpu_pool.ids == ("0", "1", "2", "3") and backend.slots(0) == 2
    with pytest.raises(ConfigError, match="execution.gpus_per_eval"):
        make_local_backend(config_with({"gpus_per_eval": {"param": "g"}, "local": {"gpus": [0, 1]}}, [1, 4]))


def test_no_gpus_asked_for_means_nothing_is_looked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("hpc_hpo.backends.local.list_nvidia_gpus", never_listed)
    backend = make_local_backend(config_with({}))
    assert backend.gpu_pool.ids == () and backend.has_room(spec())


def test_memory_and_tasks_are_not_used_locally_and_that_is_said(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="hpc_hpo"):
        backend = make_local_backend(config_with({"mem_per_eval": "2G", "tasks_per_eval": 2}))
    assert "execution.mem_per_eval or execution.tasks_per_eval" in caplog.text
    assert backend.has_room(spec())
