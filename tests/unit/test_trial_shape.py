"""Trial shapes: the config keys (*_per_eval, as numbers or hyperparameters), the pure node book that
packs shares of nodes, the allocation reader's parser, and the sbatch options of a shape."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from hpc_hpo.backends.base import LaunchSpec
from hpc_hpo.backends.slurm import job_shape
from hpc_hpo.backends.slurm_output import count_ids, parse_job_resources
from hpc_hpo.config import validate_config
from hpc_hpo.errors import ConfigError
from hpc_hpo.packing import Capacity, NodeBook, Share, share_for

BASE: dict[str, Any] = {
    "name": "t", "command": "echo", "metric": {"name": "loss", "mode": "min"}, "resource": {"name": "epoch", "max": 3},
    "budget": {"max_trials": 3},
    "params": {"x": {"type": "uniform", "low": 0, "high": 1}, "gpus": {"type": "choice", "values": [2, 1, 4]}}}


def config_with(execution: dict[str, Any]) -> Any:
    config = copy.deepcopy(BASE)
    config["execution"] = execution
    return validate_config(config)


def test_fixed_amounts_and_memory_units() -> None:
    shape = config_with({"gpus_per_eval": 1, "cpus_per_eval": 4, "mem_per_eval": "16G", "tasks_per_eval": 2}).execution.shape
    assert (shape.gpus.value, shape.cpus.value, shape.mem_mb.value, shape.tasks.value) == (1, 4, 16384, 2)
    assert shape.sub_node
    assert config_with({"mem_per_eval": 500}).execution.shape.mem_mb.value == 500
    assert config_with({"mem_per_eval": "2048K"}).execution.shape.mem_mb.value == 2
    assert not config_with({}).execution.shape.sub_node


def test_an_amount_from_a_hyperparameter_knows_its_smallest_value() -> None:
    shape = config_with({"gpus_per_eval": {"param": "gpus"}}).execution.shape
    assert shape.gpus.param == "gpus" and shape.gpus.smallest == 1
    assert shape.gpus.of({"gpus": 4, "x": 0.5}) == 4


@pytest.mark.parametrize("execution, words", [
    ({"gpus_per_eval": {"param": "x"}}, ["execution.gpus_per_eval", "positive whole numbers"]),
    ({"gpus_per_eval": {"param": "nope"}}, ["names no parameter", "x, gpus"]),
    ({"gpus_per_eval": {"parameter": "gpus"}}, ["{param: <name of a parameter>}"]),
    ({"cpus_per_eval": 0}, ["execution.cpus_per_eval", "greater than 0"]),
    ({"gpus_per_eval": -1}, ["execution.gpus_per_eval", "0 or more"]),
    ({"mem_per_eval": "16Q"}, ["execution.mem_per_eval", "16G"]),
    ({"mem_per_eval": True}, ["execution.mem_per_eval"]),
    ({"slurm": {"nodes_per_eval": 2}, "gpus_per_eval": 1}, ["nodes_per_eval", "share of one node"]),
    ({"slurm": {"nodes_per_eval": {"param": "x"}}}, ["execution.slurm.nodes_per_eval", "positive whole numbers"]),
    ({"gpus_per_eval": 1, "slurm": {"launch_args": ["--cpus-per-task=4"]}}, ["launch_args", "--cpus-per-task=4"]),
    ({"cpus_per_eval": 1, "slurm": {"launch_args": "-c4"}}, ["launch_args", "-c4"]),
])
def test_bad_shapes_are_one_clear_error(execution: dict[str, Any], words: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        config_with(execution)
    assert all(word in str(caught.value) for word in words), str(caught.value)


def test_a_conditional_shape_parameter_is_refused() -> None:
    config = copy.deepcopy(BASE)
    config["params"]["big"] = {"type": "choice", "values": [True, False]}
    config["params"]["gpus"]["condition"] = {"parent": "big", "equals": True}
    config["execution"] = {"gpus_per_eval": {"param": "gpus"}}
    with pytest.raises(ConfigError) as caught:
        validate_config(config)
    assert "conditional" in str(caught.value)


def test_nodes_per_eval_from_a_hyperparameter() -> None:
    config = copy.deepcopy(BASE)
    config["execution"] = {"slurm": {"nodes_per_eval": {"param": "gpus"}}}
    assert validate_config(config).execution.slurm.nodes_param == "gpus"


# --------------------------------------------------------------------------- the book

NODE = Capacity(cpus=64, gpus=8, mem_mb=512_000)


def test_unasked_cpus_and_memory_follow_the_gpus() -> None:
    share = share_for(NODE, gpus=1, cpus=None, mem_mb=None, tasks=None)
    assert share == Share(cpus=8, gpus=1, mem_mb=64_000, tasks=1)
    assert share_for(Capacity(cpus=4), gpus=None, cpus=None, mem_mb=None, tasks=3) == Share(cpus=3, gpus=0, tasks=3)
    # CPUs are whole per task: 5 CPUs over 2 tasks become 3 each.
    assert share_for(Capacity(cpus=16), gpus=None, cpus=5, mem_mb=None, tasks=2).cpus == 6


def test_eight_one_gpu_trials_fill_an_eight_gpu_node_and_a_ninth_waits() -> None:
    book = NodeBook({"g1": NODE})
    share = share_for(NODE, 1, None, None, None)
    for _ in range(8):
        [node] = book.candidates(lambda capacity: share)[:1]
        book.take(node, share)
    assert book.candidates(lambda capacity: share) == []
    book.give_back("g1", share)
    assert book.candidates(lambda capacity: share) == ["g1"]


def test_best_fit_keeps_an_empty_node_for_a_larger_trial() -> None:
    book = NodeBook({"a": Capacity(4, 4), "b": Capacity(4, 4)})
    one = Share(cpus=1, gpus=1)
    book.take("a", one)
    # The next one-GPU trial goes to the fuller node, so b stays whole for a 4-GPU trial.
    assert book.candidates(lambda capacity: one)[0] == "a"
    assert book.candidates(lambda capacity: Share(cpus=4, gpus=4)) == ["b"]


def test_memory_is_booked_only_when_the_allocation_counts_it() -> None:
    counted = NodeBook({"a": Capacity(8, 0, 1000)})
    assert counted.candidates(lambda capacity: Share(cpus=1, mem_mb=1001)) == []
    uncounted = NodeBook({"a": Capacity(8, 0, None)})
    assert uncounted.candidates(lambda capacity: Share(cpus=1, mem_mb=1001)) == ["a"]


def test_how_many_fit_and_dropped_nodes() -> None:
    book = NodeBook({"a": Capacity(4, 4), "b": Capacity(4, 4), "c": Capacity(4, 2)})
    assert book.how_many_fit(lambda capacity: share_for(capacity, 2, None, None, None)) == 5
    book.drop(["a"])
    assert book.how_many_fit(lambda capacity: share_for(capacity, 1, None, None, None)) == 6


# --------------------------------------------------------------------------- Slurm's side


def test_the_per_node_lines_of_scontrol_show_job() -> None:
    text = """   JOB_GRES=gpu:8
     Nodes=n[1-2] CPU_IDs=0-3 Mem=0 GRES=gpu:4(IDX:0-3)
     Nodes=n3 CPU_IDs=0-1,4 Mem=2000 GRES=gpu:a100:2(IDX:0-1),shard:8(IDX:0-7)
     Nodes=n4 CPU_IDs=0-3 Mem=100 GRES=
