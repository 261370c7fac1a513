"""The `hpc-hpo` command: run, plan, status, best, export, report."""
from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import sys
from typing import Any, Sequence

from .errors import HpoError


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="hpc-hpo: %(message)s", stream=sys.stderr)
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except HpoError as exc:
        print(f"hpc-hpo: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hpc-hpo: interrupted. Run the same command again to resume.", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:
        if exc.errno not in _FILESYSTEM_FULL:
            raise
        # A full disk (or quota, or a read-only mount) before the driver's loop could catch it: creating the
        # experiment, taking the lease. Nothing the journal recorded is lost; the same command goes on later.
        where = f"'{exc.filename}'" if exc.filename else "the experiment directory"
        print(f"hpc-hpo: error: cannot write {where}: {exc.strerror}; free some space (or quota) there, or make it "
              "writable, then run the same command again: nothing the journal recorded is lost", file=sys.stderr)
        return 2


_FILESYSTEM_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("hpc-hpo")
    except PackageNotFoundError:  # run from a checkout that pip did not install
        return "(not installed)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hpc-hpo", description="Hyperparameter tuning on HPC batch clusters.")
    parser.add_argument("--version", action="version", version=f"hpc-hpo {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run or resume the experiment a config file describes")
    run.add_argument("config", help="experiment YAML file")
    run.add_argument("--experiment-dir", help="where the experiment lives (overrides experiment_dir)")
    run.add_argument("--quiet", action="store_true", help="print only the result")
    run.add_argument("--verbose", action="store_true",
                     help="say for each run its command, its job, step or process id, its nodes and GPUs")
    run.add_argument("--join", action="store_true",
                     help="run this experiment together with the drivers already running it (or starting it), "
                          "each in its own allocation (README 'Elastic experiments')")
    run.set_defaults(func=_run)

    plan = commands.add_parser("plan", help="simulate the scheduler: the resource, trials per rung and time it will "
                                            "spend; runs nothing")
    plan.add_argument("config", help="experiment YAML file")
    plan.add_argument("--from", dest="from_experiment", metavar="EXP",
                      help="simulate on the learning curves and seconds per resource measured in this experiment")
    plan.add_argument("--parallel", type=int, metavar="N", help="trials at a time (default: num_parallel_evals)")
    plan.add_argument("--seconds-per-resource", type=float, metavar="S",
                      help="time of one unit of resource, for wall time and node-hours on synthetic curves")
    plan.add_argument("--simulations", type=int, default=10, metavar="N", help="simulations to take the spread over (10)")
    plan.set_defaults(func=_plan)

    status = commands.add_parser("status", help="table of an experiment's trials")
    status.add_argument("experiment", help="experiment directory, or its config file")
    status.add_argument("--is-finished", action="store_true",
                        help="print nothing; exit 0 if the experiment has ended for good, 1 if a run can go on "
                             "with it (for scripts, e.g. the chained driver.sbatch)")
    status.add_argument("--has-drivers", action="store_true",
                        help="print nothing; exit 0 if a driver runs the experiment now, else 1 (for chained jobs)")
    status.add_argument("--watch", action="store_true", help="refresh every --interval seconds until Ctrl-C")
    status.add_argument("--interval", type=float, default=2.0, metavar="S", help="seconds between refreshes (2)")
    status.set_defaults(func=_status)

    stop = commands.add_parser("stop", help="ask the driver running an experiment (on any node) to stop gracefully")
    stop.add_argument("experiment", help="experiment directory, or its config file")
    stop.add_argument("--final", action="store_true", help="end the experiment for good (else a later run resumes it)")
    stop.add_argument("--wait", action="store_true", help="wait until the driver has stopped")
    stop.add_argument("--timeout", type=float, metavar="S", help="with --wait: give up after S seconds (exit 1)")
    stop.set_defaults(func=_stop)

    best = commands.add_parser("best", help="the best trial so far")
    best.add_argument("experiment", help="experiment directory, or its config file")
    best.add_argument("--json", action="store_true", help="machine-readable output")
    best.set_defaults(func=_best)

    export = commands.add_parser("export", help="write every processed report as CSV")
    export.add_argument("experiment", help="experiment directory, or its config file")
    export.add_argument("--csv", required=True, metavar="FILE", help="output file ('-' for stdout)")
    export.set_defaults(func=_export)

    plot = commands.add_parser("plot", help="draw the experiment on one page (PNG, SVG or HTML); needs hpc-hpo[plot]")
    plot.add_argument("experiment", help="experiment directory, or its config file")
    plot.add_argument("-o", "--output", metavar="FILE", help="a .png, .svg or .html file (default <experiment>/plot.png)")
    plot.set_defaults(func=_plot)

    report = commands.add_parser("report", help="record a report from a trial (shell or other languages)")
    report.add_argument("pairs", nargs="+", metavar="NAME=VALUE", help="e.g. epoch=3 accuracy=0.91")
    report.set_defaults(func=_report)
    return parser


def _run(args: argparse.Namespace) -> int:
    from .backends import make_backend
    from .backends.slurm_allocation import run_in_own_allocations, wants_own_allocation
    from .config import load_config
    from .experiment import check_resume
    from .results import best_text

    config = load_config(args.config, experiment_dir=args.experiment_dir)
    check_resume(config)  # a change the experiment refuses is refused before the backend or the lease writes
    if wants_own_allocation(config, dict(os.environ)):  # execution.slurm.allocation: salloc, then trials as steps
        from .backends.slurm import make_slurm_backend
        driver = run_in_own_allocations(config, lambda job_id: make_slurm_backend(config, job_id),
                                        lambda backend: _driver(config, backend, args))
    else:
        driver = _driver(config, make_backend(config), args)
        driver.run()
    print()
    print(best_text(driver.state))
    if driver.closing_line:
        print(f"hpc-hpo: {driver.closing_line}", file=sys.stderr)
    return driver.exit_code


