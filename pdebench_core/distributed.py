"""Data parallelism over several processes: DDP or FSDP2, gradient syncs, peers that stop.

Every process of a run holds a :class:`DataParallel`: it wraps the model for the chosen
strategy and knows how to skip gradient synchronisation on the non-final micro-batches
of an accumulated step.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
from typing import Any, Callable, Iterator, NoReturn

import torch

# Messages of a collective that gave up on a peer (gloo, NCCL, the TCP store).
_PEER_FAILURE = re.compile(r"timed? ?out|timeout|connection closed by peer|connection reset|broken pipe",
                           re.IGNORECASE)


def rank() -> int:
    """This process's rank (0 without a process group)."""
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


class DataParallel:
    """The model as every process runs it: plain, in DDP, or sharded with FSDP2.

    Args:
        model: The model, already on ``device``.
        strategy: ``ddp`` or ``fsdp``.
        world_size: Processes; 1 leaves the model alone.
        device: This process's device.
        partial_steps: Some steps leave parameters without gradient (a mixture of several
            spatial dimensions: each step trains one dimension's embedding and head). DDP then
            looks for unused parameters and leaves their gradients empty, as one process
            would, so Adam skips them exactly as in a single-process run.
        bf16: Training computes in bf16; FSDP then gathers parameters and reduces gradients
            in bf16 while the optimizer keeps float32 master weights.
        compile_with: Wraps the module that computes (e.g. in ``torch.compile``).
    """

    def __init__(self, model: torch.nn.Module, strategy: str, world_size: int, device: torch.device,
                 partial_steps: bool = False, bf16: bool = False,
                 compile_with: Callable[[torch.nn.Module], torch.nn.Module] | None = None) -> None:
        self.model = model
        self.ddp = None
        self.sharded = world_size > 1 and strategy == "fsdp"
        wrap = compile_with or (lambda module: module)
        if world_size > 1:
            _quiet_false_alarms()
        if self.sharded:
            shard_model(model, bf16=bf16)
            self.module = wrap(model)
        elif world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            # DDP runs the compiled model rather than being compiled itself: a compiled DDP
            # gives wrong gradients when accumulation skips syncs with no_sync.
            device_ids = [device.index] if device.type == "cuda" else None
            self.ddp = DistributedDataParallel(wrap(model), device_ids=device_ids, find_unused_parameters=partial_steps)
            self.module = self.ddp
        else:
            self.module = wrap(model)

    @contextlib.contextmanager
    def gradient_sync(self, enabled: bool) -> Iterator[None]:
        """Forward and backward inside this block reduce gradients across processes only when
        ``enabled`` (the last micro-batch of a step); otherwise they accumulate locally."""
        if self.sharded:
            self.model.set_requires_gradient_sync(enabled)
        if self.ddp is not None and not enabled:
            with self.ddp.no_sync():
                yield
            return
        yield


def _quiet_false_alarms() -> None:
    """Silence two warnings that misfire on these models: DDP compares gradient strides
    exactly, also along size-1 axes (1x1x1 convolutions), and FSDP warns that the output is
    a view, which objectives never modify in place."""
    import warnings

    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor")


def _mixed_precision(module: torch.nn.Module, bf16: bool):
    """bf16 gather and reduce with float32 master weights; units holding complex weights
    (spectral layers) keep float32, since a bf16 reduction would drop their imaginary part."""
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if not bf16 or any(p.is_complex() for p in module.parameters()):
        return MixedPrecisionPolicy()
    return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.bfloat16)


