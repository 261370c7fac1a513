"""Trials on Slurm: as job steps inside an allocation, or as one sbatch job each.

Steps mode (the driver runs inside an allocation, or names one with alloc_jobid): each trial is
an `srun` step on nodes the backend hands out itself, so concurrent steps never compete for the
same nodes and never sit in "step creation temporarily disabled". The srun process is the
driver's child: its exit is the trial's exit, seen without asking slurmctld anything.

Sbatch mode (the driver runs on a login node): each trial is a job rendered from a template the
user can edit. Its end is seen first from an exit marker the job script writes, otherwise from
one batched squeue call every `squeue_interval` seconds, with sacct for jobs squeue has
forgotten. A job missing from both is never taken for a success.

Every run carries its tag as the Slurm job (or step) name, so a driver that died after
submitting finds and ends the run by name.
"""
from __future__ import annotations

import dataclasses
import getpass
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..config import ExperimentConfig, SlurmSpec, TrialShape
from ..errors import BackendError, ConfigError
from .base import (EXITED, RUNNING, Backend, JobStatus, LaunchSpec, SubmitLater, exit_marker, read_exit_marker,
                   open_for_append, recording_exit)
from .batch import (TEMPLATE_FIELDS, GroupRun, NodeGroupBackend, PollClock, program_argv, render_trial_script,
                    nodes_file, script_argv, submit_once, template_values, trial_environment, write_nodes)
from .slurm_checks import check_slurm_mode_settings
from .slurm_packing import StepPacking, read_capacities
from .slurm_output import (ACTIVE_STATES, INVALID_JOB_ID, RESUBMIT_STATES, SACCT_FIELDS, SQUEUE_JOB_FORMAT,
                           SQUEUE_STEP_FORMAT, SlurmCommandError, SlurmRecord, latest_by_id, parse_sacct,
                           parse_sbatch_job_id, parse_squeue, parse_time_left, run_slurm)

log = logging.getLogger("hpc_hpo")

# Options that say how many tasks a step has; when launch_args carry one, ours steps aside.
TASK_COUNT_OPTIONS = ("-n", "--ntasks", "--ntasks-per-node", "--ntasks-per-gpu", "--ntasks-per-socket")
# After this long missing from squeue and sacct alike, with no exit marker, a job counts as lost.
LOST_AFTER_S = 300.0
# What srun prints when a node of the step fails (it may still exit 0), and what slurmstepd writes into
# a run's output when Slurm ends it: the cluster's doing, resubmitted from the checkpoint (max_requeues).
NODE_FAILURE = re.compile(r"Node failure on (\S+)")
SLURM_ENDED = (("DUE TO TIME LIMIT", "TIMEOUT"), ("DUE TO PREEMPTION", "PREEMPTED"),
               ("DUE TO NODE FAILURE", "NODE_FAIL"))
# srun's line for a task that ended with an error of its own. Under --kill-on-bad-exit srun then ends the other
# tasks with SIGTERM and exits with the highest code of them all (143 = 128 + SIGTERM): the trial's code is this one.
TASK_FAILED = re.compile(r"^srun: error: \S+: task \d+: Exited with exit code (\d+)$", re.MULTILINE)
# sbatch's answers when a user has as many jobs queued as the site allows: wait for the queue to drain.
SUBMIT_LIMITS = ("QOSMaxSubmitJobPerUserLimit", "AssocMaxSubmitJobLimit", "MaxSubmitJob",
                 "Job violates accounting/QOS policy")  # the most telling first: it is what the user sees
# The logs of a trial directory where Slurm and srun say why a run ended.
RUN_LOGS = ("srun.log", "stderr", "slurm.out")


def default_template() -> Path:
    """The template shipped in the project's slurm_templates/ (users copy it and set execution.slurm.template)."""
    return Path(__file__).resolve().parents[2] / "slurm_templates" / "trial.sbatch"


# --------------------------------------------------------------------------- pure helpers


def task_options(nodes: int, launch_args: tuple[str, ...]) -> list[str]:
    """One task per node unless the user's launch_args say how many tasks."""
    for arg in launch_args:
        if arg.split("=", 1)[0] in TASK_COUNT_OPTIONS or re.fullmatch(r"-n\d+", arg):
            return [f"--nodes={nodes}"]
    return [f"--nodes={nodes}", f"--ntasks={nodes}"]


