"""A PBS job array of drivers on one experiment (README "Elastic experiments"): every subjob of
`qsub -J 1-3 slurm_templates/driver.pbs` joins it, runs trials on its own hosts, and the chain of
driver.pbs carries an unfinished experiment on only when no other driver runs it.

No PBS server can be installed here: standin/ runs each subjob as a local process with PBS_JOBID
`<seq>[<i>].standin`, PBS_ARRAY_INDEX and a PBS_NODEFILE of made-up hosts, and launchers/ holds the
mpiexec that starts the trials on this machine, recording the hosts it was given.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any


from pbs_helpers import (DRIVER_PBS, HERE, LAUNCHERS, Standin, check_shared_journal, cli, hpc_hpo_command, journal,
                         oracle_disagreements, pbs_config)

SUBJOBS = 3
HOSTS_PER_JOB = 2


def experiment(tmp_path: Path, sleep: float) -> Path:
    """Stopping ASHA over 12 trials, run inside each driver's PBS job (one host a trial)."""
    return pbs_config(tmp_path, {"mode": "allocation", "nodes_per_eval": 1},
                      params={"x": {"type": "uniform", "low": 0.0, "high": 1.0}, "epochs": 9, "sleep": sleep},
                      scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 3},
                      budget={"max_trials": 12}, execution={"num_parallel_evals": 0})


def submit_array(tmp_path: Path, standin: Standin, config: Path, *options: str, chain: int = 1,
                 subjobs: int = SUBJOBS, hosts: int = HOSTS_PER_JOB) -> str:
    """qsub -J 1-<subjobs> driver.pbs as a user would, each subjob's output in driver.<index>.log."""
    standin.configure(nodefile_hosts=hosts)
    variables = f"HPC_HPO_CONFIG={config},HPC_HPO={hpc_hpo_command(tmp_path)},HPC_HPO_CHAIN={chain}," \
                f"HPC_HPO_CHAIN_ARGS=-o {tmp_path / 'chained.log'}"
    result = subprocess.run(["qsub", "-J", f"1-{subjobs}", "-o", str(tmp_path / "driver.^array_index^.log"),
                             *options, "-v", variables, str(DRIVER_PBS)],
                            cwd=tmp_path, env={**os.environ, **standin.env(LAUNCHERS)}, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    array_id = result.stdout.strip()
    assert array_id.endswith("[].standin"), array_id
    return array_id


def wait_until_all_ended(standin: Standin, timeout: float = 240) -> list[dict[str, Any]]:
    """Every job the server knows (subjobs and whatever the chain submitted) finished; their records."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = [job for job in standin.jobs() if job.get("indices") is None]  # arrays hold no process
        if jobs and all(job["job_state"] == "F" for job in jobs):
            return jobs
        time.sleep(0.5)
    raise AssertionError(f"jobs still running after {timeout}s: {[(j['id'], j['job_state']) for j in jobs]}")


def subjob_output(tmp_path: Path, index: int) -> str:
    return (tmp_path / f"driver.{index}.log").read_text()


def resubmissions(standin: Standin) -> list[list[str]]:
    """The qsub calls made by driver.pbs's chain (the test's own qsub is the one with -J)."""
    return [argv for argv in standin.commands("qsub") if "-J" not in argv]


def member_jobs(tmp_path: Path) -> dict[str, str]:
    """Each driver's PBS job, from its member file (drivers/<id>.json)."""
    members = [json.loads(p.read_text()) for p in (tmp_path / "exp" / "drivers").glob("*.json")]
    return {m["driver"]: m["pbs_job_id"] for m in members}


