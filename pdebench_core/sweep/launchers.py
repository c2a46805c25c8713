"""Where a sweep's jobs run: here, one after another, or through submitit (locally or on SLURM).

* ``local``: each job in this process, one after another;
* ``submitit-local``: submitit's local executor, one process per job, ``--max-parallel`` at once;
* ``submitit-slurm``: one SLURM job array through submitit, with the partition, GPUs, time,
  memory and any other ``sbatch`` option asked for; ``--max-parallel`` is the array's limit.

A job that ends without writing its record (killed, out of memory, past its time limit) is
recorded as failed with submitit's error and its log file.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from pdebench_core import paths
from pdebench_core.errors import UsageError
from pdebench_core.sweep.jobs import JobSpec, RequeueableJob, run_job
from pdebench_core.sweep.store import SweepDir

LAUNCHERS = ("local", "submitit-local", "submitit-slurm")
#: ``report(event, job, record)``: ``event`` is ``start``, ``submitted`` or ``end``.
Reporter = Callable[[str, JobSpec, dict], None]


@dataclass(frozen=True)
class ClusterOptions:
    """Resources of each job under the submitit launchers.

    Attributes:
        partition: SLURM partition (``None``: the cluster's default).
        gpus: GPUs per job.
        cpus: CPU cores per job (``None``: the cluster's default).
        time_min: Time limit of each job in minutes.
        mem_gb: Memory per job in GB (``None``: the cluster's default).
        max_parallel: Jobs running at once (0: no limit of pdeb's own).
        slurm_args: Further ``sbatch`` options, ``{"account": "proj1", "qos": "high"}``.
        wait: Wait for the jobs to end (else submit and return).
    """

    partition: str | None = None
    gpus: int = 0
    cpus: int | None = None
    time_min: int = 60
    mem_gb: float | None = None
    max_parallel: int = 0
    slurm_args: dict[str, str] = field(default_factory=dict)
    wait: bool = True


def require_submitit(launcher: str):
    """The submitit module, or a one-line error saying how to install it."""
    try:
        import submitit
    except ImportError:
        raise UsageError(f"--launcher {launcher} needs the submitit package; pip install 'pdeb[slurm]' "
                         f"(or use --launcher local)") from None
    return submitit


def make_executor(launcher: str, sweep: SweepDir, options: ClusterOptions):
    """A submitit executor for ``submitit-local`` or ``submitit-slurm`` with the job resources set."""
    submitit = require_submitit(launcher)
    cluster = "slurm" if launcher == "submitit-slurm" else "local"
    if cluster == "local" and options.gpus:
        check_local_gpus(options.gpus)
    try:
        executor = submitit.AutoExecutor(folder=sweep.submitit_dir, cluster=cluster)
    except RuntimeError as exc:  # submitit found no SLURM here (no 'srun' on PATH)
        raise UsageError(f"--launcher {launcher} cannot reach SLURM here ({str(exc).splitlines()[0]}); run it on "
                         f"the cluster's login node, or use --launcher submitit-local or local") from None
    generic = {"name": sweep.sweep_id, "timeout_min": int(options.time_min), "gpus_per_node": options.gpus or None,
               "cpus_per_task": options.cpus, "mem_gb": options.mem_gb, "tasks_per_node": 1, "nodes": 1}
    specific: dict[str, Any] = {}  # None leaves a resource to the cluster's default
    if cluster == "slurm":
        specific = {"slurm_partition": options.partition, "slurm_additional_parameters": dict(options.slurm_args) or None,
                    "slurm_array_parallelism": options.max_parallel or None}
    executor.update_parameters(**generic, **specific)
    return executor


def check_local_gpus(gpus: int) -> None:
    """Refuse ``--gpus`` beyond what this machine has: submitit-local runs the jobs here, and
    would otherwise start them on the CPU (or fail inside each job)."""
    import torch

    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus > available:
        raise UsageError(f"--gpus {gpus} asks for more GPUs than the {available} this machine has; "
                         f"--launcher submitit-local runs the jobs here: lower --gpus, or use --launcher "
                         f"submitit-slurm")


def run_local(sweep: SweepDir, jobs: list[JobSpec], report: Reporter) -> None:
    """Run each job in this process, one after another (Ctrl-C stops the sweep, resumable)."""
    for job in jobs:
        report("start", job, {})
        report("end", job, run_job(str(paths.home()), sweep.sweep_id, job))


def _entry(launcher: str, job: JobSpec, handle) -> dict[str, Any]:
    return {"launcher": launcher, "job_id": str(handle.job_id), "attempt": job.attempt,
            "stdout": str(handle.paths.stdout), "stderr": str(handle.paths.stderr)}


def _settle(sweep: SweepDir, job: JobSpec, handle) -> dict[str, Any]:
    """The job's final record; one the job could not write itself is written here as failed."""
    try:
        handle.result()
    except Exception as exc:  # the process died: submitit says how, its log says why
        record = sweep.read_job(job.index) or {}
        if record.get("state") not in ("finished", "failed"):
            reason = " ".join(str(exc).split()) or type(exc).__name__  # submitit's lines, as one
            return sweep.update_job(job.index, state="failed", log=str(handle.paths.stderr),
                                    error=f"job {handle.job_id} ended without a result: its process died (killed, "
                                          f"or out of memory?); submitit says: {reason[:300]}")
    return sweep.read_job(job.index) or {}


@contextlib.contextmanager
def _ctrl_c_left_to_the_job() -> Iterator[None]:
    """Start a submitit-local job controller with Ctrl-C ignored: the terminal's SIGINT then stops
    the job (which takes Ctrl-C back, see :class:`RequeueableJob`) and this driver, but not the
    controller, which would print a traceback of its own; it ends when its job has."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_submitit(sweep: SweepDir, jobs: list[JobSpec], executor, launcher: str, options: ClusterOptions,
                 report: Reporter) -> None:
    """Submit the jobs to ``executor`` (:func:`make_executor`) and, unless ``options.wait`` is off,
    wait for each to end."""
    home = str(paths.home())
    if launcher == "submitit-slurm":
        with executor.batch():  # one job array
            handles = [executor.submit(RequeueableJob(), home, sweep.sweep_id, job) for job in jobs]
        sweep.write_submissions({job.index: _entry(launcher, job, h) for job, h in zip(jobs, handles)})
        for job, handle in zip(jobs, handles):
            report("submitted", job, {"job_id": handle.job_id})
        if options.wait:
            _wait_all(sweep, list(zip(jobs, handles)), report, poll_s=30.0)
        return
    from pdebench_core.signals import termination_signals_interrupt

    limit = options.max_parallel or len(jobs)
    pending, running = list(jobs), []
    try:
        with termination_signals_interrupt():  # SIGTERM to the driver: stopped like Ctrl-C, jobs included
            while pending or running:
                while pending and len(running) < limit:
                    job = pending.pop(0)
                    with _ctrl_c_left_to_the_job():
                        handle = executor.submit(RequeueableJob(), home, sweep.sweep_id, job)
                    sweep.write_submissions({job.index: _entry(launcher, job, handle)})
                    report("start", job, {"job_id": handle.job_id})
                    running.append((job, handle))
                running = _wait_all(sweep, running, report, poll_s=0.5, first_only=True)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (Stopped)
        _stop_jobs(sweep, running)
        raise


#: How long a stopped driver gives its jobs to end on their own, then to record their stop.
JOB_STOP_GRACE_S = 3.0
JOB_STOP_WAIT_S = 120.0


def _stop_jobs(sweep: SweepDir, running: list) -> None:
    """Stop the submitit-local jobs of a driver that was stopped.

    A Ctrl-C at the terminal reaches the jobs too (their controllers ignore it); a signal sent
    to the driver alone does not, and they would train on, orphaned, past ``--max-parallel``.
    Each job still running after a short grace is sent SIGINT (it records its run as
    interrupted, to be resumed by the next ``pdeb sweep``), and the driver waits for them.
    """
    import os

    from pdebench_core.locks import process_alive

    def live(job: JobSpec) -> int | None:
        record = sweep.read_job(job.index) or {}
        pid = record.get("pid")
        if record.get("state") == "running" and isinstance(pid, int) and process_alive(pid, record.get("process")):
            return pid
        return None

    deadline = time.monotonic() + JOB_STOP_GRACE_S
    while time.monotonic() < deadline and any(live(job) for job, _ in running):
        time.sleep(0.2)
    for job, _ in running:
        pid = live(job)
        if pid is not None:
            with contextlib.suppress(OSError):  # it ended meanwhile
                os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + JOB_STOP_WAIT_S
    while time.monotonic() < deadline and not all(handle.done() for _, handle in running):
        time.sleep(0.2)


def _wait_all(sweep: SweepDir, running: list, report: Reporter, poll_s: float, first_only: bool = False) -> list:
    """Wait until every job (or, with ``first_only``, at least one) has ended; report each that did.

    Returns:
        The jobs still running.
    """
    while running:
        ended = [(job, handle) for job, handle in running if handle.done()]
        for job, handle in ended:
            report("end", job, _settle(sweep, job, handle))
        running = [item for item in running if item not in ended]
        if ended and first_only:
            break
        if running:
            time.sleep(poll_s)
    return running
