"""The quickstart's real model, tuned through the real CLI on a small budget."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from conftest import REPO, cli, read_export


def test_quickstart_tunes_the_mlp(tmp_path: Path) -> None:
    config = yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())
    config["command"] = f"{{python}} {REPO / 'launchers' / 'train_mlp.py'}"  # as shipped: the driver's interpreter
    config["experiment_dir"] = str(tmp_path / "exp")
    config["params"]["epochs"] = 3
    config["resource"]["max"] = 3
    config["budget"] = {"max_trials": 6}
    config["execution"]["num_parallel_evals"] = 2
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = cli("run", str(tmp_path / "exp.yaml"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "started   0000" in result.stdout and "best trial" in result.stdout
    rows = read_export(tmp_path)
    accuracies = [float(r["accuracy"]) for r in rows]
    assert all(0.0 <= a <= 1.0 for a in accuracies)
    assert max(accuracies) > 0.8  # the default config learns the digits within 3 epochs
    best = json.loads(cli("best", str(tmp_path / "exp"), "--json", cwd=tmp_path).stdout)
    assert best["value"] == max(accuracies)
    assert set(best["config"]) == {"learning_rate", "width", "alpha", "batch_size", "epochs"}