def _driver(config: Any, backend: Any, args: argparse.Namespace) -> Any:
    """The driver of `run`; with --verbose its backend says where each run runs, through the driver's progress."""
    from .driver import Driver

    if not args.verbose:
        return Driver(config, backend, quiet=args.quiet, join=args.join)
    from .backends.verbose import VerboseBackend
    verbose = VerboseBackend(backend)
    driver = Driver(config, verbose, quiet=args.quiet, join=args.join)
    verbose.say = driver.progress.say
    return driver


def _plan(args: argparse.Namespace) -> int:
    from .config import load_config
    from .plan import PlanOptions, format_plan

    for flag, value in (("--parallel", args.parallel), ("--simulations", args.simulations),
                        ("--seconds-per-resource", args.seconds_per_resource)):
        if value is not None and not value > 0:
            raise HpoError(f"{flag} {value}: must be a positive number")
    if os.path.isdir(args.config):
        raise HpoError(f"'{args.config}' is a directory; plan takes a config file (to use what an experiment "
                       f"measured: hpc-hpo plan CONFIG --from {args.config})")
    config = load_config(args.config)
    measured = _measured(args.from_experiment, config) if args.from_experiment else None
    workers = args.parallel or config.execution.num_parallel_evals or os.cpu_count() or 1
    print(format_plan(config, PlanOptions(workers, args.simulations, args.seconds_per_resource, measured,
                                          args.from_experiment)))
    return 0


def _measured(experiment: str, config: Any) -> Any:
    """Curves and speeds of an experiment's trials, for plan --from; a note when they measure something else."""
    from .plan_simulation import measure

    state = _load(experiment)
    try:
        measured = measure(state)
    except ValueError as exc:
        raise HpoError(f"--from {experiment}: {exc}; give an experiment that has run trials") from None
    metric, resource = config.metric, config.resource
    if (state.metric, state.mode, state.resource) != (metric.name, metric.mode, resource.name):
        print(f"hpc-hpo: note: --from {experiment} measured {state.metric} ({state.mode}) against {state.resource}; "
              f"this config tunes {metric.name} ({metric.mode}) against {resource.name}: the simulation takes the "
              f"measured values for {metric.name} ({metric.mode})", file=sys.stderr)
    furthest = max(trial.resources[-1] for trial in measured.trials)
    if furthest < resource.max:
        print(f"hpc-hpo: note: --from {experiment} has no report past {state.resource} {furthest:g}; beyond it the "
              f"simulated curves keep their last value up to {resource.max:g}", file=sys.stderr)
    return measured


def _load(argument: str) -> Any:
    from .experiment import find_experiment
    from .state import load_state

    return load_state(find_experiment(argument))


def _status(args: argparse.Namespace) -> int:
    from .experiment import find_experiment
    from .status_view import status_text, watch

    directory = find_experiment(args.experiment)
    if args.watch:  # status_view.py: refreshes in place on a terminal, blocks separated by a line elsewhere
        return watch(directory, args.interval)
    from .state import load_state
    state = load_state(directory)
    if args.is_finished:
        return 0 if state.finished else 1
    if args.has_drivers:
        from .status_view import running_drivers
        return 0 if running_drivers(directory) else 1
    print(status_text(directory, state))
    return 0


def _stop(args: argparse.Namespace) -> int:
    from .experiment import find_experiment
    from .stop_request import request_stop

    return request_stop(find_experiment(args.experiment), args.final, args.wait, args.timeout)


def _best(args: argparse.Namespace) -> int:
    from .results import best_as_dict, best_text

    state = _load(args.experiment)
    if args.json:
        print(json.dumps(best_as_dict(state), indent=2))
    else:
        print(best_text(state))
    return 0 if state.best_trial() is not None else 1


def _export(args: argparse.Namespace) -> int:
    from .results import write_export

    state = _load(args.experiment)
    if args.csv == "-":
        write_export(state, sys.stdout)
        return 0
    try:
        with open(args.csv, "w", newline="", encoding="utf-8") as out:
            count = write_export(state, out)
    except OSError as exc:
        raise HpoError(f"cannot write '{args.csv}': {exc.strerror}") from None
    print(f"wrote {count} reports to {args.csv}", file=sys.stderr)
    return 0


def _plot(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .experiment import find_experiment
    from .plot import plot_experiment

    written = plot_experiment(find_experiment(args.experiment), Path(args.output) if args.output else None)
    print(f"wrote {written}", file=sys.stderr)
    return 0


def _report(args: argparse.Namespace) -> int:
    """Prints the decision when it is not 'continue' (e.g. 'pause'), so a shell trial can exit on it."""
    from .worker import TRIAL_DIR_ENV, record, trial_dir

    values: dict[str, Any] = {}
    for pair in args.pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise HpoError(f"'{pair}' is not NAME=VALUE; write e.g. epoch=3 accuracy=0.91")
        values[name] = _parse_value(text)
    if trial_dir() is None:  # the program run by hand: it goes on, as report() lets a Python program go on
        print(f"hpc-hpo: report outside a trial ({TRIAL_DIR_ENV} is not set): nothing is recorded", file=sys.stderr)
        return 0
    decision = record(values)
    if decision != "continue":
        print(decision)
    return 0


def _parse_value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


if __name__ == "__main__":
    sys.exit(main())
