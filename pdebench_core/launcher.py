"""Launching a run on several processes (torchrun) and reporting how its processes ended.

``pdeb run --nproc-per-node N`` re-runs its own command under torch's launcher; each worker
hands its error line to the launcher, which prints each distinct error once (not once per
process) and keeps the run's ``status.json`` true when a process failed or was killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional

import typer

from pdebench_core.errors import PdebError, UsageError
from pdebench_core.signals import dropped_stops_raised_again

#: Environment variable naming the folder where each worker of ``pdeb run --nproc-per-node``
#: leaves its error line (a file named after its rank) for the launcher to print.
WORKER_ERRORS = "PDEB_WORKER_ERRORS"
#: Environment variable holding the process id of ``pdeb run --nproc-per-node``'s launcher, which
#: its workers follow (:func:`stop_with_the_launcher`).
LAUNCHER_PID = "PDEB_LAUNCHER_PID"
# Prefix of a launch's temporary folder (worker notes, torch's logs), followed by the launcher's pid.
LAUNCH_FOLDER = "pdeb-launch-"
# Prefix of the note a worker stopped by a signal leaves in the WORKER_ERRORS folder.
STOPPED = "stopped-"
# prctl(2) option: a signal the kernel sends this process when its parent dies (Linux).
PR_SET_PDEATHSIG = 1


def stop_with_the_launcher() -> None:
    """In a worker started by pdeb's launcher: be sent SIGTERM when the launcher dies.

    A launcher killed outright (SIGKILL, the OOM killer) cannot stop its workers, which would
    go on training, holding their devices, with nobody to report to. The SIGTERM stops a
    worker as a scheduler's does: the run is recorded as interrupted and can be resumed. On
    Linux the kernel sends it at once; elsewhere a thread looks for the launcher every second.
    """
    launcher = os.environ.get(LAUNCHER_PID, "")
    if "LOCAL_RANK" not in os.environ or not launcher.isdigit():
        return
    if not sys.platform.startswith("linux") or not _parent_death_signal(signal.SIGTERM):
        threading.Thread(target=_watch_launcher, args=(int(launcher),), name="pdeb-launcher-watch",
                         daemon=True).start()
    elif os.getppid() != int(launcher):  # it died before the kernel was told
        os.kill(os.getpid(), signal.SIGTERM)


def _parent_death_signal(number: int) -> bool:
    """Ask the kernel to send ``number`` to this process when its parent dies; whether it took."""
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(number), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_launcher(launcher: int) -> None:
    while os.getppid() == launcher:
        time.sleep(1.0)
    signal.raise_signal(signal.SIGTERM)  # its handler runs in the main thread, as for a SIGTERM from outside


def end_failed_worker(exc: BaseException) -> None:
    """Report the error of a worker of a multi-process run and end it with its exit code.

    Like a finished worker, a failed one leaves without interpreter shutdown, where gloo's
    threads could turn its exit status into an abort (see ``end_worker``).
    """
    import traceback

    from pdebench_core.cli_common import report_error
    from pdebench_core.distributed import end_worker
    from pdebench_core.runs import LAUNCHER_COMMAND

    rank = os.environ.get("RANK", "0")
    under_pdeb = LAUNCHER_COMMAND in os.environ  # pdeb's own launcher reports a signal itself
    if isinstance(exc, KeyboardInterrupt) and (int(rank) > 0 or under_pdeb):
        # Said once, by pdeb's launcher or rank 0; a stop sent to this process alone is told
        # apart from the launcher's own by the note left here.
        _leave_note(f"{STOPPED}{rank}", getattr(exc, "signal_name", "SIGINT"))
        end_worker(getattr(exc, "exit_code", 130))
    if isinstance(exc, PdebError) and _leave_note(rank, str(exc)):
        end_worker(exc.exit_code)  # the launcher prints it, once for every process that raised it
    if _exit_status(exc):  # a failure with no line for the launcher: noted, so no later stop is taken for it
        _leave_note(rank, "")
    if isinstance(exc, typer.Exit):
        end_worker(exc.exit_code)
    if isinstance(exc, SystemExit):  # as Python treats it: None is success, other values are printed
        if exc.code is None or isinstance(exc.code, int):
            end_worker(exc.code or 0)
        print(exc.code, file=sys.stderr)
        end_worker(1)
    code = report_error(exc)
    if code is None:
        traceback.print_exception(exc)
    end_worker(1 if code is None else code)


def _exit_status(exc: BaseException) -> int:
    """The exit status ``exc`` ends a process with (0: success)."""
    if isinstance(exc, typer.Exit):
        return int(exc.exit_code)
    if isinstance(exc, SystemExit):
        return 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
    return 1


def _leave_note(name: str, text: str) -> bool:
    """Hand pdeb's launcher a note of this worker: its error line (a file named after the rank)
    or the signal that stopped it; False when the worker was not started by it, or the note
    could not be written."""
    folder = os.environ.get(WORKER_ERRORS)
    if not folder:
        return False
    now = time.time_ns()
    try:
        Path(folder, name).write_text(text, encoding="utf-8")
        # The launcher orders notes by file time. A time the kernel stamps comes from its coarse
        # clock (a few milliseconds), too coarse for a lost peer's error that follows a stop at
        # once; a time set explicitly is kept to the nanosecond.
        os.utime(Path(folder, name), ns=(now, now))
    except OSError:
        return False
    return True


def stop_message(rank: int, signal_name: str) -> str:
    """The one line that says a signal sent to one worker alone ended the run."""
    return f"process of rank {rank} was stopped by {signal_name}"


def is_stop(failure: str) -> bool:
    """Whether a failure the launcher reported is a :func:`stop_message`."""
    return failure.startswith("process of rank ") and " was stopped by SIG" in failure


def _worker_notes(folder: str | os.PathLike | None) -> tuple[list[tuple[int, int, Path]], list[tuple[int, int]]]:
    """The notes workers left: ``(time, rank, path)`` of each stop, ``(time, rank)`` of each error."""
    stops, errors = [], []
    for path in Path(folder).iterdir() if folder and Path(folder).is_dir() else []:
        with contextlib.suppress(OSError):
            if path.name.startswith(STOPPED) and path.name[len(STOPPED):].isdigit():
                stops.append((path.stat().st_mtime_ns, int(path.name[len(STOPPED):]), path))
            elif path.name.isdigit():
                errors.append((path.stat().st_mtime_ns, int(path.name)))
    return stops, errors


def first_stopped_worker(folder: str | os.PathLike | None, failures: Mapping[int, Any] | None = None
                         ) -> tuple[int, str] | None:
    """``(rank, signal name)`` when a signal stopped one worker before any other worker left a
    note (an error line, or the empty note of a failure without one), else None. Sent to that
    process alone, the stop is the cause: the rest then failed or were stopped because of it.

    Args:
        folder: The launch's notes folder.
        failures: torch's failures by rank, when known: the stopped rank must have ended with
            that signal's status, and every rank that failed otherwise must have left a note.
    """
    stops, errors = _worker_notes(folder)
    if not stops:
        return None
    when, rank, first = min(stops)
    if errors and min(errors)[0] <= when:  # a tie is not taken for a stop
        return None
    name = first.read_text(encoding="utf-8", errors="replace").strip()
    if name not in signal.Signals.__members__:
        return None
    if failures is not None:
        status = getattr(failures.get(rank), "exitcode", None)
        noted = {r for _, r, _ in stops} | {r for _, r in errors}
        unexplained = [r for r, failure in failures.items() if r not in noted and failure.exitcode >= 0]
        if status not in (128 + int(signal.Signals[name]), -int(signal.Signals[name])) or unexplained:
            return None
    return rank, name


def print_worker_errors(folder: Path) -> None:
    """Print each distinct error line the workers left in ``folder`` once, in rank order,
    naming the ranks when the processes raised different errors. (A process stopped by the
    launcher before it could write its line is not counted: one error is one error.)"""
    by_message: dict[str, list[int]] = {}
    for path in sorted((p for p in folder.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)):
        message = path.read_text(encoding="utf-8", errors="replace").strip()
        if message:
            by_message.setdefault(message, []).append(int(path.name))
    for message, ranks in by_message.items():
        who = "" if len(by_message) == 1 else f"{'rank' if len(ranks) == 1 else 'ranks'} {', '.join(map(str, ranks))}: "
        typer.echo(f"error: {who}{message}", err=True)


def check_batch_split(cfg, processes: int) -> None:
    """Refuse, before launching anything, a global batch the processes cannot share evenly
    (for a task that trains: evaluation does not use ``train.batch_size``)."""
    from pdebench_core import plugins

    if not plugins.get("task", str(cfg.run.task)).trains:
        return
    batch, accum = int(cfg.train.batch_size), int(cfg.train.grad_accum)
    if processes > 1 and batch % (processes * accum):
        raise UsageError(f"train.batch_size={batch} must be divisible by processes x train.grad_accum = {processes} x "
                         f"{accum}; pick a batch that is, or another process count")


def check_process_count(nproc: int, device: str) -> None:
    """At least one process; on GPUs at most one per visible GPU, on CPUs at most twice the
    cores (gloo processes beyond that only compete for the cores and multiply memory)."""
    if nproc < 1:
        raise UsageError(f"--nproc-per-node {nproc} must be at least 1")
    import torch

    if device != "cpu" and torch.cuda.is_available():
        if nproc > torch.cuda.device_count():
            raise UsageError(f"--nproc-per-node {nproc} asks for more processes than the "
                             f"{torch.cuda.device_count()} visible GPUs; lower it or use --device cpu")
        return
    limit = 2 * (os.cpu_count() or 1)
    if nproc > limit:
        raise UsageError(f"--nproc-per-node {nproc} is more than twice the {os.cpu_count()} CPU cores; "
                         f"use at most {limit} processes on CPU")


def check_nodes(nnodes: int, node_rank: int, endpoint: Optional[str]) -> list[str]:
    """torchrun's multi-node arguments (empty for one machine), after checking them."""
    if nnodes < 1:
        raise UsageError(f"--nnodes {nnodes} must be at least 1")
    if not 0 <= node_rank < nnodes:
        raise UsageError(f"--node-rank {node_rank} must lie in 0..{nnodes - 1} for --nnodes {nnodes}")
    if nnodes == 1:
        return []
    host, _, port = (endpoint or "").rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--nnodes {nnodes} needs --rdzv-endpoint HOST:PORT that every machine can reach "
                         f"(got {endpoint!r})")
    if not 0 < int(port) < 65536:
        raise UsageError(f"--rdzv-endpoint {endpoint}: port {port} is not a TCP port; use one in 1..65535")
    return [f"--nnodes={nnodes}", f"--node-rank={node_rank}", "--rdzv-backend=c10d",
            f"--rdzv-endpoint={endpoint}", f"--rdzv-id=pdeb-{endpoint}"]


