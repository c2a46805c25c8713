"""Device policy shared by training and evaluation: which device, TF32, autocast.

Precision is explicit. Ordinary matmuls and convolutions may use TF32 on CUDA
(:func:`enable_tf32`) and bf16 under autocast (:func:`autocast_for`). Spectral layers
(FFTs and the products over Fourier modes) run inside :func:`fp32_exact` and multiply
with :func:`exact_bmm`, so they stay in IEEE float32 whatever those settings are.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch

from pdebench_core.errors import UsageError


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; CUDA asked for without one is an error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError("--device cuda was asked for, but no CUDA device is available; use --device cpu or auto")
        enable_tf32()
        device = torch.device(name)
        if device.index is not None:
            if device.index >= torch.cuda.device_count():
                raise UsageError(f"--device {name}: this machine shows {torch.cuda.device_count()} GPU(s) "
                                 f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
            torch.cuda.set_device(device)  # work without a device (pinned memory, streams) lands there too
        return device
    if name == "cpu":
        return torch.device("cpu")
    raise UsageError(f"unknown device '{name}'; use auto, cpu, cuda or cuda:N")


def enable_tf32() -> None:
    """TF32 tensor cores for float32 matmuls and convolutions on CUDA (spectral layers opt out
    through :func:`fp32_exact` and :func:`exact_bmm`)."""
    _set_tf32(True, True)


def _set_tf32(matmul: bool, cudnn: bool) -> None:
    # The legacy flags throughout: torch refuses to read them once the newer
    # ``fp32_precision`` setters have been used, and torch.compile still reads them.
    torch.backends.cuda.matmul.allow_tf32 = matmul
    torch.backends.cudnn.allow_tf32 = cudnn


@contextlib.contextmanager
def tf32_disabled() -> Iterator[None]:
    """IEEE float32 for cuBLAS and cuDNN inside the block; the previous flags come back after."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    _set_tf32(False, False)
    try:
        yield
    finally:
        _set_tf32(*saved)


@contextlib.contextmanager
def fp32_exact(device_type: str) -> Iterator[None]:
    """Full float32 arithmetic inside the block: autocast off and TF32 off.

    Spectral layers wrap their FFTs and mode products in it: bf16 FFTs are unsupported on
    most devices and TF32 keeps only 10 mantissa bits, too few for the Fourier modes.
    Inputs must still be cast to float32 inside the block (``x.float()``).

    Args:
        device_type: ``"cuda"``, ``"cpu"``, ... (the device of the tensors, for autocast).
    """
    # Devices without autocast (``meta``, used to count FLOPs) have nothing to switch off.
    no_autocast = (torch.autocast(device_type=device_type, enabled=False)
                   if autocast_available(device_type) else contextlib.nullcontext())
    with tf32_disabled(), no_autocast:
        yield


#: Attribute marking a parameter that bf16 must never round (see :func:`keep_float32`).
KEEP_FLOAT32 = "pdeb_keep_float32"


def keep_float32(*parameters: torch.nn.Parameter) -> None:
    """Mark parameters that bf16 must never round: learned frequencies, spectral weights.

    Autocast already spares what runs inside :func:`fp32_exact` or reads ``.float()``; under
    FSDP with bf16 mixed precision (``train.strategy=fsdp``), the module holding a marked
    parameter becomes a sharding unit of its own that gathers in float32.
    """
    for parameter in parameters:
        setattr(parameter, KEEP_FLOAT32, True)


def autocast_available(device_type: str) -> bool:
    """Whether torch has autocast for this device type (torch < 2.4 knows CUDA, CPU and XPU only)."""
    check = getattr(torch.amp, "is_autocast_available", None)
    return bool(check(device_type)) if check is not None else device_type in ("cuda", "cpu", "xpu")