def srun_step_argv(settings: SlurmSpec, job_id: str, nodes: list[str], spec: LaunchSpec,
                   placement: list[str] | None = None) -> list[str]:
    """The srun line of one trial step: on its own nodes (or its share of one: `placement`), named by its
    tag, output into its trial directory."""
    where = placement or [f"--nodelist={','.join(nodes)}", *task_options(len(nodes), settings.launch_args)]
    return ["srun", f"--jobid={job_id}", f"--job-name={spec.tag}", *where, "--kill-on-bad-exit=1", "--input=none",
            f"--output={spec.stdout}", f"--error={spec.stderr}", *settings.launch_args,
            *program_argv(spec, settings.nodes_flag)]


def sbatch_argv(settings: SlurmSpec, spec: LaunchSpec, script: Path) -> list[str]:
    """Options on the command line override the template's #SBATCH lines: what the config sets wins."""
    # --no-requeue: after a node failure Slurm would run the job again by itself, unwatched, from the start;
    # the driver resubmits it from the trial's checkpoint instead.
    argv = ["sbatch", "--parsable", f"--job-name={spec.tag}", *job_shape(spec), "--export=NONE", "--no-requeue",
            f"--output={spec.trial_dir / 'slurm.out'}", f"--chdir={spec.cwd}"]
    for option, value in (("partition", settings.partition), ("account", settings.account),
                          ("time", settings.time_limit)):
        if value is not None:
            argv.append(f"--{option}={value}")
    return argv + list(settings.alloc_args) + [str(script)]


def job_shape(spec: LaunchSpec) -> list[str]:
    """What a trial job asks for: its nodes whole (--exclusive, so jobs spread over the cluster as trials of
    whole nodes should), or its share of one node (GPUs, CPUs per task, memory), so jobs pack as Slurm sees fit."""
    if not spec.sub_node:
        return [f"--nodes={spec.nodes}", "--exclusive"]
    tasks = spec.tasks or 1
    options = ["--nodes=1", f"--ntasks={tasks}"]
    if spec.cpus is not None:
        options.append(f"--cpus-per-task={max(1, -(-spec.cpus // tasks))}")
    if spec.gpus:
        options.append(f"--gres=gpu:{spec.gpus}")
    if spec.mem_mb:
        options.append(f"--mem={spec.mem_mb}M")
    return options


def script_values(settings: SlurmSpec, spec: LaunchSpec, env: dict[str, str], exit_file: Path) -> dict[str, str]:
    """The template's values (quoted for bash by template_values), the command an srun of the whole job."""
    # --export=ALL: sbatch --export=NONE sets SLURM_EXPORT_ENV=NONE, which srun would otherwise inherit.
    tasks = task_options(spec.nodes, settings.launch_args) if not spec.sub_node else \
        ["--nodes=1", f"--ntasks={spec.tasks or 1}"]
    step = ["srun", "--export=ALL", *tasks, "--input=none",
            f"--output={spec.stdout}", f"--error={spec.stderr}", *settings.launch_args,
            *program_argv(spec, settings.nodes_flag)]
    values = template_values(spec, env, exit_file, script_argv(step, spec.trial_id))
    # The job writes the nodes it got there when it starts: only then are they known (plot's node timeline).
    values["nodes_file"] = shlex.quote(str(nodes_file(spec.trial_dir, spec.tag)))
    return values


def status_of(record: SlurmRecord) -> JobStatus:
    """What the driver needs from a Slurm state: still going, or ended with which code and why."""
    state = record.state
    if state in ACTIVE_STATES:
        return JobStatus(RUNNING)
    if state == "COMPLETED":
        return JobStatus(EXITED, record.exit_code if record.exit_code is not None else 0)
    if state == "CANCELLED":
        return JobStatus(EXITED, record.exit_code if record.exit_code else -signal.SIGTERM, "cancelled (CANCELLED)")
    if state == "OUT_OF_MEMORY":
        return JobStatus(EXITED, record.exit_code or 1, "out of memory (OUT_OF_MEMORY)")
    if state in RESUBMIT_STATES:
        return JobStatus(EXITED, record.exit_code or 1, f"ended by Slurm ({state})", resubmit=True)
    return JobStatus(EXITED, record.exit_code or 1, f"Slurm state {state}")


