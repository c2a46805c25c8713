"""Executing a resolved config: run directory, seeds, sinks, the task, status."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Mapping

from pdebench_core import plugins
from pdebench_core.diskspace import write_failed, write_text_atomically
from pdebench_core.errors import (DataError, PdebError, PluginError, ResultsUndelivered, Stopped, UsageError, error_line,
                                  message_of)
from pdebench_core.resume import check_changes
from pdebench_core.rundir import RunDir
from pdebench_core.runs import RunContext, command_line, new_run_id, run_dir_for
from pdebench_core.signals import termination_signals_interrupt


def _write_status(run_dir, **status: Any) -> None:
    """Replace the run's ``status.json`` atomically (with this process's pid and host)."""
    state = status.pop("state")
    RunDir(run_dir).write_status(state, **status)


def prepare_run_dir(cfg, resume: bool = False):
    """Create (or, when resuming, reopen) the run directory and save the resolved config.

    A new run id is claimed with an exclusive ``mkdir``, so two runs can never share one.
    """
    from omegaconf import OmegaConf

    run_id = cfg.run.run_id or new_run_id(cfg.model.name, list(cfg.data.keys()))
    if resume:
        run = RunDir.of(run_id)
        if not run.path.is_dir():
            raise UsageError(f"cannot resume: no run '{run_id}' under {run.path.parent}; check the id with 'pdeb runs'")
        if run.state() == "running":  # its process is alive (or on another host): two trainers would collide
            status = run.read_status()
            elsewhere = "" if status.get("host") == socket.gethostname() else (
                f"; if it is gone (its machine stopped, its job was killed), 'pdeb runs --mark-interrupted "
                f"{run_id}' records that")
            raise UsageError(f"cannot resume '{run_id}': it is still running (process {status.get('pid')} on "
                             f"{status.get('host')}); wait for it, or stop it first{elsewhere}")
        saved, _ = run.read_config()
        check_changes(run_id, saved, OmegaConf.to_container(cfg, resolve=True))  # refused before any change
    else:
        run = RunDir.create(run_id)
    OmegaConf.set_struct(cfg, False)
    cfg.run.run_id = run_id
    OmegaConf.set_struct(cfg, True)
    if not resume:
        try:
            run.config_file.write_text(OmegaConf.to_yaml(cfg))
            run.command_file.write_text(command_line() + "\n")
        except OSError as exc:
            shutil.rmtree(run.path, ignore_errors=True)  # a run without its config is no run
            raise write_failed(run.config_file, exc) from None
    return run_id, run.path


def init_distributed(device_name: str, timeout_s: float = 600.0) -> tuple[int, int, str]:
    """Join the process group when started by torchrun (``WORLD_SIZE`` > 1).

    Args:
        device_name: ``run.device``.
        timeout_s: How long a collective waits for a peer (``train.dist_timeout``).

    Returns:
        ``(rank, world_size, device_name)``; the device becomes ``cuda:LOCAL_RANK`` on GPUs.
    """
    import datetime
    import os

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return 0, 1, device_name
    import torch
    import torch.distributed as dist

    if not (timeout_s > 0 and math.isfinite(timeout_s)):
        raise UsageError(f"train.dist_timeout must be a positive number of seconds, got {timeout_s}")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if use_cuda:
        if torch.cuda.device_count() <= local_rank:
            raise UsageError(f"process {local_rank} has no GPU: {torch.cuda.device_count()} visible; "
                             f"lower --nproc-per-node or use --device cpu")
        torch.cuda.set_device(local_rank)
        device_name = f"cuda:{local_rank}"
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo",
                                timeout=datetime.timedelta(seconds=timeout_s))
    return dist.get_rank(), dist.get_world_size(), device_name


def apply_determinism(enabled: bool) -> None:
    """``train.deterministic``: deterministic kernels only (an operation without one raises),
    cuDNN without autotuning, and the cuBLAS workspace setting that deterministic matmuls
    need (set before CUDA starts, unless the environment already chose one)."""
    import os

    import torch

    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled)
    torch.backends.cudnn.deterministic = enabled
    if enabled:
        torch.backends.cudnn.benchmark = False


def generate_data_first(cfg, rank: int, world_size: int) -> None:
    """Under several processes, rank 0 builds every dataset (generating and caching what is
    missing) while the others wait without the short collective timeout; the task's own
    dataset building then reads the cache on every rank."""
    if world_size <= 1:
        return
    import torch.distributed as dist

    from pdebench_core.distributed import long_wait_group

    failure: list = [None]
    with long_wait_group() as group:  # generation at the paper profile outlasts any collective timeout
        if rank == 0:
            try:
                for name, section in cfg.data.items():
                    plugins.build_dataset_from(name, section)
            except (PdebError, OSError) as exc:  # the kind travels too: bad data stays a usage error (exit 2)
                failure[0] = (isinstance(exc, (UsageError, OSError)), f"dataset preparation failed on rank 0: {exc}")
        dist.broadcast_object_list(failure, src=0, group=group)
    if failure[0] is not None:
        bad_input, message = failure[0]
        raise (DataError if bad_input else PdebError)(message)


def _shared_run_id(cfg, world_size: int) -> None:
    """Every rank uses rank 0's run id."""
    if world_size <= 1:
        return
    import torch.distributed as dist
    from omegaconf import OmegaConf

    box = [cfg.run.run_id or new_run_id(cfg.model.name, list(cfg.data.keys()))]
    dist.broadcast_object_list(box, src=0)
    OmegaConf.set_struct(cfg, False)
    cfg.run.run_id = box[0]
    OmegaConf.set_struct(cfg, True)