def autocast_enabled(device_type: str) -> bool:
    """Whether autocast is on for this device type (``False`` for devices without autocast)."""
    if not autocast_available(device_type):
        return False
    try:
        return bool(torch.is_autocast_enabled(device_type))
    except TypeError:  # torch < 2.4: no argument, and a function of its own for the CPU
        return bool(torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled())


def _eager_ieee_bmm(a: torch.Tensor, b: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    with tf32_disabled():
        return torch.bmm(a, b) if bias is None else torch.baddbmm(bias, a, b)


# An opaque operator, so the flags are set when the kernel runs, also under torch.compile
# (which would otherwise pick TF32 kernels from the global flags). torch < 2.4 has no custom
# operators: there the product runs eagerly with TF32 off, which a compiled graph may not honour.
_CUSTOM_OPS = hasattr(torch.library, "custom_op")
if _CUSTOM_OPS:
    _ieee_bmm = torch.library.custom_op("pdeb::ieee_bmm", mutates_args=())(_eager_ieee_bmm)

    @_ieee_bmm.register_fake
    def _(a: torch.Tensor, b: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        return a.new_empty((a.shape[0], a.shape[1], b.shape[2]))
else:
    _ieee_bmm = _eager_ieee_bmm


def _ieee_bmm_setup(ctx, inputs, output) -> None:
    a, b, bias = inputs
    ctx.save_for_backward(a, b)
    ctx.bias_shape = None if bias is None else bias.shape


def _ieee_bmm_backward(ctx, grad: torch.Tensor):
    a, b = ctx.saved_tensors
    # d(a @ b): grad @ b^H and a^H @ grad (conjugates for complex, as torch.bmm's own backward).
    grad_a = _ieee_bmm(grad, b.mH, None) if ctx.needs_input_grad[0] else None
    grad_b = _ieee_bmm(a.mH, grad, None) if ctx.needs_input_grad[1] else None
    grad_bias = grad.sum_to_size(ctx.bias_shape) if ctx.bias_shape is not None else None
    return grad_a, grad_b, grad_bias


if _CUSTOM_OPS:
    _ieee_bmm.register_autograd(_ieee_bmm_backward, setup_context=_ieee_bmm_setup)


def exact_bmm(a: torch.Tensor, b: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Batched matmul ``bias + a @ b`` in IEEE float32 (or complex64) on every device.

    On CUDA the product and both gradient products run with TF32 off, in eager mode and
    compiled; elsewhere TF32 does not exist and this is ``torch.bmm``/``torch.baddbmm``.

    Args:
        a: ``(K, N, I)``.
        b: ``(K, I, O)``.
        bias: Optional, broadcastable to ``(K, N, O)``.

    Returns:
        ``(K, N, O)``.
    """
    if a.is_cuda:
        return _ieee_bmm(a, b, bias)
    return torch.bmm(a, b) if bias is None else torch.baddbmm(bias, a, b)


def uses_bf16(device: torch.device, precision: str) -> bool:
    """Whether ``precision`` (``train.precision``, ``eval.precision``) computes in bf16 here:
    ``bf16``, or ``auto`` on a GPU that computes in it (Ampere and later; float32 on older ones)."""
    return precision == "bf16" or (precision == "auto" and device.type == "cuda" and _bf16_supported(device))


def _bf16_supported(device: torch.device) -> bool:
    """Whether the GPU computes in bf16 natively: compute capability 8 (Ampere) or later, or
    ROCm. (``torch.cuda.is_bf16_supported()`` also says yes for emulated bf16 on a V100.)"""
    try:
        if torch.version.hip:
            return True
        return torch.cuda.get_device_capability(device)[0] >= 8
    except (AssertionError, RuntimeError):  # no CUDA build, or no such device
        return False


def autocast_for(device: torch.device, precision: str):
    """bf16 autocast on CUDA under ``auto``/``bf16``; otherwise a no-op context."""
    if precision not in {"auto", "bf16", "fp32"}:
        raise UsageError(f"unknown train.precision '{precision}'; use auto, bf16 or fp32")
    if uses_bf16(device, precision):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
