"""The driver: the one loop where scheduler, searcher and backend meet (see core.py)."""
from .common import EXIT_ALLOCATION_GONE, EXIT_FAILED, path_with_hpc_hpo
from .core import Driver

__all__ = ["Driver", "EXIT_ALLOCATION_GONE", "EXIT_FAILED", "path_with_hpc_hpo"]