def test_every_subjob_joins_and_the_journal_stays_consistent(tmp_path: Path, standin: Standin) -> None:
    config = experiment(tmp_path, sleep=0.15)
    array_id = submit_array(tmp_path, standin, config)
    jobs = wait_until_all_ended(standin)
    sequence = array_id.split("[")[0]
    assert sorted(j["id"] for j in jobs) == [f"{sequence}[{i}].standin" for i in range(1, SUBJOBS + 1)], \
        "the chain resubmitted although the experiment ended"
    assert all(j["Exit_status"] == 0 for j in jobs), [(j["id"], j["Exit_status"]) for j in jobs]

    events = check_shared_journal(config, ("completed", "stopped"))
    assert sum(e["type"] == "trial_created" for e in events) == 12
    started_by = {e["trial_id"]: e["driver"] for e in events if e["type"] == "trial_started"}
    assert len(set(started_by.values())) >= 2, f"trials ran under one driver only: {set(started_by.values())}"
    for index in range(1, SUBJOBS + 1):
        output = subjob_output(tmp_path, index)
        assert "joined as driver" in output, output
        # Either its driver left while others ran, or it saw the experiment ended: no resubmission.
        assert "chain stops here" in output, output
    assert not resubmissions(standin)

    # Each trial ran on hosts of the PBS job of the driver that started it, never on another job's.
    jobs_of = member_jobs(tmp_path)
    assert set(jobs_of.values()) <= {j["id"] for j in jobs}, jobs_of
    for trial_dir in (tmp_path / "exp" / "trials").iterdir():
        job_id = jobs_of[started_by[trial_dir.name]]
        nodefile = standin.dir / f"{job_id.split('.')[0]}.nodes"
        job_hosts = set(nodefile.read_text().split())
        assert len(job_hosts) == HOSTS_PER_JOB
        for record in (json.loads(p.read_text()) for p in trial_dir.glob("launch.*.json")):
            assert set(record["hosts"]) <= job_hosts, (trial_dir.name, record["hosts"], job_id)


def test_only_the_last_subjob_out_chains_an_unfinished_experiment(tmp_path: Path, standin: Standin) -> None:
    # A walltime too short for the experiment: every driver pauses its trials before the end of its
    # job and exits 0, leaving the experiment unfinished. A subjob that leaves while another driver
    # still runs must not resubmit; one that finds no driver left does, waiting on the array (PBS
    # refuses a dependency on a subjob), and the chained job joins and finishes the experiment.
    config = experiment(tmp_path, sleep=1.0)
    array_id = submit_array(tmp_path, standin, config, "-l", "walltime=00:00:08")
    wait_until_all_ended(standin, timeout=300)

    events = journal(tmp_path)
    sequence = array_id.split("[")[0]
    array_drivers = {d for d, job in member_jobs(tmp_path).items() if job.startswith(f"{sequence}[")}
    assert len(array_drivers) == SUBJOBS, member_jobs(tmp_path)
    for index in range(1, SUBJOBS + 1):
        assert "joined as driver" in subjob_output(tmp_path, index), subjob_output(tmp_path, index)
    chained = resubmissions(standin)
    assert chained, "no subjob carried the unfinished experiment on"
    assert len(chained) <= SUBJOBS
    # A driver departs with driver_left while others run, the last one with an experiment end that is
    # not final (its allocation ends). Every resubmission came after all array drivers had departed:
    # no subjob resubmitted while another driver still ran the experiment.
    first_resubmission = min(t for argv, t in standin_log(standin) if argv[0] == "qsub" and "-J" not in argv)
    departures = [e for e in events if e["type"] == "driver_left" and e["driver"] in array_drivers
                  or e["type"] == "experiment_ended" and e.get("final") is False]
    assert len([e for e in departures if e["t"] <= first_resubmission]) >= SUBJOBS, departures
    for argv in chained:
        assert argv[argv.index("-W") + 1] == f"depend=afterany:{array_id}", argv
        variables = argv[argv.index("-v") + 1]
        assert "HPC_HPO_JOIN=1" in variables and "HPC_HPO_CHAIN=0" in variables, argv
    # The chained job joined (after the whole array), resumed the paused trials and ended the
    # experiment for good; with HPC_HPO_CHAIN=0 it would not have gone on anyway, and had nothing to.
    chained_output = (tmp_path / "chained.log").read_text()
    assert "joined as driver" in chained_output and "the experiment has ended" in chained_output, chained_output
    assert len(resubmissions(standin)) == len(chained)
    check_chained_journal(config, events)


