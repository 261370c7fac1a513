"""The driver against a stand-in PBS server: real `hpc-hpo run` experiments, jobs run as local processes.

No PBS server can be installed on the machines these tests run on. standin/ holds small, faithful
stand-ins for qsub, qstat, qdel and qselect that print what the OpenPBS documentation shows; these
tests check what the driver does with that output: losers qdel'd, ends read from job history or
from the exit marker, lost and requeued jobs, a qsub that fails, hostile hyperparameter values.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from pbs_helpers import HERE, REPO, Standin, cli, ended, journal, pbs_config

SLOW = {"x": {"type": "uniform", "low": 0.0, "high": 1.0}, "epochs": 9, "sleep": 0.25}


def handles(tmp_path: Path) -> dict[str, list[str]]:
    """The job ids each trial's runs got, in order."""
    found: dict[str, list[str]] = {}
    for event in journal(tmp_path):
        if event["type"] == "trial_started":
            found.setdefault(event["trial_id"], []).append(event["handle"])
    return found


@pytest.mark.parametrize("qstat_format", ["json", "text"])
def test_asha_losers_are_deleted_with_qdel(tmp_path: Path, standin: Standin, qstat_format: str) -> None:
    path = pbs_config(tmp_path, {"qstat_format": qstat_format}, params=SLOW, budget={"max_trials": 8})
    result = cli("run", str(path), cwd=tmp_path, env=standin.env())
    assert result.returncode == 0, result.stderr
    stopped = {e["trial_id"] for e in journal(tmp_path) if e["type"] == "report" and e["decision"] == "stop"}
    assert stopped, "the run stopped no trial: nothing was tested"
    deleted = {argv[-1] for argv in standin.commands("qdel")}
    jobs = {job["id"]: job for job in standin.jobs()}
    for trial in stopped:
        job_id = handles(tmp_path)[trial][-1]
        assert job_id in deleted
        # qdel sent SIGTERM: PBS Pro reports 256 + 15, and the trial never got near its 9 epochs.
        assert jobs[job_id]["Exit_status"] == 271
        lines = (tmp_path / "exp" / "trials" / trial / "metrics.jsonl").read_text().splitlines()
        assert len(lines) < 9
    completed = [t for t, e in ended(tmp_path).items() if e["state"] == "finished"]
    assert completed and all(ended(tmp_path)[t]["exit_code"] == 0 for t in completed)
    # One batched qstat per sweep: every qstat call that asked for several jobs asked in one argv.
    assert any(len([a for a in argv if a.endswith(".standin")]) > 1 for argv in standin.commands("qstat"))


def failing_params() -> dict:
    return {"x": {"type": "uniform", "low": 0.0, "high": 1.0}, "epochs": 3, "fail_above": 0.5}


def check_exit_codes(tmp_path: Path) -> None:
    """Trials whose x is above 0.5 exit 1 after epoch 1; the others finish with 0."""
    configs = {e["trial_id"]: e["config"] for e in journal(tmp_path) if e["type"] == "trial_created"}
    results = ended(tmp_path)
    assert set(results) == set(configs)
    expected = {t: (1 if c["x"] > 0.5 else 0) for t, c in configs.items()}
    assert {t: e["exit_code"] for t, e in results.items()} == expected
    assert set(expected.values()) == {0, 1}, "the seed gave only one kind of trial: nothing was told apart"


def test_without_job_history_the_exit_marker_tells_the_end(tmp_path: Path, standin: Standin) -> None:
    standin.configure(history=False, name_max=15)
    path = pbs_config(tmp_path, {"job_name_max": 15}, params=failing_params(),
                      scheduler={"type": "fifo"}, budget={"max_trials": 6})
    result = cli("run", str(path), cwd=tmp_path, env=standin.env())
    assert result.returncode == 0, result.stderr
    check_exit_codes(tmp_path)
    # The server forgot every finished job: qstat -x did not know them, only the markers did.
    assert standin.jobs() == []
    assert all(len(job_name) <= 15 for argv in standin.commands("qsub")
               for job_name in [argv[argv.index("-N") + 1]])


