"""The append-only journal (locked batched appends, lock-free tolerant reads) and the state fold."""
from __future__ import annotations

import json
import logging
import math
import multiprocessing
import time
from pathlib import Path

import pytest

from hpc_hpo.errors import HpoError
from hpc_hpo import journal as journal_module
from hpc_hpo.journal import FORMAT_VERSION, BlockingFlock, Journal, iter_events, make_event, read_events
from hpc_hpo.state import (COMPLETED, FAILED, FINISHED, RUNNING, STOPPED, ExperimentState, ReportRow,
                           fold)


# --------------------------------------------------------------------------- events and appends

def test_make_event_carries_version_type_time_and_trial_id():
    before = time.time()
    event = make_event("report", "0003", resource=1, value=0.5)
    assert event["v"] == FORMAT_VERSION
    assert event["type"] == "report"
    assert event["trial_id"] == "0003"
    assert before - 1e-3 <= event["t"] <= time.time() + 1e-3
    assert (event["resource"], event["value"]) == (1, 0.5)
    assert "trial_id" not in make_event("run_started", pid=1)


def test_append_writes_every_event_of_a_batch_as_one_line_each(tmp_path):
    journal = Journal(tmp_path)
    batch = [make_event("run_started", pid=1), make_event("trial_created", "0000", index=0, config={"x": 1}),
             make_event("trial_started", "0000", handle="123")]
    journal.append(batch)
    raw = (tmp_path / "journal.jsonl").read_text().splitlines()
    assert len(raw) == 3
    parsed = [json.loads(line) for line in raw]
    for line in parsed:
        assert {"v", "type", "t"} <= set(line)
    assert "trial_id" not in parsed[0]
    assert parsed[1]["trial_id"] == parsed[2]["trial_id"] == "0000"
    assert read_events(tmp_path / "journal.jsonl") == batch
    assert journal.read() == batch


def test_appends_accumulate_in_order(tmp_path):
    journal = Journal(tmp_path)
    events = [make_event("report", "0001", resource=i, value=float(i)) for i in range(10)]
    for i in range(0, 10, 3):
        journal.append(events[i:i + 3])
    assert journal.read() == events


def test_empty_batch_writes_nothing(tmp_path):
    journal = Journal(tmp_path)
    journal.append([])
    assert not (tmp_path / "journal.jsonl").exists()
    journal.append([make_event("a")])
    journal.append(iter(()))
    assert len(journal.read()) == 1


def test_missing_journal_is_a_clear_error(tmp_path):
    with pytest.raises(HpoError, match="journal"):
        read_events(tmp_path / "journal.jsonl")


def test_incomplete_last_line_is_ignored_then_repaired_by_next_append(tmp_path, caplog):
    journal = Journal(tmp_path)
    first = [make_event("run_started", pid=1), make_event("trial_created", "0000", index=0, config={})]
    journal.append(first)
    path = tmp_path / "journal.jsonl"
    with open(path, "ab") as handle:  # a writer killed mid-line
        handle.write(b'{"v":1,"type":"report","trial_id":"0000","resou')
    assert read_events(path) == first
    second = [make_event("report", "0000", resource=1, value=0.5, elapsed_s=1.0, decision="continue"),
              make_event("trial_ended", "0000", state="finished", exit_code=0)]
    caplog.set_level(logging.WARNING)
    journal.append(second)
    # the torn line got its own newline: the new events are intact, the torn one is skipped
    assert read_events(path) == first + second
    raw = path.read_bytes().splitlines()
    assert raw[2] == b'{"v":1,"type":"report","trial_id":"0000","resou'
    assert json.loads(raw[3]) == second[0]
    assert any("damaged" in r.getMessage() for r in caplog.records)


def test_a_complete_looking_unterminated_line_is_not_read(tmp_path):
    """Even a line that parses is not an event until its newline is there."""
    path = tmp_path / "journal.jsonl"
    path.write_bytes(b'{"v":1,"type":"a","t":1}\n{"v":1,"type":"b","t":2}')
    assert [e["type"] for e in read_events(path)] == ["a"]


def test_nul_bytes_and_garbage_lines_are_skipped(tmp_path):
    path = tmp_path / "journal.jsonl"
    path.write_bytes(b'{"v":1,"type":"a","t":1}\n'
                     b'\0\0\0\0\n'
                     b'\0{"v":1,"type":"b","t":2}\0\n'
                     b'this is garbage\n'
                     b'{"v":1,"type":"c","t":3}\n'
                     b'[1, 2, 3]\n'
                     b'{"no_type": true}\n'
                     b'\n'
                     b'{"v":1,"type":"d","t":4}\n')
    assert [e["type"] for e in read_events(path)] == ["a", "b", "c", "d"]


