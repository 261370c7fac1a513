"""`hpc-hpo plot` on real local experiments (finished and running): the files are read back, not just produced."""
from __future__ import annotations

import base64
import json
import os
import re
import struct
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from conftest import REPO, cli, synthetic_config, write_config

pytest.importorskip("matplotlib", reason="hpc-hpo plot needs the plot extra (the test extra includes it)")

SVG = "{http://www.w3.org/2000/svg}"
# The synthetic experiment's panels: three fixed ones and one per varying parameter (x and shape; epochs is a
# constant and gets none). Three columns of 5 x 4 inch panels at 100 dpi: 2 rows, 1500 x 800 pixels.
TITLES = ["Learning curves", "Best so far", "Trials per rung", "Parameter x", "Parameter shape"]
SIZE = (1500, 800)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real ASHA experiment for the module's tests (a run costs a few seconds of the 2 cores)."""
    tmp_path = tmp_path_factory.mktemp("plot")
    path = write_config(tmp_path, synthetic_config(tmp_path, budget={"max_trials": 12}))
    result = cli("run", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return tmp_path


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the PNG signature and IHDR chunk (the first chunk, by the PNG spec)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def svg_structure(path: Path) -> tuple[int, list[str]]:
    """How many axes the figure has (matplotlib names each group axes_<n>) and all its text."""
    root = ElementTree.parse(path).getroot()
    groups = [g for g in root.iter(f"{SVG}g") if re.fullmatch(r"axes_\d+", g.get("id", ""))]
    texts = ["".join(t.itertext()).strip() for t in root.iter(f"{SVG}text")]
    return len(groups), texts


def test_png_has_the_page_size_of_its_panels(finished: Path) -> None:
    out = finished / "page.png"
    result = cli("plot", str(finished / "exp"), "-o", str(out), cwd=finished)
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}" in result.stderr
    assert png_size(out.read_bytes()) == SIZE


def test_svg_has_one_axes_per_panel_and_their_titles(finished: Path) -> None:
    out = finished / "page.svg"
    assert cli("plot", str(finished / "exp"), "-o", str(out), cwd=finished).returncode == 0
    axes, texts = svg_structure(out)
    assert axes == len(TITLES)
    for title in TITLES:
        assert title in texts, f"no panel titled {title!r}"
    assert "Parameter epochs" not in texts  # a constant parameter has no panel
    assert "Pareto front" not in texts  # a single objective has none
    headline = next(text for text in texts if text.startswith("experiment synthetic"))
    assert "(ended)" in headline and "12 trials" in headline


