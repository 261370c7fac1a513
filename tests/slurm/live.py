"""Helpers of the live Slurm tests: they submit, run and cancel real jobs on the cluster .ci/cluster/cluster.sh brings up.

Without a cluster they are skipped with the reason, except under CI=true, where a cluster that is
not up fails the run: CI must never pass without having exercised Slurm.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest


def _integration_helpers() -> Any:
    """The local tests' config helpers, loaded under their own name (both directories have a conftest)."""
    path = Path(__file__).resolve().parents[1] / "integration" / "conftest.py"
    spec = importlib.util.spec_from_file_location("integration_helpers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_helpers = _integration_helpers()
PROGRAMS, REPO = _helpers.PROGRAMS, _helpers.REPO
synthetic_config, write_config = _helpers.synthetic_config, _helpers.write_config
kill_restart_cycles, check_nothing_lost_or_doubled = _helpers.kill_restart_cycles, _helpers.check_nothing_lost_or_doubled
read_export = _helpers.read_export

NODES = 4
# The job or step name of a trial's run: <name>-<experiment id>-<trial>-<run> (hpo-<id>-<trial>-<run> before).
RUN_TAG = re.compile(r"-[0-9a-f]{8}-\d+-\d+$")


def cluster_problem() -> str | None:
    """Why the cluster cannot run the tests, or None when sinfo shows its nodes up."""
    if shutil.which("sinfo") is None:
        return "Slurm's commands are not installed (as root: bash .ci/cluster/cluster.sh up)"
    try:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "sinfo timed out: slurmctld is not answering"
    if out.returncode != 0:
        return f"sinfo failed: {out.stderr.strip()} (as root: bash .ci/cluster/cluster.sh up)"
    usable = [line for line in out.stdout.splitlines() if line.split()[-1] in ("idle", "mix", "alloc", "comp")]
    if len(usable) < NODES:
        return f"the cluster has {len(usable)} usable nodes, the tests need {NODES}: {out.stdout.strip()}"
    return _jobs_from_before()


def _jobs_from_before(wait_s: float = 120) -> str | None:
    """Jobs queued before the session hold nodes the tests' allocations wait for: each test would time
    out on its own. They get two minutes to end, then the session says once what holds the cluster."""
    deadline = time.monotonic() + wait_s
    while True:
        out = subprocess.run(["squeue", "-h", "-o", "%i %j %T %M"], capture_output=True, text=True, timeout=30)
        if out.returncode == 0 and not out.stdout.strip():
            return None
        if time.monotonic() > deadline:
            return (f"jobs from before the tests still hold the cluster after {wait_s:.0f} s "
                    f"(scancel them, or restart it: cluster.sh down; cluster.sh up):\n{out.stdout.strip()}")
        time.sleep(2)


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    problem = cluster_problem()
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI needs the live Slurm cluster and it is not up: {problem}")
    pytest.skip(f"no live Slurm cluster: {problem}")


def driver_env() -> dict[str, str]:
    """The test's environment minus any enclosing allocation, with hpc_hpo importable from this checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") or k == "SLURM_CONF"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return env


def hpc_hpo_command(tmp_path: Path) -> Path:
    """An `hpc-hpo` for batch scripts that runs this checkout with this Python."""
    script = tmp_path / "hpc-hpo"
    script.write_text(f'#!/bin/sh\nexec {sys.executable} -m hpc_hpo.cli "$@"\n')
    script.chmod(0o755)
    return script


def slurm_config(tmp_path: Path, slurm: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    config = synthetic_config(tmp_path, **overrides)
    config["execution"] = {**config["execution"], "backend": "slurm", "slurm": slurm, "poll_interval": 0.1,
                           "stop_grace_period": 5, **overrides.get("execution", {})}
    return config


def run(argv: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=driver_env(), capture_output=True, text=True, timeout=timeout)


def journal(experiment: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (experiment / "journal.jsonl").read_text().splitlines()]


def sacct(job_ids: list[str], steps: bool = False, names: set[str] | None = None) -> dict[str, dict[str, str]]:
    """Job (or step) name -> {id, state, end} from accounting, waiting briefly for slurmdbd to catch up.

    Keyed by name: after a controller restart job ids start again, and sacct lists old jobs of the
    same id too.
    """
    argv = ["sacct", "-n", "-P", f"--jobs={','.join(job_ids)}", "-o", "JobID,JobName,State,End"]
    if not steps:
        argv.insert(1, "-X")
    deadline = time.monotonic() + 30
    while True:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout
        rows = {}
        for line in out.splitlines():
            job_id, name, state, end = line.split("|")
            if RUN_TAG.search(name):
                rows[name] = {"id": job_id, "state": state.split()[0], "end": end}
        settled = all(r["state"] not in ("RUNNING", "PENDING", "COMPLETING") for r in rows.values())
        complete = set(rows) >= names if names else bool(rows)  # slurmdbd records jobs a little late
        if (complete and settled) or time.monotonic() > deadline:
            return rows
        time.sleep(0.5)


__all__ = ["PROGRAMS", "REPO", "write_config", "slurm_config", "run", "journal", "sacct", "hpc_hpo_command",
           "kill_restart_cycles", "check_nothing_lost_or_doubled", "read_export", "driver_env"]
