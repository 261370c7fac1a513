"""Trials as local processes, each in its own process group so that a cancel reaches its children.

Each run starts under record_exit.py, which leads the group and writes the exit status to a
marker file: a driver restarted after a crash re-adopts the runs still going (found by the tag
in their environment) and learns how the others ended. A run whose wrapper died is over: the trial
processes it left in its group are ended (each checked by its tag) before the run is retried. The
wrapper also ends its run once no driver has beaten for HPC_HPO_ORPHAN_TIMEOUT (record_exit.py).

GPUs (execution.gpus_per_eval): the pool is execution.local.gpus when given (the user knows best), else
the driver's CUDA_VISIBLE_DEVICES (or ROCR_/HIP_VISIBLE_DEVICES), else what `nvidia-smi -L` lists, else
none. Each run gets a disjoint set of them through CUDA_VISIBLE_DEVICES (ROCR_VISIBLE_DEVICES on AMD);
with cpus_per_eval, also a disjoint set of the driver's CPUs (os.sched_getaffinity), pinned with
taskset. What a run holds is written beside its exit marker (<tag>.devices), so a restarted driver
that adopts the run keeps those devices out of the free pool until the run ends.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config.specs import LocalSpec, PerEval, TrialShape
from ..errors import BackendError, ConfigError
from ..space import Choice, Fixed, RandInt, Space
from .base import (EXITED, RUN_TAG_ENV, RUNNING, Backend, JobStatus, LaunchSpec, WatchedRun, exit_marker,
                   group_members, leads_group, open_for_append, processes_tagged, read_exit_marker, recording_exit)

if TYPE_CHECKING:
    from ..config import ExperimentConfig

log = logging.getLogger("hpc_hpo")

NVIDIA, AMD = "nvidia", "amd"
NVIDIA_SMI_TIMEOUT_S = 20.0
# nvidia-smi -L: "GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-5c3c...)", and under a GPU in MIG mode its
# instances: "  MIG 1g.5gb     Device  0: (UUID: MIG-1b3a...)".
NVIDIA_GPU_LINE = re.compile(r"^GPU (\d+): .*?(?:\(UUID: (GPU-[^)\s]+)\))?\s*$")
NVIDIA_MIG_LINE = re.compile(r"^\s+MIG .*\(UUID: (MIG-[^)\s]+)\)\s*$")


# --------------------------------------------------------------------------- finding the GPUs (pure)


@dataclass(frozen=True)
class GpuPool:
    """The GPUs trials share, as the variables that select them name them."""

    ids: tuple[str, ...]
    vendor: str = NVIDIA
    source: str = "none found"  # for messages: where the list came from
    # AMD only: the ids are indices into the devices ROCR_VISIBLE_DEVICES already left visible (the
    # driver was given HIP_VISIBLE_DEVICES alone), so they go into HIP_VISIBLE_DEVICES, not ROCR's.
    hip_level: bool = False


def parse_nvidia_smi(text: str) -> list[str]:
    """The devices `nvidia-smi -L` lists, by UUID (an index only when no UUID is printed): CUDA numbers
    devices fastest first unless CUDA_DEVICE_ORDER says otherwise, so an index from nvidia-smi (PCI order)
    may name another GPU in the trial; a UUID cannot. A GPU in MIG mode is replaced by its MIG instances."""
    devices: list[str] = []
    parent_at: int | None = None  # where the current GPU's entry is, until its first MIG line replaces it
    for line in text.splitlines():
        gpu = NVIDIA_GPU_LINE.match(line)
        if gpu:
            devices.append(gpu.group(2) or gpu.group(1))
            parent_at = len(devices) - 1
            continue
        mig = NVIDIA_MIG_LINE.match(line)
        if mig:
            if parent_at is not None:
                del devices[parent_at]
                parent_at = None
            devices.append(mig.group(1))
    return devices


def visible_list(text: str) -> list[str]:
    """A *_VISIBLE_DEVICES value as a list: "0, 2" -> ["0", "2"]; "" -> [] (set but empty means no GPU)."""
    return [item.strip() for item in text.split(",") if item.strip()]


def find_gpus(local: LocalSpec, environ: Mapping[str, str], list_nvidia: Callable[[], str | None]) -> GpuPool:
    """The GPUs trials may use, first found of: execution.local.gpus (the user knows the machine best), the
    driver's CUDA_VISIBLE_DEVICES (it was given these, e.g. by a batch system; nothing else is its to hand
    out), ROCR_VISIBLE_DEVICES / HIP_VISIBLE_DEVICES (AMD), the devices `nvidia-smi -L` lists; else none."""
    if local.gpus is not None:
        return GpuPool(tuple(local.gpus), local.vendor or NVIDIA, "execution.local.gpus")
    if "CUDA_VISIBLE_DEVICES" in environ:
        return GpuPool(tuple(visible_list(environ["CUDA_VISIBLE_DEVICES"])), local.vendor or NVIDIA,
                       "the driver's CUDA_VISIBLE_DEVICES")
    rocr, hip = environ.get("ROCR_VISIBLE_DEVICES"), environ.get("HIP_VISIBLE_DEVICES")
    if rocr is not None:
        ids = visible_list(rocr)
        if hip is not None:  # HIP picks, by index, among what ROCR left visible
            picked = [int(i) for i in visible_list(hip) if i.isdigit()]
            ids = [ids[i] for i in picked if i < len(ids)]
        return GpuPool(tuple(ids), AMD, "the driver's ROCR_VISIBLE_DEVICES")
    if hip is not None:
        return GpuPool(tuple(visible_list(hip)), AMD, "the driver's HIP_VISIBLE_DEVICES", hip_level=True)
    listed = list_nvidia()
    if listed is not None:
        return GpuPool(tuple(parse_nvidia_smi(listed)), local.vendor or NVIDIA, "nvidia-smi -L")
    return GpuPool((), local.vendor or NVIDIA)


def list_nvidia_gpus() -> str | None:
    """What `nvidia-smi -L` prints, or None: no nvidia-smi, or it failed (no driver loaded, no GPU)."""
    program = shutil.which("nvidia-smi")
    if program is None:
        return None
    try:
        done = subprocess.run([program, "-L"], capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT_S,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def device_env(pool: GpuPool, ids: list[str]) -> dict[str, str]:
    """The variables that show a run these GPUs and no others.

    On AMD, ROCR_VISIBLE_DEVICES filters first and HIP_VISIBLE_DEVICES (or CUDA_VISIBLE_DEVICES, which HIP
    also reads) then picks by index among what is left: so with the ids in ROCR's, HIP's and CUDA's name
    the remaining devices 0..n-1, and setting all three to the ids would hide every device but the first.
    """
    listed = ",".join(ids)
    if pool.vendor == NVIDIA:
        return {"CUDA_VISIBLE_DEVICES": listed}
    if pool.hip_level:
        return {"HIP_VISIBLE_DEVICES": listed, "CUDA_VISIBLE_DEVICES": listed}
    renumbered = ",".join(str(i) for i in range(len(ids)))
    return {"ROCR_VISIBLE_DEVICES": listed, "HIP_VISIBLE_DEVICES": renumbered, "CUDA_VISIBLE_DEVICES": renumbered}


def largest(amount: PerEval, space: Space) -> int | None:
    """The most a trial may ask for: the value, or the largest value of the parameter that sets it."""
    if amount.param is None:
        return amount.value
    domain = next(p.domain for p in space.params if p.name == amount.param)
    if isinstance(domain, Choice):
        return max(int(v) for v in domain.values)
    if isinstance(domain, Fixed):
        return int(domain.value)
    if isinstance(domain, RandInt):
        return domain.high
    return None


def check_shape_fits(shape: TrialShape, space: Space, pool: GpuPool, cpus: list[int]) -> None:
    """A trial that asks for more GPUs or CPUs than the machine has would wait for ever: refused at start."""
    for amount, key, have, what, fix in (
            (shape.gpus, "execution.gpus_per_eval", len(pool.ids), f"GPUs are found ({pool.source})",
             "lower it, or name the GPUs in execution.local.gpus (a list of device ids, or a count)"),
            (shape.cpus, "execution.cpus_per_eval", len(cpus), "CPUs are usable by the driver (sched_getaffinity)",
             "lower it")):
        most = largest(amount, space)
        if most is not None and most > have:
            shown: Any = amount.value if amount.param is None else {"param": amount.param}
            asks = f"asks for {most}" if amount.param is None else f"takes values up to {most} ({amount.param})"
            raise ConfigError(key, shown, f"{asks} per trial, but {have} {what}", fix)


# --------------------------------------------------------------------------- what a run holds


@dataclass
class Devices:
    """The GPUs and CPUs one run holds, written beside its exit marker for a driver that adopts it later."""

    gpus: list[str] = field(default_factory=list)
    cpus: list[int] = field(default_factory=list)


def devices_file(trial_dir: Path, tag: str) -> Path:
    return trial_dir / f"{tag}.devices"


def write_devices(trial_dir: Path, tag: str, devices: Devices) -> None:
    devices_file(trial_dir, tag).write_text(json.dumps({"gpus": devices.gpus, "cpus": devices.cpus}) + "\n",
                                            encoding="utf-8")


def read_devices(trial_dir: Path, tag: str) -> Devices:
    """What the run was given; nothing when the file is missing or damaged (a run of an older version)."""
    try:
        data = json.loads(devices_file(trial_dir, tag).read_text(encoding="utf-8"))
        return Devices([str(g) for g in data.get("gpus", [])], [int(c) for c in data.get("cpus", [])])
    except (OSError, ValueError, TypeError, AttributeError):
        return Devices()




class LocalBackend(Backend):
    name = "local"

    def __init__(self, kill_grace_s: float = 5.0, gpus: GpuPool | None = None, shape: TrialShape | None = None,
                 cpus: list[int] | None = None) -> None:
        self.kill_grace_s = kill_grace_s
        self.runs: dict[str, WatchedRun] = {}
        self.shape = shape or TrialShape()
        self.gpu_pool = gpus or GpuPool(())
        self.free_gpus = list(self.gpu_pool.ids)
        # CPUs are booked only when trials say how many they need: otherwise they share, as before.
        self.book_cpus = self.shape.cpus.value is not None or self.shape.cpus.param is not None
        self.all_cpus = list(cpus) if cpus is not None else sorted(os.sched_getaffinity(0))
        self.free_cpus = list(self.all_cpus)
        self.held: dict[str, Devices] = {}  # handle -> what its run holds, given back when it ends
        self.taskset = shutil.which("taskset")

    # ------------------------------------------------------------------ room

    def has_room(self, spec: LaunchSpec) -> bool:
        return (len(self.free_gpus) >= (spec.gpus or 0)
                and (not self.book_cpus or len(self.free_cpus) >= (spec.cpus or 0)))

    def slots(self, requested: int) -> int:
        """num_parallel_evals 0: as many trials of the smallest shape as the GPUs (and booked CPUs) hold."""
        if requested:
            return requested
        fits = []
        smallest_gpus = self.shape.gpus.smallest
        if smallest_gpus:
            fits.append(len(self.gpu_pool.ids) // smallest_gpus)
        smallest_cpus = self.shape.cpus.smallest
        if self.book_cpus and smallest_cpus:
            fits.append(len(self.all_cpus) // smallest_cpus)
        return max(1, min(fits)) if fits else (os.cpu_count() or 1)

    def _take(self, spec: LaunchSpec) -> Devices:
        if not self.has_room(spec):
            raise BackendError(f"trial {spec.trial_id} needs {spec.gpus or 0} GPUs and {spec.cpus or 0} CPUs; "
                               f"{len(self.free_gpus)} GPUs and {len(self.free_cpus)} CPUs are free")
        gpus, self.free_gpus = self.free_gpus[:spec.gpus or 0], self.free_gpus[spec.gpus or 0:]
        cpus: list[int] = []
        if self.book_cpus:
            cpus, self.free_cpus = self.free_cpus[:spec.cpus or 0], self.free_cpus[spec.cpus or 0:]
        return Devices(gpus, cpus)

    def _give_back(self, devices: Devices) -> None:
        """Back into the pool in the pool's order, so that runs get neighbouring devices where they can."""
        self.free_gpus = [g for g in self.gpu_pool.ids if g in self.free_gpus or g in devices.gpus]
        self.free_cpus = [c for c in self.all_cpus if c in self.free_cpus or c in devices.cpus]

    def _hold_again(self, handle: str, trial_dir: Path, tag: str) -> None:
        """An adopted run keeps what it was given (those of its devices still in the pool and free)."""
        recorded = read_devices(trial_dir, tag)
        devices = Devices([g for g in recorded.gpus if g in self.free_gpus],
                          [c for c in recorded.cpus if c in self.free_cpus])
        self.free_gpus = [g for g in self.free_gpus if g not in devices.gpus]
        self.free_cpus = [c for c in self.free_cpus if c not in devices.cpus]
        self.held[handle] = devices

    def _run_over(self, handle: str) -> None:
        del self.runs[handle]
        devices = self.held.pop(handle, None)
        if devices is not None:
            self._give_back(devices)

    # ------------------------------------------------------------------ runs

    def submit(self, spec: LaunchSpec) -> str:
        env = dict(os.environ)
        env.update(spec.env)
        env[RUN_TAG_ENV] = spec.tag
        # Line-by-line stdout from Python trials, so metric_regex and users see output as it comes.
        env.setdefault("PYTHONUNBUFFERED", "1")
        devices = self._take(spec)
        if spec.gpus is not None:  # gpus_per_eval 0 too: such a trial sees no GPU at all
            env.update(device_env(self.gpu_pool, devices.gpus))
        exit_file = exit_marker(spec.trial_dir, spec.tag)
        argv = recording_exit(exit_file, list(spec.argv))
        if devices.cpus and self.taskset:
            # taskset execs the wrapper in its own process, so the pid stays the run's handle; pinning from the
            # child (preexec_fn) is not safe while the driver's lease thread runs.
            argv = [self.taskset, "-c", ",".join(str(c) for c in devices.cpus), *argv]
        try:
            # Before the start: a driver killed right after it must know what the run holds.
            write_devices(spec.trial_dir, spec.tag, devices)
            with open_for_append(spec.stdout) as out, open_for_append(spec.stderr) as err:
                process = subprocess.Popen(argv, cwd=spec.cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                           stderr=err, start_new_session=True)
        except OSError as exc:
            self._give_back(devices)
            raise BackendError(f"cannot start trial {spec.trial_id}: {exc.strerror}") from None
        handle = str(process.pid)
        self.runs[handle] = WatchedRun(process.pid, spec.tag, exit_file, process)
        self.held[handle] = devices
        return handle

    def adopt(self, handle: str | None, tag: str, trial_dir: Path) -> str | None:
        candidates = [int(handle)] if handle and handle.isdigit() else None
        tagged = processes_tagged(tag, candidates)
        leaders = [pid for pid in tagged if leads_group(pid)]
        exit_file = exit_marker(trial_dir, tag)
        if leaders:
            handle = str(leaders[0])
            self.runs[handle] = WatchedRun(leaders[0], tag, exit_file)
            self._hold_again(handle, trial_dir, tag)
            return handle
        # The wrapper is gone, but the trial processes it started may run on in its group: the run is
        # over (nothing can record its exit) and they are ended with it, before a retry starts beside them.
        strays = processes_tagged(tag, group_members(int(handle))) if candidates else tagged
        # Looked for after the process: a run that is gone wrote its marker before it went.
        if read_exit_marker(exit_file) is not None or handle or strays:
            handle = handle or f"ended:{tag}"
            self.runs[handle] = WatchedRun(None, tag, exit_file, pgid=_group_of(strays))
            if strays:  # they still use the run's GPUs until the first poll ends them
                self._hold_again(handle, trial_dir, tag)
            return handle
        return None

    def poll(self, handles: list[str]) -> dict[str, JobStatus]:
        now = time.monotonic()
        statuses = {}
        for handle in handles:
            run = self.runs.get(handle)
            if run is None:
                statuses[handle] = JobStatus(EXITED, None, "not started by this driver")
                continue
            status = run.status()
            if status.state == RUNNING:
                if run.kill_at is not None and now >= run.kill_at:
                    run.signal_group(signal.SIGKILL)
            else:
                # The leader is gone; children it left in its group go with it.
                run.signal_group(signal.SIGKILL)
                self._run_over(handle)
            statuses[handle] = status
        return statuses

    def cancel(self, handle: str) -> None:
        run = self.runs.get(handle)
        if run is None or run.kill_at is not None or run.status().state == EXITED:
            return
        run.signal_group(signal.SIGTERM)
        run.kill_at = time.monotonic() + self.kill_grace_s


def make_local_backend(config: ExperimentConfig) -> LocalBackend:
    """The local backend for this experiment: GPUs are looked for only when trials ask for them."""
    shape = config.execution.shape
    wants_gpus = shape.gpus.value is not None or shape.gpus.param is not None
    pool = find_gpus(config.execution.local, os.environ, list_nvidia_gpus) if wants_gpus else GpuPool(())
    cpus = sorted(os.sched_getaffinity(0))
    check_shape_fits(shape, config.space, pool, cpus)
    unused = [key for amount, key in ((shape.mem_mb, "mem_per_eval"), (shape.tasks, "tasks_per_eval"))
              if amount.value is not None or amount.param is not None]
    if unused:  # not refused: the config a cluster runs should also run on a laptop
        log.warning("local mode does not use execution.%s: each trial is one process, and memory is not booked",
                    " or execution.".join(unused))
    return LocalBackend(kill_grace_s=config.execution.stop_grace_period, gpus=pool, shape=shape, cpus=cpus)


def _group_of(pids: list[int]) -> int | None:
    """The process group of the first of these processes still there (None: none is)."""
    for pid in pids:
        try:
            return os.getpgid(pid)
        except OSError:
            continue
    return None
