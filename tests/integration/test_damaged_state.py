"""Damaged data and hostile trials, end to end through the real CLI: malformed and repeated journal lines, an
emptied journal, trial files replaced by directories or symbolic links, a gigabyte-style burst of output, a
catastrophic metric_regex, an experiment_dir the user made, and best --json on a diverged trial."""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO, cli, read_export, read_journal, synthetic_config, write_config

CLI = [sys.executable, "-m", "hpc_hpo.cli"]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def small(tmp_path: Path, **overrides) -> Path:
    """Three trials of three epochs, one after another's start: a whole experiment in a few seconds."""
    base = dict(params={"x": {"type": "uniform", "low": 0.0, "high": 1.0}, "epochs": 3, "sleep": 0.01},
                resource={"name": "epoch", "max": 3}, scheduler={"type": "fifo"}, budget={"max_trials": 3},
                execution={"num_parallel_evals": 2})
    base.update(overrides)
    return write_config(tmp_path, synthetic_config(tmp_path, **base))


def program(tmp_path: Path, name: str, body: str) -> list[str]:
    """A trial program: its hyperparameters as flags, hpc_hpo's report() at hand."""
    path = tmp_path / name
    path.write_text("import os, sys, time\nfrom hpc_hpo import report\n"
                    "x = float(sys.argv[sys.argv.index('--x') + 1])\n"
                    "trial = os.environ['HPC_HPO_TRIAL_ID']\ndirectory = os.environ['HPC_HPO_TRIAL_DIR']\n" + body)
    return [sys.executable, str(path)]


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr


def raise_budget(tmp_path: Path, config_path: Path, max_trials: int) -> None:
    import yaml
    config = yaml.safe_load(config_path.read_text())
    config["budget"]["max_trials"] = max_trials
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))


# --------------------------------------------------------------------------- item 1: malformed journal lines

MALFORMED = ['{"type":"report"}',
             '{"v":1,"type":"report","t":1.5,"trial_id":"0077","resource":1,"value":0.1,"elapsed_s":1,'
             '"decision":"continue"}',
             '{"v":1,"type":"report","t":1.5,"trial_id":"0000","resource":7,"value":null,"elapsed_s":1,'
             '"decision":"continue"}',
             '[1, 2, 3]', '"report"', '{"v":1,"type":"trial_ended","t":"late","trial_id":"0001","state":5}',
             '{"v":1,"type":"trial_created","t":2.5,"trial_id":"0009","index":"nine","config":[]}',
             '{"v":1,"type":"allocation_end","t":3.5,"end":"soon"}']