def shard_model(model: torch.nn.Module, bf16: bool = False) -> None:
    """FSDP2: shard each block (every element of every ``ModuleList``) once, then the root.

    A block reached a second time (a model that reuses its blocks, e.g. for several spatial
    dimensions) or one whose parameters an earlier block already sharded is left to that owner.
    Under bf16, a module holding a parameter marked with
    :func:`~pdebench_core.devices.keep_float32` is sharded first, as a float32 unit.

    Args:
        model: The model, on its device.
        bf16: Use bf16 mixed precision (see :func:`_mixed_precision`).
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    from torch.distributed.tensor import DTensor

    from pdebench_core.devices import KEEP_FLOAT32

    float32_units = []
    for module in list(model.modules()) if bf16 else []:  # float32 units first, inside the bf16 ones
        own = list(module.parameters(recurse=False))
        if any(getattr(p, KEEP_FLOAT32, False) for p in own) and not any(isinstance(p, DTensor) for p in own):
            fully_shard(module, mp_policy=MixedPrecisionPolicy())
            float32_units.append(module)
    in_float32_units = {id(p) for unit in float32_units for p in unit.parameters()}
    for module in list(model.modules()):
        if not isinstance(module, torch.nn.ModuleList):
            continue
        for block in module:  # a block's own float32 units do not make it sharded already
            params = [p for p in block.parameters() if id(p) not in in_float32_units]
            if any(isinstance(p, DTensor) for p in params) or not any(p.requires_grad for p in params):
                continue
            fully_shard(block, mp_policy=_mixed_precision(block, bf16))
    fully_shard(model, mp_policy=_mixed_precision(model, bf16))


#: How long ranks wait for rank 0's one-off work (generating or scanning data): far longer
#: than any collective should be allowed to take.
LONG_WAIT_S = 24 * 3600.0


@contextlib.contextmanager
def long_wait_group() -> Iterator[Any]:
    """A gloo process group with a timeout of :data:`LONG_WAIT_S`, for the ranks to wait on
    while rank 0 does one-off work: ``train.dist_timeout`` stays short everywhere else, and
    NCCL's watchdog (which would abort a process waiting that long) is not involved. Every
    rank must enter it (creating a group is collective)."""
    import datetime

    import torch.distributed as dist

    group = dist.new_group(backend="gloo", timeout=datetime.timedelta(seconds=LONG_WAIT_S))
    try:
        yield group
    finally:
        dist.destroy_process_group(group)


def gather_from_ranks(value: Any, world_size: int) -> list[Any]:
    """``value`` of every rank, in rank order (a collective call)."""
    if world_size <= 1:
        return [value]
    import torch.distributed as dist

    out: list[Any] = [None] * world_size
    dist.all_gather_object(out, value)
    return out


def leave_process_group() -> bool:
    """Destroy the default process group, if there is one.

    Returns:
        Whether there was one (the process is a worker of a multi-process run).
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return False
    dist.destroy_process_group()
    return True


def end_worker(code: int) -> NoReturn:
    """End a worker of a multi-process run now, without interpreter shutdown.

    Gloo finishes each collective on a worker thread of its own, and that thread may still be
    releasing the collective's tensors (which takes the GIL) when the main thread shuts the
    interpreter down; the process then aborts with "terminate called without an active
    exception" although its work succeeded. Those threads live until the process ends
    (destroying the group does not join them), so a finished worker flushes its output and
    leaves at once.

    Args:
        code: The exit status.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    logging.shutdown()
    os._exit(code)


def is_peer_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is a collective that gave up waiting for (or lost) another process."""
    import torch.distributed as dist

    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    return isinstance(exc, RuntimeError) and bool(_PEER_FAILURE.search(str(exc)))


def missing_ranks(my_rank: int, world_size: int, wait_s: float) -> list[int] | None:
    """Roll call after a failed collective: the ranks that do not answer within ``wait_s``.

    Every surviving process checks in through the launcher's key-value store (reachable
    without the broken process group) and waits for the others; those that never check in
    are the ones that stopped.

    Returns:
        The silent ranks, or None when the store cannot be reached.
    """
    import datetime
    import socket

    import torch.distributed as dist

    try:
        address = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
        # Knock first: a store whose host is gone would make torch's client log its failed
        # connection attempts, with C++ stack frames, above pdeb's one line.
        with socket.create_connection(address, timeout=min(max(wait_s, 1.0), 10.0)):
            pass
        client = dist.TCPStore(*address, is_master=False, timeout=datetime.timedelta(seconds=max(wait_s, 1.0)))
        store = dist.PrefixStore("pdeb-roll-call", client)
        store.set(str(my_rank), "here")
        deadline = time.monotonic() + wait_s
        while True:
            present = {r for r in range(world_size) if store.check([str(r)])}
            if len(present) == world_size or time.monotonic() > deadline:
                return [r for r in range(world_size) if r not in present]
            time.sleep(0.2)
    except (KeyError, ValueError, RuntimeError, OSError):  # OSError: nothing answers at the store's address
        return None


def stopped_peer_message(my_rank: int, world_size: int, timeout_s: float) -> str:
    """One line naming the process(es) that stopped taking part in collectives."""
    silent = missing_ranks(my_rank, world_size, wait_s=min(max(timeout_s, 5.0), 60.0))
    if silent is None:
        who = "another process"
    elif not silent:
        return (f"a collective waited longer than train.dist_timeout={timeout_s:g} s although every rank is "
                f"still running; raise train.dist_timeout if steps, evaluation or checkpoints take that long")
    else:
        who = "rank " + ", ".join(map(str, silent))
    return (f"{who} stopped taking part (stopped, killed, out of memory, or hung past train.dist_timeout="
            f"{timeout_s:g} s); see that process's output, then resume with 'pdeb run --resume'")
