"""The driver's own writes and reads in a trial directory never go through a symlink left there."""
from __future__ import annotations

from pathlib import Path

from hpc_hpo.backends.base import open_for_append
from hpc_hpo.driver.common import stderr_tail, write_atomically
from hpc_hpo.experiment import write_trial_config


def plant_link(trial_dir: Path, name: str, target: Path) -> None:
    trial_dir.mkdir(parents=True, exist_ok=True)
    (trial_dir / name).symlink_to(target)


def test_a_linked_config_json_is_replaced_not_written_through(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    plant_link(tmp_path / "t", "config.json", victim)
    write_trial_config(tmp_path / "t", {"x": 1})
    assert victim.read_text() == "keep\n"
    assert not (tmp_path / "t" / "config.json").is_symlink() and '"x": 1' in (tmp_path / "t" / "config.json").read_text()


def test_a_linked_decision_tmp_file_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    plant_link(tmp_path / "t", "decision.json.tmp", victim)
    try:
        write_atomically(tmp_path / "t" / "decision.json", '{"decision": "pause"}')
    except OSError:
        pass
    assert victim.read_text() == "keep\n"


def test_linked_logs_are_neither_appended_to_nor_read(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("secret line\n")
    plant_link(tmp_path / "t", "stdout", victim)
    plant_link(tmp_path / "t", "stderr", victim)
    try:
        with open_for_append(tmp_path / "t" / "stdout") as handle:
            handle.write(b"trial output\n")
    except OSError:
        pass
    assert victim.read_text() == "secret line\n"
    assert stderr_tail(tmp_path / "t" / "stderr") == ""
