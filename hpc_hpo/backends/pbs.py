"""Trials on PBS Professional / OpenPBS: one qsub job each, or inside the allocation the driver runs in.

Qsub mode (the driver runs on a login node): each trial run is a job rendered from a template the
user can edit (slurm_templates/trial.pbs), submitted with qsub and the config's queue, account,
walltime and `select` chunk on the command line (they override the template's #PBS lines); a trial
shape (execution.*_per_eval) joins the chunk as ncpus, ngpus, mem and mpiprocs. Its
end is seen first from the exit marker the job script writes, otherwise from one batched
`qstat -f -x` call every `qstat_interval` seconds (job history gives finished jobs their
Exit_status). A job missing from qstat with no exit marker is never taken for a success: after
`lost_after` seconds it counts as lost. A job PBS requeued (preemption, a lost host) is deleted and
resubmitted from its checkpoint within the retry budget, like Slurm's PREEMPTED.

Allocation mode (PBS_JOBID and PBS_NODEFILE set, e.g. the driver submitted with driver.pbs): the
allocated hosts are split into groups of nodes_per_eval, and each trial is started on its group by
the site's launcher (mpiexec, mpirun, pbsdsh or the user's argv) under record_exit.py, as Slurm
steps start srun: the wrapper leads the run's process group and writes the exit marker, and the
hosts a run holds are written beside it (<tag>.nodes). A cancel ends the launcher's process group.

Every run carries its tag in its environment and (shortened to the server's limit if need be) as
its job name, so a driver that died after submitting finds the run again: a qsub job by its name
and Variable_List, a launcher in the allocation by the tag in its process environment.
"""
from __future__ import annotations

import getpass
import logging
import os
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import ExperimentConfig, PbsSpec
from ..config.specs import PerEval, TrialShape
from ..errors import BackendError, ConfigError
from .slurm_checks import check_pbs_mode_settings
from .base import (EXITED, RUN_TAG_ENV, RUNNING, Backend, JobStatus, LaunchSpec, exit_marker, processes_tagged,
                   open_for_append, read_exit_marker, recording_exit)
from .batch import (TEMPLATE_FIELDS, GroupRun, NodeGroupBackend, PollClock, program_argv, render_trial_script,
                    nodes_file, script_argv, submit_once, template_values, trial_environment, write_nodes)
from .pbs_output import (ACTIVE_STATES, PbsCommandError, PbsJob, find_job, job_name, only_missing_jobs,
                         parse_nodefile, parse_qselect, parse_qstat_json, parse_qstat_text, parse_qsub_job_id,
                         run_pbs, status_of, walltime_left)

log = logging.getLogger("hpc_hpo")

HOSTS_ENV = "HPC_HPO_HOSTS"  # the hosts of a trial, comma-separated, for programs that start their own ranks
# Options by which launch_args set the task count themselves; then ours step aside.
TASK_COUNT_OPTIONS = ("-n", "-np", "--np", "--n", "-c", "-ppn", "--ppn", "--npernode", "-npernode", "--map-by")
# The shape's amounts and the chunk resources they become: (TrialShape field, resource, execution key).
SHAPE_RESOURCES = (("cpus", "ncpus", "cpus_per_eval"), ("gpus", "ngpus", "gpus_per_eval"),
                   ("mem_mb", "mem", "mem_per_eval"), ("tasks", "mpiprocs", "tasks_per_eval"))
# pbsdsh starts its task through the MoM, which gives it the job's environment and home directory:
# this fixed script moves to the working directory and sends output to the trial's files. The values
# reach it as positional parameters, never as shell code.
PBSDSH_WRAPPER = 'cd "$1" || exit 1; out=$2; err=$3; shift 3; exec "$@" <&- >>"$out" 2>>"$err"'


def default_template() -> Path:
    """The template shipped in the project's slurm_templates/ (users copy it and set execution.pbs.template)."""
    return Path(__file__).resolve().parents[2] / "slurm_templates" / "trial.pbs"


# --------------------------------------------------------------------------- pure helpers


def _sets_task_count(launch_args: tuple[str, ...]) -> bool:
    return any(arg.split("=", 1)[0] in TASK_COUNT_OPTIONS for arg in launch_args)