def launch_torchrun(nproc: int, cfg, resume: Optional[str], nodes: list[str]) -> int:
    """Re-run this command under torchrun with ``nproc`` processes per machine, on one machine
    (``--standalone``) or on several (``nodes``: c10d rendezvous); the config is already validated."""
    from pdebench_core.runs import LAUNCH_OPTIONS, command_line, new_run_id, recorded_command

    argv = list(sys.argv[1:])
    cleaned, skip = [], False
    for item in argv:
        if skip:
            skip = False
            continue
        if item in LAUNCH_OPTIONS:
            skip = True
            continue
        if item.startswith(tuple(f"{option}=" for option in LAUNCH_OPTIONS)):
            continue
        cleaned.append(item)
    run_id = resume or cfg.run.run_id or new_run_id(cfg.model.name, list(cfg.data.keys()))
    if not resume and "--run-id" not in cleaned:
        cleaned += ["--run-id", run_id]
    launch = nodes or ["--standalone"]
    failures: list[str] = []
    # the workers record this command, launch options included
    remove_left_by_dead_launchers()
    with tempfile.TemporaryDirectory(prefix=f"{LAUNCH_FOLDER}{os.getpid()}-") as errors, \
            recorded_command(command_line()):
        os.environ[WORKER_ERRORS], os.environ[LAUNCHER_PID] = errors, str(os.getpid())
        try:
            code = torchrun([*launch, f"--nproc-per-node={nproc}", "-m", "pdebench_core.cli", *cleaned],
                            failures.append, run_id)
        finally:
            os.environ.pop(WORKER_ERRORS, None)
            os.environ.pop(LAUNCHER_PID, None)
        if not (failures and is_stop(failures[0])):  # else the others' errors follow from that stop
            print_worker_errors(Path(errors))
    if code:
        node_rank = next((int(a.split("=", 1)[1]) for a in nodes if a.startswith("--node-rank=")), 0)
        record_launch_outcome(run_id, code, failures, node_rank)
    return code


