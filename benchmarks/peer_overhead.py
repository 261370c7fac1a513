"""Feed the scheduler benchmark's report stream to one peer scheduler; print its timings as JSON.

Runs in the peers' virtualenv (benchmarks/.venv-peers); benchmarks/scheduler_peers.py spawns it:

    benchmarks/.venv-peers/bin/python benchmarks/peer_overhead.py --stream S.npz --peer optuna-memory

Peers: `optuna-memory` (SuccessiveHalvingPruner, in-memory storage), `optuna-journal` (the same with
JournalStorage on a JournalFileBackend file), `syne-tune` (syne_tune.optimizer.baselines.ASHA, i.e.
AsynchronousSuccessiveHalving with random search). Per report only the peer's own calls are timed:
Optuna's trial.report + trial.should_prune (report alone at the last epoch, where the objective
would return), Syne Tune's on_trial_result. Starting and ending trials (ask/tell, suggest +
on_trial_add, on_trial_remove) are timed apart as bookkeeping.

The stream is fixed, so a peer may disagree with the decisions that made it: a trial the peer stops
gets no more reports (and a new trial starts only where the stream has one); a trial the stream
ends while the peer would go on is ended there (Optuna: told PRUNED; Syne Tune: on_trial_remove,
as its Tuner does after a stop). How often the peer agreed is in the output.
"""
from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import COMPLETE, CONTINUE, ETA, GRACE, MAX_T, REPORT, START, read_stream, summarise  # noqa: E402


class OptunaPeer:
    def __init__(self, journal_path: Path | None, seed: int) -> None:
        import optuna
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.optuna = optuna
        storage = None
        if journal_path is not None:
            from optuna.storages.journal import JournalFileBackend
            storage = optuna.storages.JournalStorage(JournalFileBackend(str(journal_path)))
        pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=GRACE, reduction_factor=ETA,
                                                        min_early_stopping_rate=0, bootstrap_count=0)
        self.study = optuna.create_study(storage=storage, sampler=optuna.samplers.RandomSampler(seed=seed),
                                         pruner=pruner, direction="minimize")
        self.trials: dict[int, object] = {}

    def start(self, trial_id: int) -> None:
        trial = self.study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        self.trials[trial_id] = trial

    def report(self, trial_id: int, epoch: int, value: float) -> bool:
        """True when the peer lets the trial go on (or completes it at the last epoch)."""
        trial = self.trials[trial_id]
        trial.report(value, epoch)
        if epoch >= MAX_T:
            return True
        return not trial.should_prune()

    def end(self, trial_id: int, epoch: int, value: float, completed: bool) -> None:
        trial = self.trials.pop(trial_id)
        if completed:
            self.study.tell(trial, value)
        else:
            self.study.tell(trial, state=self.optuna.trial.TrialState.PRUNED)


class SynePeer:
    def __init__(self, seed: int) -> None:
        from syne_tune.backend.trial_status import Trial
        from syne_tune.config_space import uniform
        from syne_tune.optimizer.baselines import ASHA
        from syne_tune.optimizer.scheduler import SchedulerDecision
        self.Trial, self.stop = Trial, SchedulerDecision.STOP
        self.scheduler = ASHA({"x": uniform(0.0, 1.0), "epochs": MAX_T}, metric="loss", time_attr="epoch",
                              max_t=MAX_T, do_minimize=True, random_seed=seed, grace_period=GRACE,
                              reduction_factor=ETA)
        self.trials: dict[int, object] = {}
        self.now = datetime.now()

    def start(self, trial_id: int) -> None:
        suggestion = self.scheduler.suggest()
        trial = self.Trial(trial_id=trial_id, config=suggestion.config, creation_time=self.now)
        self.scheduler.on_trial_add(trial)
        self.trials[trial_id] = trial

    def report(self, trial_id: int, epoch: int, value: float) -> bool:
        decision = self.scheduler.on_trial_result(self.trials[trial_id], {"epoch": epoch, "loss": value})
        return epoch >= MAX_T or decision != self.stop

    def end(self, trial_id: int, epoch: int, value: float, completed: bool) -> None:
        self.scheduler.on_trial_remove(self.trials.pop(trial_id))


def run(peer, stream: dict, deadline_s: float) -> dict:
    clock = time.perf_counter_ns
    report_ns: list[int] = []
    book_ns: list[int] = []
    alive: set[int] = set()
    agree = judged = 0
    started = time.perf_counter()
    kinds, ids, epochs, values, decisions = (stream[k].tolist() for k in ("kind", "trial", "epoch", "value",
                                                                            "decision"))
    for index, (kind, trial, epoch, value, decision) in enumerate(zip(kinds, ids, epochs, values, decisions)):
        if kind == START:
            t0 = clock()
            peer.start(trial)
            book_ns.append(clock() - t0)
            alive.add(trial)
            continue
        if trial not in alive:
            continue  # the peer stopped it earlier
        t0 = clock()
        goes_on = peer.report(trial, epoch, value)
        report_ns.append(clock() - t0)
        if epoch in (1, 3, 9):
            judged += 1
            agree += goes_on == (decision == CONTINUE)
        if goes_on and decision == CONTINUE:
            if len(report_ns) % 256 == 0 and time.perf_counter() - started > deadline_s:
                return summarise(report_ns, agree, judged, {"truncated": True, "wall_s": time.perf_counter() - started})
            continue
        t0 = clock()
        peer.end(trial, epoch, value, completed=decision == COMPLETE and goes_on)
        book_ns.append(clock() - t0)
        alive.discard(trial)
        if len(report_ns) % 256 == 0 and time.perf_counter() - started > deadline_s:
            return summarise(report_ns, agree, judged, {"truncated": True, "wall_s": time.perf_counter() - started})
    extra = {"truncated": False, "bookkeeping_mean_us": sum(book_ns) / max(len(book_ns), 1) / 1000.0,
             "wall_s": time.perf_counter() - started}
    return summarise(report_ns, agree, judged, extra)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stream", type=Path, required=True)
    parser.add_argument("--peer", choices=["optuna-memory", "optuna-journal", "syne-tune"], required=True)
    parser.add_argument("--journal", type=Path, help="Optuna's journal file (optuna-journal)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--deadline", type=float, default=1e9, help="give up after this many seconds")
    args = parser.parse_args()
    stream = read_stream(args.stream)
    if args.peer == "syne-tune":
        peer = SynePeer(args.seed)
    else:
        journal = None
        if args.peer == "optuna-journal":
            journal = args.journal or args.stream.with_suffix(".optuna.log")
            journal.unlink(missing_ok=True)
        peer = OptunaPeer(journal, args.seed)
    gc.collect()
    result = run(peer, stream, args.deadline)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