def launcher_argv(settings: PbsSpec, hosts: list[str] | None, env: dict[str, str],
                  task_count: int | None = None) -> list[str]:
    """The launcher part of a trial's command line, on these hosts (None: all hosts of the job it runs in,
    which PBS-aware launchers read from PBS_NODEFILE themselves). With a task count (tasks_per_eval, a
    one-chunk qsub job with mpiprocs=N), N ranks on the job's host instead of one per host."""
    count = str(task_count or settings.nodes_per_eval)
    launcher, extra = settings.launcher, list(settings.launch_args)
    tasks = [] if _sets_task_count(settings.launch_args) else None
    if launcher == "mpiexec":
        where = ["--hosts", ",".join(hosts)] if hosts else []
        ranks = ["-n", count] if task_count else ["-n", count, "--ppn", "1"]
        return ["mpiexec", *where, *(tasks if tasks is not None else ranks), *extra]
    if launcher == "mpirun":
        # Open MPI passes only the variables named with -x to remote ranks.
        where = ["--host", ",".join(hosts)] if hosts else []
        exports = [item for name in sorted(env) if name.startswith("HPC_HPO") or name == "PYTHONUNBUFFERED"
                   for item in ("-x", name)]
        return ["mpirun", *where, *(tasks if tasks is not None else ["-np", count]), *exports, *extra]
    if launcher == "pbsdsh":
        # -c N: N copies over the job's node list, which mpiprocs=N fills with the one host N times.
        where = ["-h", hosts[0]] if hosts else (["-c", count] if task_count else ["-u"])
        return ["pbsdsh", *where, *extra, "--"]
    if hosts is None:
        raise ConfigError("execution.pbs.launcher", list(launcher), "has host placeholders, which only allocation "
                          "mode can fill", "use mpiexec, mpirun or pbsdsh in qsub mode, or start the launcher "
                          "in your copy of the trial template")
    values = {"hosts": ",".join(hosts), "host": hosts[0], "nodes": count}
    filled = []
    for item in launcher:
        for name, value in values.items():
            item = item.replace("{" + name + "}", value)
        filled.append(item)
    return filled + extra


def trial_argv(settings: PbsSpec, spec: LaunchSpec, hosts: list[str] | None, env: dict[str, str]) -> list[str]:
    """Launcher (when one is needed) then the program. A one-node qsub job runs the program itself."""
    program = program_argv(spec, settings.nodes_flag)
    task_count = spec.tasks if hosts is None and spec.tasks is not None and spec.tasks > 1 else None
    if hosts is None and spec.nodes == 1 and task_count is None:
        return program
    argv = launcher_argv(settings, hosts, env, task_count)
    if settings.launcher == "pbsdsh":
        assignments = [f"{name}={value}" for name, value in sorted(env.items())]
        return [*argv, "/bin/sh", "-c", PBSDSH_WRAPPER, "sh", str(spec.cwd), str(spec.stdout), str(spec.stderr),
                "env", *assignments, *program]
    return argv + program


def shape_resources(spec: LaunchSpec) -> list[str]:
    """The trial's shape as chunk resources: ncpus, ngpus, mem (in mb, as PBS sizes go), mpiprocs (its ranks)."""
    amounts = (("ncpus", spec.cpus, ""), ("ngpus", spec.gpus, ""), ("mem", spec.mem_mb, "mb"),
               ("mpiprocs", spec.tasks, ""))
    return [f"{name}={value}{unit}" for name, value, unit in amounts if value is not None]


def select_chunk(settings: PbsSpec, spec: LaunchSpec) -> str:
    """`-l select=` of a trial job: its count of chunks, the config's select resources and the trial's shape
    (check_select_clash made sure no resource is named by both)."""
    return ":".join([str(spec.nodes), *([settings.select] if settings.select else []), *shape_resources(spec)])


def check_select_clash(settings: PbsSpec, shape: TrialShape) -> None:
    """A resource both in execution.pbs.select and in the shape would be asked for twice in one chunk."""
    named = {item.partition("=")[0].lower(): item for item in (settings.select or "").split(":") if item}
    for field_name, resource, key in SHAPE_RESOURCES:
        amount: PerEval = getattr(shape, field_name)
        if (amount.value is not None or amount.param is not None) and resource in named:
            raise ConfigError("execution.pbs.select", settings.select, f"sets {named[resource]}, and execution.{key} "
                              f"sets {resource} too", f"set it in one place: drop {resource} from select, or "
                              f"remove execution.{key}")