def test_nan_and_infinity_round_trip(tmp_path):
    journal = Journal(tmp_path)
    journal.append([make_event("report", "0000", resource=1, value=float("nan"), cutoff=float("inf")),
                    make_event("report", "0000", resource=2, value=float("-inf"))])
    first, second = journal.read()
    assert math.isnan(first["value"]) and first["cutoff"] == math.inf
    assert second["value"] == -math.inf


def test_unicode_and_nested_values_round_trip(tmp_path):
    journal = Journal(tmp_path)
    event = make_event("trial_created", "0000", index=0, config={"name": "ünï ✓", "layers": [1, 2]})
    journal.append([event])
    assert journal.read() == [event]


def test_streamed_reading_across_chunk_boundaries_gives_the_same_events(tmp_path, monkeypatch):
    """Lines cut by a chunk boundary, damaged lines and a torn tail read the same in 7-byte chunks."""
    journal = Journal(tmp_path)
    events = [make_event("report", f"{i:04d}", resource=i, value=i / 3, pad="ü" * (i % 5)) for i in range(40)]
    journal.append(events[:20])
    path = tmp_path / "journal.jsonl"
    with open(path, "ab") as handle:
        handle.write(b"garbage\n\0\0\n")
    journal.append(events[20:])
    with open(path, "ab") as handle:
        handle.write(b'{"v":1,"type":"report","trial_id":"9999"')  # torn: no newline yet
    whole = read_events(path)
    monkeypatch.setattr(journal_module, "READ_CHUNK", 7)
    assert list(iter_events(path)) == whole == events


def test_a_reader_stops_at_the_size_the_journal_had_when_it_opened(tmp_path):
    journal = Journal(tmp_path)
    journal.append([make_event("a"), make_event("b")])
    reader = iter_events(tmp_path / "journal.jsonl")
    first = next(reader)
    journal.append([make_event("c")])
    assert [first["type"]] + [e["type"] for e in reader] == ["a", "b"]
    assert [e["type"] for e in journal.iter()] == ["a", "b", "c"]


def test_streamed_reading_of_a_missing_journal_fails_at_the_call(tmp_path):
    with pytest.raises(HpoError, match="no journal"):
        iter_events(tmp_path / "journal.jsonl")


def test_append_syncs_to_disk_after_releasing_the_lock(tmp_path, monkeypatch):
    """Concurrent writers then commit together instead of queueing behind each other's fsync."""
    journal = Journal(tmp_path)
    held_at_fsync = []
    monkeypatch.setattr(journal_module.os, "fsync", lambda fd: held_at_fsync.append(journal.lock.is_locked))
    journal.append([make_event("a")])
    assert held_at_fsync == [False]
    assert [e["type"] for e in journal.read()] == ["a"]


def _hold_then_note(lock_path: str, note: str) -> None:
    Path(note + ".asking").touch()
    with BlockingFlock(Path(lock_path)):
        Path(note).write_text("got it")


def test_the_lock_makes_another_process_wait_until_released_and_is_reentrant(tmp_path):
    lock = BlockingFlock(tmp_path / "journal.lock")
    note = tmp_path / "note"
    with lock:
        with lock:  # re-entrant in one object: no self-deadlock
            assert lock.is_locked
        assert lock.is_locked
        ctx = multiprocessing.get_context("spawn")
        waiter = ctx.Process(target=_hold_then_note, args=(str(tmp_path / "journal.lock"), str(note)))
        waiter.start()
        deadline = time.monotonic() + 60
        while not Path(str(note) + ".asking").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)  # the waiter asked for the lock; it must still be waiting
        assert not note.exists(), "the other process got the lock while it was held"
    assert not lock.is_locked
    waiter.join(timeout=60)
    assert waiter.exitcode == 0 and note.read_text() == "got it"


# --------------------------------------------------------------------------- concurrent appends

PROCS, BATCHES, PER_BATCH = 4, 200, 3


def _writer(directory: str, worker_id: int) -> None:
    journal = Journal(Path(directory))
    for b in range(BATCHES):
        journal.append([make_event("report", f"w{worker_id}", batch=b, item=i, pad="x" * (50 * i + worker_id))
                        for i in range(PER_BATCH)])