def execute(cfg, resume: bool = False, quiet: bool = False) -> RunContext:
    """Run the configured task and return its context (``ctx.results`` holds the metrics).

    Under torchrun every process calls this; only rank 0 writes files and result rows.
    """
    import torch

    from pdebench_core.devices import resolve_device

    apply_determinism(bool(cfg.train.deterministic))
    rank, world_size, device_name = init_distributed(cfg.run.device, float(cfg.train.dist_timeout))
    device = resolve_device(device_name)
    if device.type == "cpu":
        from pdebench_core.host_memory import keep_freed_memory

        keep_freed_memory()  # training on the host reallocates its activations every step
    _shared_run_id(cfg, world_size)
    failure: list = [None]
    if rank == 0:
        try:
            run_id, run_dir = prepare_run_dir(cfg, resume=resume)
        except PdebError as exc:  # a bad id, a damaged config, a full disk: every rank stops with it
            failure[0] = exc
    if world_size > 1:
        import torch.distributed as dist

        dist.broadcast_object_list(failure, src=0)  # the run directory exists before any rank uses it
    if failure[0] is not None:
        raise failure[0]
    if rank != 0:
        run_id, run_dir = cfg.run.run_id, run_dir_for(cfg.run.run_id)
    torch.manual_seed(int(cfg.run.seed))
    with contextlib.ExitStack() as stack:
        if resume and rank == 0:
            stack.enter_context(RunDir(run_dir).resume_lock())  # a second concurrent resume is refused
        ctx = RunContext(cfg=cfg, run_id=run_id, run_dir=run_dir, device=device, resume=resume, rank=rank,
                         world_size=world_size, quiet=quiet)
        _run_and_record(ctx, stack)
    return ctx


def _open_sinks(ctx: RunContext, stack: contextlib.ExitStack) -> None:
    """Open the configured sinks on rank 0 (closed when the run ends, however it ends)."""
    if not ctx.is_main:
        return
    from omegaconf import OmegaConf

    regs = plugins.registries()
    sections = ctx.cfg["sinks"] if "sinks" in ctx.cfg else {}  # absent when no sink has settings
    for name in ctx.cfg.run.sinks:
        comp = regs["sink"].get(name)
        settings = None
        if comp.config is not None:  # the sinks.<name> settings as the sink's own dataclass
            settings = OmegaConf.to_object(sections[name]) if name in sections else comp.config()
        with plugins.plugin_code(comp):
            sink = GuardedSink(comp, comp.factory(settings, ctx.run_dir))
        ctx.sinks.append(sink)
        stack.push(sink.close_after)


