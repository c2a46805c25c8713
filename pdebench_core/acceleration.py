"""Speed and memory options of training: compilation, channels-last, activation checkpointing."""

from __future__ import annotations

import contextlib

import functools
from typing import Callable, Iterator

import torch


def compilation_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean ``torch.compile`` could not compile the model (not that the model
    itself is wrong): dynamo's unsupported constructs and internal errors, backend and C++
    compiler failures."""
    from torch._dynamo import exc as dynamo

    errors: list[type[BaseException]] = [dynamo.BackendCompilerFailed, dynamo.Unsupported,
                                         dynamo.InternalTorchDynamoError, dynamo.InvalidBackend]
    try:
        from torch._inductor import exc as inductor

        errors += [getattr(inductor, name) for name in ("CppCompileError", "InvalidCxxCompiler", "LoweringException")
                   if hasattr(inductor, name)]
    except ImportError:  # pragma: no cover - inductor ships with torch
        pass
    return tuple(errors)


@contextlib.contextmanager
def _backward_compiled_with_forward() -> Iterator[None]:
    """Compile a graph's backward when its forward is compiled (torch >= 2.9 lowers it lazily,
    at the first ``backward()``): a compiler failure then happens here, where the fallback to
    eager mode catches it, not in the middle of a training step."""
    try:
        from torch._functorch import config
    except ImportError:  # pragma: no cover - functorch ships with torch
        yield
        return
    if not hasattr(config, "force_non_lazy_backward_lowering"):
        yield
        return
    with config.patch(force_non_lazy_backward_lowering=True):
        yield


class CompiledOrEager(torch.nn.Module):
    """Runs the ``torch.compile``d model; the first time compilation itself fails (e.g. on a
    layer the compiler cannot handle) it says so and runs eagerly from then on. Any other
    error, such as a shape mismatch or a failed collective, propagates unchanged.

    Args:
        model: The model (or its DDP/FSDP wrapper) to compile.
        log: Receives the fallback message.
    """

    def __init__(self, model: torch.nn.Module, log: Callable[[str], None]) -> None:
        super().__init__()
        self.model = model
        self.compiled = torch.compile(model)
        self.log = log
        self._errors = compilation_errors()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.compiled is not None:
            try:
                with _backward_compiled_with_forward():
                    return self.compiled(x)
            except self._errors as exc:
                first_line = (str(exc).strip().splitlines() or [""])[0][:160]
                self.log(f"torch.compile could not compile this model ({type(exc).__name__}: {first_line}); "
                         f"running eagerly")
                self.compiled = None
        return self.model(x)


def _is_channels_last_conv(module: torch.nn.Module) -> bool:
    """A 2D convolution with a real 4-D weight: the only layers NHWC kernels speed up."""
    weight = getattr(module, "weight", None)
    return (isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) and isinstance(weight, torch.Tensor)
            and weight.dim() == 4 and weight.is_floating_point())


def _channels_last_input(module: torch.nn.Module, args: tuple) -> tuple | None:
    x = args[0] if args else None
    if isinstance(x, torch.Tensor) and x.dim() == 4 and x.is_floating_point():
        return (x.contiguous(memory_format=torch.channels_last), *args[1:])
    return None


def apply_channels_last(model: torch.nn.Module, weights: bool = True) -> int:
    """Channels-last layout for 2D convolutions only: their 4-D real weights (when ``weights``)
    and the activations fed to them. Every other parameter (Conv1d/Conv3d, FNO spectral
    weights, complex tensors) keeps its layout.

    Args:
        model: The model, on its device.
        weights: Convert the weights too; FSDP needs contiguous parameters, so sharded runs
            convert the activations only (the convolution then still picks NHWC kernels).

    Returns:
        The number of convolutions converted.
    """
    count = 0
    for module in model.modules():
        if not _is_channels_last_conv(module):
            continue
        if weights:
            module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last)
        module.register_forward_pre_hook(_channels_last_input)
        count += 1
    return count


def _checkpointed(forward: Callable, *args, **kwargs):
    from torch.utils.checkpoint import checkpoint

    if not torch.is_grad_enabled():  # evaluation: nothing to save, nothing to recompute
        return forward(*args, **kwargs)
    return checkpoint(forward, *args, use_reentrant=False, **kwargs)


def checkpoint_blocks(model: torch.nn.Module) -> int:
    """Recompute each block's activations during the backward pass instead of storing them.

    A block is every element of every ``ModuleList`` (blocks nested inside a checkpointed
    block are covered by it). The block's own ``forward`` is wrapped, so its hooks (FSDP's
    gathering of parameters) run once per forward and parameter names do not change.

    Returns:
        The number of blocks checkpointed.
    """
    covered: set[int] = set()
    count = 0
    for module in list(model.modules()):
        if not isinstance(module, torch.nn.ModuleList) or id(module) in covered:
            continue
        for block in module:
            if id(block) in covered:
                continue
            block.forward = functools.partial(_checkpointed, block.forward)
            covered.update(id(m) for m in block.modules())
            count += 1
    return count
