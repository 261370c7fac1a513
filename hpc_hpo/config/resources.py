"""A trial's shape: execution.gpus_per_eval, cpus_per_eval, mem_per_eval, tasks_per_eval."""
from __future__ import annotations

from .reading import Section
from .specs import TrialShape

SHAPE_KEYS = ("gpus_per_eval", "cpus_per_eval", "mem_per_eval", "tasks_per_eval")


def trial_shape(section: Section) -> TrialShape:
    return TrialShape()
