"""Fixtures of the PBS tests (see pbs_helpers.py: no PBS server here, a stand-in instead)."""
from __future__ import annotations

from pathlib import Path

import pytest

from pbs_helpers import Standin


@pytest.fixture
def standin(tmp_path: Path) -> Standin:
    """A fresh stand-in PBS server whose commands the CLI finds first on PATH."""
    return Standin(tmp_path)