"""
    groups = parse_job_resources(text)
    assert [(g.nodes, g.cpus, g.mem_mb, g.gpus) for g in groups] == [
        ("n[1-2]", 4, 0, 4), ("n3", 3, 2000, 2), ("n4", 4, 100, 0)]
    assert count_ids("0-3,8,10-11") == 7


def spec(**shape: Any) -> LaunchSpec:
    return LaunchSpec("0000", ("prog",), Path("/w"), Path("/w/t"), tag="t", **shape)


def test_sbatch_asks_for_whole_nodes_exclusively_or_for_the_share() -> None:
    assert job_shape(spec(nodes=2)) == ["--nodes=2", "--exclusive"]
    assert job_shape(spec(gpus=1, cpus=8, mem_mb=16384)) == [
        "--nodes=1", "--ntasks=1", "--cpus-per-task=8", "--gres=gpu:1", "--mem=16384M"]
    assert job_shape(spec(cpus=5, tasks=2)) == ["--nodes=1", "--ntasks=2", "--cpus-per-task=3"]


def test_launch_args_that_do_not_set_the_shape_stay_allowed_with_one() -> None:
    config = config_with({"gpus_per_eval": 1, "slurm": {"launch_args": ["--cpu-bind=cores", "--mpi=pmix"]}})
    assert config.execution.slurm.launch_args == ("--cpu-bind=cores", "--mpi=pmix")