def refuse_sub_node_allocation(shape: TrialShape) -> None:
    """Inside the driver's PBS job the hosts come from PBS_NODEFILE, which says nothing of GPUs or memory:
    trials there take whole hosts, and a share of one cannot be handed out honestly."""
    for field_name, _, key in SHAPE_RESOURCES:
        amount: PerEval = getattr(shape, field_name)
        if amount.value is not None or amount.param is not None:
            shown: object = amount.value if amount.param is None else {"param": amount.param}
            raise ConfigError(f"execution.{key}", shown, "asks for a share of a host, which PBS allocation mode "
                              "cannot give (trials there take whole hosts)", "use execution.pbs.mode: qsub, where "
                              "each trial is a job whose select chunk has this shape")


def qsub_argv(settings: PbsSpec, spec: LaunchSpec, name: str, script: Path) -> list[str]:
    """Options on the command line override the template's #PBS lines: what the config sets wins.
    -v puts the full run tag in the job's Variable_List, where qstat -f shows it."""
    chunk = select_chunk(settings, spec)
    argv = ["qsub", "-N", name, "-o", str(spec.trial_dir / "pbs.out"), "-j", "oe", "-l", f"select={chunk}",
            "-l", f"place={settings.place}", "-v", f"{RUN_TAG_ENV}={spec.tag}"]
    for option, value in (("-q", settings.queue), ("-A", settings.account)):
        if value is not None:
            argv += [option, value]
    if settings.walltime is not None:
        argv += ["-l", f"walltime={settings.walltime}"]
    return argv + list(settings.qsub_args) + [str(script)]


def job_script_values(settings: PbsSpec, spec: LaunchSpec, env: dict[str, str], exit_file: Path,
                      name: str) -> dict[str, str]:
    """The template's values, quoted for bash: the command is the program (or its launcher), with
    output into the trial's files; the job name is the tag, shortened to the server's limit."""
    command = (f"{script_argv(trial_argv(settings, spec, None, env), spec.trial_id)} < /dev/null "
               f">> {shlex.quote(str(spec.stdout))} 2>> {shlex.quote(str(spec.stderr))}")
    values = template_values(spec, env, exit_file, command, name)
    # The job writes its hosts there when it starts: PBS chooses them only then (plot's node timeline).
    values["nodes_file"] = shlex.quote(str(nodes_file(spec.trial_dir, spec.tag)))
    return values


# --------------------------------------------------------------------------- qsub mode


@dataclass
class _Job:
    tag: str
    name: str
    exit_file: Path
    missing_since: float | None = None
    force_at: float | None = None  # when a qdel that did not take becomes qdel -W force
    forced: bool = False


