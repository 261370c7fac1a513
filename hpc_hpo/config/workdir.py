"""Where each trial runs: execution.workdir (shared | trial), run_path and src_path (CrayAI's names)."""
from __future__ import annotations

from .reading import Section
from .specs import WorkdirSpec

WORKDIR_KEYS = ("workdir", "run_path", "src_path")


def workdir_spec(section: Section) -> WorkdirSpec:
    return WorkdirSpec()
