"""Per-trial working directories (execution.workdir, run_path, src_path, src_copy), end to end with the real CLI
and the local backend: a program writing out.txt relative to its working directory no longer collides with
the other trials, finds its src_path files, and a later run of the same trial finds its directory as the
earlier run left it. The config lives in one directory and the driver is started in another, so the
program (a relative path in `command`) is found next to the config file."""
from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import yaml

from conftest import cli, read_journal

# Writes out.txt in its cwd (a later run appends), waits while the other trials start, then reports its x if
# out.txt still holds its line, else 99. With --fail_first its first run deletes data.txt and fails, so that
# the retry shows what it finds.
WRITER = '''\
import argparse, os, sys, time
from hpc_hpo import report
parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float)
parser.add_argument("--fail_first", type=int, default=0)
args = parser.parse_args()
trial = os.environ["HPC_HPO_TRIAL_ID"]
run = os.environ["HPC_HPO_RUN"]
data = open("data.txt").read().strip() if os.path.exists("data.txt") else "no data"
with open("out.txt", "w" if run == "1" else "a") as handle:
    handle.write(f"{trial} run {run} x={args.x} cwd={os.getcwd()} data={data}\\n")
time.sleep(1.0)
mine = open("out.txt").read()
if args.fail_first and run == "1":
    os.remove("data.txt")
    sys.exit(1)
report(epoch=1, loss=args.x if f"{trial} run {run}" in mine else 99.0)
'''


def project(tmp_path: Path, execution: dict[str, Any], name: str = "wd", fail_first: int = 0,
            trials: int = 4) -> tuple[Path, Path]:
    """proj/hpo.yaml with writer.py and data.txt beside it; the driver's directory is run_here/."""
    proj = tmp_path / "proj"
    proj.mkdir(exist_ok=True)
    (proj / "writer.py").write_text(WRITER)
    (proj / "data.txt").write_text("shared input\n")
    config = {"name": name, "command": "{python} writer.py",
              "experiment_dir": str(tmp_path / f"exp_{name}"),
              "params": {"x": {"type": "uniform", "low": 0.0, "high": 1.0}, "fail_first": fail_first},
              "metric": {"name": "loss", "mode": "min"}, "resource": {"max": 1}, "scheduler": {"type": "fifo"},
              "searcher": {"type": "random", "seed": 3}, "budget": {"max_trials": trials},
              "execution": {"backend": "local", "num_parallel_evals": 4, "poll_interval": 0.05, **execution}}
    path = proj / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    here = tmp_path / "run_here"
    here.mkdir(exist_ok=True)
    return path, here


def configs_of(experiment: Path) -> dict[str, float]:
    """Each trial's x, from the journal."""
    return {e["trial_id"]: e["config"]["x"] for e in read_journal(experiment / "journal.jsonl")
            if e["type"] == "trial_created"}


def reported(experiment: Path) -> dict[str, float]:
    """Each trial's reported loss: its own x when its out.txt still held its line at the end, else 99."""
    return {e["trial_id"]: e["value"] for e in read_journal(experiment / "journal.jsonl") if e["type"] == "report"}


def owner_only(path: Path) -> bool:
    info = path.lstat()
    return stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) & 0o077 == 0


def check_own_outputs(directories: dict[str, Path], xs: dict[str, float], data: str) -> None:
    """Each trial's out.txt holds its own line only: its id, its x, its cwd, the src_path file's text."""
    assert set(directories) == set(xs) and len(xs) == 4
    for trial_id, directory in directories.items():
        lines = (directory / "out.txt").read_text().splitlines()
        assert lines == [f"{trial_id} run 1 x={xs[trial_id]} cwd={directory} data={data}"]


def test_trial_directories_keep_outputs_apart_and_link_src_path(tmp_path: Path) -> None:
    path, here = project(tmp_path, {"workdir": "trial", "src_path": "data.txt"})
    result = cli("run", str(path), cwd=here)
    assert result.returncode == 0, result.stderr
    experiment = tmp_path / "exp_wd"
    xs = configs_of(experiment)
    trial_dirs = {t: experiment / "trials" / t for t in xs}
    check_own_outputs(trial_dirs, xs, "shared input")
    assert reported(experiment) == xs  # every run found its own line in out.txt
    for directory in trial_dirs.values():
        link = directory / "data.txt"
        assert link.is_symlink() and link.readlink() == tmp_path / "proj" / "data.txt"
        assert owner_only(directory)
    assert not (here / "out.txt").exists()


