"""`hpc-hpo run --verbose`: one line per run saying what runs where: its command, its job, step or process
id, its nodes and GPUs.

A wrapper around the backend the driver would use, so that no backend needs to know about it. What a
run's submission does not tell yet is asked of Slurm, batched and paced: a step's id once srun has
registered it (squeue --steps, by the run's name), a job's nodes once it runs (squeue) and its GPUs
(scontrol show job -d, once per job that asked for GPUs). A step's GPU indices are not visible from
outside the step (Slurm sets CUDA_VISIBLE_DEVICES inside it): for steps the line says how many GPUs the
step was given. A local run's GPUs are the ones the local backend wrote beside it.
"""
from __future__ import annotations

import json
import re
import shlex
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .base import RUNNING, Backend, DelegatingBackend, JobStatus, LaunchSpec
from .batch import read_nodes
from .commands import CommandError

# Seconds between two looks at Slurm for runs whose place is not known yet; a run is described without
# what is still missing when it ends, or after LOOK_FOR_S.
LOOK_EVERY_S = 2.0
LOOK_FOR_S = 120.0
GPU_INDICES = re.compile(r"Nodes=(\S+) .*?GRES=\S*?gpu\S*?\(IDX:([^)]*)\)")


@dataclass
class RunPlace:
    """What is known of where one run runs; said once, when complete (or when no more will be learnt)."""

    trial_id: str
    run: str
    command: str
    kind: str  # "process", "step", "job"
    run_id: str | None = None  # pid, step id (123.4), job id
    within: str | None = None  # the allocation of a step
    nodes: str | None = None
    gpus: str | None = None
    gpus_asked: int | None = None
    submitted: float = field(default_factory=time.monotonic)

    def complete(self) -> bool:
        return self.run_id is not None and self.nodes is not None and (not self.gpus_asked or self.gpus is not None)

    def line(self) -> str:
        if self.kind == "step":
            what = f"step {self.run_id or '(id not seen)'} of allocation {self.within}"
        else:
            what = f"{self.kind} {self.run_id or '(id not seen)'}"
        where = f" on {self.nodes}" if self.nodes else ""
        gpus = f", GPUs {self.gpus}" if self.gpus else ""
        return f"run       {self.trial_id}  (run {self.run}) {what}{where}{gpus}: {self.command}"