# --------------------------------------------------------------------------- steps mode


class SlurmStepsBackend(NodeGroupBackend):
    """Each trial an srun step of nodes_per_eval nodes inside one allocation."""

    name = "slurm-steps"
    pool = "nodes of allocation"
    nodes_key = "execution.slurm.nodes_per_eval"
    more_nodes = "ask for more nodes (salloc -N) or lower nodes_per_eval"

    def __init__(self, settings: SlurmSpec, job_id: str, nodes: list[str], kill_grace_s: float,
                 shape: TrialShape | None = None) -> None:
        super().__init__(settings.nodes_per_eval, job_id, nodes, kill_grace_s)
        self.settings = settings
        self.nodes_param = settings.nodes_param
        # Trials of a share of a node: a book of each node's free CPUs, GPUs and memory instead of a pool of nodes.
        self.packing = StepPacking(job_id, read_capacities(job_id), shape) if shape and shape.sub_node else None

    def slots(self, requested: int) -> int:
        return self.packing.slots(requested) if self.packing else super().slots(requested)

    def usable_slots(self) -> int:
        return self.packing.how_many_fit() if self.packing else super().usable_slots()

    def has_room(self, spec: LaunchSpec) -> bool:
        return self.packing.place(spec) is not None if self.packing else super().has_room(spec)

    def drop_nodes(self, nodes: list[str]) -> None:
        super().drop_nodes(nodes)
        if self.packing:
            self.packing.book.drop(nodes)

    def submit(self, spec: LaunchSpec) -> str:
        placement = None
        if self.packing:
            placed = self.packing.place(spec)
            if placed is None:
                raise BackendError(f"trial {spec.trial_id}: no node of allocation {self.job_id} has room for it")
            node, share = placed
            self.packing.hold(spec.tag, node, share, spec.trial_dir)
            nodes, placement = [], self.packing.step_options(node, share)
        else:
            nodes = self._take_nodes(spec)
        exit_file = exit_marker(spec.trial_dir, spec.tag)
        offsets = log_offsets(spec.trial_dir)
        # Which nodes the run holds, for a driver that re-adopts it after a restart.
        write_nodes(spec.trial_dir, spec.tag, nodes)
        argv = recording_exit(exit_file, srun_step_argv(self.settings, self.job_id, nodes, spec, placement))
        env = trial_environment(self.settings.export, spec, dict(os.environ))
        try:
            with open_for_append(spec.trial_dir / "srun.log") as srun_log:
                process = subprocess.Popen(argv, cwd=spec.cwd, env=env, stdin=subprocess.DEVNULL,
                                           stdout=srun_log, stderr=srun_log, start_new_session=True)
        except OSError as exc:
            self.free_nodes += nodes
            if self.packing:
                self.packing.release(spec.tag)
            raise BackendError(f"cannot start trial {spec.trial_id}: srun: {exc.strerror}") from None
        handle = self._watch(process, spec, exit_file, nodes)
        self.runs[handle].log_offsets = offsets
        return handle

    def _run_over(self, run: GroupRun) -> None:
        if self.packing:
            self.packing.release(run.tag)

    def poll(self, handles: list[str]) -> dict[str, JobStatus]:
        runs = {handle: self.runs.get(handle) for handle in handles}
        statuses = super().poll(handles)
        for handle, status in statuses.items():
            run = runs[handle]
            # A step that ended although the driver did not end it: the program, or Slurm under it?
            if run is not None and run.kill_at is None and status.state == EXITED:
                statuses[handle] = self._judge_step_end(run, status)
        return statuses

    def _judge_step_end(self, run: GroupRun, status: JobStatus) -> JobStatus:
        """The allocation gone (time limit, revoked, scancel of the job) is nobody's failure. A failed node
        (srun says so, and may still exit 0) leaves the pool, and the run is resubmitted from its
        checkpoint, as is a step cancelled from outside while the allocation lives (an administrator's
        scancel JOB.STEP). Anything else is the program's own, with the code of the task that failed first
        (not srun's 143 for the tasks it ended after it). One squeue, only for steps that failed."""
        said = new_log_text(run.exit_file.parent, run.log_offsets)
        failed_nodes = sorted(set(NODE_FAILURE.findall(said)))
        if (failed_nodes or status.exit_code != 0) and not self._allocation_running():
            return dataclasses.replace(status, allocation_gone=True, reason=f"allocation {self.job_id} ended")
        if failed_nodes:
            self.drop_nodes(failed_nodes)
            log.warning("node failure on %s: the allocation goes on without it", ", ".join(failed_nodes))
            return dataclasses.replace(status, exit_code=status.exit_code or 1, resubmit=True,
                                       reason=f"node failure on {', '.join(failed_nodes)} (NODE_FAIL)")
        own_code = next((int(code) for code in TASK_FAILED.findall(said) if int(code)), None)
        if status.exit_code != 0 and own_code is not None:  # a task failed; slurmstepd's "CANCELLED AT" followed
            return dataclasses.replace(status, exit_code=own_code)
        if status.exit_code != 0 and "CANCELLED AT" in said and "DUE TO" not in said:
            return dataclasses.replace(status, resubmit=True, reason="the step was cancelled from outside (scancel)")
        return status

    def allocation_end(self) -> float | None:
        """From squeue's time left (%L)."""
        return self._end_from_time_left(
            lambda: parse_time_left(job_field(self.job_id, "%L") or ""), "allocation")

    def _allocation_running(self) -> bool:
        """Asked only when a failed step's output speaks of the allocation's end; a failed squeue says yes."""
        try:
            state = job_field(self.job_id, "%T")
        except SlurmCommandError as exc:
            if INVALID_JOB_ID in exc.stderr:
                return False
            return True
        return state in ("RUNNING", "SUSPENDED")

    def adopt(self, handle: str | None, tag: str, trial_dir: Path) -> str | None:
        job_id = (handle or "").partition(":")[0]
        if handle and job_id != self.job_id:
            # A step of another allocation: this driver cannot place runs beside it, so it ends it.
            self._scancel_steps(tag, job_id)
            return None
        adopted = self._adopt_here(handle, tag, trial_dir)
        if adopted is not None and self.runs[adopted].pid is not None and self.packing:
            self.packing.hold_again(tag, trial_dir)
        if adopted is None or self.runs[adopted].pid is None:
            # Its srun is not on this host, or its wrapper is gone: nothing here can follow the step, and a
            # step left running would write beside the trial's next run.
            self._scancel_steps(tag)
        return adopted

    def cancel(self, handle: str) -> None:
        step = self.runs.get(handle)
        if step is None or step.kill_at is not None or step.status().state == EXITED:
            return
        step.kill_at = time.monotonic() + self.kill_grace_s
        # `scancel <job>.<step>` SIGKILLs the tasks at once and accounts the step CANCELLED. A cancel
        # comes for a loser or after a pause's grace period: no checkpoint is owed at that point.
        if not self._scancel_steps(step.tag):
            # Not registered with slurmctld yet (or already ending): srun forwards SIGTERM to its tasks.
            step.signal_group(signal.SIGTERM)

    def _force_end(self, step: GroupRun) -> None:
        self._scancel_steps(step.tag)
        step.signal_group(signal.SIGKILL)
        step.kill_at = None

    def _scancel_steps(self, tag: str, job_id: str | None = None, signal_name: str | None = None) -> bool:
        """scancel <job>.<step> (ending the step, or only signalling it) for the steps of the allocation
        (this driver's unless named) called by this tag; False if none was found."""
        job_id = job_id or self.job_id
        try:
            listing = run_slurm(["squeue", "-h", "--steps", f"--jobs={job_id}", "-o", SQUEUE_STEP_FORMAT])
        except SlurmCommandError as exc:
            log.warning("cannot list the steps of allocation %s: %s", job_id, exc)
            return False
        step_ids = [r.job_id for r in parse_squeue(listing) if r.name == tag]
        if step_ids:
            flag = [f"--signal={signal_name}"] if signal_name else []
            try:
                run_slurm(["scancel", *flag, *step_ids])
            except SlurmCommandError as exc:
                log.warning("scancel of %s failed: %s", " ".join(step_ids), exc)
        return bool(step_ids)


