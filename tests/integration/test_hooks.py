"""Hooks with a real local driver: hooks that record their environment and JSON file show the right events
in the right numbers with the right values; a hook past its timeout is killed and the experiment still ends
on time; a failing hook is warned about once and is not fatal; at most hooks.max_running run at once and
the driver's loop does not wait for them."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from conftest import PROGRAMS, REPO, cli, synthetic_config, write_config

HOOK = [sys.executable, str(PROGRAMS / "record_hook.py")]


def journal(tmp_path: Path) -> list[dict[str, Any]]:
    lines = (tmp_path / "exp" / "journal.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def records(out: Path, event: str) -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in sorted(out.glob(f"{event}-*.json"))]


def hooked_config(tmp_path: Path, hooks: dict[str, Any], **overrides: Any) -> Path:
    config = synthetic_config(tmp_path, **overrides)
    config["hooks"] = hooks
    return write_config(tmp_path, config)


def test_hooks_get_the_right_events_values_and_files(tmp_path: Path) -> None:
    out = tmp_path / "hooks_out"
    out.mkdir()
    hook = [*HOOK, str(out)]
    path = hooked_config(tmp_path, {"on_trial_end": hook, "on_new_best": hook, "on_experiment_end": hook},
                         budget={"max_trials": 8})
    result = cli("run", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    events = journal(tmp_path)
    created = {e["trial_id"]: e["config"] for e in events if e["type"] == "trial_created"}
    ended = {e["trial_id"]: e for e in events if e["type"] == "trial_ended"}
    reports: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        if e["type"] == "report":
            reports.setdefault(e["trial_id"], []).append(e)

    trial_ends = records(out, "trial_end")
    assert sorted(r["env"]["HPC_HPO_TRIAL_ID"] for r in trial_ends) == sorted(ended), "one hook per trial end"
    for record in trial_ends:
        env, payload = record["env"], record["payload"]
        trial_id = env["HPC_HPO_TRIAL_ID"]
        last = reports[trial_id][-1]
        assert payload["event"] == env["HPC_HPO_HOOK_EVENT"] == "trial_end"
        assert payload["trial"]["config"] == created[trial_id]
        assert payload["trial"]["state"] == env["HPC_HPO_TRIAL_STATE"] in ("stopped", "completed")
        assert payload["last_report"]["resource"] == last["resource"]
        assert float(env["HPC_HPO_METRIC"]) == payload["last_report"]["value"] == last["value"]
        assert float(env["HPC_HPO_RESOURCE"]) == last["resource"]
        assert env["HPC_HPO_METRIC_NAME"] == "loss" and env["HPC_HPO_RESOURCE_NAME"] == "epoch"
        assert Path(env["HPC_HPO_TRIAL_DIR"]) == tmp_path / "exp" / "trials" / trial_id
        assert not Path(env["HPC_HPO_HOOK_FILE"]).exists(), "the JSON file outlived its hook"

    # New bests: exactly the driver's "new best" lines (another trial became the best, strictly better).
    best = min(e["value"] for e in events if e["type"] == "report")
    printed = re.findall(r"new best  (\d+)  loss=(\S+) at", result.stdout)
    announced = sorted(((r["env"]["HPC_HPO_TRIAL_ID"], float(r["env"]["HPC_HPO_METRIC"]))
                        for r in records(out, "new_best")), key=lambda pair: -pair[1])
    assert announced, "no new_best hook ran"
    assert announced == [(trial_id, float(value)) for trial_id, value in printed], (announced, printed)
    assert all(a[0] != b[0] and a[1] > b[1] for a, b in zip(announced, announced[1:])), announced
    best_trial = json.loads(cli("best", str(tmp_path / "exp"), "--json", cwd=tmp_path).stdout)
    assert announced[-1][0] == best_trial["trial_id"] and best_trial["value"] == best

    ends = records(out, "experiment_end")
    assert len(ends) == 1
    env = ends[0]["env"]
    assert env["HPC_HPO_FINAL"] == "1" and env["HPC_HPO_END_REASON"]
    assert env["HPC_HPO_TRIAL_ID"] == env["HPC_HPO_BEST_TRIAL_ID"] == best_trial["trial_id"]
    assert float(env["HPC_HPO_BEST_METRIC"]) == float(env["HPC_HPO_METRIC"]) == best
    assert ends[0]["payload"]["end"]["final"] is True
    assert ends[0]["payload"]["best"]["config"] == created[env["HPC_HPO_BEST_TRIAL_ID"]]
    assert "hook trial_end done" in (tmp_path / "exp" / "hooks" / "on_trial_end.log").read_text()


def test_a_hook_past_its_timeout_is_killed_and_the_experiment_ends_on_time(tmp_path: Path) -> None:
    out = tmp_path / "hooks_out"
    out.mkdir()
    sleeper = [*HOOK, str(out), "--sleep", "60"]
    path = hooked_config(tmp_path, {"on_trial_end": sleeper, "on_experiment_end": sleeper, "timeout": 1,
                                    "max_running": 2}, budget={"max_trials": 6})
    started = time.monotonic()
    result = cli("run", str(path), cwd=tmp_path, timeout=120)
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    # The trials take a few seconds; six 60 s hooks two at a time would take three minutes.
    assert took < 30, f"the run took {took:.1f} s"
    assert result.stderr.count("ran longer than hooks.timeout") == 2, result.stderr  # once per hook
    assert "Traceback" not in result.stderr
    ran = records(out, "trial_end") + records(out, "experiment_end")
    assert ran and all("ended" not in r for r in ran), "a hook slept to its end"
    time.sleep(0.5)
    alive = [r["pid"] for r in ran if _alive(r["pid"])]
    assert not alive, f"hooks still running after the driver left: {alive}"
    assert len(records(out, "experiment_end")) == 1
    states = {e["trial_id"]: e["state"] for e in journal(tmp_path) if e["type"] == "trial_ended"}
    assert len(states) == 6


def test_a_failing_hook_is_warned_about_once_and_is_not_fatal(tmp_path: Path) -> None:
    out = tmp_path / "hooks_out"
    out.mkdir()
    path = hooked_config(tmp_path, {"on_trial_end": [*HOOK, str(out), "--exit", "3"]}, budget={"max_trials": 6})
    result = cli("run", str(path), cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("on_trial_end failed (exit code 3)") == 1, result.stderr
    assert "on_trial_end failed 6 of 6 times" in result.stderr
    assert len(records(out, "trial_end")) == 6
    assert journal(tmp_path)[-1]["type"] == "experiment_ended" and journal(tmp_path)[-1]["final"] is True


def test_a_hook_that_cannot_start_is_warned_about_once(tmp_path: Path) -> None:
    program = tmp_path / "gone_hook"
    program.write_text("#!/bin/sh\nexit 0\n")
    os.chmod(program, 0o755)
    path = hooked_config(tmp_path, {"on_trial_end": [str(program)]}, budget={"max_trials": 4},
                         params={"x": {"type": "uniform", "low": 0.0, "high": 1.0}, "epochs": 9, "sleep": 0.2})
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    driver = subprocess.Popen([sys.executable, "-m", "hpc_hpo.cli", "run", str(path)], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not any(e["type"] == "run_started" for e in _events_so_far(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.05)  # validated by now (the program existed); gone before the first trial ends
    program.unlink()
    _, err = driver.communicate(timeout=120)
    assert driver.returncode == 0, err
    assert err.count("on_trial_end could not be started") == 1, err


def test_hooks_never_run_more_than_max_running_and_do_not_hold_up_the_loop(tmp_path: Path) -> None:
    out = tmp_path / "hooks_out"
    out.mkdir()
    path = hooked_config(tmp_path, {"on_trial_end": [*HOOK, str(out), "--sleep", "0.4"], "max_running": 1,
                                    "timeout": 20}, budget={"max_trials": 8})
    result = cli("run", str(path), cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    ran = sorted(records(out, "trial_end"), key=lambda r: r["started"])
    assert len(ran) == 8 and all("ended" in r for r in ran), "every queued hook ran before the driver left"
    for before, after in zip(ran, ran[1:]):
        assert after["started"] >= before["ended"] - 0.05, "two hooks ran at once with max_running 1"
    ended_at = journal(tmp_path)[-1]["t"]
    # Eight 0.4 s hooks one at a time take 3.2 s: the trials did not wait for them.
    assert ran[-1]["started"] > ended_at, "the experiment ended only after the hooks: the loop waited for them"


def _events_so_far(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "exp" / "journal.jsonl"
    data = path.read_bytes() if path.exists() else b""
    return [json.loads(line) for line in data[: data.rfind(b"\n") + 1].splitlines() if line.strip()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too: it waits only for its parent (the driver, gone) to be reaped by init.
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_the_best_so_far_is_no_news_to_a_resumed_run(tmp_path: Path) -> None:
    """Raising max_trials and running again: the replayed best is neither printed as a new best nor hooked;
    only a strictly better value later is."""
    out = tmp_path / "hooks_out"
    out.mkdir()
    first = hooked_config(tmp_path, {"on_new_best": [*HOOK, str(out)]}, budget={"max_trials": 3})
    assert cli("run", str(first), cwd=tmp_path).returncode == 0
    before = {path.name for path in out.iterdir()}
    old_best = json.loads(cli("best", str(tmp_path / "exp"), "--json", cwd=tmp_path).stdout)
    second = hooked_config(tmp_path, {"on_new_best": [*HOOK, str(out)]}, budget={"max_trials": 6})
    result = cli("run", str(second), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    printed = [float(value) for value in re.findall(r"new best  \d+  loss=(\S+) at", result.stdout)]
    assert all(value < old_best["value"] for value in printed), (old_best, result.stdout)
    hooked = [json.loads((out / name).read_text()) for name in sorted({p.name for p in out.iterdir()} - before)]
    assert all(float(r["env"]["HPC_HPO_METRIC"]) < old_best["value"] for r in hooked), hooked
    assert len(hooked) == len(printed)
