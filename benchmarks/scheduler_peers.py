"""Scheduler overhead per report: hpc_hpo's stopping ASHA against Optuna's and Syne Tune's, on one stream.

    python benchmarks/scheduler_peers.py                        (N = 100 ... 100,000; about 18 min on 2 cores)
    python benchmarks/scheduler_peers.py --trials 100 1000 --peers none --out /tmp/smoke.md

The synthetic report stream (benchmarks/common.py, generate_stream: epochs 1..27, grace 1, eta 3,
32 trials running at a time, a new one starting when one stops) is generated once per N and saved
as an .npz; every scheduler is fed exactly its events. hpc_hpo runs here, in-process: its
StoppingAsha.on_report (plus the random searcher's on_report, as the driver calls both) per
report; and again "with its journal writes": the same, plus hpc_hpo.journal's make_event and
Journal.append of the report event (which carries the decision) and, when the decision ends the
trial, its trial_ended event, into a real journal.jsonl (appended under its lock, then one
fsync), once per report (the worst case of a driver sweep that found one line) and once per sweep
of 32 reports (the append's cost shared by the reports of one sweep). Peers run in benchmarks/.venv-peers
(benchmarks/peer_overhead.py, spawned once per peer and N).

The cap on the peers: every peer runs to the end at each N up to --peer-full-up-to (10,000 by
default), however long it takes. Above that N a peer runs only if its time, projected from its two
largest complete runs with the growth they showed (time ~ N^k, k fitted, at least 1), is within
--peer-budget seconds (150 by default), and then stops at that deadline if the projection was too
low (its row says "partial"); otherwise its row says "not run" with the projection. The section
states the caps it ran with.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (COMPLETE, CONTINUE, DOCS, PEER_PYTHON, REPORT, START,  # noqa: E402
                    command_line, header, load_or_make_stream, read_stream, summarise, versions, write_section)

from hpc_hpo.journal import Journal, make_event  # noqa: E402
from hpc_hpo.schedulers import StoppingAsha  # noqa: E402
from hpc_hpo.schedulers.base import Decision  # noqa: E402
from hpc_hpo.searchers import RandomSearcher  # noqa: E402
from hpc_hpo.space import Param, Space, Uniform  # noqa: E402

PEERS = ["optuna-memory", "optuna-journal", "syne-tune"]
LABELS = {"hpc_hpo": "hpc_hpo StoppingAsha", "hpc_hpo+journal": "hpc_hpo + journal, append per report",
          "hpc_hpo+journal/sweep": "hpc_hpo + journal, append per sweep of 32",
          "optuna-memory": "Optuna SuccessiveHalvingPruner, in-memory",
          "optuna-journal": "Optuna SuccessiveHalvingPruner, JournalFileBackend",
          "syne-tune": "Syne Tune ASHA"}
CODES = {Decision.CONTINUE: CONTINUE, Decision.STOP: 1, Decision.COMPLETE: COMPLETE}


def run_hpc_hpo(stream: dict, journal_dir: Path | None, batch: int = 1) -> dict:
    """Feed the stream to StoppingAsha (and the random searcher); time each report's calls."""
    scheduler = StoppingAsha([1, 3, 9, 27], 3, "min")
    searcher = RandomSearcher(Space((Param("x", Uniform(0.0, 1.0), None),)), seed=0)
    journal = None
    if journal_dir is not None:
        journal_dir.mkdir(parents=True, exist_ok=True)
        (journal_dir / "journal.jsonl").unlink(missing_ok=True)
        journal = Journal(journal_dir)
    clock = time.perf_counter_ns
    report_ns: list[int] = []
    agree = judged = 0
    pending: list[dict] = []
    pending_index: list[int] = []
    started = time.perf_counter()
    for kind, trial, epoch, value, expected in zip(*(stream[k].tolist() for k in ("kind", "trial", "epoch",
                                                                                   "value", "decision"))):
        trial_id = f"{trial:06d}"
        if kind == START:
            searcher.on_trial_created(trial_id, {"x": 0.5})
            continue
        t0 = clock()
        outcome = scheduler.on_report(trial_id, epoch, value)
        searcher.on_report(trial_id, epoch, value)
        if journal is not None:
            event = make_event("report", trial_id, resource=epoch, value=value, elapsed_s=1.0,
                               decision=outcome.decision.value)
            if outcome.cutoff is not None:
                event["cutoff"] = outcome.cutoff
            pending.append(event)
            if outcome.decision != Decision.CONTINUE:
                pending.append(make_event("trial_ended", trial_id, state="stopped" if outcome.decision ==
                                          Decision.STOP else "completed", exit_code=0, reason=None))
            pending_index.append(len(report_ns))
            if len(pending_index) >= batch:
                journal.append(pending)
                pending = []
        elapsed = clock() - t0
        report_ns.append(elapsed)
        if journal is not None and not pending and batch > 1:
            # The sweep's append is shared by its reports: spread its cost evenly over them.
            total = sum(report_ns[i] for i in pending_index)
            for i in pending_index:
                report_ns[i] = total // len(pending_index)
        if journal is not None and not pending:
            pending_index = []
        if outcome.decision != Decision.CONTINUE:
            scheduler.on_trial_end(trial_id)
            searcher.on_trial_end(trial_id)
        if epoch in (1, 3, 9):
            judged += 1
            agree += CODES[outcome.decision] == expected
    if pending:
        journal.append(pending)
    return summarise(report_ns, agree, judged, {"truncated": False, "wall_s": time.perf_counter() - started})