# --------------------------------------------------------------------------- sbatch mode


@dataclass
class _Job:
    tag: str
    exit_file: Path
    submitted: float
    missing_since: float | None = None
    cancelled: bool = False  # by this driver: an end it asked for, not the cluster's doing
    log_offsets: dict[str, int] = field(default_factory=dict)  # see GroupRun.log_offsets


class SlurmBatchBackend(Backend):
    """Each trial one sbatch job rendered from a template."""

    name = "slurm-sbatch"
    runs_outlive_driver = True

    def __init__(self, settings: SlurmSpec, kill_grace_s: float) -> None:
        self.settings = settings
        self.nodes_per_eval, self.nodes_param = settings.nodes_per_eval, settings.nodes_param
        self.template_path = settings.template or default_template()
        try:
            self.template = self.template_path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError("execution.slurm.template", str(self.template_path),
                              f"cannot be read ({exc.strerror})", "copy slurm_templates/trial.sbatch and point "
                              "execution.slurm.template at your copy") from None
        render_trial_script(self.template, {name: "" for name in TEMPLATE_FIELDS}, str(self.template_path))
        self.jobs: dict[str, _Job] = {}
        self.clock = PollClock(settings.squeue_interval)
        self.known: dict[str, JobStatus] = {}
        self.user = getpass.getuser()

    def slots(self, requested: int) -> int:
        if not requested:
            raise ConfigError("execution.num_parallel_evals", 0, "must be set in sbatch mode: there is no "
                              "allocation to fill", "set how many trial jobs may be queued or running at once, e.g. 8")
        return requested

    def submit(self, spec: LaunchSpec) -> str:
        exit_file = exit_marker(spec.trial_dir, spec.tag)
        env = trial_environment(self.settings.export, spec, dict(os.environ))
        script = spec.trial_dir / f"{spec.tag}.sbatch"
        script.write_text(render_trial_script(self.template, script_values(self.settings, spec, env, exit_file),
                                              str(self.template_path)), encoding="utf-8")
        offsets = log_offsets(spec.trial_dir)
        job_id = self._submit_once(sbatch_argv(self.settings, spec, script), spec.tag)
        self.jobs[job_id] = _Job(spec.tag, exit_file, time.monotonic(), log_offsets=offsets)
        return job_id

    def _submit_once(self, argv: list[str], tag: str) -> str:
        try:
            return submit_once(lambda: parse_sbatch_job_id(run_slurm(argv, env=_slurm_client_env())),
                               lambda: self._jobs_named(tag), _transient, "sbatch")
        except SlurmCommandError as exc:
            limit = next((name for name in SUBMIT_LIMITS if name in exc.stderr), None)
            if limit is None:
                raise
            raise SubmitLater(f"sbatch refused another job for now ({limit})") from None

    def poll(self, handles: list[str]) -> dict[str, JobStatus]:
        now = time.monotonic()
        statuses: dict[str, JobStatus] = {}
        unknown = []
        for handle in handles:
            job = self.jobs.get(handle)
            code = read_exit_marker(job.exit_file) if job else None
            if code is not None:
                statuses[handle] = self._judge_marker(job, code) if job else JobStatus(EXITED, code)
            elif handle in self.known:
                statuses[handle] = self.known[handle]
            else:
                unknown.append(handle)
        if unknown and self.clock.due(now):
            self._refresh(unknown, now)
        for handle in unknown:
            statuses[handle] = self.known.get(handle, JobStatus(RUNNING))
        for handle, status in statuses.items():
            if status.state == EXITED:
                self.jobs.pop(handle, None)
                self.known.pop(handle, None)
        return statuses

    def _judge_marker(self, job: _Job, code: int) -> JobStatus:
        """The job script's exit status says how srun ended, not why: a time limit, a preemption or a
        node failure is in what slurmstepd wrote, and so is a cancel that did not come from this driver."""
        if code == 0 or job.cancelled:
            return JobStatus(EXITED, code)
        said = new_log_text(job.exit_file.parent, job.log_offsets)
        for message, state in SLURM_ENDED:
            if message in said:
                return JobStatus(EXITED, code, f"ended by Slurm ({state})", resubmit=True)
        if NODE_FAILURE.search(said):
            return JobStatus(EXITED, code, "ended by Slurm (NODE_FAIL)", resubmit=True)
        if "CANCELLED AT" in said:
            return JobStatus(EXITED, code, "the job was cancelled from outside (scancel)", resubmit=True)
        return JobStatus(EXITED, code)

    def _refresh(self, handles: list[str], now: float) -> None:
        """One squeue for all; sacct for those squeue no longer lists; a failed call changes nothing."""
        try:
            listed = latest_by_id(parse_squeue(self._squeue(handles)))
        except SlurmCommandError as exc:
            self.clock.done(now, ok=False)
            log.warning("squeue failed, trying again later: %s", exc)
            return
        self.clock.done(now, ok=True)
        missing = []
        for handle in handles:
            if handle in listed:
                self.known[handle] = status_of(listed[handle])
                if self.known[handle].state == RUNNING:
                    del self.known[handle]
            else:
                missing.append(handle)
        if missing:
            self._account(missing, now)

    def _squeue(self, handles: list[str]) -> str:
        argv = ["squeue", "-h", "--states=all", f"--jobs={','.join(handles)}", "-o", SQUEUE_JOB_FORMAT]
        try:
            return run_slurm(argv)
        except SlurmCommandError as exc:
            if INVALID_JOB_ID in exc.stderr:
                return ""  # every listed job has left squeue's memory
            raise

    def _account(self, handles: list[str], now: float) -> None:
        try:
            records = {r.job_id: r for r in parse_sacct(run_slurm(
                ["sacct", "-n", "-P", "-X", f"--jobs={','.join(handles)}", "-o", SACCT_FIELDS]))
                if r.name == getattr(self.jobs.get(r.job_id), "tag", None)}
        except SlurmCommandError as exc:
            log.warning("sacct failed: %s", exc)
            records = {}
        for handle in handles:
            job = self.jobs.get(handle)
            # sacct may also list an older job of the same id (ids restart after a controller reset).
            if handle in records and job is not None and records[handle].name == job.tag:
                status = status_of(records[handle])
                if status.state == EXITED:
                    self.known[handle] = status
                continue
            if job is None:
                continue
            # Not in squeue, not (yet) in sacct, no exit marker: wait, but not for ever.
            job.missing_since = job.missing_since or now
            if now - job.missing_since > LOST_AFTER_S:
                self.known[handle] = JobStatus(EXITED, None, "job vanished: neither squeue nor sacct knows it")

    def cancel(self, handle: str) -> None:
        if handle not in self.jobs or not handle.isdigit():
            return
        self.jobs[handle].cancelled = True
        try:
            run_slurm(["scancel", handle])
        except SlurmCommandError as exc:
            log.warning("scancel %s failed: %s", handle, exc)
        self.clock.soon(time.monotonic())

    def adopt(self, handle: str | None, tag: str, trial_dir: Path) -> str | None:
        """A journaled job is followed as before (marker, squeue, sacct); an unjournaled one is looked
        for by its name, so a submission the previous driver made is never made twice."""
        exit_file = exit_marker(trial_dir, tag)
        if handle is None:
            found = self._jobs_named(tag) or self._accounted_jobs_named(tag)
            if found:
                handle = found[0]
            elif read_exit_marker(exit_file) is not None:
                handle = f"ended-{tag}"
            else:
                return None
        self.jobs[handle] = _Job(tag, exit_file, time.monotonic())
        return handle

    def _accounted_jobs_named(self, tag: str) -> list[str]:
        """Jobs of this name that already left squeue (ended while no driver watched), newest last."""
        try:
            listing = run_slurm(["sacct", "-n", "-P", "-X", f"--name={tag}", f"--user={self.user}",
                                 "--starttime=now-30days", "-o", SACCT_FIELDS])
        except SlurmCommandError:
            return []
        return [r.job_id for r in parse_sacct(listing) if r.name == tag][-1:]

    def _jobs_named(self, tag: str) -> list[str]:
        try:
            listing = run_slurm(["squeue", "-h", f"--name={tag}", f"--user={self.user}", "-o", SQUEUE_JOB_FORMAT])
        except SlurmCommandError:
            return []
        return [r.job_id for r in parse_squeue(listing)]

    def shutdown(self) -> None:
        for handle in list(self.jobs):
            try:
                run_slurm(["scancel", handle])
            except SlurmCommandError:
                pass