class PbsQsubBackend(Backend):
    """Each trial one qsub job rendered from a template."""

    name = "pbs-qsub"
    runs_outlive_driver = True

    def __init__(self, settings: PbsSpec, kill_grace_s: float) -> None:
        self.settings, self.kill_grace_s = settings, kill_grace_s
        self.nodes_per_eval = settings.nodes_per_eval
        self.template_path = settings.template or default_template()
        try:
            self.template = self.template_path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError("execution.pbs.template", str(self.template_path),
                              f"cannot be read ({exc.strerror})", "copy slurm_templates/trial.pbs and point "
                              "execution.pbs.template at your copy") from None
        render_trial_script(self.template, {name: "" for name in TEMPLATE_FIELDS}, str(self.template_path))
        if settings.nodes_per_eval > 1 and not isinstance(settings.launcher, str):
            launcher_argv(settings, None, {})  # raises: host placeholders cannot be filled in a job script
        self.jobs: dict[str, _Job] = {}
        self.known: dict[str, JobStatus] = {}
        self.clock = PollClock(settings.qstat_interval)
        self.json = settings.qstat_format == "json"
        self.user = getpass.getuser()

    def slots(self, requested: int) -> int:
        if not requested:
            raise ConfigError("execution.num_parallel_evals", 0, "must be set in qsub mode: there is no "
                              "allocation to fill", "set how many trial jobs may be queued or running at once, e.g. 8")
        return requested

    def submit(self, spec: LaunchSpec) -> str:
        name = job_name(spec.tag, self.settings.job_name_max)
        exit_file = exit_marker(spec.trial_dir, spec.tag)
        env = trial_environment(self.settings.export, spec, dict(os.environ))
        script = spec.trial_dir / f"{spec.tag}.pbs"
        values = job_script_values(self.settings, spec, env, exit_file, name)
        script.write_text(render_trial_script(self.template, values, str(self.template_path)), encoding="utf-8")
        try:
            job_id = self._submit_once(qsub_argv(self.settings, spec, name, script), name, spec.tag)
        except PbsCommandError as exc:
            raise BackendError(f"cannot submit trial {spec.trial_id}: {exc}") from None
        self.jobs[job_id] = _Job(spec.tag, name, exit_file)
        return job_id

    def _submit_once(self, argv: list[str], name: str, tag: str) -> str:
        return submit_once(lambda: parse_qsub_job_id(run_pbs(argv)), lambda: self._jobs_tagged(name, tag),
                           _transient, "qsub")

    def poll(self, handles: list[str]) -> dict[str, JobStatus]:
        now = time.monotonic()
        statuses: dict[str, JobStatus] = {}
        unknown = []
        for handle in handles:
            job = self.jobs.get(handle)
            code = read_exit_marker(job.exit_file) if job else None
            if code is not None:
                statuses[handle] = JobStatus(EXITED, code)
            elif handle in self.known:
                statuses[handle] = self.known[handle]
            elif job is None:
                statuses[handle] = JobStatus(EXITED, None, "not started by this driver")
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

    def _refresh(self, handles: list[str], now: float) -> None:
        """One qstat for all jobs, finished ones included (-x); a failed call changes nothing."""
        try:
            listed = self._qstat(handles)
        except (PbsCommandError, ValueError) as exc:
            self.clock.done(now, ok=False)
            log.warning("qstat failed, trying again later: %s", exc)
            return
        self.clock.done(now, ok=True)
        for handle in handles:
            job = self.jobs[handle]
            record = find_job(listed, handle)
            # A record of another name is an older job of a recycled id (after a server reset).
            if record is None or record.name != job.name:
                self._missing(handle, job, now)
                continue
            job.missing_since = None
            self._follow(handle, job, record, now)

    def _follow(self, handle: str, job: _Job, record: PbsJob, now: float) -> None:
        status = status_of(record)
        if status.state == EXITED:
            if status.resubmit and record.state in ACTIVE_STATES:
                # PBS would run it again by itself, beside the resubmission from the checkpoint.
                self._qdel(handle, force=False)
            self.known[handle] = status
        elif job.force_at is not None and now >= job.force_at and not job.forced:
            # qdel did not take (unreachable host, stuck in E): -W force makes the server forget the job.
            job.forced = True
            self._qdel(handle, force=True)

    def _missing(self, handle: str, job: _Job, now: float) -> None:
        """Not listed, even with history, and no exit marker: wait (qstat may lag), but not for ever."""
        job.missing_since = job.missing_since or now
        if now - job.missing_since > self.settings.lost_after:
            self.known[handle] = JobStatus(EXITED, None, "job vanished: qstat does not know it and it left "
                                                          "no exit marker")

    def _qstat(self, handles: list[str]) -> dict[str, PbsJob]:
        argv = ["qstat", "-f", "-x", *(["-F", "json"] if self.json else []), *handles]
        try:
            output = run_pbs(argv)
        except PbsCommandError as exc:
            if not only_missing_jobs(exc.stderr):
                raise
            output = exc.stdout  # complete for the jobs it still knows
        if not self.json:
            return parse_qstat_text(output)
        try:
            return parse_qstat_json(output)
        except ValueError as exc:
            # Some PBS versions print invalid JSON for unusual attribute values: the long format is plainer.
            log.warning("qstat -F json printed invalid JSON (%s); reading qstat's text format from now on", exc)
            self.json = False
            return self._qstat(handles)

    def cancel(self, handle: str) -> None:
        job = self.jobs.get(handle)
        if job is None or job.force_at is not None:
            return
        self._qdel(handle, force=False)
        job.force_at = time.monotonic() + self.kill_grace_s
        self.clock.soon(time.monotonic())

    def _qdel(self, handle: str, force: bool) -> None:
        argv = ["qdel", *(["-W", "force"] if force else []), handle]
        try:
            run_pbs(argv)
        except PbsCommandError as exc:
            if not only_missing_jobs(exc.stderr):  # an ended job cannot be deleted: nothing to say
                log.warning("%s", exc)

    def adopt(self, handle: str | None, tag: str, trial_dir: Path) -> str | None:
        """Follow a run a previous driver submitted: by its handle, or found by its name and tag."""
        name = job_name(tag, self.settings.job_name_max)
        exit_file = exit_marker(trial_dir, tag)
        if handle is None:
            found = self._jobs_tagged(name, tag)
            if not found and read_exit_marker(exit_file) is None:
                return None
            handle = found[0] if found else f"ended-{tag}"
        self.jobs[handle] = _Job(tag, name, exit_file)
        if handle.startswith("ended-"):
            self.known[handle] = JobStatus(EXITED, read_exit_marker(exit_file))
        return handle

    def _jobs_tagged(self, name: str, tag: str) -> list[str]:
        """This user's jobs of this name that carry the tag (a shortened name alone might be another's)."""
        try:
            candidates = parse_qselect(run_pbs(["qselect", "-N", name, "-u", self.user]))
        except PbsCommandError:
            return []
        return [job_id for job_id in candidates if self._carries(job_id, tag)]

    def _carries(self, job_id: str, tag: str) -> bool:
        try:
            output = run_pbs(["qstat", "-f", *(["-F", "json"] if self.json else []), job_id])
            record = find_job(parse_qstat_json(output) if self.json else parse_qstat_text(output), job_id)
        except (PbsCommandError, ValueError):
            return False
        return record is not None and record.variables.get(RUN_TAG_ENV) == tag

    def shutdown(self) -> None:
        for handle in list(self.jobs):
            if not handle.startswith("ended-"):
                self._qdel(handle, force=False)


