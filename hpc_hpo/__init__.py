"""hpc_hpo: hyperparameter tuning on HPC batch clusters.

Trial programs need only `from hpc_hpo import report`; nothing heavy is imported here.
"""
from .worker import checkpoint_dir, rank, report, resume_from, target_resource, trial_dir

__all__ = ["report", "trial_dir", "checkpoint_dir", "rank", "resume_from", "target_resource", "tune", "load"]


def tune(*args, **kwargs):  # type: ignore[no-untyped-def]
    """Tune a Python function: see hpc_hpo.function_tuning.tune (imported on use, so trials stay light)."""
    from .function_tuning import tune as _tune
    return _tune(*args, **kwargs)


def load(experiment):  # type: ignore[no-untyped-def]
    """An experiment's reports as a pandas DataFrame (a list of dicts without pandas): see hpc_hpo.results.load."""
    from .results import load as _load
    return _load(experiment)


__version__ = "0.1.0"
