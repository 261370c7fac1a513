"""`hpc-hpo status`: the header (driver, budget used, what runs, the best, the allocation's end) and
`status --watch` on a running experiment: refreshes as blocks in a pipe, in place on a terminal, and
Ctrl-C ends it with exit code 0."""
from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from conftest import REPO, cli, synthetic_config, write_config

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
CLI = [sys.executable, "-m", "hpc_hpo.cli"]


def journal(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "exp" / "journal.jsonl"
    data = path.read_bytes() if path.exists() else b""
    return [json.loads(line) for line in data[: data.rfind(b"\n") + 1].splitlines() if line.strip()]


def slow_driver(tmp_path: Path) -> subprocess.Popen[str]:
    config = synthetic_config(tmp_path, budget={"max_trials": 6, "max_time": "1h", "max_resource": 1000},
                              scheduler={"type": "fifo"})
    config["params"] = {"x": {"type": "uniform", "low": 0.0, "high": 1.0}, "epochs": 9, "sleep": 0.4}
    config["execution"]["num_parallel_evals"] = 2
    path = write_config(tmp_path, config)
    driver = subprocess.Popen([*CLI, "run", str(path)], cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 60
    while not any(e["type"] == "report" for e in journal(tmp_path)):
        assert time.monotonic() < deadline, "no report within 60 s"
        time.sleep(0.1)
    return driver


def test_watch_refreshes_a_running_experiment_and_ctrl_c_exits_0(tmp_path: Path) -> None:
    driver = slow_driver(tmp_path)
    try:
        watcher = subprocess.Popen([*CLI, "status", str(tmp_path / "exp"), "--watch", "--interval", "0.3"],
                                   cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(2.0)
        watcher.send_signal(signal.SIGINT)
        out, err = watcher.communicate(timeout=30)
    finally:
        driver.send_signal(signal.SIGINT)
        driver.wait(timeout=60)
    assert watcher.returncode == 0, err
    assert "Traceback" not in err and "\x1b[" not in out, "ANSI codes or a traceback in a pipe"
    blocks = re.split(r"\n-{20} \d{4}-\d\d-\d\d \d\d:\d\d:\d\d -{20}\n", out)
    assert len(blocks) >= 2, out
    for block in blocks:
        assert f"driver: host {os.uname().nodename}, pid {driver.pid}" in block, block
        used = re.search(r"budget used: trials (\d+) / 6, time (\d+):(\d\d):(\d\d) / 1:00:00, epoch (\d+) / 1000",
                         block)
        assert used, block
        assert 1 <= int(used.group(1)) <= 6
        assert re.search(r"running \(\d\): \d{4}", block), block
        assert "best: trial " in block
    # Time goes on between refreshes while the driver runs: the last block shows at least as much.
    times = [int(h) * 3600 + int(m) * 60 + int(s) for h, m, s in
             re.findall(r"time (\d+):(\d\d):(\d\d) / 1:00:00", out)]
    assert times == sorted(times) and times[-1] >= 1, times


def test_watch_clears_the_screen_only_on_a_terminal(tmp_path: Path) -> None:
    driver = slow_driver(tmp_path)
    main, other = pty.openpty()
    try:
        watcher = subprocess.Popen([*CLI, "status", str(tmp_path / "exp"), "--watch", "--interval", "0.3"],
                                   cwd=tmp_path, env=ENV, stdout=other, stderr=subprocess.PIPE)
        os.close(other)
        time.sleep(1.5)
        watcher.send_signal(signal.SIGINT)
        watcher.wait(timeout=30)
        shown = b""
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: the terminal's other end is closed and everything was read
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(main)
        driver.send_signal(signal.SIGINT)
        driver.wait(timeout=60)
    assert watcher.returncode == 0
    assert shown.count(b"\x1b[H\x1b[2J") >= 2, shown[:500]
    assert b"budget used: trials" in shown and b"-" * 20 + b" " not in shown


def test_the_header_of_a_finished_experiment(tmp_path: Path) -> None:
    path = write_config(tmp_path, synthetic_config(tmp_path, budget={"max_trials": 5, "max_resource": 500}))
    assert cli("run", str(path), cwd=tmp_path).returncode == 0
    events = journal(tmp_path)
    last: dict[str, float] = {}
    for e in events:
        if e["type"] == "report":
            last[e["trial_id"]] = e["resource"]
    # An allocation's end as the driver journals it inside an allocation (tests/slurm cover the real one).
    end = time.time() + 3600
    with open(tmp_path / "exp" / "journal.jsonl", "a") as handle:
        handle.write(json.dumps({"v": 1, "type": "allocation_end", "t": events[-1]["t"], "end": end}) + "\n")
    result = cli("status", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "driver: none running" in out
    assert "budget used: trials 5 / 5, time " in out and f", epoch {sum(last.values()):g} / 500" in out, out
    run_start = next(e["t"] for e in events if e["type"] == "run_started")
    seconds = int(events[-1]["t"] - run_start)
    assert f"time {seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d} / no limit" in out, out
    assert "running: none" in out
    best = json.loads(cli("best", str(tmp_path / "exp"), "--json", cwd=tmp_path).stdout)
    assert f"best: trial {best['trial_id']} loss={best['value']:.6g} at epoch {best['resource']:g}" in out, out
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(end))
    assert re.search(rf"allocation ends {when}:\d\d \(in 0:59:\d\d\)", out), out
    assert out.count("allocation ends") == 1
    # The header sits between the summary line and the table.
    lines = out.splitlines()
    assert lines[0].startswith("experiment synthetic: 5 trials") and lines[1].startswith("driver:")


def test_status_of_a_config_not_run_yet_says_how_to_start_it(tmp_path: Path) -> None:
    path = write_config(tmp_path, synthetic_config(tmp_path))
    for command in (["status"], ["best"], ["export", "--csv", str(tmp_path / "out.csv")]):
        result = cli(*command, str(path), cwd=tmp_path)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert "has not been created yet; start it with 'hpc-hpo run" in result.stderr, result.stderr
        assert not (tmp_path / "exp").exists()
