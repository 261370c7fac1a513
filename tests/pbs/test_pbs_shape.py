"""A trial's shape on PBS (execution.gpus/cpus/mem/tasks_per_eval): in qsub mode it becomes the job's select
chunk; allocation mode refuses it. Runs the real CLI against the stand-in PBS server (no PBS server can be
installed here; see pbs_helpers.py): the checks are on the qsub command lines the driver gave it."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pbs_helpers import LAUNCHERS, Standin, allocation_env, cli, ended, journal, pbs_config

from hpc_hpo.backends.base import LaunchSpec
from hpc_hpo.backends.pbs import select_chunk
from hpc_hpo.config.specs import PbsSpec

QUICK = {"x": {"type": "uniform", "low": 0.0, "high": 1.0}, "epochs": 2}


def selects_by_trial(standin: Standin) -> dict[str, list[str]]:
    """Each trial's `-l select=` values, found by the trial directory its job writes pbs.out to."""
    found: dict[str, list[str]] = {}
    for argv in standin.commands("qsub"):
        trial = Path(argv[argv.index("-o") + 1]).parent.name
        found.setdefault(trial, []).extend(argv[i + 1][len("select="):] for i, a in enumerate(argv)
                                           if a == "-l" and argv[i + 1].startswith("select="))
    return found


def run(tmp_path: Path, standin: Standin, execution: dict[str, Any], pbs: dict[str, Any] | None = None,
        **overrides: Any) -> Any:
    path = pbs_config(tmp_path, pbs, execution=execution, **overrides)
    return cli("run", str(path), cwd=tmp_path, env=standin.env(LAUNCHERS))


def test_the_shape_becomes_the_select_chunk_merged_with_select(tmp_path: Path, standin: Standin) -> None:
    result = run(tmp_path, standin, {"gpus_per_eval": 1, "cpus_per_eval": 4, "mem_per_eval": "16G"},
                 {"select": "scratch=10gb"}, params=QUICK, budget={"max_trials": 3})
    assert result.returncode == 0, result.stderr
    selects = selects_by_trial(standin)
    assert len(selects) == 3
    assert all(chunks == ["1:scratch=10gb:ncpus=4:ngpus=1:mem=16384mb"] for chunks in selects.values()), selects
    # The jobs ran: every trial the scheduler did not stop (qdel) exited 0.
    stopped = {e["trial_id"] for e in journal(tmp_path) if e["type"] == "report" and e["decision"] == "stop"}
    assert all(e["exit_code"] == 0 for t, e in ended(tmp_path).items() if t not in stopped)
    assert len(ended(tmp_path)) == 3


def test_a_gpu_count_from_a_parameter_is_each_jobs_own(tmp_path: Path, standin: Standin) -> None:
    params = {**QUICK, "g": {"type": "choice", "values": [1, 2, 4], "flag": None}}
    result = run(tmp_path, standin, {"gpus_per_eval": {"param": "g"}}, params=params, budget={"max_trials": 6})
    assert result.returncode == 0, result.stderr
    selects = selects_by_trial(standin)
    asked = set()
    for trial, chunks in selects.items():
        g = json.loads((tmp_path / "exp" / "trials" / trial / "config.json").read_text())["g"]
        assert chunks == [f"1:ngpus={g}"], (trial, g, chunks)
        asked.add(g)
    assert len(asked) > 1, "all trials drew the same g: nothing was tested"


def test_tasks_become_mpiprocs_and_the_job_starts_that_many_ranks(tmp_path: Path, standin: Standin) -> None:
    result = run(tmp_path, standin, {"tasks_per_eval": 2, "cpus_per_eval": 2}, params=QUICK,
                 budget={"max_trials": 2})
    assert result.returncode == 0, result.stderr
    assert all(chunks == ["1:ncpus=2:mpiprocs=2"] for chunks in selects_by_trial(standin).values())
    # The job script runs the program under mpiexec -n 2 (the stand-in launcher records its options).
    launches = [json.loads(p.read_text()) for p in (tmp_path / "exp" / "trials").glob("*/launch.*.json")]
    assert launches and all(r["launcher"] == "mpiexec" and r["options"] == {"-n": "2"} for r in launches), launches


def test_a_resource_in_both_select_and_the_shape_is_one_clear_error(tmp_path: Path, standin: Standin) -> None:
    result = run(tmp_path, standin, {"cpus_per_eval": 4}, {"select": "ncpus=8:scratch=1gb"}, params=QUICK)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "execution.pbs.select" in lines[0] and "ncpus=8" in lines[0] and "execution.cpus_per_eval" in lines[0]
    assert "drop ncpus from select" in lines[0]
    assert standin.commands("qsub") == []


def test_allocation_mode_refuses_sub_host_trials(tmp_path: Path, standin: Standin) -> None:
    path = pbs_config(tmp_path, {"mode": "allocation"}, execution={"gpus_per_eval": 1}, params=QUICK)
    result = cli("run", str(path), cwd=tmp_path, env={**standin.env(), **allocation_env(tmp_path)})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "execution.gpus_per_eval" in lines[0] and "execution.pbs.mode: qsub" in lines[0]


def test_whole_hosts_and_a_share_of_one_are_not_mixed(tmp_path: Path, standin: Standin) -> None:
    result = run(tmp_path, standin, {"gpus_per_eval": 1}, {"nodes_per_eval": 2}, params=QUICK)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "execution.pbs.nodes_per_eval" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_select_chunk_without_a_shape_is_unchanged() -> None:
    spec = LaunchSpec(trial_id="0000", argv=("true",), cwd=Path("."), trial_dir=Path("."), nodes=3)
    assert select_chunk(PbsSpec(), spec) == "3"
    assert select_chunk(PbsSpec(select="ncpus=8:ngpus=1"), spec) == "3:ncpus=8:ngpus=1"
    shaped = LaunchSpec(trial_id="0000", argv=("true",), cwd=Path("."), trial_dir=Path("."), gpus=0, mem_mb=500)
    assert select_chunk(PbsSpec(), shaped) == "1:ngpus=0:mem=500mb"
