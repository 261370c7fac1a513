"""Reading trial metric files (LineTail), parsing reports (ReportParser) and the trial-side report()."""
from __future__ import annotations

import json
import logging
import math
import re
import time
import warnings

import numpy as np
import pytest

import hpc_hpo.worker as worker
from hpc_hpo.metrics import LineTail, Report, ReportParser


def append(path, data: bytes) -> None:
    with open(path, "ab") as handle:
        handle.write(data)


def warnings_from_metrics(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "hpc_hpo.metrics" and r.levelno == logging.WARNING]


# --------------------------------------------------------------------------- LineTail

def test_missing_file_yields_nothing(tmp_path):
    tail = LineTail(tmp_path / "metrics.jsonl")
    assert tail.read_lines() == []
    assert tail.offset == 0
    # once it appears, it is read from the start
    append(tmp_path / "metrics.jsonl", b"a\n")
    assert tail.read_lines() == ["a"]


def test_complete_lines_are_read_once(tmp_path):
    path = tmp_path / "m"
    append(path, b"one\ntwo\n")
    tail = LineTail(path)
    assert tail.read_lines() == ["one", "two"]
    assert tail.offset == 8
    assert tail.read_lines() == []
    append(path, b"three\n")
    assert tail.read_lines() == ["three"]
    assert tail.offset == 14


def test_incomplete_last_line_waits_for_its_newline(tmp_path):
    path = tmp_path / "m"
    append(path, b'{"loss": 1}\n{"loss": 0.')
    tail = LineTail(path)
    assert tail.read_lines() == ['{"loss": 1}']
    assert tail.offset == len(b'{"loss": 1}\n')  # only over complete lines
    # still incomplete: nothing, offset unchanged
    append(path, b"5")
    assert tail.read_lines() == []
    assert tail.offset == len(b'{"loss": 1}\n')
    # finished: the whole line, exactly once
    append(path, b'}\n')
    assert tail.read_lines() == ['{"loss": 0.5}']
    assert tail.read_lines() == []
    assert tail.offset == path.stat().st_size


def test_file_without_any_newline_gives_nothing(tmp_path):
    path = tmp_path / "m"
    append(path, b"partial")
    tail = LineTail(path)
    assert tail.read_lines() == []
    assert tail.offset == 0


def test_nul_bytes_inside_and_around_lines_are_dropped(tmp_path):
    path = tmp_path / "m"
    data = b'\0\0{"loss":\x000.5}\0\n\0\0\0\n{"loss":0.25}\n'
    append(path, data)
    tail = LineTail(path)
    assert tail.read_lines() == ['{"loss":0.5}', '{"loss":0.25}']
    assert tail.offset == len(data)  # the NULs were consumed, not left for the next read


def test_nul_padding_after_last_line_is_not_a_line(tmp_path):
    """NFS can show a file extended with zeros before the data: no newline, so nothing is consumed."""
    path = tmp_path / "m"
    append(path, b'{"loss":1}\n\0\0\0\0')
    tail = LineTail(path)
    assert tail.read_lines() == ['{"loss":1}']
    assert tail.offset == len(b'{"loss":1}\n')


def test_blank_lines_are_dropped(tmp_path):
    path = tmp_path / "m"
    append(path, b"a\n\n   \nb\n")
    assert LineTail(path).read_lines() == ["a", "b"]


def test_shrunken_file_is_read_again_from_the_start(tmp_path):
    path = tmp_path / "m"
    append(path, b"first line\nsecond line\n")
    tail = LineTail(path)
    assert tail.read_lines() == ["first line", "second line"]
    path.write_bytes(b"new\n")  # truncated and rewritten (e.g. a requeued job)
    assert tail.read_lines() == ["new"]
    assert tail.offset == 4
    append(path, b"more\n")
    assert tail.read_lines() == ["more"]


def test_non_utf8_bytes_do_not_crash(tmp_path):
    path = tmp_path / "m"
    append(path, b'\xff\xfe garbage\n{"loss":1}\n')
    lines = LineTail(path).read_lines()
    assert len(lines) == 2 and lines[1] == '{"loss":1}'


