"""`hpc-hpo plot` of real steps-mode and sbatch-mode runs: the node timeline shows the nodes the runs held
and which trial ran where."""
from __future__ import annotations

import re
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
from live import journal, run, slurm_config, write_config

pytestmark = pytest.mark.usefixtures("slurm_cluster")
pytest.importorskip("matplotlib", reason="hpc-hpo plot needs the plot extra (the test extra includes it)")
SVG = "{http://www.w3.org/2000/svg}"


def test_plot_of_a_steps_run_has_a_node_timeline(tmp_path: Path) -> None:
    config = slurm_config(tmp_path, {"mode": "steps"}, params={"x": {"type": "uniform", "low": 0.0, "high": 1.0},
                                                                "epochs": 9, "sleep": 0.2},
                          budget={"max_trials": 6})
    path = write_config(tmp_path, config)
    done = run(["salloc", "-N2", "--exclusive", "-t", "5", sys.executable, "-m", "hpc_hpo.cli", "run", str(path)],
               tmp_path)
    assert done.returncode == 0, done.stderr + done.stdout
    experiment = tmp_path / "exp"
    held = {node for nodes_file in experiment.glob("trials/*/*.nodes") for node in nodes_file.read_text().split()}
    assert len(held) == 2, f"the runs' .nodes files name {held}"
    out = tmp_path / "page.svg"
    plotted = run([sys.executable, "-m", "hpc_hpo.cli", "plot", str(experiment), "-o", str(out)], tmp_path)
    assert plotted.returncode == 0, plotted.stderr
    root = ElementTree.parse(out).getroot()
    axes = [g for g in root.iter(f"{SVG}g") if re.fullmatch(r"axes_\d+", g.get("id", ""))]
    texts = ["".join(t.itertext()).strip() for t in root.iter(f"{SVG}text")]
    assert len(axes) == 5  # curves, best, rungs, x, and the timeline (epochs is constant)
    title = next(text for text in texts if text.startswith("Nodes: busy"))
    busy = float(re.search(r"busy (\d+)%", title).group(1))
    assert 0 < busy <= 100
    assert held <= set(texts)  # each node is a row of the timeline, labelled by its name
    started = {e["trial_id"] for e in journal(experiment) if e["type"] == "trial_started"}
    assert started <= set(texts)  # each run is a bar labelled with its trial id


def _accounted_nodes(job_ids: list[str]) -> dict[str, list[str]]:
    """Job id -> the nodes sacct says it ran on (NodeList expanded), waiting briefly for slurmdbd to record them."""
    deadline = time.monotonic() + 30
    while True:
        out = run(["sacct", "-X", "-n", "-P", f"--jobs={','.join(job_ids)}", "-o", "JobID,NodeList"], Path.cwd()).stdout
        listed = dict(line.split("|") for line in out.splitlines() if "|" in line)
        if all(listed.get(job, "None assigned") not in ("", "None assigned") for job in job_ids):
            return {job: run(["scontrol", "show", "hostnames", listed[job]], Path.cwd()).stdout.split()
                    for job in job_ids}
        assert time.monotonic() < deadline, f"sacct has no NodeList for jobs {job_ids}: {out}"
        time.sleep(1)


def test_plot_of_an_sbatch_run_has_a_node_timeline(tmp_path: Path) -> None:
    """Trial jobs of sbatch mode write the nodes they got when they start: the plot has their timeline."""
    config = slurm_config(tmp_path, {"mode": "sbatch", "squeue_interval": 1, "time_limit": "3"},
                          params={"x": {"type": "uniform", "low": 0.0, "high": 1.0}, "epochs": 3, "sleep": 0.3},
                          resource={"name": "epoch", "max": 3}, scheduler={"type": "fifo"},
                          budget={"max_trials": 2}, execution={"num_parallel_evals": 2})
    path = write_config(tmp_path, config)
    done = run([sys.executable, "-m", "hpc_hpo.cli", "run", str(path)], tmp_path)
    assert done.returncode == 0, done.stderr + done.stdout
    experiment = tmp_path / "exp"
    started = {e["trial_id"]: e["handle"] for e in journal(experiment) if e["type"] == "trial_started"}
    assert len(started) == 2
    # Each job's .nodes file names the nodes Slurm's accounting says the job ran on.
    accounted = _accounted_nodes(list(started.values()))
    written = {}
    for trial_id, job_id in started.items():
        nodes_files = list((experiment / "trials" / trial_id).glob("*.nodes"))
        assert len(nodes_files) == 1, f"trial {trial_id}: {nodes_files}"
        written[job_id] = nodes_files[0].read_text()
        assert written[job_id] == " ".join(accounted[job_id]) + "\n"
    out = tmp_path / "page.svg"
    plotted = run([sys.executable, "-m", "hpc_hpo.cli", "plot", str(experiment), "-o", str(out)], tmp_path)
    assert plotted.returncode == 0, plotted.stderr
    texts = ["".join(t.itertext()).strip() for t in ElementTree.parse(out).getroot().iter(f"{SVG}text")]
    title = next((text for text in texts if text.startswith("Nodes: busy")), None)
    assert title is not None, f"the plot has no node timeline: {texts}"
    assert 0 < float(re.search(r"busy (\d+)%", title).group(1)) <= 100
    assert {node for nodes in accounted.values() for node in nodes} <= set(texts)
    assert set(started) <= set(texts)