# A peer's run at an N up to --peer-full-up-to has no deadline; this only keeps a hung peer from
# hanging the benchmark.
HUNG_S = 3600.0


def run_peer(peer: str, stream_path: Path, deadline: float | None, work: Path) -> dict:
    argv = [str(PEER_PYTHON), str(Path(__file__).resolve().parent / "peer_overhead.py"), "--stream",
            str(stream_path), "--peer", peer, "--journal", str(work / f"{peer}.optuna.log")]
    if deadline is not None:
        argv += ["--deadline", str(deadline)]
    timeout = HUNG_S if deadline is None else deadline * 2 + 60
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:,.0f} s"}
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def peer_skip(by_n: dict[int, dict], n: int, budget: float) -> str | None:
    """Why a peer is not run at this N (above --peer-full-up-to), or None when it is."""
    cut = [m for m, r in by_n.items() if r.get("truncated")]
    if cut:
        return f"it stopped at the deadline at N = {max(cut):,}"
    projected = projection(by_n, n)
    if projected is None:
        return None
    seconds, how = projected
    return f"projected {seconds:,.0f} s > {budget:,.0f} s ({how})" if seconds > budget else None


def projection(by_n: dict[int, dict], n: int) -> tuple[float, str] | None:
    """A peer's projected seconds at N = n from its two largest complete runs, time ~ N^k (k fitted, at
    least 1; k = 1 with a single run), and the words that say how it was projected."""
    done = sorted(m for m, r in by_n.items() if "wall_s" in r and not r.get("truncated") and m < n)
    if not done:
        return None
    last = done[-1]
    k, how = 1.0, f"linearly from N = {last:,}"
    if len(done) >= 2:
        before = done[-2]
        times = by_n[last]["wall_s"], by_n[before]["wall_s"]
        fitted = math.log(times[0] / times[1]) / math.log(last / before) if min(times) > 0 else 1.0
        if fitted > 1.0:
            k, how = fitted, f"its time grew as N^{fitted:.2f} from {before:,} to {last:,}"
        else:
            how = f"linearly from N = {last:,}"
    return by_n[last]["wall_s"] * (n / last) ** k, how