# --------------------------------------------------------------------------- ReportParser (JSON)

def parser(metric="loss", resource="epoch", regex=None):
    return ReportParser(metric, resource, re.compile(regex) if regex else None, "trial 0001")


def test_json_reports_parsed():
    reports = parser().parse(['{"epoch": 1, "loss": 0.5, "t": 1700000000.25}', '{"epoch": 2, "loss": 0.25}'])
    assert reports == [Report(1.0, 0.5, 1700000000.25), Report(2.0, 0.25, None)]


def test_t_field_becomes_report_time():
    (report,) = parser().parse(['{"epoch": 3, "loss": 1, "t": 12.5}'])
    assert report.time == 12.5
    (report,) = parser().parse(['{"epoch": 3, "loss": 1, "t": "13"}'])
    assert report.time == 13.0


def test_garbage_lines_skipped_with_one_warning(caplog):
    p = parser()
    caplog.set_level(logging.WARNING)
    lines = ["not json", '{"epoch": 1, "loss": 0.5}', "{broken", "Traceback (most recent call last):",
             '{"epoch": 2, "loss": 0.4}', "]]]"]
    reports = p.parse(lines)
    assert [(r.resource, r.value) for r in reports] == [(1.0, 0.5), (2.0, 0.4)]
    assert len(warnings_from_metrics(caplog)) == 1
    # more garbage in a later read: still no second warning for this file
    assert p.parse(["garbage again", "x"]) == []
    assert len(warnings_from_metrics(caplog)) == 1


def test_each_parser_warns_for_its_own_file(caplog):
    caplog.set_level(logging.WARNING)
    parser().parse(["bad"])
    parser().parse(["bad"])
    assert len(warnings_from_metrics(caplog)) == 2


@pytest.mark.parametrize("line", ["[1, 2]", "3", '"loss"', "null", "true", '[{"loss": 1, "epoch": 1}]'])
def test_json_lines_that_are_not_objects_are_ignored(line):
    assert parser().parse([line]) == []


def test_line_without_metric_is_not_a_report_and_does_not_count(caplog):
    caplog.set_level(logging.WARNING)
    p = parser()
    assert p.parse(['{"epoch": 1, "accuracy": 0.9}', '{"status": "starting"}']) == []
    assert warnings_from_metrics(caplog) == []  # programs log other things: not a problem
    # implicit resources still start at 1: the non-reports did not count
    assert [r.resource for r in p.parse(['{"loss": 0.3}'])] == [1.0]


@pytest.mark.parametrize("bad", ['"abc"', "null", "true", "[0.5]", '{"x": 1}', '""'])
def test_non_numeric_metric_is_skipped(bad, caplog):
    caplog.set_level(logging.WARNING)
    p = parser()
    reports = p.parse([f'{{"epoch": 1, "loss": {bad}}}', '{"epoch": 2, "loss": 0.1}'])
    assert reports == [Report(2.0, 0.1, None)]
    assert len(warnings_from_metrics(caplog)) == 1


def test_missing_resource_counts_1_2_3_with_one_warning(caplog):
    caplog.set_level(logging.WARNING)
    p = parser()
    reports = p.parse(['{"loss": 0.3}', '{"loss": 0.2}'])
    reports += p.parse(['{"loss": 0.1}'])  # counting goes on across reads
    assert [(r.resource, r.value) for r in reports] == [(1.0, 0.3), (2.0, 0.2), (3.0, 0.1)]
    assert len(warnings_from_metrics(caplog)) == 1


@pytest.mark.parametrize("resource", ["0", "-1", "-0.5", '"abc"', "null", "false"])
def test_non_positive_or_bad_resource_is_skipped(resource, caplog):
    caplog.set_level(logging.WARNING)
    p = parser()
    reports = p.parse([f'{{"epoch": {resource}, "loss": 0.5}}', '{"epoch": 1, "loss": 0.4}'])
    assert reports == [Report(1.0, 0.4, None)]
    assert len(warnings_from_metrics(caplog)) == 1


