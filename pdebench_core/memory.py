"""Will it fit? Estimates of memory needs, checked before an allocation that cannot succeed."""

from __future__ import annotations

import os
from typing import Any, Callable

from pdebench_core.diskspace import human_bytes
from pdebench_core.errors import UsageError

#: Bytes of training state per parameter: the weight, its gradient and Adam's two moments.
TRAINING_BYTES_PER_PARAMETER = 16
#: Bytes of one float32 weight: what a model takes while it is built, before it is sharded.
FLOAT32_BYTES = 4


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux: MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits_in_memory(needed: int, what: str, fix: str) -> None:
    """Refuse work needing more memory than is available, in one line.

    Args:
        needed: Estimated bytes.
        what: What needs them (``"generating ns2d"``).
        fix: Which settings to lower.

    Raises:
        UsageError: when ``needed`` exceeds the available memory.
    """
    free = available_memory()
    if free is not None and needed > free:
        raise UsageError(f"{what} needs about {human_bytes(needed)} of memory, {human_bytes(free)} is available; "
                         f"{fix}")


def parameter_count_without_allocating(build: Callable[[], Any]) -> int | None:
    """Parameters of the module ``build()`` returns, built on the meta device (no memory used).

    Returns None when the factory cannot run on the meta device (e.g. it loads weights).
    """
    import warnings

    import torch

    try:
        # Factories that load weights warn that copying into meta tensors is a no-op: expected here.
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = build()
    except Exception:  # a factory may read files or tensors; the estimate is then skipped
        return None
    if not isinstance(module, torch.nn.Module):
        return None
    return sum(p.numel() for p in module.parameters())


def check_model_fits(build: Callable[[], Any], name: str, device: Any, shards: int = 1) -> None:
    """Refuse a model whose parameters and optimizer state cannot fit (CPU memory, or the GPU's).

    Args:
        build: Builds the model (called on the meta device only).
        name: The model's registered name, for the message.
        device: Where it trains.
        shards: Processes that share the training state (FSDP's world size; 1 for DDP): each
            GPU then holds its share of it, after holding the whole model once while it is built.
    """
    import torch

    count = parameter_count_without_allocating(build)
    if count is None:
        return
    on_gpu = getattr(device, "type", str(device)) == "cuda" and torch.cuda.is_available()
    shards = max(int(shards), 1) if on_gpu else 1  # processes on one host share its memory
    needed = max(count * TRAINING_BYTES_PER_PARAMETER // shards, count * FLOAT32_BYTES)
    if on_gpu:
        free, _ = torch.cuda.mem_get_info(device)
        if needed > free:
            sharing = f" (its training state sharded over {shards} GPUs)" if shards > 1 else ""
            raise UsageError(f"model '{name}' has {count:,} parameters and needs about {human_bytes(needed)} to train"
                             f"{sharing}, the GPU has {human_bytes(free)} free; choose a smaller size or width")
        return
    check_fits_in_memory(needed, f"model '{name}' ({count:,} parameters, with gradients and optimizer state)",
                         "choose a smaller model.size or model.width")
