"""One job of a sweep: run one combination through the same path as ``pdeb run``, and record it.

:func:`run_job` is what every launcher executes, in this process (``local``) or in a process
that submitit starts (``submitit-local``, ``submitit-slurm``). It writes the combination's
record before and after the run, and sends everything the run prints to the job's log file.
"""

from __future__ import annotations

import contextlib
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from pdebench_core.errors import PdebError


@dataclass(frozen=True)
class JobSpec:
    """What a launcher starts: one attempt of one combination.

    Attributes:
        index: The combination's index in the plan.
        attempt: 1 for the first attempt, then one more per retry.
        run_id: The run's id.
        resume: Continue the run's directory (an interrupted run) instead of starting it.
        label: The combination in words (``fno ns2d seed=0``).
    """

    index: int
    attempt: int
    run_id: str
    resume: bool
    label: str


def run_id_for(sweep_id: str, index: int, attempt: int) -> str:
    """``<sweep>-<NNN>`` for the first attempt, ``<sweep>-<NNN>-r<A>`` for retry A."""
    base = f"{sweep_id}-{index:03d}"
    return base if attempt <= 1 else f"{base}-r{attempt}"


@contextlib.contextmanager
def _output_to(log: Path) -> Iterator[None]:
    """Send what Python prints to ``log`` (the run's own ``log.txt`` is written as usual)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8", buffering=1) as handle, \
            contextlib.redirect_stdout(handle), contextlib.redirect_stderr(handle):
        yield


@contextlib.contextmanager
def _grouped_under(sweep_id: str) -> Iterator[None]:
    """Runs of a sweep form one group in Weights & Biases, unless the user chose a group."""
    chosen = os.environ.get("WANDB_RUN_GROUP")
    if chosen is None:
        os.environ["WANDB_RUN_GROUP"] = sweep_id
    try:
        yield
    finally:
        if chosen is None:
            os.environ.pop("WANDB_RUN_GROUP", None)


def _execute(sweep_id: str, index: int, run_id: str, resume: bool) -> dict[str, Any]:
    """Build the combination's config as planned and run it; its results ``{dataset: metrics}``."""
    from pdebench_core.config import config_hash
    from pdebench_core.errors import UsageError
    from pdebench_core.runner import execute
    from pdebench_core.sweep.plan import build_point_config
    from pdebench_core.sweep.store import SweepDir

    plan = SweepDir(sweep_id).load_plan()
    cfg = build_point_config(plan.shared, plan.points[index], run_id=run_id)
    if config_hash(cfg) != plan.config_hashes[index]:
        raise UsageError(f"the config of '{plan.points[index].label()}' differs from the one planned (pdeb, a plugin "
                         f"or the config file changed since); start a new sweep")
    from pdebench_core.runs import recorded_command

    # command.txt: the sweep that started the run (not submitit's job runner, nor a bare argv)
    with recorded_command(plan.command or f"pdeb sweep ... (sweep {sweep_id})"):
        return dict(execute(cfg, resume=resume or _ran_before(run_id), quiet=False).results or {})


def _ran_before(run_id: str) -> bool:
    """Whether this attempt's run exists already: its job ran before and is running again (SLURM
    requeued it after a time limit or a preemption), or the sweep resumes it. One job runs one
    instance at a time, so a ``running`` status left on another machine is stale: it is
    recorded as interrupted, for the run to resume. On this machine a live process is checked."""
    import socket

    from pdebench_core.rundir import RunDir

    run = RunDir.of(run_id)
    if not run.path.is_dir():
        return False
    if run.state() == "running" and run.read_status().get("host") != socket.gethostname():
        run.restate("interrupted", "its job ended on another machine; resumed by the sweep")
    return True


class RequeueableJob:
    """:func:`run_job` as submitit runs it: when SLURM signals a time limit or a preemption
    (``USR2``), submitit asks :meth:`checkpoint` for the job to requeue, which resumes the run."""

    def __call__(self, home: str, sweep_id: str, job: JobSpec) -> dict[str, Any]:
        import signal
        import threading

        # submitit-local's controller was started with Ctrl-C ignored (see launchers): take it back
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        return run_job(home, sweep_id, job)

    def checkpoint(self, home: str, sweep_id: str, job: JobSpec) -> Any:
        """The same attempt again: it resumes its run from the last checkpoint when the run
        exists (see :func:`_ran_before`), and starts it when the signal came before it did."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, home, sweep_id, job)


def run_job(home: str, sweep_id: str, job: JobSpec) -> dict[str, Any]:
    """Run one attempt of one combination and return its final record.

    Args:
        home: The pdeb home of the sweep (a cluster node may start with another environment).
        sweep_id: The sweep's id.
        job: The attempt to run.

    Returns:
        The record written to ``jobs/<N>.json``: state ``finished`` (with ``results``) or
        ``failed`` (with ``error``); the log file is in ``log``.

    Raises:
        KeyboardInterrupt: The user stopped it (recorded as ``interrupted`` first).
    """
    from pdebench_core.sweep.store import SweepDir

    os.environ["PDEB_HOME"] = home
    sweep = SweepDir(sweep_id)
    log = sweep.log_file(job.index, job.attempt)
    fields = {"label": job.label, "run_id": job.run_id, "attempt": job.attempt, "log": str(log)}
    sweep.write_job(job.index, state="running", started=time.time(), **fields)
    started = time.perf_counter()
    try:
        with _output_to(log), _grouped_under(sweep_id):
            results = _execute(sweep_id, job.index, job.run_id, job.resume)
    except (KeyboardInterrupt, SystemExit):  # SystemExit: submitit ends a job it requeued
        sweep.write_job(job.index, state="interrupted", **fields)
        raise
    except PdebError as exc:
        _note(log, f"error: {exc}")
        return sweep.write_job(job.index, state="failed", error=str(exc), **fields)
    except Exception as exc:  # a crash of one run must not end the sweep: the log keeps the traceback
        _note(log, traceback.format_exc())
        return sweep.write_job(job.index, state="failed", error=f"{type(exc).__name__}: {exc}".splitlines()[0], **fields)
    return sweep.write_job(job.index, state="finished", results=results, seconds=time.perf_counter() - started,
                           **fields)


def _note(log: Path, text: str) -> None:
    """Append to the job's log; a log that cannot take it (a full disk) is passed over, the job's
    record keeping the error."""
    with contextlib.suppress(OSError), open(log, "a", encoding="utf-8") as handle:
        handle.write(text.rstrip() + "\n")