def test_numeric_strings_accepted():
    assert parser().parse(['{"epoch": "3", "loss": "0.25"}']) == [Report(3.0, 0.25, None)]
    assert parser().parse(['{"epoch": " 2 ", "loss": "1e-3"}']) == [Report(2.0, 1e-3, None)]


def test_fractional_resource_kept():
    assert parser().parse(['{"epoch": 0.5, "loss": 1}']) == [Report(0.5, 1.0, None)]


def test_nan_metric_is_passed_on():
    """NaN is a report: the scheduler stops the trial on it (it must not be silently dropped)."""
    (report,) = parser().parse(['{"epoch": 1, "loss": NaN}'])
    assert report.resource == 1.0 and math.isnan(report.value)


def test_other_metric_and_resource_names():
    p = parser(metric="accuracy", resource="step")
    assert p.parse(['{"step": 100, "accuracy": 0.9, "loss": 3}', '{"epoch": 1, "loss": 2}']) == \
        [Report(100.0, 0.9, None)]


# --------------------------------------------------------------------------- ReportParser (regex)

def test_regex_with_one_unnamed_group_counts_reports():
    p = parser(metric="fom", resource="step", regex=r"FoM: (\S+)")
    lines = ["starting solver", "FoM: 0.5", "iteration done", "FoM: 0.25", "FoM: 1e-2"]
    reports = p.parse(lines)
    assert [(r.resource, r.value, r.time) for r in reports] == [(1.0, 0.5, None), (2.0, 0.25, None),
                                                                 (3.0, 0.01, None)]


def test_regex_named_groups_for_metric_and_resource():
    p = parser(metric="fom", resource="step", regex=r"step (?P<step>\d+): fom=(?P<fom>\S+)")
    lines = ["step 10: fom=0.5", "unrelated", "step 20: fom=0.4", "step 30: fom=oops"]
    assert p.parse(lines) == [Report(10.0, 0.5, None), Report(20.0, 0.4, None)]


def test_regex_named_metric_group_only_counts_resource():
    p = parser(metric="fom", resource="step", regex=r"fom=(?P<fom>[-+.\deE]+)")
    assert [(r.resource, r.value) for r in p.parse(["fom=3", "x", "fom=2"])] == [(1.0, 3.0), (2.0, 2.0)]


def test_regex_non_matching_lines_ignored(caplog):
    caplog.set_level(logging.WARNING)
    p = parser(metric="fom", resource="step", regex=r"FoM: (\S+)")
    assert p.parse(["hello", '{"fom": 1}', "fom: 0.5"]) == []
    assert warnings_from_metrics(caplog) == []


def test_regex_mode_does_not_take_t_from_text():
    p = parser(metric="fom", resource="t", regex=r"FoM: (?P<fom>\S+) t=(?P<t>\S+)")
    (report,) = p.parse(["FoM: 0.5 t=4"])
    assert report.resource == 4.0 and report.value == 0.5 and report.time is None


# --------------------------------------------------------------------------- worker.report()

def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_report_appends_one_json_line_per_call(tmp_path, monkeypatch):
    monkeypatch.setenv(worker.TRIAL_DIR_ENV, str(tmp_path))
    before = time.time()
    worker.report(epoch=1, loss=0.5)
    worker.report(epoch=2, loss=0.25, accuracy=0.9)
    after = time.time()
    lines = read_jsonl(tmp_path / "metrics.jsonl")
    assert len(lines) == 2
    assert set(lines[0]) == {"epoch", "loss", "t"}
    assert set(lines[1]) == {"epoch", "loss", "accuracy", "t"}
    assert (lines[0]["epoch"], lines[0]["loss"]) == (1, 0.5)
    assert (lines[1]["epoch"], lines[1]["loss"], lines[1]["accuracy"]) == (2, 0.25, 0.9)
    for line in lines:
        assert before <= line["t"] <= after
    assert (tmp_path / "metrics.jsonl").read_bytes().endswith(b"\n")


def test_report_is_exported_at_package_level(tmp_path, monkeypatch):
    import hpc_hpo
    monkeypatch.setenv("HPC_HPO_TRIAL_DIR", str(tmp_path))
    hpc_hpo.report(epoch=1, loss=2)
    assert [(d["epoch"], d["loss"]) for d in read_jsonl(tmp_path / "metrics.jsonl")] == [(1, 2)]