def test_with_job_history_qstat_x_tells_the_end(tmp_path: Path, standin: Standin) -> None:
    """A template that writes no exit marker: every exit status comes from `qstat -x`."""
    template = (REPO / "slurm_templates" / "trial.pbs").read_text()
    no_marker = "\n".join(line for line in template.splitlines() if "exit_file" not in line)
    (tmp_path / "nomarker.pbs").write_text(no_marker)
    path = pbs_config(tmp_path, {"template": str(tmp_path / "nomarker.pbs")}, params=failing_params(),
                      scheduler={"type": "fifo"}, budget={"max_trials": 6})
    result = cli("run", str(path), cwd=tmp_path, env=standin.env())
    assert result.returncode == 0, result.stderr
    check_exit_codes(tmp_path)
    assert not list((tmp_path / "exp" / "trials").glob("*/*.exit"))
    assert all("-x" in argv for argv in standin.commands("qstat") if "-f" in argv and len(argv) > 3)


def test_a_vanished_job_is_not_a_success(tmp_path: Path, standin: Standin) -> None:
    standin.configure(vanish={"-0000-1": 0.3})
    path = pbs_config(tmp_path, {"lost_after": 1}, params=SLOW, scheduler={"type": "fifo"},
                      budget={"max_trials": 2})
    result = cli("run", str(path), cwd=tmp_path, env=standin.env())
    assert result.returncode == 0, result.stderr
    lost = ended(tmp_path)["0000"]
    assert lost["state"] == "failed" and lost["exit_code"] is None
    assert "vanished" in lost["reason"]
    assert ended(tmp_path)["0001"]["state"] == "finished"


def test_a_requeued_job_is_resubmitted_from_its_checkpoint(tmp_path: Path, standin: Standin) -> None:
    standin.configure(requeue={"-0000-1": 1.0}, requeue_hold=30)
    path = pbs_config(tmp_path, params=SLOW, scheduler={"type": "fifo"}, budget={"max_trials": 1},
                      execution={"num_retries": 1})
    result = cli("run", str(path), cwd=tmp_path, env=standin.env())
    assert result.returncode == 0, result.stderr
    retries = [e for e in journal(tmp_path) if e["type"] == "trial_retry"]
    assert len(retries) == 1 and "requeued by PBS" in retries[0]["reason"]
    first, second = handles(tmp_path)["0000"]
    # The requeued job was deleted, so PBS does not run it again beside its resubmission.
    assert ["qdel", first] in standin.commands("qdel")
    assert ended(tmp_path)["0000"]["state"] == "finished"
    resumed = [e for e in journal(tmp_path) if e["type"] == "report" and e["trial_id"] == "0000"]
    assert [e["resource"] for e in resumed] == list(range(1, 10))
    script = (tmp_path / "exp" / "trials" / "0000").glob("*-0000-2.pbs")
    assert "--resume_from" in next(script).read_text()


def test_a_requeued_job_beyond_the_requeue_budget_fails(tmp_path: Path, standin: Standin) -> None:
    """A requeue is the cluster's doing: it uses max_requeues (here none), not num_retries."""
    standin.configure(requeue={"-0000-1": 0.8}, requeue_hold=30)
    path = pbs_config(tmp_path, params=SLOW, scheduler={"type": "fifo"}, budget={"max_trials": 1},
                      execution={"max_requeues": 0, "num_retries": 2})
    result = cli("run", str(path), cwd=tmp_path, env=standin.env())
    assert result.returncode == 0, result.stderr
    assert ended(tmp_path)["0000"]["state"] == "failed"
    assert "requeued by PBS" in ended(tmp_path)["0000"]["reason"]
    assert not [e for e in journal(tmp_path) if e["type"] == "trial_retry"]  # num_retries left untouched