class VerboseBackend(DelegatingBackend):
    """The inner backend, unchanged, with a line per run said through `say` (the driver's progress)."""

    def __init__(self, inner: Backend, say: Callable[[str], None] = print) -> None:
        super().__init__(inner)  # everything it does not override is the inner backend's
        self.say = say
        self.pending: dict[str, RunPlace] = {}  # handle -> a run not described yet
        self.tags: dict[str, str] = {}  # handle -> run tag (a step is found by it)
        self.looked_at = 0.0

    def submit(self, spec: LaunchSpec) -> str:
        handle = self.inner.submit(spec)
        place = RunPlace(spec.trial_id, spec.env.get("HPC_HPO_RUN", "?"), shlex.join(spec.argv), "process",
                         gpus_asked=spec.gpus)
        self._known_at_submit(place, handle, spec)
        if place.complete():
            self.say(place.line())
        else:
            self.pending[handle] = place
        return handle

    def _known_at_submit(self, place: RunPlace, handle: str, spec: LaunchSpec) -> None:
        """What the handle and the files the backend wrote beside the run say."""
        kind = self.inner.name
        nodes = read_nodes(spec.trial_dir, spec.tag) or _shared_node(spec.trial_dir, spec.tag)
        if kind == "local":
            place.run_id, place.nodes = handle, socket.gethostname()
            place.gpus = _local_gpus(spec.trial_dir, spec.tag)
            place.gpus_asked = None  # what the local backend gave is all there is to know
        elif kind == "slurm-steps":
            place.kind, place.within = "step", handle.partition(":")[0]
            place.nodes = ",".join(nodes) or None
            place.gpus = f"{spec.gpus} (which ones Slurm sets inside the step)" if spec.gpus else None
        elif kind == "slurm-sbatch":
            place.kind, place.run_id = "job", handle
        else:  # PBS: the job id, or the launcher's process in the driver's job with the hosts it holds
            job_id, _, pid = handle.partition(":")
            place.kind, place.run_id = ("process", pid) if pid else ("job", job_id)
            place.nodes = ",".join(nodes) or ("(chosen by PBS)" if not pid else None)
            place.gpus_asked = None
        self.tags[handle] = spec.tag

    def poll(self, handles: list[str]) -> dict[str, JobStatus]:
        statuses = self.inner.poll(handles)
        if self.pending:
            self._look_up([h for h in handles if h in self.pending], statuses)
        return statuses

    def _look_up(self, handles: list[str], statuses: dict[str, JobStatus]) -> None:
        now = time.monotonic()
        ended = [h for h in handles if statuses.get(h) is not None and statuses[h].state != RUNNING]
        if now - self.looked_at >= LOOK_EVERY_S or ended:
            self.looked_at = now
            try:
                self._ask_slurm([h for h in handles if h in self.pending])
            except (CommandError, OSError):
                pass  # a failed look only delays the line: the run itself is not affected
        for handle in handles:
            place = self.pending.get(handle)
            if place is not None and (place.complete() or handle in ended or now - place.submitted > LOOK_FOR_S):
                self.say(self.pending.pop(handle).line())
                self.tags.pop(handle, None)

    def _ask_slurm(self, handles: list[str]) -> None:
        from .slurm_output import job_record, run_slurm
        steps = {self.tags[h]: h for h in handles if self.pending[h].kind == "step" and self.pending[h].run_id is None}
        for allocation in {self.pending[h].within for h in steps.values()}:
            listing = run_slurm(["squeue", "-h", "--steps", f"--jobs={allocation}", "-o", "%i|%j|%N"])
            for step_id, name, nodes in _rows(listing, 3):
                if name in steps:
                    place = self.pending[steps[name]]
                    place.run_id, place.nodes = step_id, place.nodes or nodes
        jobs = [h for h in handles if self.pending[h].kind == "job" and self.pending[h].nodes is None and h.isdigit()]
        if jobs:
            listing = run_slurm(["squeue", "-h", f"--jobs={','.join(jobs)}", "-o", "%i|%T|%N"])
            for job_id, state, nodes in _rows(listing, 3):
                if job_id in self.pending and state == "RUNNING" and nodes:
                    self.pending[job_id].nodes = nodes
                    if self.pending[job_id].gpus_asked:
                        self.pending[job_id].gpus = job_gpus(job_record(run_slurm(["scontrol", "show", "job", "-d", job_id]), job_id))


def job_gpus(scontrol_detail: str) -> str | None:
    """The GPU indices of a job per node from `scontrol show job -d` ("n1:0-1 n2:0-1"), None if it shows none."""
    found = [f"{nodes}:{indices}" for nodes, indices in GPU_INDICES.findall(scontrol_detail)]
    return " ".join(found) or None


def _rows(listing: str, fields: int) -> list[list[str]]:
    return [row for row in (line.strip().split("|") for line in listing.splitlines()) if len(row) == fields]


def _shared_node(trial_dir: Path, tag: str) -> list[str]:
    """The node of a step that holds a share of it (slurm_packing writes <tag>.share)."""
    try:
        return [str(json.loads((trial_dir / f"{tag}.share").read_text(encoding="utf-8"))["node"])]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def _local_gpus(trial_dir: Path, tag: str) -> str | None:
    """The devices the local backend gave a run (<tag>.devices), None when it gave none."""
    try:
        gpus = json.loads((trial_dir / f"{tag}.devices").read_text(encoding="utf-8")).get("gpus")
    except (OSError, ValueError, AttributeError):
        return None
    return ",".join(str(g) for g in gpus) if gpus else None