def test_report_turns_numpy_scalars_into_plain_numbers(tmp_path, monkeypatch):
    monkeypatch.setenv(worker.TRIAL_DIR_ENV, str(tmp_path))
    worker.report(epoch=np.int64(7), loss=np.float32(0.25), acc=np.float64(0.125), n=np.int32(3))
    (line,) = read_jsonl(tmp_path / "metrics.jsonl")
    assert line["epoch"] == 7 and type(line["epoch"]) is int
    assert line["n"] == 3 and type(line["n"]) is int
    assert line["loss"] == 0.25 and type(line["loss"]) is float
    assert line["acc"] == 0.125 and type(line["acc"]) is float


def test_report_lines_are_read_back_by_the_parser(tmp_path, monkeypatch):
    monkeypatch.setenv(worker.TRIAL_DIR_ENV, str(tmp_path))
    worker.report(epoch=1, loss=np.float32(0.5))
    worker.report(epoch=2, loss=float("nan"))
    reports = parser().parse(LineTail(tmp_path / "metrics.jsonl").read_lines())
    assert [r.resource for r in reports] == [1.0, 2.0]
    assert reports[0].value == 0.5 and math.isnan(reports[1].value)
    assert all(r.time is not None for r in reports)


def test_report_outside_a_trial_writes_nothing_and_warns_once(tmp_path, monkeypatch):
    monkeypatch.delenv(worker.TRIAL_DIR_ENV, raising=False)
    monkeypatch.setattr(worker, "_warned_outside", False)
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        worker.report(epoch=1, loss=0.5)
        worker.report(epoch=2, loss=0.4)
    assert len(caught) == 1
    assert worker.TRIAL_DIR_ENV in str(caught[0].message)
    assert list(tmp_path.iterdir()) == []


def test_report_with_empty_env_var_counts_as_outside(tmp_path, monkeypatch):
    monkeypatch.setenv(worker.TRIAL_DIR_ENV, "")
    monkeypatch.setattr(worker, "_warned_outside", False)
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        worker.report(epoch=1, loss=0.5)
    assert len(caught) == 1
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- hostile trial files

MIB = 1 << 20