def growth_lines(results: dict[str, dict[int, dict]]) -> list[str]:
    lines = []
    for name, by_n in results.items():
        measured = {n: r for n, r in by_n.items() if "mean_us" in r and not r.get("truncated")}
        if len(measured) < 2:
            continue
        small, large = min(measured), max(measured)
        lines.append(f"- {LABELS[name]}: from N = {small:,} to {large:,} the mean per report grows "
                     f"{measured[large]['mean_us'] / measured[small]['mean_us']:.2f}x, the p99 "
                     f"{measured[large]['p99_us'] / measured[small]['p99_us']:.2f}x.")
    return lines


def caps(args: argparse.Namespace, with_peers: bool) -> list[str]:
    """The section's statement of what was capped, with the options that set it."""
    journal = (f"The per-report journal run stops above N = {args.no_journal_per_report_above:,} "
               "(`--no-journal-per-report-above`): one fsync per report.")
    if not with_peers:
        return [f"Caps: {journal}"]
    return [f"Caps: every peer ran to the end at each N up to {args.peer_full_up_to:,} (`--peer-full-up-to`). "
            "Above that N a peer runs only if its time, projected from its two largest complete runs with the "
            f"growth they showed (time ~ N^k, k fitted, at least 1), is within {args.peer_budget:,.0f} s "
            f"(`--peer-budget`), and stops at that deadline if the projection was too low (\"partial\"); a row "
            f"\"not run\" gives the projection. {journal}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[100, 1000, 10_000, 100_000])
    parser.add_argument("--peers", default="all", help="all, none, or a comma list of " + ", ".join(PEERS))
    parser.add_argument("--peer-full-up-to", type=int, default=10_000,
                        help="every peer runs to the end at each N up to this, however long it takes")
    parser.add_argument("--peer-budget", type=float, default=150.0,
                        help="above --peer-full-up-to, seconds one peer may take at one N: a peer projected to "
                             "take longer is not run there, and one that does run stops at this deadline")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-journal-per-report-above", type=int, default=10_000,
                        help="skip the per-report journal run above this N (it costs one fsync per report)")
    parser.add_argument("--out", type=Path, default=DOCS)
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args()
    peers = [] if args.peers == "none" else PEERS if args.peers == "all" else args.peers.split(",")
    for peer in peers:
        if peer not in PEERS:
            parser.error(f"--peers: unknown peer {peer!r}; choose from {', '.join(PEERS)}, or all or none")
    if peers and not PEER_PYTHON.exists():
        parser.error(f"{PEER_PYTHON} is missing: run `bash benchmarks/peers.sh` first, or pass --peers none")
    command = command_line()
    peer_versions = versions(["optuna", "syne-tune"], PEER_PYTHON) if peers else None
    head = header(command, peer_versions)
    names = ["hpc_hpo", "hpc_hpo+journal", "hpc_hpo+journal/sweep"] + peers
    results: dict[str, dict[int, dict]] = {name: {} for name in names}
    streams: dict[int, tuple[int, int]] = {}
    with tempfile.TemporaryDirectory(prefix="hpo-bench-") as tmp:
        work = Path(tmp)
        for n in sorted(args.trials):
            path = load_or_make_stream(n, args.seed, work)
            stream = read_stream(path)
            streams[n] = (int((stream["kind"] == REPORT).sum()), int((stream["decision"] == 1).sum()))
            for name in names:
                deadline = None
                errors = [m for m, r in results[name].items() if "error" in r]
                if name in peers and errors:
                    results[name][n] = {"skipped": f"it failed at N = {max(errors):,}"}
                    print(f"N={n:>7,} {name:24s} not run: {results[name][n]['skipped']}", flush=True)
                    continue
                if name in peers and n > args.peer_full_up_to:
                    skipped = peer_skip(results[name], n, args.peer_budget)
                    if skipped:
                        results[name][n] = {"skipped": skipped}
                        print(f"N={n:>7,} {name:24s} not run: {skipped}", flush=True)
                        continue
                    deadline = args.peer_budget
                gc.collect()
                if name == "hpc_hpo":
                    result = run_hpc_hpo(stream, None)
                elif name == "hpc_hpo+journal":
                    if n > args.no_journal_per_report_above:
                        results[name][n] = {"skipped": f"N above {args.no_journal_per_report_above:,}"}
                        continue
                    result = run_hpc_hpo(stream, work / "journal-report")
                elif name == "hpc_hpo+journal/sweep":
                    result = run_hpc_hpo(stream, work / "journal-sweep", batch=32)
                else:
                    result = run_peer(name, path, deadline, work)
                results[name][n] = result
                shown = (f"mean {result['mean_us']:9.1f} us  p99 {result['p99_us']:9.1f} us  agreement "
                         f"{result['agreement']:.3f}  wall {result.get('wall_s', 0):.1f} s"
                         + ("  TRUNCATED" if result.get("truncated") else "")) if "mean_us" in result else result
                print(f"N={n:>7,} {name:24s} {shown}", flush=True)
    rows = ["| scheduler | trials N | reports fed | mean µs/report | median µs | p99 µs | decisions as the stream's |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for name in names:
        for n, r in sorted(results[name].items()):
            if "mean_us" in r:
                note = f" (stopped at the {args.peer_budget:,.0f} s deadline: partial)" if r.get("truncated") else ""
                rows.append(f"| {LABELS[name]} | {n:,}{note} | {r['reports']:,} | {r['mean_us']:.1f} | "
                            f"{r['median_us']:.1f} | {r['p99_us']:.1f} | {100 * r['agreement']:.1f}% |")
            else:
                rows.append(f"| {LABELS[name]} | {n:,} | not run: {r.get('skipped') or r.get('error')} | | | | |")
    ratios = []
    for n in sorted(args.trials):
        base = results["hpc_hpo"][n]["mean_us"]
        parts = [f"{LABELS[p]} {results[p][n]['mean_us'] / base:,.0f}x" for p in peers
                 if "mean_us" in results[p].get(n, {}) and not results[p][n].get("truncated")]
        if parts:
            ratios.append(f"- N = {n:,}: " + "; ".join(parts) + " the time of hpc_hpo per report.")
    stream_lines = ", ".join(f"N = {n:,}: {reports:,} reports ({stops:,} stops)" for n, (reports, stops)
                             in sorted(streams.items()))
    body = ["## Scheduler overhead against Optuna and Syne Tune (issue 6, part 1)", "", *head,
            "Setup: one synthetic report stream per N (seed "
            f"{args.seed}), generated once by benchmarks/common.py and fed unchanged to every scheduler: "
            "epochs 1..27, grace period 1, eta 3 (rungs 1, 3, 9; max 27), 32 trials running at a time, a "
            "new trial starting whenever one stops or completes; losses q + N(0, 0.3)/epoch with q ~ U(0, 1); "
            "which trials go on follows DESIGN.md's stopping rule. " + stream_lines + ". Only each "
            "scheduler's own per-report calls are timed (perf_counter_ns): hpc_hpo's StoppingAsha.on_report "
            "(+ the random searcher's on_report), Optuna's trial.report + trial.should_prune, Syne Tune's "
            "on_trial_result. Garbage collection stays on, as in real use. \"With journal\" adds "
            "hpc_hpo.journal's make_event + Journal.append (an append under the journal's lock, then one "
            "fsync) of the report event (which carries the decision) and, for a stop or completion, the "
            "trial_ended event, on a real "
            "file: once per report, and once per sweep of 32 reports with the append's cost spread over "
            "them (the driver appends once per polling sweep). The last column: the share of rung reports "
            "where the scheduler decided as the stream's rule did (a peer that stops a trial the stream "
            "continues gets no more reports of it; Syne Tune ranks with its own rule, Optuna keeps the "
            "best max(1, floor(n/eta)) including the new value).", "",
            *caps(args, bool(peers)), "",
            *rows, "", "Growth of the mean and p99 from the smallest N each ran at to the largest:", "",
            *growth_lines(results), "", "Ratios of the mean per report to hpc_hpo's (no journal):", "",
            *(ratios or ["- no peers were run."]), ""]
    write_section("scheduler-peers", "\n".join(body), args.out)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
