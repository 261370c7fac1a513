"""What the benchmarks share: the machine description, peer versions, the docs/benchmarks.md
section writer, the synthetic report stream of the scheduler benchmark and the multi-fidelity
Branin of the search-quality benchmark.

Imports only the standard library and numpy, so that it runs both in the project's Python and in
the peers' virtualenv (benchmarks/.venv-peers, made by benchmarks/peers.sh).
"""
from __future__ import annotations

import argparse
import bisect
import datetime
import json
import importlib.metadata
import math
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "benchmarks.md"
PEER_PYTHON = REPO / "benchmarks" / ".venv-peers" / "bin" / "python"

# The scheduler benchmark's setting (issue 6, part 1): epochs 1..27, grace 1, eta 3, 32 slots.
MAX_T, GRACE, ETA, SLOTS = 27, 1, 3, 32
LEVELS = [1, 3, 9, 27]

# Stream event kinds.
START, REPORT = 0, 1
# Reference decisions carried by the stream (DESIGN.md's stopping-ASHA rule).
CONTINUE, STOP, COMPLETE = 0, 1, 2
DECISION_NAMES = {CONTINUE: "continue", STOP: "stop", COMPLETE: "complete"}


# --------------------------------------------------------------------------- machine and versions


def machine() -> str:
    """Cores, CPU model, memory and kernel, from /proc where there is one."""
    memory = "unknown memory"
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        total_kb = int(meminfo.read_text().split("MemTotal:")[1].split()[0])
        memory = f"{total_kb / 2**20:.1f} GiB RAM"
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        model = names[0] if names else model
    return f"{os.cpu_count()} cores ({model}), {memory}, {platform.system()} {platform.release()}"


def load_average() -> str:
    path = Path("/proc/loadavg")
    return " ".join(path.read_text().split()[:3]) if path.exists() else "unknown"


