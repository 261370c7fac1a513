"""What each `hpc_hpo.tune()` trial process runs: `python -m hpc_hpo.function_trial EXPERIMENT_DIR/function.pkl`.

It loads the function hpc_hpo/backends/function.py pickled into the experiment (on the driver's
sys.path, after its own), calls it with the trial's config.json, and exits as a program would: 0 when
the function returns (or report() ends the process on stop, pause or complete), 1 with the traceback
when it raises, killed by SIGTERM when cancelled. It imports the standard library only (and what the
function needs): a trial starts as fast as a plain Python program does.
"""
from __future__ import annotations

import json
import os
import pickle
import signal
import sys
from pathlib import Path
from typing import Any, Callable

# The exit status when the function cannot be loaded (an import the trial's host lacks, say).
CANNOT_LOAD = 2


class CannotLoad(Exception):
    """The function's pickle cannot be loaded here."""


def load_function(payload: Path) -> Callable[[dict[str, Any]], Any]:
    """The pickled function, found on the driver's import path (after this interpreter's own)."""
    with open(payload, "rb") as handle:
        outer = pickle.load(handle)
    sys.path.extend(entry for entry in outer["sys_path"] if entry not in sys.path)
    try:
        return pickle.loads(outer["function"])
    except Exception as exc:  # the trial's host cannot import what the function needs: one line says so
        raise CannotLoad(f"hpc_hpo: cannot load the tuned function {outer['name']}: {type(exc).__name__}: {exc}. "
                         "Make its module (and what it imports) importable on the trial's host, e.g. through "
                         "PYTHONPATH") from None


def run_trial(payload: Path) -> int:
    """Call the function with the trial's config; the exit status is the trial's."""
    try:
        fn = load_function(payload)
    except (CannotLoad, OSError) as exc:
        print(exc, file=sys.stderr)
        return CANNOT_LOAD
    config = json.loads((Path(os.environ["HPC_HPO_TRIAL_DIR"]) / "config.json").read_text(encoding="utf-8"))
    try:
        fn(config)
    except KeyboardInterrupt:
        # Asked to end (SIGINT): an end someone wanted, not an error of the function; no traceback.
        return 128 + signal.SIGINT
    return 0  # report() ends the process itself, with exit(0), on stop, pause or complete


def main() -> None:
    # A cancelled trial (scancel, the driver's SIGTERM, a stop) ends at once, without a traceback, and its
    # exit status says which signal ended it, as for any program.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if len(sys.argv) != 2:
        sys.exit("usage: python -m hpc_hpo.function_trial EXPERIMENT_DIR/function.pkl (started by hpc_hpo.tune)")
    sys.exit(run_trial(Path(sys.argv[1])))


if __name__ == "__main__":
    main()