def test_a_subjob_that_leaves_while_another_driver_runs_does_not_chain(tmp_path: Path, standin: Standin) -> None:
    # Two subjobs, one gated trial each (FIFO, two trials: a driver whose trial ended has nothing left
    # to start and leaves). The test decides who leaves first; `status --has-drivers` follows.
    config = pbs_config(tmp_path, {"mode": "allocation", "nodes_per_eval": 1},
                        command=[sys.executable, str(HERE / "gated_trial.py")], params={"x": 0.5},
                        resource={"name": "epoch", "max": 2}, scheduler={"type": "fifo"},
                        budget={"max_trials": 2}, execution={"num_parallel_evals": 0})
    array_id = submit_array(tmp_path, standin, config, subjobs=2, hosts=1)
    trials = tmp_path / "exp" / "trials"
    wait_for(lambda: len(list(trials.glob("*/metrics.jsonl"))) == 2, "both gated trials to report")
    assert has_drivers(config) == 0

    started_by = {e["trial_id"]: e["driver"] for e in journal(tmp_path) if e["type"] == "trial_started"}
    index_of = {d: int(job.split("[")[1].split("]")[0]) for d, job in member_jobs(tmp_path).items()}
    assert sorted(index_of[started_by[t]] for t in ("0000", "0001")) == [1, 2], (started_by, index_of)
    first, second = sorted(("0000", "0001"), key=lambda t: index_of[started_by[t]])
    (trials / first / "go").write_text("0")
    first_job = f"{array_id.split('[')[0]}[1].standin"
    wait_for(lambda: job_state(standin, first_job) == "F", f"{first_job} to end")
    output = subjob_output(tmp_path, 1)
    assert "other drivers run the experiment" in output and "submitted job" not in output, output
    assert not resubmissions(standin)
    assert has_drivers(config) == 0, "the second driver still runs"

    (trials / second / "go").write_text("0")
    wait_until_all_ended(standin)
    assert "the experiment has ended" in subjob_output(tmp_path, 2), subjob_output(tmp_path, 2)
    assert not resubmissions(standin)
    assert has_drivers(config) == 1


def has_drivers(config: Path) -> int:
    return cli("status", str(config), "--has-drivers", cwd=config.parent, env={}).returncode


def job_state(standin: Standin, job_id: str) -> str | None:
    return next((j["job_state"] for j in standin.jobs() if j["id"] == job_id), None)


def wait_for(condition: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def standin_log(standin: Standin) -> list[tuple[list[str], float]]:
    lines = (standin.dir / "commands.jsonl").read_text().splitlines()
    return [(entry["argv"], entry["time"]) for entry in map(json.loads, lines)]


def check_chained_journal(config: Path, events: list[dict[str, Any]]) -> None:
    """check_shared_journal's checks for an experiment that several allocations ended before its
    end for good: one trial_created and one trial_ended a trial, ASHA's decisions as a replay takes
    them, one final end, every trial completed or stopped."""
    created = Counter(e["trial_id"] for e in events if e["type"] == "trial_created")
    assert created and max(created.values()) == 1, created.most_common(3)
    ended = Counter(e["trial_id"] for e in events if e["type"] == "trial_ended")
    assert set(ended) == set(created) and max(ended.values()) == 1, ended.most_common(3)
    assert oracle_disagreements(config, events) == []
    assert sum(e["type"] == "experiment_ended" and e.get("final", True) for e in events) == 1
    result = cli("status", str(config), cwd=config.parent, env={})
    states = {line.split()[0]: line.split()[1] for line in result.stdout.splitlines()
              if line[:4].isdigit() and len(line.split()) > 1}
    assert set(states) == set(created) and set(states.values()) <= {"completed", "stopped"}, result.stdout
