"""Every example config in configs/ validates (and names a program that exists)."""
from __future__ import annotations

from pathlib import Path

import pytest

from hpc_hpo.config import load_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


def test_there_are_example_configs() -> None:
    assert CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_example_config_loads(path: Path) -> None:
    config = load_config(path)
    assert config.name and config.command
