"""execution.slurm.allocation (the driver's own allocation): what the config accepts and refuses, the salloc
line it becomes, salloc's output read back, and when the driver asks for the next allocation. Running it
against Slurm is tests/slurm/test_self_allocation.py."""
from __future__ import annotations

import copy
from typing import Any

import pytest

from hpc_hpo.backends import slurm_allocation
from hpc_hpo.backends.slurm_allocation import (OwnAllocation, allocation_job_name, granted_job_id, run_in_own_allocations,
                                               salloc_argv, should_go_on, wants_own_allocation)
from hpc_hpo.config import AllocationRequest, validate_config
from hpc_hpo.errors import ConfigError, HpoError
from hpc_hpo.state import ExperimentState

BASE: dict[str, Any] = {
    "name": "unit",
    "command": "train --fast",
    "params": {"lr": {"type": "loguniform", "low": 1e-4, "high": 0.1}},
    "metric": {"name": "loss", "mode": "min"},
    "resource": {"max": 9},
    "budget": {"max_trials": 5},
}


def with_slurm(slurm: dict[str, Any], backend: str = "slurm") -> Any:
    data = copy.deepcopy(BASE)
    data["execution"] = {"backend": backend, "slurm": slurm}
    return validate_config(data, check_program=False)


def refused(slurm: dict[str, Any], key: str) -> str:
    with pytest.raises(ConfigError) as info:
        with_slurm(slurm)
    message = str(info.value)
    assert info.value.key == key, message
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize("time, expected", [(1, "1"), ("04:00:00", "04:00:00"), ("90", "90"), ("1-12", "1-12"),
                                            ("2-00:30:00", "2-00:30:00"), ("10:00", "10:00"), (None, None)])
def test_an_allocation_request_is_read(time: Any, expected: str | None) -> None:
    allocation: dict[str, Any] = {"nodes": 8, "args": ["--partition=gpu", "--exclusive"]}
    if time is not None:
        allocation["time"] = time
    request = with_slurm({"mode": "steps", "allocation": allocation}).execution.slurm.allocation
    assert request == AllocationRequest(nodes=8, time=expected, args=("--partition=gpu", "--exclusive"))


def test_without_the_key_there_is_no_request() -> None:
    assert with_slurm({"mode": "steps"}).execution.slurm.allocation is None


def test_args_may_be_one_string_split_like_a_shell_would() -> None:
    request = with_slurm({"allocation": {"nodes": 2, "args": "--gres=gpu:4 --constraint=a100"}}).execution.slurm
    assert request.allocation.args == ("--gres=gpu:4", "--constraint=a100")


@pytest.mark.parametrize("nodes", [0, -2, 1.5, "many", True, None, [2]])
def test_nodes_must_be_a_positive_integer(nodes: Any) -> None:
    message = refused({"allocation": {"nodes": nodes}}, "execution.slurm.allocation.nodes")
    assert "nodes" in message


def test_nodes_are_required() -> None:
    assert "required" in refused({"allocation": {"time": 5}}, "execution.slurm.allocation.nodes")


def test_fewer_nodes_than_one_trial_needs_are_refused() -> None:
    message = refused({"nodes_per_eval": 4, "allocation": {"nodes": 2}}, "execution.slurm.allocation.nodes")
    assert "nodes_per_eval (4)" in message and "at least 4" in message


@pytest.mark.parametrize("time", ["4h", "04:00:00\n", "1:2:3:4", "١٠", "", 0, -5, "0", "00:00:00", 2.5, True, "now"])
def test_time_must_be_a_slurm_time_limit(time: Any) -> None:
    message = refused({"allocation": {"nodes": 2, "time": time}}, "execution.slurm.allocation.time")
    assert "time" in message or "minutes" in message or "string" in message


@pytest.mark.parametrize("arg", ["partition=gpu", "--x\nsrun evil", "-N4", "--nodes=3", "-t10", "--time=5",
                                 "-Jname", "--job-name=other", "--no-shell"])
def test_args_are_flags_other_than_the_ones_the_driver_sets(arg: str) -> None:
    message = refused({"allocation": {"nodes": 2, "args": [arg]}}, "execution.slurm.allocation.args")
    assert "flag" in message or "set by" in message


def test_unknown_keys_are_refused_with_a_suggestion() -> None:
    message = refused({"allocation": {"nodes": 2, "tiem": 5}}, "execution.slurm.allocation.tiem")
    assert "did you mean 'time'" in message


def test_a_request_is_a_mapping() -> None:
    assert "mapping" in refused({"allocation": 8}, "execution.slurm.allocation")


def test_an_own_allocation_and_a_named_one_exclude_each_other() -> None:
    message = refused({"alloc_jobid": "123", "allocation": {"nodes": 2}}, "execution.slurm.allocation")
    assert "alloc_jobid" in message and "only one" in message


def test_an_own_allocation_is_for_steps_mode() -> None:
    message = refused({"mode": "sbatch", "allocation": {"nodes": 2}}, "execution.slurm.allocation")
    assert "sbatch" in message and "mode: steps" in message


# --------------------------------------------------------------------------- salloc


def test_salloc_line() -> None:
    request = AllocationRequest(nodes=8, time="04:00:00", args=("--partition=gpu", "--gres=gpu:4"))
    assert salloc_argv(request, "exp.hpo-alloc.0a1b2c3d") == [
        "salloc", "--no-shell", "--nodes=8", "--job-name=exp.hpo-alloc.0a1b2c3d", "--time=04:00:00",
        "--partition=gpu", "--gres=gpu:4"]
    assert "--time" not in " ".join(salloc_argv(AllocationRequest(nodes=1), "x"))