def versions(names: list[str], python: Path | str | None = None) -> dict[str, str]:
    """Installed versions of these distributions, in this interpreter or in another one."""
    if python is None or Path(python) == Path(sys.executable):
        found = {}
        for name in names:
            try:
                found[name] = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                found[name] = "not installed"
        return found
    import json
    import subprocess
    script = ("import importlib.metadata as m, json, sys\n"
              "out = {}\n"
              "for n in sys.argv[1:]:\n"
              "    try: out[n] = m.version(n)\n"
              "    except m.PackageNotFoundError: out[n] = 'not installed'\n"
              "print(json.dumps(out))\n")
    done = subprocess.run([str(python), "-c", script, *names], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def peers_available() -> bool:
    return PEER_PYTHON.exists()


def command_line() -> str:
    """The command as typed from the repository root."""
    script = os.path.relpath(sys.argv[0], REPO)
    return "python " + " ".join(shlex.quote(a) for a in [script] + sys.argv[1:])


def add_live_output_options(parser: argparse.ArgumentParser) -> None:
    """Where a live benchmark writes its section, its raw results and its experiment directories."""
    parser.add_argument("--out", type=Path, default=DOCS)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--dir", help="where the experiment directories go (default: the system's temp dir)")
    parser.add_argument("--keep", help="copy each experiment directory under this directory")


def header(command: str, peer_versions: dict[str, str] | None) -> list[str]:
    """Date, machine, command and versions: the lines every section starts with."""
    own = versions(["hpc-hpo", "numpy", "scipy", "filelock", "sortedcontainers"])
    line = (f"Measured {datetime.datetime.now().isoformat(timespec='minutes')} on {machine()}; "
            f"Python {platform.python_version()}; " + ", ".join(f"{k} {v}" for k, v in own.items()) + ".")
    peers = ("Peers (benchmarks/.venv-peers, made by `bash benchmarks/peers.sh`): "
             + ", ".join(f"{k} {v}" for k, v in peer_versions.items()) + "."
             if peer_versions else "Peers: none (run with `--peers none`).")
    return [line, "", peers, "", f"Load average (1, 5, 15 min) at the start: {load_average()}.", "",
            f"Command: `{command}`", ""]


def write_section(key: str, body: str, path: Path = DOCS) -> None:
    """Replace (or add) the section between this key's markers, leaving every other section as it is."""
    begin, end = f"<!-- benchmark:{key}:begin -->", f"<!-- benchmark:{key}:end -->"
    block = f"{begin}\n{body.rstrip()}\n{end}\n"
    text = path.read_text() if path.exists() else (
        "# Benchmarks\n\nEach section is written by its benchmark command (see README.md, \"Benchmarks\"); "
        "`bash benchmarks/run_all.sh` regenerates them all. A section is replaced only by its own "
        "command.\n\n")
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        text = head + block + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def percentile(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


# --------------------------------------------------------------------------- the report stream


def reference_quantile(sorted_values: list[float], q: float) -> float:
    """numpy.quantile (linear) of a sorted list, written out independently of hpc_hpo."""
    virtual = (len(sorted_values) - 1) * q
    below = math.floor(virtual)
    if below >= len(sorted_values) - 1:
        return sorted_values[-1]
    a, b = sorted_values[below], sorted_values[below + 1]
    return a + (b - a) * (virtual - below)


def generate_stream(trials: int, seed: int) -> dict[str, np.ndarray]:
    """The synthetic experiment, as a fixed sequence of events that every scheduler is fed.

    Trial i has a quality q_i ~ U(0, 1); its loss at epoch e is q_i + N(0, 0.3) / e (better configs
    have lower losses, noise shrinks with training). Epoch durations are lognormal(0, 0.5), so
    reports of the 32 running trials interleave. Which trials go on is decided by DESIGN.md's
    stopping-ASHA rule (computed here, independently of hpc_hpo, with a sorted list per rung), and a
    new trial starts in a slot whenever a trial stops or completes, until `trials` have started.
    Each event: kind (START or REPORT), trial index, epoch, value, and the rule's decision.
    """
    rng = np.random.default_rng(seed)
    rungs: list[list[float]] = [[] for _ in LEVELS[:-1]]
    quality: dict[int, float] = {}
    epoch_of: dict[int, int] = {}
    kinds, ids, epochs, values, decisions = [], [], [], [], []
    heap: list[tuple[float, int, int]] = []
    import heapq
    now, seq, created = 0.0, 0, 0

    def start() -> None:
        nonlocal created, seq
        if created >= trials:
            return
        trial = created
        created += 1
        quality[trial] = float(rng.random())
        epoch_of[trial] = 0
        kinds.append(START), ids.append(trial), epochs.append(0), values.append(0.0), decisions.append(CONTINUE)
        seq += 1
        heapq.heappush(heap, (now + float(rng.lognormal(0.0, 0.5)), seq, trial))

    for _ in range(SLOTS):
        start()
    while heap:
        now, _, trial = heapq.heappop(heap)
        epoch = epoch_of[trial] + 1
        epoch_of[trial] = epoch
        value = quality[trial] + float(rng.normal(0.0, 0.3)) / epoch
        if epoch >= MAX_T:
            decision = COMPLETE
        elif epoch in LEVELS:
            rung = rungs[LEVELS.index(epoch)]
            decision = CONTINUE
            if rung and value > reference_quantile(rung, 1 / ETA):
                decision = STOP
            bisect.insort(rung, value)
        else:
            decision = CONTINUE
        kinds.append(REPORT), ids.append(trial), epochs.append(epoch), values.append(value)
        decisions.append(decision)
        if decision == CONTINUE:
            seq += 1
            heapq.heappush(heap, (now + float(rng.lognormal(0.0, 0.5)), seq, trial))
        else:
            del quality[trial], epoch_of[trial]
            start()
    return {"kind": np.array(kinds, dtype=np.int8), "trial": np.array(ids, dtype=np.int32),
            "epoch": np.array(epochs, dtype=np.int16), "value": np.array(values, dtype=np.float64),
            "decision": np.array(decisions, dtype=np.int8)}


def load_or_make_stream(trials: int, seed: int, cache: Path) -> Path:
    """The stream for (trials, seed) as an .npz file, generated once and reused by every scheduler."""
    path = cache / f"stream-{trials}-{seed}.npz"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp.npz")
        np.savez(temporary, **generate_stream(trials, seed))
        os.replace(temporary, path)
    return path


def read_stream(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def summarise(report_ns: list[int], agree: int, judged: int, extra: dict | None = None) -> dict:
    """Per-report mean, median and p99 in microseconds, and how often the decisions matched the stream's."""
    us = np.array(report_ns, dtype=float) / 1000.0
    out = {"reports": int(len(us)), "mean_us": float(us.mean()) if len(us) else float("nan"),
           "median_us": percentile(us, 50), "p99_us": percentile(us, 99),
           "agreement": agree / judged if judged else float("nan")}
    out.update(extra or {})
    return out


# --------------------------------------------------------------------------- multi-fidelity Branin


BRANIN_MIN = 0.397887


def branin(x1: float, x2: float) -> float:
    return ((x2 - 5.1 / (4 * math.pi ** 2) * x1 ** 2 + 5 / math.pi * x1 - 6) ** 2
            + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10)


def branin_mf(x1: float, x2: float, resource: float) -> float:
    """Branin at full resource; at low resource a learning-curve offset that shrinks as 1/r and depends a
    little on the config (as tests/unit/test_kde_searcher.py has it), so low budgets rank roughly right."""
    return branin(x1, x2) + (20 + 5 * math.sin(x1 + x2)) / resource


def publish(key: str, body: str, out: Path, results: Any = None, json_path: Path | None = None) -> None:
    """Write the section to the docs (and the raw results to json_path, if given), then print it."""
    write_section(key, body, out)
    if json_path is not None:
        json_path.write_text(json.dumps(results, indent=1))
    print(body)
    print(f"written to {out}")