def log_offsets(trial_dir: Path) -> dict[str, int]:
    """The sizes of a trial's appended logs now, before a run starts: its own part begins there."""
    offsets = {}
    for name in RUN_LOGS:
        try:
            offsets[name] = (trial_dir / name).stat().st_size
        except OSError:
            offsets[name] = 0
    return offsets


def new_log_text(trial_dir: Path, offsets: dict[str, int], limit: int = 4096) -> str:
    """The last lines each log gained since the offsets: what srun and slurmstepd said about this run."""
    texts = []
    for name in RUN_LOGS:
        try:
            with open(trial_dir / name, "rb") as handle:
                end = handle.seek(0, 2)
                handle.seek(max(offsets.get(name, 0), end - limit))
                texts.append("\n".join(handle.read().decode("utf-8", errors="replace").splitlines()[-8:]))
        except OSError:
            continue
    return "\n".join(texts)


def _transient(exc: SlurmCommandError) -> bool:
    """A timeout or an unreachable controller may pass; a rejected job (bad partition, limits) will not."""
    text = exc.stderr.lower()
    return exc.code is None or any(s in text for s in ("timed out", "unable to contact", "try again", "busy"))


def _slurm_client_env() -> dict[str, str]:
    """sbatch inherits SLURM_* variables of an enclosing job as defaults; the trial job must not."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") or k == "SLURM_CONF"}


# --------------------------------------------------------------------------- choosing a mode


def job_field(job_id: str, field: str) -> str | None:
    """One squeue field of one job, None if squeue does not list it. `--jobs=ID` of the first element of a job
    array (whose id is the array's) lists every element: the line is picked by the job's own id (%A)."""
    for line in run_slurm(["squeue", "-h", f"--jobs={job_id}", "-o", f"%A|{field}"]).splitlines():
        own, _, value = line.strip().partition("|")
        if own == job_id:
            return value.strip()
    return None


def allocation_nodes(job_id: str) -> list[str]:
    """The node names of an allocation, expanded (n[1-4] -> n1 n2 n3 n4)."""
    nodelist = os.environ.get("SLURM_JOB_NODELIST") if os.environ.get("SLURM_JOB_ID") == job_id else None
    if not nodelist:
        records = (job_field(job_id, "%N|%T") or "").split("|")
        if len(records) < 2 or records[1] != "RUNNING":
            raise BackendError(f"allocation {job_id} is not running (squeue says {'|'.join(records) or 'nothing'})")
        nodelist = records[0]
    return run_slurm(["scontrol", "show", "hostnames", nodelist]).split()


def make_slurm_backend(config: ExperimentConfig, own_job_id: str | None = None) -> Backend:
    """own_job_id: the allocation the driver made itself (execution.slurm.allocation), trials are its steps."""
    settings, grace = config.execution.slurm, config.execution.stop_grace_period
    if shutil.which("srun") is None or shutil.which("squeue") is None:
        raise ConfigError("execution.backend", "slurm", "needs Slurm's commands (srun, sbatch, squeue) on PATH",
                          "run on a cluster login or compute node, or use backend: local")
    job_id = own_job_id or settings.alloc_jobid or os.environ.get("SLURM_JOB_ID")
    mode = "steps" if own_job_id else settings.mode if settings.mode != "auto" else ("steps" if job_id else "sbatch")
    check_slurm_mode_settings(settings, mode, job_id, own_allocation=own_job_id is not None)
    if mode == "sbatch":
        return SlurmBatchBackend(settings, grace)
    if not job_id:
        raise ConfigError("execution.slurm.mode", "steps", "needs an allocation, and none was found",
                          "run the driver inside salloc/sbatch, or set execution.slurm.alloc_jobid")
    return SlurmStepsBackend(settings, job_id, allocation_nodes(job_id), grace, config.execution.shape)