def test_html_is_self_contained_with_one_image(finished: Path) -> None:
    out = finished / "page.html"
    assert cli("plot", str(finished / "exp"), "-o", str(out), cwd=finished).returncode == 0
    text = out.read_text()
    images = re.findall(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(images) == 1 and text.count("<img") == 1
    assert png_size(base64.b64decode(images[0])) == SIZE
    for title in TITLES:
        assert f"<li>{title}</li>" in text
    assert 'src="http' not in text and "<link" not in text and "<script" not in text  # nothing from elsewhere


def test_config_file_and_default_output(finished: Path) -> None:
    default = finished / "exp" / "plot.png"
    default.unlink(missing_ok=True)
    result = cli("plot", str(finished / "exp.yaml"), cwd=REPO)  # another directory: the config's paths hold
    assert result.returncode == 0, result.stderr
    assert png_size(default.read_bytes()) == SIZE


def test_unknown_suffix_is_refused_in_one_line(finished: Path) -> None:
    result = cli("plot", str(finished / "exp"), "-o", str(finished / "page.pdf"), cwd=finished)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "page.pdf" in result.stderr and ".svg" in result.stderr
    assert not (finished / "page.pdf").exists()


def test_without_matplotlib_one_line_names_the_extra(finished: Path) -> None:
    # A None entry in sys.modules makes `import matplotlib` fail as if it were not installed.
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "from hpc_hpo.cli import main\n"
            f"sys.exit(main(['plot', {str(finished / 'exp')!r}, '-o', {str(finished / 'none.png')!r}]))\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "hpc-hpo: error: plotting needs matplotlib, which is not installed: pip install 'hpc-hpo[plot]'"]
    assert not (finished / "none.png").exists()


def test_combined_objective_gets_a_pareto_front(tmp_path: Path) -> None:
    program = tmp_path / "two_metrics.py"  # error falls with x, speed rises with x: every trial is on the front
    program.write_text("import sys\nfrom hpc_hpo import report\n"
                       "x = float(sys.argv[sys.argv.index('--x') + 1])\n"
                       "for epoch in range(1, 3):\n"
                       "    report(epoch=epoch, error=round(1 - x, 3) / epoch, speed=round(x, 3))\n")
    config = synthetic_config(
        tmp_path, command=[sys.executable, str(program)], params={"x": {"type": "uniform", "low": 0.0, "high": 1.0}},
        metric={"name": "objective", "mode": "min", "combine": [{"name": "error", "mode": "min", "weight": 1.0},
                                                                {"name": "speed", "mode": "min", "weight": 1.0}]},
        resource={"name": "epoch", "max": 2}, scheduler={"type": "fifo"}, budget={"max_trials": 4})
    assert cli("run", str(write_config(tmp_path, config)), cwd=tmp_path).returncode == 0
    out = tmp_path / "page.svg"
    assert cli("plot", str(tmp_path / "exp"), "-o", str(out), cwd=tmp_path).returncode == 0
    axes, texts = svg_structure(out)
    assert axes == 5  # curves, best, rungs, Pareto, x
    assert "Pareto front" in texts and "error" in texts and "speed" in texts


def test_a_running_experiment_plots_and_keeps_running(tmp_path: Path) -> None:
    config = synthetic_config(tmp_path, params={"x": {"type": "uniform", "low": 0.0, "high": 1.0},
                                                "shape": {"type": "choice", "values": ["fast", "slow"]},
                                                "epochs": 9, "sleep": 0.4},
                              budget={"max_trials": 6}, execution={"num_parallel_evals": 2})
    path = write_config(tmp_path, config)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    driver = subprocess.Popen([sys.executable, "-m", "hpc_hpo.cli", "run", str(path), "--quiet"], cwd=tmp_path,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        journal = tmp_path / "exp" / "journal.jsonl"
        deadline = time.monotonic() + 60
        while b'"report"' not in (journal.read_bytes() if journal.exists() else b""):
            assert time.monotonic() < deadline and driver.poll() is None, "no report within a minute"
            time.sleep(0.2)
        out = tmp_path / "live.svg"
        result = cli("plot", str(tmp_path / "exp"), "-o", str(out), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert driver.poll() is None, "the experiment ended before the plot: the test saw no running experiment"
        _, texts = svg_structure(out)
        assert any(text.startswith("experiment synthetic (running)") for text in texts)
        assert "Learning curves" in texts
    finally:
        _, stderr = driver.communicate(timeout=180)
    assert driver.returncode == 0, stderr  # plotting took no lock the driver needed


def test_an_experiment_without_reports_still_plots(tmp_path: Path) -> None:
    # The first moments of a run: the experiment and a trial exist, nothing has reported yet.
    path = write_config(tmp_path, synthetic_config(tmp_path))
    created = {"v": 1, "type": "experiment_created", "t": 1.0, "name": "synthetic", "metric": "loss", "mode": "min",
               "resource": "epoch", "params": ["x", "shape", "epochs"], "combined": []}
    trial = {"v": 1, "type": "trial_created", "t": 2.0, "trial_id": "0000", "index": 0,
             "config": {"x": 0.5, "shape": "fast", "epochs": 9}}
    experiment = tmp_path / "exp"
    experiment.mkdir()
    (experiment / "experiment.yaml").write_text(path.read_text())
    (experiment / "journal.jsonl").write_text("".join(json.dumps(e) + "\n" for e in (created, trial)))
    out = tmp_path / "empty.svg"
    result = cli("plot", str(experiment), "-o", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    axes, texts = svg_structure(out)
    assert axes == 3 and texts.count("no reports yet") == 2  # curves and best so far; the rungs count zeros
    assert any(text.startswith("experiment synthetic (running)") for text in texts)