def remove_left_by_dead_launchers() -> None:
    """Remove the temporary folders of launchers killed outright (SIGKILL cannot clean up):
    their names carry the launcher's process id."""
    import shutil

    from pdebench_core.locks import process_alive

    for folder in Path(tempfile.gettempdir()).glob(f"{LAUNCH_FOLDER}*-*"):
        pid = folder.name[len(LAUNCH_FOLDER):].split("-", 1)[0]
        if pid.isdigit() and folder.is_dir() and not process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def record_launch_outcome(run_id: str, code: int, failures: list[str], node_rank: int = 0) -> None:
    """Keep ``status.json`` true after a multi-process run ended badly. When one process fails,
    torchrun stops the others with SIGTERM: process 0 may then have recorded "stopped by
    SIGTERM", or nothing at all; the launcher knows which process failed. On a machine other
    than the first (``node_rank`` > 0), processes fail because the first one's were stopped: an
    ``interrupted`` the first recorded stays. A process stopped by a signal sent to it alone is
    the cause whatever process 0 recorded after it: the run is interrupted, and can be resumed."""
    from pdebench_core.rundir import RunDir

    run = RunDir.of(run_id)
    if not run.status_file.is_file():
        return  # refused before the run directory was made
    status = run.read_status()
    if node_rank > 0 and status.get("state") == "interrupted":
        return
    if failures and is_stop(failures[0]) and status.get("state") != "finished":
        run.restate("interrupted", failures[0])  # rank 0's own account (a lost peer) follows from it
        return
    stopped = status.get("state") == "running" or str(status.get("error", "")).startswith("stopped by SIG")
    if not stopped:
        return  # process 0 recorded its own error (or the run finished)
    if failures:
        run.restate("failed", failures[0])
    elif code in (128 + int(signal.SIGINT), 128 + int(signal.SIGTERM)):
        run.restate("interrupted", f"stopped by {signal.Signals(code - 128).name}")


