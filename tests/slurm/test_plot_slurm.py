"""`hpc-hpo plot` of a real steps-mode run: the node timeline shows the allocation's nodes and which trial ran where."""
from __future__ import annotations

import re
import sys
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