def test_a_failing_qsub_gives_one_clear_error(tmp_path: Path, standin: Standin) -> None:
    standin.configure(qsub_fail={"message": "Unknown queue", "code": 170})
    path = pbs_config(tmp_path, {"queue": "nosuchq"})
    result = cli("run", str(path), cwd=tmp_path, env=standin.env())
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "cannot submit trial 0000" in result.stderr and "Unknown queue" in result.stderr
    assert "exited with 170" in result.stderr
    # Not a transient failure: tried once, then looked for by name, never resubmitted blindly.
    assert len(standin.commands("qsub")) == 1


def test_a_qdel_that_does_not_take_is_forced(tmp_path: Path, standin: Standin) -> None:
    standin.configure(stuck_delete=True)
    path = pbs_config(tmp_path, params=SLOW, budget={"max_trials": 8},
                      execution={"stop_grace_period": 0.5})
    result = cli("run", str(path), cwd=tmp_path, env=standin.env())
    assert result.returncode == 0, result.stderr
    plain = [argv[-1] for argv in standin.commands("qdel") if "force" not in argv]
    forced = [argv[-1] for argv in standin.commands("qdel") if argv[1:3] == ["-W", "force"]]
    assert plain and forced and set(forced) <= set(plain)


HOSTILE = ["'; touch pwned1 #", "$(touch pwned2)", "`touch pwned3`", "a\"b $HOME\\"]


def test_hostile_values_never_run_as_shell(tmp_path: Path, standin: Standin) -> None:
    path = pbs_config(tmp_path, command=[sys.executable, str(HERE / "args_trial.py")],
                      params={"s": {"type": "choice", "values": HOSTILE}}, resource={"name": "epoch", "max": 1},
                      scheduler={"type": "fifo"}, searcher={"type": "grid", "seed": 0},
                      budget={"max_trials": len(HOSTILE)})
    result = cli("run", str(path), cwd=tmp_path, env=standin.env())
    assert result.returncode == 0, result.stderr
    received = sorted(json.loads(p.read_text())[1] for p in (tmp_path / "exp" / "trials").glob("*/argv.json"))
    assert received == sorted(HOSTILE)
    for where in (tmp_path, Path.home(), REPO):
        assert not list(where.glob("pwned*"))


def test_a_qsub_mode_driver_told_to_go_leaves_its_jobs_to_the_next(tmp_path: Path, standin: Standin) -> None:
    """Each trial job holds its own allocation: SIGTERM makes the driver leave them running (not cancel
    or interrupt them); the next driver adopts them and no trial is started twice."""
    import signal
    import subprocess
    import time

    from pbs_helpers import driver_env
    path = pbs_config(tmp_path, params={**SLOW, "sleep": 0.5}, scheduler={"type": "fifo"}, budget={"max_trials": 3})
    driver = subprocess.Popen([sys.executable, "-m", "hpc_hpo.cli", "run", str(path)], cwd=tmp_path,
                              env=driver_env(standin.env()), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (tmp_path / "exp" / "journal.jsonl").exists() and \
                sum(1 for e in journal(tmp_path) if e["type"] == "report") >= 3:
            break
        time.sleep(0.1)
    driver.send_signal(signal.SIGTERM)
    out, err = driver.communicate(timeout=60)
    assert driver.returncode == 143, out + err
    assert "takes back the trial jobs still running" in err
    assert not standin.commands("qdel"), "the driver cancelled jobs that hold their own allocations"
    assert not [e for e in journal(tmp_path) if e["type"] in ("trial_interrupted", "trial_ended")]
    again = cli("run", str(path), cwd=tmp_path, env=standin.env())
    assert again.returncode == 0, again.stderr
    assert "adopted" in again.stdout
    states = {e["trial_id"]: e["state"] for e in journal(tmp_path) if e["type"] == "trial_ended"}
    assert len(states) == 3 and set(states.values()) == {"finished"}, states
    for trial_id in states:
        starts = (tmp_path / "exp" / "trials" / trial_id / "starts").read_text().splitlines()
        assert len(starts) == 1, (trial_id, starts)
