"""Executing a resolved config: run directory, seeds, sinks, the task, status."""

from __future__ import annotations

import json
import math
import shutil
import time
from typing import Any

from pdebench_core import plugins
from pdebench_core.config import config_hash
from pdebench_core.errors import PdebError, UsageError
from pdebench_core.runs import RunContext, command_line, new_run_id, run_dir_for


def _write_status(run_dir, **status: Any) -> None:
    (run_dir / "status.json").write_text(json.dumps(status, indent=2))


def prepare_run_dir(cfg, resume: bool = False):
    """Create (or, when resuming, reopen) the run directory and save the resolved config."""
    from omegaconf import OmegaConf

    run_id = cfg.run.run_id or new_run_id(cfg.model.name, list(cfg.data.keys()))
    run_dir = run_dir_for(run_id)
    if resume:
        if not run_dir.is_dir():
            raise UsageError(f"cannot resume: no run '{run_id}' under {run_dir.parent}; check the id with 'pdeb runs'")
        saved = OmegaConf.load(run_dir / "config.yaml")
        if config_hash(saved) != config_hash(cfg):
            raise UsageError(
                f"cannot resume '{run_id}': the given settings differ from the saved config "
                f"({run_dir / 'config.yaml'}); resume with 'pdeb run --resume {run_id}' alone"
            )
    elif run_dir.exists():
        raise UsageError(f"run '{run_id}' already exists in {run_dir}; pick another --run-id or --resume it")
    run_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.set_struct(cfg, False)
    cfg.run.run_id = run_id
    OmegaConf.set_struct(cfg, True)
    if not resume:
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
        (run_dir / "command.txt").write_text(command_line() + "\n")
    return run_id, run_dir


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


# How long other ranks wait while rank 0 generates the run's data: generation at the paper
# profile takes far longer than any collective should be allowed to.
DATA_WAIT_S = 24 * 3600.0


def generate_data_first(cfg, rank: int, world_size: int) -> None:
    """Under several processes, rank 0 builds every dataset (generating and caching what is
    missing) while the others wait without the short collective timeout; the task's own
    dataset building then reads the cache on every rank."""
    if world_size <= 1:
        return
    import datetime

    import torch.distributed as dist

    # A side group of its own, so the long wait does not loosen train.dist_timeout elsewhere.
    group = dist.new_group(backend="gloo", timeout=datetime.timedelta(seconds=DATA_WAIT_S))
    failure: list = [None]
    if rank == 0:
        try:
            for name, section in cfg.data.items():
                plugins.get("dataset", name).factory(section)
        except (PdebError, OSError) as exc:
            failure[0] = f"dataset preparation failed on rank 0: {exc}"
    dist.broadcast_object_list(failure, src=0, group=group)
    dist.destroy_process_group(group)
    if failure[0] is not None:
        raise PdebError(failure[0])


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
    _shared_run_id(cfg, world_size)
    failure: list = [None]
    if rank == 0:
        try:
            run_id, run_dir = prepare_run_dir(cfg, resume=resume)
        except UsageError as exc:
            failure[0] = str(exc)
    if world_size > 1:
        import torch.distributed as dist

        dist.broadcast_object_list(failure, src=0)  # the run directory exists before any rank uses it
    if failure[0] is not None:
        raise UsageError(failure[0])
    if rank != 0:
        run_id, run_dir = cfg.run.run_id, run_dir_for(cfg.run.run_id)
    torch.manual_seed(int(cfg.run.seed))
    regs = plugins.registries()
    sinks = []
    if rank == 0:
        for name in cfg.run.sinks:
            comp = regs["sink"].get(name)
            sinks.append(comp.factory(comp.config() if comp.config else None, run_dir))
    ctx = RunContext(cfg=cfg, run_id=run_id, run_dir=run_dir, device=device, sinks=sinks, resume=resume,
                     rank=rank, world_size=world_size, quiet=quiet)
    task = regs["task"].get(cfg.run.task)
    if ctx.is_main:
        _write_status(run_dir, state="running", started=time.time())
        ctx.log(f"run {run_id}: task {cfg.run.task}, model {cfg.model.name}, data {list(cfg.data.keys())}, "
                f"profile {cfg.run.profile}, device {device}")
    try:
        ctx.results = _run_task(task, ctx)
    except PdebError as exc:
        if ctx.is_main:
            has_checkpoint = any((run_dir / "checkpoints").glob("*.pt")) if (run_dir / "checkpoints").exists() else False
            if not resume and not has_checkpoint:
                shutil.rmtree(run_dir, ignore_errors=True)  # nothing worth keeping was written
            else:
                _write_status(run_dir, state="failed", error=str(exc))
        raise
    except BaseException as exc:
        if ctx.is_main:
            _write_status(run_dir, state="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        for sink in sinks:
            sink.close()
    if ctx.is_main:
        _write_status(run_dir, state="finished", finished=time.time(), results=ctx.results)
        ctx.log(f"run {run_id} finished; directory {run_dir}")
    return ctx


def _run_task(task, ctx: RunContext) -> Any:
    """The task's results (after rank 0 has generated the data); a lost peer or a kernel
    refused by ``train.deterministic`` becomes one clear line instead of a traceback."""
    try:
        generate_data_first(ctx.cfg, ctx.rank, ctx.world_size)
        return task.factory(ctx)
    except RuntimeError as exc:
        from pdebench_core.distributed import is_peer_failure, stopped_peer_message

        if "does not have a deterministic implementation" in str(exc):
            raise PdebError(f"{str(exc).splitlines()[0][:200]}; set train.deterministic=false for this model") from None
        if ctx.world_size > 1 and is_peer_failure(exc):
            raise PdebError(stopped_peer_message(ctx.rank, ctx.world_size, float(ctx.cfg.train.dist_timeout))) from None
        raise