def _transient(exc: PbsCommandError) -> bool:
    """A timeout or an unreachable server may pass; a rejected job (unknown queue, limits) will not."""
    text = exc.stderr.lower()
    return exc.code is None or any(s in text for s in ("timed out", "cannot connect", "connection refused",
                                                        "try again", "temporarily"))


# --------------------------------------------------------------------------- allocation mode


class PbsAllocationBackend(NodeGroupBackend):
    """Each trial a launcher process on its own group of nodes_per_eval hosts of the driver's allocation.

    The launcher runs under record_exit.py, like a Slurm step's srun: the wrapper leads the run's
    process group, carries the run tag in its environment and writes the exit marker, so a driver
    restarted inside the same PBS job takes running launchers back and reads how the others ended.
    """

    name = "pbs-allocation"
    pool = "hosts of PBS job"
    nodes_key = "execution.pbs.nodes_per_eval"
    more_nodes = "ask for more hosts (qsub -l select=N) or lower nodes_per_eval"

    def __init__(self, settings: PbsSpec, job_id: str, hosts: list[str], kill_grace_s: float) -> None:
        super().__init__(settings.nodes_per_eval, job_id, hosts, kill_grace_s)
        self.settings = settings

    def submit(self, spec: LaunchSpec) -> str:
        hosts = self._take_nodes(spec)
        exit_file = exit_marker(spec.trial_dir, spec.tag)
        env = trial_environment(self.settings.export, spec, dict(os.environ))
        env[HOSTS_ENV] = ",".join(hosts)
        argv = recording_exit(exit_file, trial_argv(self.settings, spec, hosts, env))
        try:
            # Which hosts the run holds, for a driver that re-adopts it after a restart.
            write_nodes(spec.trial_dir, spec.tag, hosts)
            with open_for_append(spec.stdout) as out, open_for_append(spec.stderr) as err:
                process = subprocess.Popen(argv, cwd=spec.cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                           stderr=err, start_new_session=True)
        except OSError as exc:
            self.free_nodes += hosts
            raise BackendError(f"cannot start trial {spec.trial_id}: {exc.strerror}") from None
        return self._watch(process, spec, exit_file, hosts)

    def adopt(self, handle: str | None, tag: str, trial_dir: Path) -> str | None:
        """A launcher still running on this host is watched again (found by its tag, its hosts taken
        from the free pool); a run that ended while no driver watched is read from its exit marker."""
        job_id = (handle or "").partition(":")[0]
        if handle and job_id != self.job_id:
            # Started in an earlier PBS job (the driver was submitted again): PBS ended that job's processes,
            # and what might be left holds hosts of another allocation. Its marker may still tell its end.
            for pid in processes_tagged(tag):  # the tag proves each one is the run's
                _signal_process(pid, signal.SIGKILL)
            exit_file = exit_marker(trial_dir, tag)
            return None if read_exit_marker(exit_file) is None else self._ended_run(None, tag, exit_file)
        return self._adopt_here(handle, tag, trial_dir)  # None: never started, the driver starts it now

    def allocation_end(self) -> float | None:
        """The PBS job's walltime less what it used (qstat)."""
        return self._end_from_time_left(
            lambda: walltime_left(run_pbs(["qstat", "-f", "-F", "json", self.job_id]), self.job_id), "PBS job")

    def cancel(self, handle: str) -> None:
        run = self.runs.get(handle)
        if run is None or run.kill_at is not None or run.status().state == EXITED:
            return
        # The launcher forwards SIGTERM to its ranks (mpiexec, mpirun) or its task (pbsdsh); the
        # wrapper waits for it and records how it ended.
        run.signal_group(signal.SIGTERM)
        run.kill_at = time.monotonic() + self.kill_grace_s

    def _force_end(self, run: GroupRun) -> None:
        run.signal_group(signal.SIGKILL)
        run.kill_at = None

    def _run_over(self, run: GroupRun) -> None:
        run.signal_group(signal.SIGKILL)  # what the launcher left in its group goes too


