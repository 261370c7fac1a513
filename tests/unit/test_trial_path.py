"""A trial's PATH gets this installation's `hpc-hpo` when the driver's PATH lacks it (a venv not activated)."""
from __future__ import annotations

import os
import sysconfig
from pathlib import Path

import pytest

from hpc_hpo.driver import path_with_hpc_hpo


def test_the_scripts_directory_is_appended_when_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    scripts = tmp_path / "venv" / "bin"
    scripts.mkdir(parents=True)
    (scripts / "hpc-hpo").write_text("#!/bin/sh\n")
    monkeypatch.setattr(sysconfig, "get_path", lambda name: str(scripts))
    assert path_with_hpc_hpo("/usr/bin:/bin") == {"PATH": f"/usr/bin:/bin{os.pathsep}{scripts}"}
    assert path_with_hpc_hpo(f"{scripts}:/usr/bin") == {}  # already there: the user's order stays
    assert path_with_hpc_hpo("") == {"PATH": str(scripts)}


def test_nothing_is_added_without_an_installed_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sysconfig, "get_path", lambda name: str(tmp_path))
    assert path_with_hpc_hpo("/usr/bin") == {}