def test_concurrent_appends_lose_and_interleave_nothing(tmp_path):
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w)) for w in range(PROCS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    raw = (tmp_path / "journal.jsonl").read_bytes()
    lines = raw.splitlines()
    assert len(lines) == PROCS * BATCHES * PER_BATCH
    events = [json.loads(line) for line in lines]  # every line parses whole
    assert read_events(tmp_path / "journal.jsonl") == events
    for w in range(PROCS):
        mine = [(e["batch"], e["item"]) for e in events if e["trial_id"] == f"w{w}"]
        # each writer's events in its own order, complete
        assert mine == [(b, i) for b in range(BATCHES) for i in range(PER_BATCH)]
        assert all(e["pad"] == "x" * (50 * e["item"] + w) for e in events if e["trial_id"] == f"w{w}")
    # a batch is one append: its events are adjacent
    for k in range(0, len(events), PER_BATCH):
        group = events[k:k + PER_BATCH]
        assert len({(e["trial_id"], e["batch"]) for e in group}) == 1
        assert [e["item"] for e in group] == list(range(PER_BATCH))


# --------------------------------------------------------------------------- state fold

T0 = 1000.0


def ev(kind, t, trial_id=None, **fields):
    event = {"v": 1, "type": kind, "t": t, **fields}
    if trial_id is not None:
        event["trial_id"] = trial_id
    return event


def created(mode="min"):
    return ev("experiment_created", T0, name="exp", metric="loss", mode=mode, resource="epoch",
              params=["x"])


def trial(tid, index, t):
    return [ev("trial_created", t, tid, index=index, config={"x": index}),
            ev("trial_started", t + 0.5, tid, handle=f"pid{index}", backend="local")]


def rep(tid, t, resource, value, decision="continue"):
    return ev("report", t, tid, resource=resource, value=value, elapsed_s=t - T0, decision=decision)


def test_fold_trial_states():
    events = [created(), ev("run_started", T0 + 1, pid=1),
              *trial("0000", 0, T0 + 2), *trial("0001", 1, T0 + 2), *trial("0002", 2, T0 + 2),
              *trial("0003", 3, T0 + 2), *trial("0004", 4, T0 + 2), *trial("0005", 5, T0 + 2),
              rep("0000", T0 + 3, 1, 0.5),
              rep("0001", T0 + 3, 1, 0.9, "stop"),
              rep("0002", T0 + 3, 1, 0.4),
              rep("0003", T0 + 4, 1, 0.45),
              rep("0000", T0 + 5, 3, 0.2, "complete"),
              # 0001 was stopped; its process is cancelled and ends non-zero: stays stopped
              ev("trial_ended", T0 + 6, "0001", state=FAILED, exit_code=-15),
              # 0000 completed; its process then exits 0: stays completed
              ev("trial_ended", T0 + 6, "0000", state=FINISHED, exit_code=0),
              # no decision taken: the trial_ended state is the state
              ev("trial_ended", T0 + 7, "0002", state=FINISHED, exit_code=0),
              ev("trial_ended", T0 + 7, "0003", state=FAILED, exit_code=1, reason="boom"),
              ]
    state = fold(events)
    assert (state.name, state.metric, state.mode, state.resource, state.param_names) == \
        ("exp", "loss", "min", "epoch", ["x"])
    states = {tid: t.state for tid, t in state.trials.items()}
    assert states == {"0000": COMPLETED, "0001": STOPPED, "0002": FINISHED, "0003": FAILED,
                      "0004": RUNNING, "0005": RUNNING}
    t1 = state.trials["0001"]
    assert t1.decided and t1.process_ended and t1.exit_code == -15 and t1.ended_at == T0 + 6
    assert state.trials["0003"].reason == "boom"
    assert not state.trials["0002"].decided
    t0 = state.trials["0000"]
    assert (t0.best_value, t0.best_resource, t0.last_resource, t0.num_reports) == (0.2, 3, 3.0, 2)
    assert t0.handle == "pid0" and t0.started_at == T0 + 2.5 and t0.config == {"x": 0}
    assert state.count(RUNNING) == 2 and state.count(STOPPED, COMPLETED) == 2


def test_fold_pending_trial_without_start():
    state = fold([created(), ev("trial_created", T0, "0000", index=0, config={})])
    assert state.trials["0000"].state == "pending"


def test_rows_in_order_of_processing():
    events = [created(), *trial("0000", 0, T0), *trial("0001", 1, T0),
              rep("0000", T0 + 1, 1, 0.5), rep("0001", T0 + 2, 1, 0.7, "stop"),
              rep("0000", T0 + 3, 3, 0.3), ev("unknown_future_event", T0 + 4, foo=1),
              rep("0000", T0 + 5, 9, 0.1, "complete")]
    state = fold(events)
    assert state.rows == [ReportRow("0000", 1, 0.5, 1.0, "continue"), ReportRow("0001", 1, 0.7, 2.0, "stop"),
                          ReportRow("0000", 3, 0.3, 3.0, "continue"),
                          ReportRow("0000", 9, 0.1, 5.0, "complete")]


def best_of(mode, reports):
    events = [created(mode)]
    for tid in sorted({r[0] for r in reports}):
        events += trial(tid, int(tid), T0)
    events += [rep(tid, T0 + 1 + i, res, val) for i, (tid, res, val) in enumerate(reports)]
    return fold(events).best_trial()


def test_best_trial_min_mode():
    best = best_of("min", [("0000", 1, 0.5), ("0001", 1, 0.3), ("0002", 1, 0.8), ("0000", 3, 0.4)])
    assert best.trial_id == "0001" and best.best_value == 0.3


def test_best_trial_max_mode():
    best = best_of("max", [("0000", 1, 0.5), ("0001", 1, 0.3), ("0002", 1, 0.8), ("0000", 3, 0.4)])
    assert best.trial_id == "0002" and best.best_value == 0.8


def test_best_trial_is_best_value_at_any_report_not_the_last():
    best = best_of("min", [("0000", 1, 0.1), ("0000", 3, 0.9), ("0001", 1, 0.2), ("0001", 3, 0.2)])
    assert best.trial_id == "0000" and best.best_value == 0.1 and best.best_resource == 1


@pytest.mark.parametrize("mode", ["min", "max"])
def test_best_trial_prefers_higher_resource_at_equal_values(mode):
    # order of trials does not matter: the one with 0.5 at resource 9 wins either way
    for reports in ([("0000", 3, 0.5), ("0001", 9, 0.5)], [("0000", 9, 0.5), ("0001", 3, 0.5)]):
        best = best_of(mode, reports)
        assert best.best_resource == 9


def test_best_trial_equal_values_the_one_that_got_further_wins():
    """0000 reports 0.5 at 1 and again at 9; 0001 reports 0.5 at 3 only. Same best value, and 0000
    got further with it (README: "at equal values, the one that got further")."""
    best = best_of("min", [("0000", 1, 0.5), ("0001", 3, 0.5), ("0000", 9, 0.5)])
    assert best.trial_id == "0000"


def test_best_trial_ignores_nan_and_none_without_reports():
    assert best_of("min", []) is None
    best = best_of("min", [("0000", 1, float("nan")), ("0001", 1, 0.9)])
    assert best.trial_id == "0001"
    only_nan = best_of("max", [("0000", 1, float("nan"))])
    assert only_nan is None


def test_time_used_sums_runs():
    events = [created(),
              ev("run_started", T0 + 0, pid=1),
              ev("trial_created", T0 + 10, "0000", index=0, config={}),
              ev("experiment_ended", T0 + 50, reason="interrupted", final=False),
              # a second run an hour later: the gap is not counted
              ev("run_started", T0 + 3600, pid=2),
              ev("experiment_ended", T0 + 3630, reason="budget", final=True)]
    state = fold(events)
    assert state.time_used() == pytest.approx(50 + 30)
    assert state.ended == "budget" and state.finished
    # while the second run is still going, the open run counts up to the last event
    partial = fold(events[:-1] + [ev("trial_created", T0 + 3612, "0001", index=1, config={})])
    assert partial.time_used() == pytest.approx(50 + 12)
    assert not partial.finished and partial.ended is None


def test_time_used_zero_before_any_run():
    assert fold([created()]).time_used() == 0.0
    assert ExperimentState().time_used() == 0.0


def test_new_run_reopens_a_non_final_end():
    events = [created(), ev("run_started", T0, pid=1),
              ev("experiment_ended", T0 + 5, reason="interrupted", final=False),
              ev("run_started", T0 + 100, pid=2)]
    state = fold(events)
    assert state.ended is None and not state.finished