def test_a_metrics_file_replaced_by_a_directory_gives_no_lines_and_one_warning(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    append(path, b'{"epoch": 1, "loss": 0.5}\n')
    tail = LineTail(path)
    assert tail.read_lines() == ['{"epoch": 1, "loss": 0.5}']
    path.unlink()
    path.mkdir()
    assert tail.read_lines() == [] and tail.read_lines() == []
    assert len(warnings_from_metrics(caplog)) == 1 and "metrics.jsonl" in caplog.text


def test_a_metrics_file_that_is_a_symlink_is_not_followed(tmp_path, caplog):
    secret = tmp_path / "secret"
    secret.write_text('{"epoch": 1, "loss": 0.001, "password": "hunter2"}\n')
    path = tmp_path / "metrics.jsonl"
    path.symlink_to(secret)
    tail = LineTail(path)
    assert tail.read_lines() == [] and tail.read_lines() == []
    assert "hunter2" not in caplog.text and len(warnings_from_metrics(caplog)) == 1


def test_a_metrics_file_that_is_a_fifo_does_not_block_the_reader(tmp_path):
    import os
    import threading
    path = tmp_path / "metrics.jsonl"
    os.mkfifo(path)
    result = []
    reader = threading.Thread(target=lambda: result.append(LineTail(path).read_lines()), daemon=True)
    reader.start()
    reader.join(5)
    try:
        assert not reader.is_alive(), "reading a FIFO blocked"
        assert result == [[]]
    finally:
        if reader.is_alive():  # unblock it (the unfixed reader waits for a writer)
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


def test_a_burst_of_output_is_read_in_bounded_slices(tmp_path):
    path = tmp_path / "stdout"
    line = b"x" * 99 + b"\n"
    with open(path, "wb") as handle:
        handle.write(line * (30 * MIB // len(line)))
        handle.write(b"FoM: 0.5\n")
    tail = LineTail(path)
    reads = []
    while True:
        lines = tail.read_lines()
        if not lines:
            break
        reads.append(sum(len(text) + 1 for text in lines))
        assert reads[-1] <= 8 * MIB, "one read took more than a few MiB"
        last = lines[-1]
    assert sum(reads) == path.stat().st_size and last == "FoM: 0.5" and len(reads) >= 4


def test_a_line_longer_than_the_cap_is_skipped_with_one_warning(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    with open(path, "wb") as handle:
        handle.write(b'{"epoch": 1, "loss": 0.5}\n')
        handle.write(b"y" * (20 * MIB))  # a 20 MiB line, still being written
    tail = LineTail(path)
    seen = []
    for _ in range(10):
        lines = tail.read_lines()
        assert sum(map(len, lines)) <= 8 * MIB
        seen += lines
    append(path, b'yyy\n{"epoch": 2, "loss": 0.25}\n' + b"z" * (2 * MIB) + b'\n{"epoch": 3, "loss": 0.2}\n')
    for _ in range(3):
        seen += tail.read_lines()
    assert seen == ['{"epoch": 1, "loss": 0.5}', '{"epoch": 2, "loss": 0.25}', '{"epoch": 3, "loss": 0.2}']
    assert len(warnings_from_metrics(caplog)) == 1, caplog.text


HOSTILE_REGEX_PROBE = r"""
import re, sys, time
sys.path.insert(0, sys.argv[1])
from hpc_hpo.metrics import ReportParser
parser = ReportParser("loss", "epoch", re.compile(sys.argv[2]), "trial 0001")
started = time.monotonic()
reports = parser.parse(["a" * 40 + "!"] * 20 + ["loss=0.5"] + ["a" * 300_000])
print(time.monotonic() - started, [r.value for r in reports])
"""


@pytest.mark.parametrize("pattern, reports", [(r"(a+)+$", []), (r"(?:a|aa)+$|loss=(\S+)", None)])
def test_a_catastrophic_metric_regex_costs_a_bounded_time(pattern, reports):
    """`(a+)+$` on 40 a's and a '!' backtracks for ages in Python's re, and no signal stops it."""
    import subprocess
    import sys
    from pathlib import Path
    repo = str(Path(__file__).resolve().parents[2])
    try:
        done = subprocess.run([sys.executable, "-c", HOSTILE_REGEX_PROBE, repo, pattern], capture_output=True,
                              text=True, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"metric_regex {pattern!r} on a hostile line took over 20 s")
    assert done.returncode == 0, done.stderr
    seconds, values = done.stdout.split(" ", 1)
    assert float(seconds) < 3.0
    if reports is not None:
        assert eval(values) == reports


def test_a_slow_line_is_skipped_and_a_later_read_matches_again(caplog):
    parser = ReportParser("loss", "epoch", re.compile(r"(?:a|aa)+$|loss=(\S+)"), "trial 0001")
    hostile = ["a" * 40 + "!"] * 10
    started = time.monotonic()
    assert parser.parse(hostile + ["loss=0.5"]) == []  # after a few timeouts the rest of the read is skipped
    assert time.monotonic() - started < 2.0
    assert [r.value for r in parser.parse(["loss=0.25"])] == [0.25]
    assert sum("metric_regex" in r.getMessage() for r in warnings_from_metrics(caplog)) == 1


def test_report_does_not_write_through_a_symlink(tmp_path, monkeypatch):
    from hpc_hpo.errors import HpoError
    target = tmp_path / "passwd"
    target.write_text("root:x:0:0:root:/root:/bin/bash\n")
    trial = tmp_path / "trial"
    trial.mkdir()
    (trial / "metrics.jsonl").symlink_to(target)
    monkeypatch.setenv(worker.TRIAL_DIR_ENV, str(trial))
    with pytest.raises(HpoError, match="symbolic link"):
        worker.report(epoch=1, loss=0.5)
    assert target.read_text() == "root:x:0:0:root:/root:/bin/bash\n"
    assert (trial / "metrics.jsonl").is_symlink()