def test_job_names_carry_the_experiment_and_differ_per_driver() -> None:
    first, second = allocation_job_name("resnet_sweep"), allocation_job_name("resnet_sweep")
    assert first.startswith("resnet_sweep.hpo-alloc.") and second.startswith("resnet_sweep.hpo-alloc.")
    assert first != second


# What salloc of Slurm 22.05 wrote on the project's cluster: granted at once, and after a wait in the queue.
GRANTED_AT_ONCE = "salloc: Granted job allocation 422\n"
GRANTED_AFTER_WAIT = ("salloc: Pending job allocation 431\nsalloc: job 431 queued and waiting for resources\n"
                      "salloc: job 431 has been allocated resources\nsalloc: Granted job allocation 431\n")
REFUSED = "salloc: error: Job submit/allocate failed: Requested node configuration is not available\n"


@pytest.mark.parametrize("stderr, job_id", [(GRANTED_AT_ONCE, "422"), (GRANTED_AFTER_WAIT, "431"), (REFUSED, None),
                                            ("salloc: Pending job allocation 9\nsalloc: Job allocation 9 has been "
                                             "revoked.\n", None), ("", None)])
def test_the_granted_job_id_is_read_from_salloc(stderr: str, job_id: str | None) -> None:
    assert granted_job_id(stderr) == job_id


# --------------------------------------------------------------------------- when to go on


@pytest.mark.parametrize("finished, exit_code, go_on", [
    (False, 0, True),     # paused for the allocation's end
    (False, 75, True),    # cut by the allocation's end (or the allocation revoked)
    (True, 0, False),     # done
    (True, 1, False),     # failure budget spent
    (False, 130, False),  # Ctrl-C
    (False, 143, False),  # SIGTERM
    (False, 129, False),  # SIGHUP
])
def test_the_driver_asks_for_the_next_allocation_only_after_an_allocations_end(finished: bool, exit_code: int,
                                                                                  go_on: bool) -> None:
    assert should_go_on(finished, exit_code) is go_on


def test_an_own_allocation_is_made_only_outside_an_allocation() -> None:
    config = with_slurm({"allocation": {"nodes": 2}})
    assert wants_own_allocation(config, {})
    assert not wants_own_allocation(config, {"SLURM_JOB_ID": "77"})  # its trials run in the enclosing one
    assert not wants_own_allocation(with_slurm({}), {})
    local = copy.deepcopy(BASE)
    local["execution"] = {"backend": "local", "slurm": {"allocation": {"nodes": 2}}}
    assert not wants_own_allocation(validate_config(local, check_program=False), {})


class _StandInAllocation(OwnAllocation):
    """Stands in for salloc and scancel (the live tests run the real ones): hands out job ids, records releases."""

    given: list[str] = []
    released: list[str | None] = []

    def obtain(self) -> str:
        self.job_id = str(100 + len(self.given))
        self.given.append(self.job_id)
        return self.job_id

    def release(self) -> None:
        self.released.append(self.job_id)
        self.job_id = None


class _Run:
    """A driver run that ends with the next count of `reports` so far: for its allocation's end (exit 0, not
    finished), or, as the last of them when `finishes`, with the experiment over."""

    def __init__(self, reports: list[int], finishes: bool) -> None:
        self.state, self.exit_code, self.closing_line = ExperimentState(), 0, None
        self.reports, self.finishes = reports, finishes

    def run(self) -> ExperimentState:
        self.state.num_reports = self.reports.pop(0)
        self.state.finished = self.finishes and not self.reports
        return self.state


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> type[_StandInAllocation]:
    _StandInAllocation.given, _StandInAllocation.released = [], []
    monkeypatch.setattr(slurm_allocation, "OwnAllocation", _StandInAllocation)
    return _StandInAllocation


def test_allocations_follow_each_other_until_the_experiment_is_over(stand_in: type[_StandInAllocation]) -> None:
    config = with_slurm({"allocation": {"nodes": 2, "time": 1}})
    reports = [3, 7, 9]
    backends: list[str] = []
    said: list[str] = []
    last = run_in_own_allocations(config, lambda job_id: backends.append(job_id) or job_id,  # type: ignore[arg-type]
                                  lambda backend: _Run(reports, finishes=True), said.append)
    assert last.state.finished
    assert backends == stand_in.given == ["100", "101", "102"]  # each driver run in a new allocation
    assert stand_in.released[:3] == ["100", "101", "102"]  # each given back before the next is asked for
    assert sum("asking for the next one" in line for line in said) == 2


def test_allocations_in_which_nothing_reports_end_the_driver(stand_in: type[_StandInAllocation]) -> None:
    config = with_slurm({"allocation": {"nodes": 2, "time": 1}})
    reports = [4, 4, 4, 4, 4, 4, 4]
    with pytest.raises(HpoError, match=r"3 allocations in a row ended before any trial reported: "
                                       r"execution.slurm.allocation.time \(1\) is too short"):
        run_in_own_allocations(config, lambda job_id: job_id,  # type: ignore[arg-type,return-value]
                               lambda backend: _Run(reports, finishes=False), lambda text: None)
    assert len(stand_in.given) == 4  # one that reported, then three that did not
    assert None not in stand_in.released[:4] and set(stand_in.given) <= set(stand_in.released)


def test_a_setting_steps_mode_ignores_is_refused_before_any_allocation(stand_in: type[_StandInAllocation]) -> None:
    config = with_slurm({"partition": "gpu", "allocation": {"nodes": 2}})
    with pytest.raises(ConfigError) as info:
        run_in_own_allocations(config, lambda job_id: job_id,  # type: ignore[arg-type,return-value]
                               lambda backend: _Run([1], finishes=True), lambda text: None)
    assert info.value.key == "execution.slurm.partition"
    assert stand_in.given == []  # no allocation asked for, none to give back