class GuardedSink:
    """A sink whose methods' exceptions become one line naming the sink and its plugin."""

    METHODS = ("log_step", "write_result", "close")

    def __init__(self, component: Any, sink: Any) -> None:
        missing = [name for name in self.METHODS if not callable(getattr(sink, name, None))]
        if missing:  # found now, before any compute, not when the first step is logged
            raise PluginError(f"sink '{component.name}' (plugin '{component.plugin}'): its factory returned a "
                              f"{type(sink).__name__} without {', '.join(missing)}; a sink has log_step(step, "
                              f"values), write_result(row) and close(); subclass pdebench_core.Sink to keep only some")
        self.component, self.sink, self.closed = component, sink, False

    def log_step(self, step: int, values: dict[str, float]) -> None:
        """The sink's ``log_step``."""
        with plugins.plugin_code(self.component):
            self.sink.log_step(step, values)

    def write_result(self, row: dict[str, Any]) -> None:
        """The sink's ``write_result``."""
        with plugins.plugin_code(self.component):
            self.sink.write_result(row)

    def close(self) -> None:
        """The sink's ``close`` (once)."""
        if self.closed:
            return
        self.closed = True
        with plugins.plugin_code(self.component):
            self.sink.close()

    def close_after(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        """Close when the run ends another way than finishing (an exit callback): a failing
        ``close`` is said on stderr instead of hiding the run's own error."""
        try:
            self.close()
        except PdebError as failure:
            if exc is None:
                raise
            print(f"warning: {failure}", file=sys.stderr)
        return False


def _close_sinks(ctx: RunContext) -> None:
    """Close the sinks of a run that finished its work. A sink that fails to close may not have
    stored the rows it took: it counts as one the results did not reach."""
    for sink in ctx.sinks:
        try:
            sink.close()
        except Exception as exc:  # noqa: BLE001 - as for a refused row: see RunContext.write_result
            if os.environ.get("PDEB_DEBUG"):  # the traceback, without changing what happens
                traceback.print_exception(exc)
            ctx.undelivered.setdefault(sink.component.name, exc)


def _run_and_record(ctx: RunContext, stack: contextlib.ExitStack) -> None:
    """Run the task, keeping ``status.json`` true: running, then finished or failed.

    A new run refused for its input before any step leaves nothing behind; one that fails
    later (a diverged loss, a plugin's error) keeps its log and step records as ``failed``. A
    resumed run that fails keeps a finished run's status (and its results) as they were.
    """
    run_dir, resume = ctx.run_dir, ctx.resume
    before = RunDir(run_dir).read_status() if resume and ctx.is_main else {}
    previous_config = _save_resumed_config(ctx) if resume and ctx.is_main else None
    try:
        stack.enter_context(termination_signals_interrupt())
        if ctx.is_main:
            RunDir(run_dir).check_writable()
        _open_sinks(ctx, stack)
        task = plugins.registries()["task"].get(ctx.cfg.run.task)
        if ctx.is_main:
            _write_status(run_dir, state="running", started=time.time())
            ctx.log(f"run {ctx.run_id}: task {ctx.cfg.run.task}, model {ctx.cfg.model.name}, "
                    f"data {list(ctx.cfg.data.keys())}, profile {ctx.cfg.run.profile}, device {ctx.device}"
                    + (f", {ctx.world_size} processes" if ctx.world_size > 1 else ""))
        ctx.results = _run_task(task, ctx)
        if ctx.is_main:
            _close_sinks(ctx)  # before "finished": a stop or an error while closing is recorded as such
    except BaseException as exc:
        if ctx.is_main:
            try:
                _record_failure(run_dir, resume, before, exc, previous_config)
            except KeyboardInterrupt as stop:  # a stop landing while the failure is written: record the stop
                if Path(run_dir).is_dir():  # unless the refused run was being removed
                    _record_failure(run_dir, resume, before, stop, previous_config)
                raise stop from exc
            if isinstance(exc, (KeyboardInterrupt, SystemExit)) and RunDir(run_dir).state() == "interrupted":
                with contextlib.suppress(Exception):  # a closed terminal must not hide the cause
                    ctx.log(f"run {ctx.run_id} interrupted; 'pdeb run --resume {ctx.run_id}' continues it")
        raise
    if ctx.is_main:
        undelivered = undelivered_results(ctx)
        try:
            _write_status(run_dir, state="finished", finished=time.time(), results=ctx.results,
                          **({"error": str(undelivered)} if undelivered else {}))
        except PdebError as exc:  # a full disk at the very end: the work is done and kept
            raise DataError(f"{exc}; run {ctx.run_id} finished its work (evaluations in {run_dir / 'eval'}) but "
                            f"could not record it: free space, then 'pdeb run --resume {ctx.run_id}' records "
                            f"it") from None
        ctx.log(f"run {ctx.run_id} finished; directory {run_dir}")
        if undelivered:
            _log_line(RunDir(run_dir), f"error: {undelivered}")
            raise undelivered


def undelivered_results(ctx: RunContext) -> ResultsUndelivered | None:
    """The one-line error of a finished run whose result rows some sink refused, or None.

    The run stays finished (its results are computed and in the sinks that took them); the
    command still fails, so that a script notices, and says how to send the rows again.
    """
    if not ctx.undelivered:
        return None
    failures = "; ".join(str(exc) for exc in ctx.undelivered.values())
    return ResultsUndelivered(f"run {ctx.run_id} finished, but its results did not reach sink(s) "
                              f"{', '.join(ctx.undelivered)}: {failures}; they are in {ctx.run_dir / 'eval'}, and "
                              f"'pdeb run --resume {ctx.run_id}' evaluates again and sends them to every sink",
                              ctx.run_id, dict(ctx.results))


def _save_resumed_config(ctx: RunContext) -> str | None:
    """Write the resumed run's config (e.g. more steps: the config says what runs); returns the
    text it replaced, for :func:`_record_failure` to put back, or None when nothing changed."""
    from omegaconf import OmegaConf

    run = RunDir(ctx.run_dir)
    saved, previous = run.read_config()
    if not check_changes(ctx.run_id, saved, OmegaConf.to_container(ctx.cfg, resolve=True)):
        return None
    write_text_atomically(run.config_file, OmegaConf.to_yaml(ctx.cfg))
    return previous


def _record_failure(run_dir, resume: bool, before: dict, exc: BaseException,
                    previous_config: str | None = None) -> None:
    from pdebench_core.signals import stop_behind

    exc = stop_behind(exc) or exc  # an error raised while handling a stop is the stop's consequence
    run = RunDir(run_dir)
    has_checkpoint = run.checkpoints.is_dir() and any(run.checkpoints.iterdir())
    if isinstance(exc, UsageError) and not resume and not has_checkpoint and not run.took_steps():
        shutil.rmtree(run_dir, ignore_errors=True)  # refused input, before any step: nothing worth keeping
        return
    error = error_line(exc)
    if resume and before.get("state") == "finished":
        _write_status(run_dir, **before)  # a failed extension does not undo a finished run
        if previous_config is not None:
            write_text_atomically(run.config_file, previous_config)  # nor does its config
        _log_line(run, f"resuming run {run.run_id} failed ({error or 'interrupted'}); it stays finished")
        return
    if isinstance(exc, KeyboardInterrupt):  # Ctrl-C or a scheduler's SIGTERM: the run can be resumed
        _write_status(run_dir, state="interrupted",
                      error=str(exc) if isinstance(exc, Stopped) else "interrupted by the user")
        return
    if isinstance(exc, SystemExit):  # the process is made to end (submitit after requeueing its job): resumable
        _write_status(run_dir, state="interrupted", error=f"the process was made to exit (code {exc.code})")
        return
    _write_status(run_dir, state="failed", error=error)
    _log_line(run, f"run {run.run_id} failed: {error}")


def _log_line(run: RunDir, message: str) -> None:
    """Append to the run's log without printing (the console has the error line already)."""
    with contextlib.suppress(OSError):  # the status holds the error whatever happens to the log
        run.append_log(message)


def _run_task(task, ctx: RunContext) -> Any:
    """The task's results (after rank 0 has generated the data); a lost peer or a kernel
    refused by ``train.deterministic`` becomes one clear line, and any other failure (or a
    ``sys.exit``) one line naming the plugin whose code raised it."""
    with plugins.plugin_code(task):
        try:
            generate_data_first(ctx.cfg, ctx.rank, ctx.world_size)
            results = task.factory(ctx)
        except Exception as exc:
            known = _known_failure(exc, ctx)
            if known is None:
                raise
            raise known from None
    check_task_results(task, results)
    return results


def _known_failure(exc: Exception, ctx: RunContext) -> BaseException | None:
    """The one-line error of a failure that is nobody's bug in particular (or the stop it
    stands for), or None."""
    import re
    import signal

    from pdebench_core.distributed import is_peer_failure, stopped_peer_message

    message = message_of(exc)
    loader = re.search(r"DataLoader worker \(pid[^)]*\) is killed by signal: ([^.]+)", message)
    if loader is not None:
        how = loader.group(1).split(":")[0].strip()  # "Terminated", or "Terminated: 15" on some systems
        stops = {str(signal.strsignal(sig)).split(":")[0]: sig
                 for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        if how in stops:  # stopped with this process's group (torchrun stopping the run, a scheduler)
            return Stopped(stops[how].name, int(stops[how]))
        return PdebError(f"a data-loading worker process was killed ({how}), often by the out-of-memory killer; "
                         f"lower train.num_workers or train.prefetch_factor")
    if "does not have a deterministic implementation" in message:
        return PdebError(f"{message.splitlines()[0][:200]}; set train.deterministic=false for this model")
    if ctx.world_size > 1 and isinstance(exc, RuntimeError) and is_peer_failure(exc):
        return PdebError(stopped_peer_message(ctx.rank, ctx.world_size, float(ctx.cfg.train.dist_timeout)))
    return None


def check_task_results(task: Any, results: Any) -> None:
    """Refuse what a task returned unless it is ``{dataset: {metric: value}}`` (``{}`` when it
    evaluated nothing), naming the first part that is not."""
    where = f"task '{task.name}' (plugin '{task.plugin}') returned"
    if not isinstance(results, Mapping):
        raise PluginError(f"{where} {type(results).__name__}, not {{dataset: {{metric: value}}}} ({{}} when it "
                          f"evaluates nothing)")
    for dataset, values in results.items():
        if not isinstance(values, Mapping):
            raise PluginError(f"{where} {type(values).__name__} for '{dataset}', not {{metric: value}}")