def test_run_path_gives_each_trial_a_directory_there_with_copies(tmp_path: Path) -> None:
    path, here = project(tmp_path, {"workdir": "trial", "run_path": "work", "src_path": ["data.txt"],
                                    "src_copy": True})
    result = cli("run", str(path), cwd=here)
    assert result.returncode == 0, result.stderr
    xs = configs_of(tmp_path / "exp_wd")
    run_dirs = {t: here / "work" / t for t in xs}  # a relative run_path is relative to where hpc-hpo started
    check_own_outputs(run_dirs, xs, "shared input")
    for directory in run_dirs.values():
        copy = directory / "data.txt"
        assert copy.is_file() and not copy.is_symlink()
        assert owner_only(directory)
    assert sorted(p.name for p in (here / "work").iterdir()) == sorted(xs)


def test_shared_workdir_is_the_old_behaviour_and_collides(tmp_path: Path) -> None:
    """The default: every trial in the driver's directory; the same program's outputs land in one file."""
    path, here = project(tmp_path, {})
    (here / "data.txt").write_text("driver dir\n")
    result = cli("run", str(path), cwd=here)
    assert result.returncode == 0, result.stderr
    lines = (here / "out.txt").read_text().splitlines()
    assert 99.0 in reported(tmp_path / "exp_wd").values()  # a run found another's line in its out.txt
    assert len(lines) == 1 and all(f"cwd={here} data=driver dir" in line for line in lines)
    # Each run saw the others' lines in its out.txt, and the experiment dir holds no out.txt at all.
    assert not list((tmp_path / "exp_wd").rglob("out.txt"))


def test_a_later_run_of_a_trial_reuses_its_directory_as_it_was_left(tmp_path: Path) -> None:
    path, here = project(tmp_path, {"workdir": "trial", "run_path": str(tmp_path / "work"), "src_path": "data.txt",
                                    "num_retries": 1}, fail_first=1, trials=2)
    result = cli("run", str(path), cwd=here)
    assert result.returncode == 0, result.stderr
    xs = configs_of(tmp_path / "exp_wd")
    assert reported(tmp_path / "exp_wd") == xs
    for trial_id, x in xs.items():
        directory = tmp_path / "work" / trial_id
        # Run 1 appended, deleted its data.txt and failed; run 2 (the retry) appended to the same out.txt
        # and found data.txt still gone: src_path is placed before the first run only.
        assert (directory / "out.txt").read_text().splitlines() == [
            f"{trial_id} run 1 x={x} cwd={directory} data=shared input",
            f"{trial_id} run 2 x={x} cwd={directory} data=no data"]
        assert not (directory / "data.txt").exists()


def test_two_experiments_sharing_a_run_path_are_refused_clearly(tmp_path: Path) -> None:
    shared = str(tmp_path / "work")
    first, here = project(tmp_path, {"workdir": "trial", "run_path": shared}, name="one", trials=1)
    assert cli("run", str(first), cwd=here).returncode == 0
    before = (tmp_path / "work" / "0000" / "out.txt").read_text()
    second, _ = project(tmp_path, {"workdir": "trial", "run_path": shared}, name="two", trials=1)
    result = cli("run", str(second), cwd=here)
    assert result.returncode != 0
    assert "belongs to another experiment's trial" in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "work" / "0000" / "out.txt").read_text() == before  # the first one's files untouched


def test_a_symlink_in_place_of_a_trial_directory_is_never_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "0000").symlink_to(target)
    path, here = project(tmp_path, {"workdir": "trial", "run_path": str(tmp_path / "work")}, trials=1)
    result = cli("run", str(path), cwd=here)
    assert result.returncode != 0
    assert "never followed" in result.stderr and "Traceback" not in result.stderr
    assert list(target.iterdir()) == []
