"""Trials that take a share of a node (execution.gpus/cpus/mem/tasks_per_eval) as srun steps of one
allocation. The driver reads each node's CPUs, GPUs and memory from the allocation itself (`scontrol
show job -d`), keeps its own book of what is free (hpc_hpo/packing.py), and starts each step pinned
to a node with room, asking with `--exact` for exactly the trial's share: Slurm then binds the GPUs
(CUDA_VISIBLE_DEVICES per step) and no step waits in "step creation temporarily disabled"."""
from __future__ import annotations

import json
from pathlib import Path

from ..config import TrialShape
from ..errors import BackendError, ConfigError
from ..packing import Capacity, NodeBook, Share, share_for
from .base import LaunchSpec, open_for_append
from .slurm_output import job_record, parse_job_resources, run_slurm


def read_capacities(job_id: str) -> dict[str, Capacity]:
    """Each node's share of the allocation, as Slurm booked it (not guessed from the hardware)."""
    capacities = {}
    for group in parse_job_resources(job_record(run_slurm(["scontrol", "show", "job", "-d", job_id]), job_id)):
        for node in run_slurm(["scontrol", "show", "hostnames", group.nodes]).split():
            capacities[node] = Capacity(cpus=group.cpus, gpus=group.gpus, mem_mb=group.mem_mb or None)
    if not capacities:
        raise BackendError(f"cannot read the CPUs and GPUs of allocation {job_id} (scontrol show job -d)")
    return capacities


def share_file(trial_dir: Path, tag: str) -> Path:
    """Which node and share a run holds: a restarted driver books it again before placing others."""
    return trial_dir / f"{tag}.share"


class StepPacking:
    """The allocation's nodes as a book of free CPUs, GPUs and memory, and the share each run holds."""

    def __init__(self, job_id: str, capacities: dict[str, Capacity], shape: TrialShape) -> None:
        self.job_id, self.shape = job_id, shape
        self.book = NodeBook(capacities)
        self.held: dict[str, tuple[str, Share]] = {}  # tag -> (node, share)

    def _share(self, spec: LaunchSpec, capacity: Capacity) -> Share:
        return share_for(capacity, spec.gpus, spec.cpus, spec.mem_mb, spec.tasks)

    def place(self, spec: LaunchSpec) -> tuple[str, Share] | None:
        """The best-fitting node with room for this run now, and the run's share of it."""
        best: tuple[str, Share] | None = None
        for node in self.book.candidates(lambda capacity: self._share(spec, capacity)):
            best = (node, self._share(spec, self.book.capacity[node]))
            break
        return best

    def hold(self, tag: str, node: str, share: Share, trial_dir: Path) -> None:
        self.book.take(node, share)
        self.held[tag] = (node, share)
        with open_for_append(share_file(trial_dir, tag)) as out:
            out.truncate(0)
            out.write(json.dumps({"node": node, "cpus": share.cpus, "gpus": share.gpus, "mem_mb": share.mem_mb,
                                  "tasks": share.tasks}).encode() + b"\n")

    def hold_again(self, tag: str, trial_dir: Path) -> list[str]:
        """A run a previous driver started and this one adopts: its share is booked again."""
        try:
            saved = json.loads(share_file(trial_dir, tag).read_text(encoding="utf-8"))
            node = str(saved["node"])
            share = Share(int(saved["cpus"]), int(saved["gpus"]), saved.get("mem_mb"), int(saved["tasks"]))
        except (OSError, ValueError, KeyError, TypeError):
            return []
        if node not in self.book.free:
            return []
        self.book.take(node, share)
        self.held[tag] = (node, share)
        return [node]

    def release(self, tag: str) -> None:
        node, share = self.held.pop(tag, (None, None))
        if node is not None and share is not None:
            self.book.give_back(node, share)

    def step_options(self, node: str, share: Share) -> list[str]:
        """srun options that ask for exactly this share on this node."""
        options = [f"--nodelist={node}", "--nodes=1", f"--ntasks={share.tasks}",
                   f"--cpus-per-task={share.cpus_per_task}", "--exact",
                   # A step gets every GPU of the job on its nodes unless it asks: a CPU trial asks for none.
                   f"--gres=gpu:{share.gpus}" if share.gpus else "--gres=none"]
        if share.mem_mb:
            options.append(f"--mem={share.mem_mb}M")
        return options

    def how_many_fit(self) -> int:
        """Trials of the smallest shape the config allows that fit into the whole allocation at once."""
        shape = self.shape
        return self.book.how_many_fit(lambda capacity: share_for(
            capacity, shape.gpus.smallest, shape.cpus.smallest, shape.mem_mb.smallest, shape.tasks.smallest))

    def slots(self, requested: int) -> int:
        fit = self.how_many_fit()
        if fit == 0:
            nodes = ", ".join(f"{node}: {c.cpus} CPUs, {c.gpus} GPUs" for node, c in self.book.capacity.items())
            raise ConfigError("execution.gpus_per_eval", self.shape.gpus.smallest,
                              f"with the other *_per_eval, asks for more than any node of allocation "
                              f"{self.job_id} has ({nodes})",
                              "ask for less per trial, or for bigger nodes (e.g. salloc --gres=gpu:4 --exclusive)")
        return min(requested, fit) if requested else fit
