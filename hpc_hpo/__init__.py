"""hpc_hpo: hyperparameter tuning on HPC batch clusters.

Trial programs need only `from hpc_hpo import report`; nothing heavy is imported here.
"""
from .worker import checkpoint_dir, report, resume_from, target_resource, trial_dir

__all__ = ["report", "trial_dir", "checkpoint_dir", "resume_from", "target_resource"]
__version__ = "0.1.0"