def torchrun(arguments: list[str], on_failure: Callable[[str], None] = lambda reason: None,
             run_id: str = "RUN_ID") -> int:
    """Run torch's launcher in this process; the exit status of the run.

    Each worker reports its own error in one line (:func:`end_failed_worker`), so the
    launcher's own account of a failure (log lines and a ``ChildFailedError`` traceback) is
    not shown; a worker killed by a signal, which could not report, is named in one line, and
    a signal to ``pdeb`` itself ends it with ``128 + signal``, as for any command.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous.api import RendezvousConnectionError, RendezvousError
    from torch.distributed.run import parse_args, run

    with launcher_state_restored(), contextlib.ExitStack() as stack:
        if not any(a.startswith(("--log-dir", "--log_dir")) for a in arguments):  # torch's own, else left in /tmp
            logs = stack.enter_context(tempfile.TemporaryDirectory(prefix=f"{LAUNCH_FOLDER}{os.getpid()}-"))
            arguments = [f"--log-dir={logs}", *arguments]
        try:
            with dropped_stops_raised_again():  # inside the try: a stop it raises is reported below
                run(parse_args(arguments))
        except SignalException as exc:
            typer.echo("interrupted" if exc.sigval == signal.SIGINT else f"stopped by {exc.sigval.name}", err=True)
            return 128 + int(exc.sigval)
        except RendezvousConnectionError:
            endpoint = next((a.split("=", 1)[1] for a in arguments if a.startswith("--rdzv-endpoint=")), "?")
            typer.echo(f"error: lost (or never reached) the run's rendezvous at {endpoint}: the node that hosts "
                       f"it stopped, the network between the nodes is down, or the endpoint is not one every node "
                       f"can reach; start the same command on every node again, with '--resume {run_id}' in place "
                       f"of '--run-id {run_id}' once the run has begun", err=True)
            return 1
        except RendezvousError as exc:
            reason = str(exc) or type(exc).__name__
            typer.echo(f"error: the processes of this run did not all join ({reason}); start the same command "
                       f"on every node with the same --rdzv-endpoint, which every node must reach", err=True)
            return 1
        except ChildFailedError as exc:
            # A rank killed by a signal (the OOM killer's SIGKILL) is the cause; the others' errors (a lost
            # peer) follow from it. SIGTERM is torchrun's own, sent to the rest once one rank failed, and
            # so is a SIGKILL well after the first failure (to a rank that ignored that SIGTERM for 30 s:
            # one stopped, or blocked in a call). Failure times are whole seconds.
            first = min(failure.timestamp for failure in exc.failures.values())
            killed = sorted(((rank, failure) for rank, failure in exc.failures.items()
                             if failure.exitcode < 0 and -failure.exitcode != int(signal.SIGTERM)
                             and failure.timestamp <= first + 1), key=lambda item: item[0])
            notes = os.environ.get(WORKER_ERRORS)
            stopped = None if killed else first_stopped_worker(notes, exc.failures)
            if stopped is not None:  # a signal to one worker alone (kill PID): the others followed
                rank, name = stopped
                on_failure(stop_message(rank, name))
                typer.echo(f"error: {stop_message(rank, name)}", err=True)
                return 128 + int(signal.Signals[name])
            only_stopped = {r for _, r, _ in _worker_notes(notes)[0]}  # stopped by torchrun once another failed
            failed = sorted(((rank, failure) for rank, failure in exc.failures.items()
                             if failure.exitcode >= 0 and rank not in only_stopped), key=lambda item: item[0])
            rank, failure = (killed or failed or [exc.get_first_failure()])[0]
            if failure.exitcode >= 0:
                on_failure(f"process of rank {rank} failed with exit code {failure.exitcode} (its error is in the "
                           f"command's output)")
                return failure.exitcode or 1
            on_failure(f"process of rank {rank} was killed by {failure.signal_name()}")
            typer.echo(f"error: process of rank {rank} was killed by {failure.signal_name()}", err=True)
            return 128 - failure.exitcode
    return 0


@contextlib.contextmanager
def launcher_state_restored() -> Iterator[None]:
    """Quiet the launcher's loggers, and give back the signal handlers it installs, afterwards."""
    import logging

    prefixes = ("torch.distributed.elastic", "torch.distributed.launcher", "torch.distributed.run")
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
               if name.startswith(prefixes)]
    levels = [logger.level for logger in loggers]
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
