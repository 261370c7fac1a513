"""The live cluster fixture (see live.py)."""
from live import slurm_cluster  # noqa: F401
