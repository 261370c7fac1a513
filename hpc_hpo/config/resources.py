"""A trial's shape (execution.gpus_per_eval, cpus_per_eval, mem_per_eval, tasks_per_eval) and the GPUs of
local mode (execution.local)."""
from __future__ import annotations

from typing import Any

from .reading import Section
from .specs import LocalSpec, TrialShape

SHAPE_KEYS = ("gpus_per_eval", "cpus_per_eval", "mem_per_eval", "tasks_per_eval")


def trial_shape(section: Section) -> TrialShape:
    return TrialShape()


def local_spec(value: Any) -> LocalSpec:
    return LocalSpec()
