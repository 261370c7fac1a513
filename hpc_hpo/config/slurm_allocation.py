"""execution.slurm.allocation: the allocation a driver on a login node makes for itself."""
from __future__ import annotations

from .reading import Section
from .specs import AllocationRequest


def allocation_request(section: Section) -> AllocationRequest | None:
    return None
