"""Qsub-mode trial jobs record the host they ran on (<tag>.nodes), so `hpc-hpo plot` draws their timeline.

No PBS server can be installed here: the stand-in server (standin/) runs each job's script with bash
as a local process and gives it a PBS_NODEFILE naming this machine, as a MoM names the job's host.
"""
from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from pbs_helpers import Standin, cli, journal, pbs_config

SVG = "{http://www.w3.org/2000/svg}"


def test_qsub_jobs_write_their_host_and_the_plot_shows_it(tmp_path: Path, standin: Standin) -> None:
    params = {"x": {"type": "uniform", "low": 0.0, "high": 1.0}, "epochs": 3, "sleep": 0.2}
    path = pbs_config(tmp_path, params=params, scheduler={"type": "fifo"}, budget={"max_trials": 2})
    result = cli("run", str(path), cwd=tmp_path, env=standin.env())
    assert result.returncode == 0, result.stderr
    trials = tmp_path / "exp" / "trials"
    started = [e for e in journal(tmp_path) if e["type"] == "trial_started"]
    assert len(started) == 2
    host = os.uname().nodename  # what the stand-in MoM writes into every job's PBS_NODEFILE
    nodes_files = sorted(trials.glob("*/*.nodes"))
    assert len(nodes_files) == 2, f"one .nodes file per run, found {nodes_files}"
    assert all(f.read_text() == f"{host}\n" for f in nodes_files)
    # One for each job the server ran, named by the run's tag (the driver writes none in qsub mode).
    tags = {job["variables"]["HPC_HPO_RUN_TAG"] for job in standin.jobs()}
    assert {f.name.removesuffix(".nodes") for f in nodes_files} == tags

    pytest.importorskip("matplotlib", reason="hpc-hpo plot needs the plot extra (the test extra includes it)")
    out = tmp_path / "page.svg"
    plotted = cli("plot", str(tmp_path / "exp"), "-o", str(out), cwd=tmp_path, env=standin.env())
    assert plotted.returncode == 0, plotted.stderr
    texts = ["".join(t.itertext()).strip() for t in ElementTree.parse(out).getroot().iter(f"{SVG}text")]
    title = next((text for text in texts if text.startswith("Nodes: busy")), None)
    assert title is not None, f"no node timeline in the plot: {texts}"
    assert 0 < float(re.search(r"busy (\d+)%", title).group(1)) <= 100
    assert host in texts and {e["trial_id"] for e in started} <= set(texts)
