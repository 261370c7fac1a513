"""Trial jobs of sbatch and qsub mode write the nodes they got into <tag>.nodes when they start (the
node timeline of `hpc-hpo plot` reads it); templates from before that placeholder still work.

The shipped templates are rendered with the backends' own values and run by bash. Slurm and PBS are
not here: a fake `scontrol` stands in for Slurm's (it prints a fixed expansion), a fake `srun` only
records that it ran, and PBS_NODEFILE is a file the test writes. The live tests (tests/slurm,
tests/pbs) run the same lines under sbatch and under the stand-in PBS server.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from hpc_hpo.backends.base import LaunchSpec
from hpc_hpo.backends.batch import read_nodes
from hpc_hpo.backends.pbs import PbsQsubBackend, job_script_values
from hpc_hpo.backends.pbs import default_template as pbs_template
from hpc_hpo.backends.slurm import SlurmBatchBackend, default_template, render_trial_script, script_values
from hpc_hpo.config import PbsSpec, SlurmSpec

TAG = "exp-1a2b3c4d-0003-1"
# The body of the trial templates as shipped before nodes_file existed (their comments left out).
OLD_SBATCH = """#!/bin/bash
#SBATCH --ntasks-per-node=1
{{ environment }}

cd {{ workdir }} || exit 1
{{ command }}
status=$?
printf '%s\\n' "$status" > {{ exit_file }}.tmp && mv -f {{ exit_file }}.tmp {{ exit_file }}
exit "$status"
"""
OLD_PBS = OLD_SBATCH.replace("#SBATCH --ntasks-per-node=1", "#PBS -S /bin/bash\n#PBS -j oe")


def launch(tmp_path: Path, argv: tuple[str, ...] = ("prog", "--x", "1")) -> LaunchSpec:
    trial_dir = tmp_path / "trials" / "0003"
    trial_dir.mkdir(parents=True)
    return LaunchSpec(trial_id="0003", argv=argv, cwd=tmp_path, trial_dir=trial_dir,
                      env={"HPC_HPO_TRIAL_ID": "0003"}, tag=TAG)


def fake_bin(tmp_path: Path, scontrol_prints: str | None) -> Path:
    """`srun` that records it ran; `scontrol` that prints the given hostnames (none: no scontrol at all)."""
    directory = tmp_path / "bin"
    directory.mkdir()
    tools = {"srun": f'#!/bin/bash\ntouch "{tmp_path}/ran"\n'}
    if scontrol_prints is not None:
        # Asserts it was asked to expand the job's node list, as Slurm's scontrol would.
        tools["scontrol"] = ('#!/bin/bash\n[ "$1 $2 $3" = "show hostnames n[1,3]" ] || exit 1\n'
                             f"printf '{scontrol_prints}'\n")
    for name, text in tools.items():
        (directory / name).write_text(text)
        (directory / name).chmod(0o755)
    return directory


def run_job(script: str, tmp_path: Path, env: dict[str, str], bin_dir: Path | None = None) -> None:
    """Run the rendered script as the batch system would, with a bare environment; it must succeed."""
    path = os.pathsep.join(filter(None, [str(bin_dir) if bin_dir else None, "/usr/bin", "/bin"]))
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env={"PATH": path, **env},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def sbatch_script(tmp_path: Path, spec: LaunchSpec, template: str | None = None) -> str:
    values = script_values(SlurmSpec(), spec, dict(spec.env), spec.trial_dir / f"{TAG}.exit")
    return render_trial_script(template or default_template().read_text(), values)


def qsub_script(spec: LaunchSpec, template: str | None = None) -> str:
    # One node: the job script runs the program itself (here `true`, on the bare PATH).
    values = job_script_values(PbsSpec(), spec, dict(spec.env), spec.trial_dir / f"{TAG}.exit", "job")
    return render_trial_script(template or pbs_template().read_text(), values)


def test_a_slurm_job_writes_its_expanded_node_list(tmp_path: Path) -> None:
    spec = launch(tmp_path)
    run_job(sbatch_script(tmp_path, spec), tmp_path, {"SLURM_JOB_NODELIST": "n[1,3]", "SLURMD_NODENAME": "n1"},
            fake_bin(tmp_path, "n1\\nn3\\n"))
    assert (spec.trial_dir / f"{TAG}.nodes").read_text() == "n1 n3\n"
    assert read_nodes(spec.trial_dir, TAG) == ["n1", "n3"]
    assert (tmp_path / "ran").exists() and (spec.trial_dir / f"{TAG}.exit").read_text() == "0\n"


def test_without_scontrol_a_slurm_job_names_its_own_node(tmp_path: Path) -> None:
    spec = launch(tmp_path)
    run_job(sbatch_script(tmp_path, spec), tmp_path, {"SLURM_JOB_NODELIST": "n[1,3]", "SLURMD_NODENAME": "n1"},
            _no_scontrol(tmp_path))
    assert (spec.trial_dir / f"{TAG}.nodes").read_text() == "n1\n"


def _no_scontrol(tmp_path: Path) -> Path:
    """An scontrol that fails, as one that cannot reach Slurm does (it shadows a real one in /usr/bin)."""
    directory = fake_bin(tmp_path, None)
    (directory / "scontrol").write_text("#!/bin/bash\necho 'scontrol: fatal: no configuration' >&2\nexit 1\n")
    (directory / "scontrol").chmod(0o755)
    return directory


def test_a_pbs_job_writes_each_host_once_in_order(tmp_path: Path) -> None:
    spec = launch(tmp_path, argv=("true",))
    nodefile = tmp_path / "nodefile"
    nodefile.write_text("cn7\ncn7\ncn2\n\ncn7\ncn9\ncn2\n")
    run_job(qsub_script(spec), tmp_path, {"PBS_NODEFILE": str(nodefile)})
    assert (spec.trial_dir / f"{TAG}.nodes").read_text() == "cn7 cn2 cn9\n"
    assert (spec.trial_dir / f"{TAG}.exit").read_text() == "0\n"


@pytest.mark.parametrize("kind", ["sbatch", "qsub"])
def test_a_nodes_file_that_cannot_be_written_does_not_stop_the_trial(tmp_path: Path, kind: str) -> None:
    spec = launch(tmp_path, argv=("true",))
    blocker = spec.trial_dir / f"{TAG}.nodes"
    blocker.mkdir()  # a directory where the file should go: the write fails whoever runs the test
    nodefile = tmp_path / "nodefile"
    nodefile.write_text("cn1\n")
    script = sbatch_script(tmp_path, spec) if kind == "sbatch" else qsub_script(spec)
    run_job(script, tmp_path, {"SLURM_JOB_NODELIST": "n[1,3]", "PBS_NODEFILE": str(nodefile)},
            fake_bin(tmp_path, "n1\\nn3\\n"))
    assert (spec.trial_dir / f"{TAG}.exit").read_text() == "0\n"


@pytest.mark.parametrize("kind", ["sbatch", "qsub"])
def test_a_job_that_knows_no_nodes_writes_no_file(tmp_path: Path, kind: str) -> None:
    spec = launch(tmp_path, argv=("true",))
    script = sbatch_script(tmp_path, spec) if kind == "sbatch" else qsub_script(spec)
    run_job(script, tmp_path, {}, _no_scontrol(tmp_path))
    assert not (spec.trial_dir / f"{TAG}.nodes").exists()
    assert (spec.trial_dir / f"{TAG}.exit").read_text() == "0\n"


def test_a_template_from_before_nodes_file_is_accepted_and_runs(tmp_path: Path) -> None:
    spec = launch(tmp_path, argv=("true",))
    for name, text in (("old.sbatch", OLD_SBATCH), ("old.pbs", OLD_PBS)):
        (tmp_path / name).write_text(text)
    SlurmBatchBackend(SlurmSpec(template=tmp_path / "old.sbatch"), kill_grace_s=1)  # raises on a bad template
    PbsQsubBackend(PbsSpec(template=tmp_path / "old.pbs"), kill_grace_s=1)
    bin_dir = fake_bin(tmp_path, "n1\\nn3\\n")
    run_job(sbatch_script(tmp_path, spec, OLD_SBATCH), tmp_path, {"SLURM_JOB_NODELIST": "n[1,3]"}, bin_dir)
    assert (tmp_path / "ran").exists() and (spec.trial_dir / f"{TAG}.exit").read_text() == "0\n"
    (spec.trial_dir / f"{TAG}.exit").unlink()
    run_job(qsub_script(spec, OLD_PBS), tmp_path, {"PBS_NODEFILE": "/dev/null"})
    assert (spec.trial_dir / f"{TAG}.exit").read_text() == "0\n"
    # The old templates simply record no nodes: the plot has no timeline for them, as before.
    assert not (spec.trial_dir / f"{TAG}.nodes").exists()