def test_malformed_journal_lines_leave_status_export_best_and_run_working(tmp_path: Path) -> None:
    path = small(tmp_path)
    assert cli("run", str(path), cwd=tmp_path).returncode == 0
    rows = read_export(tmp_path)
    journal = tmp_path / "exp" / "journal.jsonl"
    lines = journal.read_text().splitlines()
    journal.write_text("\n".join(lines[:6] + MALFORMED + lines[6:] + MALFORMED) + "\n")

    for args in (("status",), ("best",), ("best", "--json"), ("export", "--csv", "-")):
        result = cli(args[0], str(tmp_path / "exp"), *args[1:], cwd=tmp_path)
        assert result.returncode == 0, (args, result.stderr)
        no_traceback(result)
        assert "journal" in result.stderr  # warned, once per kind
        assert len(result.stderr.splitlines()) <= len(MALFORMED)
    assert read_export(tmp_path) == rows

    raise_budget(tmp_path, path, 5)
    resumed = cli("run", str(path), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    no_traceback(resumed)
    events = read_journal(journal)
    created = [e["trial_id"] for e in events if isinstance(e, dict) and e.get("type") == "trial_created"
               and isinstance(e.get("index"), int)]
    assert created == ["0000", "0001", "0002", "0003", "0004"]
    assert events[-1]["type"] == "experiment_ended" and events[-1]["final"] is True
    assert len(read_export(tmp_path)) == len(rows) + 2 * 3


# --------------------------------------------------------------------------- item 2: repeated journal lines

def test_a_doubled_journal_exports_each_row_once_and_a_resume_reruns_nothing(tmp_path: Path) -> None:
    path = small(tmp_path)
    assert cli("run", str(path), cwd=tmp_path).returncode == 0
    rows = read_export(tmp_path)
    journal = tmp_path / "exp" / "journal.jsonl"
    from hpc_hpo.state import ExperimentState
    state = ExperimentState()
    assert all(state.apply(event) for event in read_journal(journal)), "an event the driver wrote was refused"
    text = journal.read_text()
    for doubled in ("".join(line + "\n" + line + "\n" for line in text.splitlines()), text + text):
        journal.write_text(doubled)
        assert read_export(tmp_path) == rows
        status = cli("status", str(tmp_path / "exp"), cwd=tmp_path)
        assert "3 trials, 9 reports" in status.stdout, status.stdout

    raise_budget(tmp_path, path, 4)
    resumed = cli("run", str(path), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    for trial in ("0000", "0001", "0002"):  # not reset to pending and run again
        starts = (tmp_path / "exp" / "trials" / trial / "starts").read_text().splitlines()
        assert len(starts) == 1, (trial, starts)
    after = read_export(tmp_path)
    assert after[:len(rows)] == rows and [r["trial_id"] for r in after[len(rows):]] == ["0003"] * 3
    assert not (tmp_path / "exp" / "trials" / "0004").exists()


# --------------------------------------------------------------------------- item 3: an emptied journal

def test_an_empty_journal_beside_old_trials_is_refused(tmp_path: Path) -> None:
    path = small(tmp_path)
    assert cli("run", str(path), cwd=tmp_path).returncode == 0
    journal = tmp_path / "exp" / "journal.jsonl"
    journal.write_bytes(b"")
    before = {p: p.read_bytes() for p in (tmp_path / "exp" / "trials").rglob("*") if p.is_file()}

    result = cli("run", str(path), cwd=tmp_path)
    assert result.returncode == 2
    no_traceback(result)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert str(tmp_path / "exp") in result.stderr and "backup" in result.stderr, result.stderr
    assert journal.read_bytes() == b""
    assert {p: p.read_bytes() for p in (tmp_path / "exp" / "trials").rglob("*") if p.is_file()} == before
    status = cli("status", str(tmp_path / "exp"), cwd=tmp_path)
    assert status.returncode == 2 and len(status.stderr.strip().splitlines()) == 1, status.stderr


def test_a_creation_killed_before_its_first_journal_line_starts_again(tmp_path: Path) -> None:
    path = small(tmp_path)
    (tmp_path / "exp" / "trials").mkdir(parents=True)
    (tmp_path / "exp" / "journal.jsonl").write_bytes(b"")
    result = cli("run", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert read_journal(tmp_path / "exp" / "journal.jsonl")[0]["type"] == "experiment_created"
    assert len(read_export(tmp_path)) == 9


# --------------------------------------------------------------------------- items 4 and 5: hostile trial files

def test_a_metrics_file_replaced_by_a_directory_does_not_stop_the_experiment(tmp_path: Path) -> None:
    command = program(tmp_path, "trial.py", """
report(epoch=1, loss=x)
if trial == '0000':
    time.sleep(0.5)
    os.remove(os.path.join(directory, 'metrics.jsonl'))
    os.mkdir(os.path.join(directory, 'metrics.jsonl'))
    time.sleep(0.5)
    sys.exit(0)
report(epoch=2, loss=x / 2)
report(epoch=3, loss=x / 3)
""")
    path = small(tmp_path, command=command)
    result = cli("run", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    no_traceback(result)
    assert result.stderr.count("metrics.jsonl") == 1, result.stderr  # warned once
    events = read_journal(tmp_path / "exp" / "journal.jsonl")
    ends = {e["trial_id"]: e["state"] for e in events if e["type"] == "trial_ended"}
    assert ends == {"0000": "finished", "0001": "finished", "0002": "finished"}
    assert events[-1]["type"] == "experiment_ended" and events[-1]["final"] is True
    rows = read_export(tmp_path)
    assert [r["resource"] for r in rows if r["trial_id"] == "0000"] in (["1"], [])
    assert [r["resource"] for r in rows if r["trial_id"] != "0000"] == ["1", "2", "3"] * 2 or \
        sorted(r["resource"] for r in rows if r["trial_id"] != "0000") == ["1", "1", "2", "2", "3", "3"]
    # and again: a resume reads the same directory without stopping
    raise_budget(tmp_path, path, 4)
    resumed = cli("run", str(path), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr


def test_trial_files_that_are_symlinks_are_neither_written_nor_read_through(tmp_path: Path) -> None:
    secret = tmp_path / "passwd"
    secret.write_text('{"epoch": 1, "loss": -1000, "note": "SECRET"}\n')
    command = program(tmp_path, "trial.py", f"""
if trial in ('0000', '0001'):
    os.symlink({str(secret)!r}, os.path.join(directory, 'metrics.jsonl'))
if trial == '0001':
    sys.exit(0)  # leaves the link for the driver to read
for epoch in (1, 2, 3):
    report(epoch=epoch, loss=x / epoch)  # raises in trial 0000: its file is a link
""")
    path = small(tmp_path, command=command)
    result = cli("run", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert secret.read_text() == '{"epoch": 1, "loss": -1000, "note": "SECRET"}\n'
    assert "SECRET" not in result.stderr + result.stdout
    rows = read_export(tmp_path)
    assert all(float(r["loss"]) > -1000 for r in rows) and {r["trial_id"] for r in rows} == {"0002"}
    assert "symbolic link" in (tmp_path / "exp" / "trials" / "0000" / "stderr").read_text()


def test_a_stdout_symlink_is_not_read_by_metric_regex(tmp_path: Path) -> None:
    secret = tmp_path / "shadow"
    secret.write_text("#" * 100 + "\nloss=-1000 SECRET\n")  # past the offset the driver had in stdout
    command = program(tmp_path, "trial.py", f"""
print('loss=' + str(x), flush=True)
time.sleep(0.3)
os.remove(os.path.join(directory, 'stdout'))
os.symlink({str(secret)!r}, os.path.join(directory, 'stdout'))
time.sleep(0.3)
""")
    path = small(tmp_path, command=command, metric_regex=r"loss=(\S+)", budget={"max_trials": 1})
    result = cli("run", str(path), cwd=tmp_path)
    assert "SECRET" not in result.stderr + result.stdout
    assert all(float(r["loss"]) > -1000 for r in read_export(tmp_path))


# --------------------------------------------------------------------------- item 7: hostile sizes and patterns

def run_measured(argv: list[str], cwd: Path, timeout: float) -> tuple[int, float, str]:
    """Run the driver; its exit code, its peak RSS in MiB (and its children's: the trial is kept small), stderr."""
    err = cwd / "driver.err"
    with open(err, "w") as handle:
        process = subprocess.Popen(argv, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, stderr=handle)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            return process.returncode, usage.ru_maxrss / 1024, err.read_text()
        time.sleep(0.1)
    process.kill()
    process.wait()
    raise AssertionError(f"the driver did not end within {timeout} s: {err.read_text()[-2000:]}")


def test_a_burst_of_stdout_keeps_the_drivers_memory_bounded(tmp_path: Path) -> None:
    """300 MB of output, as lines and as one endless line, with metric_regex set: read in slices."""
    command = program(tmp_path, "trial.py", """
out = sys.stdout.buffer
chunk = (b'x' * 1023 + b'\\n') * 1024
for _ in range(200):
    out.write(chunk)
out.write(b'loss=0.9\\n')
for _ in range(100):
    out.write(b'y' * (1 << 20))
out.write(b'\\nloss=0.5\\nloss=' + str(x).encode() + b'\\n')
out.flush()
""")
    path = small(tmp_path, command=command, metric_regex=r"loss=(\S+)", budget={"max_trials": 1},
                 execution={"num_parallel_evals": 1, "poll_interval": 0.05})
    code, peak_mib, stderr = run_measured([*CLI, "run", str(path)], tmp_path, timeout=300)
    assert code == 0, stderr
    assert (tmp_path / "exp" / "trials" / "0000" / "stdout").stat().st_size > 300_000_000
    print(f"driver peak RSS {peak_mib:.0f} MiB")
    assert peak_mib < 200, f"driver peak RSS {peak_mib:.0f} MiB"
    rows = read_export(tmp_path)
    assert [r["resource"] for r in rows] == ["1", "2", "3"] and rows[0]["loss"] == "0.9"
    assert "longer than" in stderr


def test_a_catastrophic_metric_regex_neither_hangs_the_driver_nor_deafens_it_to_sigterm(tmp_path: Path) -> None:
    command = program(tmp_path, "trial.py", """
while True:
    print('a' * 40 + '!', flush=True)
    time.sleep(0.05)
""")
    path = small(tmp_path, command=command, metric_regex=r"(?:a|aa)+$|loss=(\S+)", budget={"max_trials": 1},
                 execution={"num_parallel_evals": 1, "poll_interval": 0.1, "stop_grace_period": 1})
    driver = subprocess.Popen([*CLI, "run", str(path)], cwd=tmp_path, env=ENV, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    stdout_file = tmp_path / "exp" / "trials" / "0000" / "stdout"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (stdout_file.exists() and stdout_file.stat().st_size > 2000):
        time.sleep(0.1)
    time.sleep(2)
    driver.send_signal(signal.SIGTERM)
    try:
        stdout, stderr = driver.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        driver.kill()
        driver.communicate()
        raise AssertionError("the driver did not stop within 30 s of SIGTERM")
    assert "Traceback" not in stderr and "metric_regex" in stderr, stderr
    events = read_journal(tmp_path / "exp" / "journal.jsonl")
    assert events[-1]["type"] == "experiment_ended" and events[-1]["final"] is False


def test_a_catastrophic_metric_regex_does_not_stop_reports_that_come_later(tmp_path: Path) -> None:
    command = program(tmp_path, "trial.py", """
for _ in range(5):
    print('a' * 40 + '!', flush=True)
time.sleep(1.0)
for epoch in (1, 2, 3):
    print(f'loss={x / epoch}', flush=True)
    time.sleep(0.2)
""")
    path = small(tmp_path, command=command, metric_regex=r"(?:a|aa)+$|loss=(\S+)", budget={"max_trials": 1},
                 execution={"num_parallel_evals": 1, "poll_interval": 0.05})
    result = cli("run", str(path), cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert [r["resource"] for r in read_export(tmp_path)] == ["1", "2", "3"]


# --------------------------------------------------------------------------- item 8: a directory the user made

def test_an_existing_empty_directory_keeps_its_mode(tmp_path: Path) -> None:
    shared, target = tmp_path / "shared", tmp_path / "scratch"
    for directory in (shared, target):
        directory.mkdir()
        os.chmod(directory, 0o1777)
    link = tmp_path / "link"
    link.symlink_to(target)
    for where in (shared, link):
        path = small(tmp_path, experiment_dir=str(where))
        result = cli("run", str(path), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert len(read_journal(where / "journal.jsonl")) > 5
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777 and stat.S_IMODE(target.stat().st_mode) == 0o1777
    assert link.is_symlink()
    for where in (shared, target):
        assert stat.S_IMODE((where / "trials").stat().st_mode) == 0o700
        assert stat.S_IMODE((where / "experiment.yaml").stat().st_mode) & 0o077 == 0


def test_an_empty_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        import pytest
        pytest.skip("giving a directory to another user needs root")
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chmod(theirs, 0o1777)
    os.chown(theirs, 65534, 65534)
    result = cli("run", str(small(tmp_path, experiment_dir=str(theirs))), cwd=tmp_path)
    assert result.returncode == 2 and "another user" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert list(theirs.iterdir()) == [] and stat.S_IMODE(theirs.stat().st_mode) == 0o1777


# --------------------------------------------------------------------------- best --json

def test_best_json_is_valid_json_when_the_best_value_is_minus_infinity(tmp_path: Path) -> None:
    command = program(tmp_path, "trial.py", """
for epoch in (1, 2, 3):
    report(epoch=epoch, loss=float('-inf') if trial == '0001' and epoch == 2 else x)
""")
    assert cli("run", str(small(tmp_path, command=command)), cwd=tmp_path).returncode == 0
    best = cli("best", str(tmp_path / "exp"), "--json", cwd=tmp_path)
    assert best.returncode == 0, best.stderr

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")
    data = json.loads(best.stdout, parse_constant=refuse)
    assert data["trial_id"] == "0001" and data["value"] == "-inf" and data["resource"] == 2