def _signal_process(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# --------------------------------------------------------------------------- choosing a mode


def in_pbs_allocation() -> bool:
    """PBS sets both in every job's environment."""
    return bool(os.environ.get("PBS_JOBID") and os.environ.get("PBS_NODEFILE"))


def allocation_hosts() -> list[str]:
    path = os.environ.get("PBS_NODEFILE", "")
    try:
        hosts = parse_nodefile(Path(path).read_text(encoding="utf-8", errors="replace"))
    except OSError as exc:
        raise BackendError(f"cannot read PBS_NODEFILE {path!r} of PBS job {os.environ.get('PBS_JOBID')}: "
                           f"{exc.strerror}") from None
    if not hosts:
        raise BackendError(f"PBS_NODEFILE {path!r} lists no hosts")
    return hosts


def make_pbs_backend(config: ExperimentConfig) -> Backend:
    settings, grace = config.execution.pbs, config.execution.stop_grace_period
    mode = settings.mode if settings.mode != "auto" else ("allocation" if in_pbs_allocation() else "qsub")
    check_pbs_mode_settings(settings, mode)  # settings this mode does not use are refused (slurm_checks)
    shape = config.execution.shape
    if shape.sub_node and settings.nodes_per_eval > 1:
        raise ConfigError("execution.pbs.nodes_per_eval", settings.nodes_per_eval, "asks for whole hosts, while "
                          "gpus/cpus/mem/tasks_per_eval ask for a share of one host", "use one: nodes_per_eval "
                          "for trials of whole hosts, *_per_eval for trials within a host")
    if mode == "allocation":
        refuse_sub_node_allocation(shape)
    if mode == "qsub":
        check_select_clash(settings, shape)
        if (shape.tasks.param is not None or (shape.tasks.value or 0) > 1) and not isinstance(settings.launcher, str):
            launcher_argv(settings, None, {}, 2)  # raises: tasks need a launcher the job script can run
        missing = [c for c in ("qsub", "qstat", "qdel") if shutil.which(c) is None]
        if missing:
            raise ConfigError("execution.backend", "pbs", f"needs PBS's commands on PATH; missing: "
                              f"{', '.join(missing)}", "run on a PBS login node, or use backend: local")
        return PbsQsubBackend(settings, grace)
    if not in_pbs_allocation():
        raise ConfigError("execution.pbs.mode", "allocation", "needs a PBS job, and none was found "
                          "(PBS_JOBID and PBS_NODEFILE are not set)",
                          "run the driver inside qsub (slurm_templates/driver.pbs), or use mode: qsub")
    program = settings.launcher if isinstance(settings.launcher, str) else settings.launcher[0]
    if shutil.which(program) is None:
        raise ConfigError("execution.pbs.launcher", program, "was not found on PATH",
                          "load the MPI module in the job script, or choose another launcher")
    return PbsAllocationBackend(settings, os.environ["PBS_JOBID"], allocation_hosts(), grace)
