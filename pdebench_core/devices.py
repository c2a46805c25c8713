"""Device policy shared by training and evaluation: which device, TF32, autocast."""

from __future__ import annotations

import contextlib

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
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise UsageError(f"unknown device '{name}'; use auto, cpu, cuda or cuda:N")


def enable_tf32() -> None:
    """TF32 tensor cores for float32 matmuls and convolutions on CUDA (FFT layers stay float32)."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def autocast_for(device: torch.device, precision: str):
    """bf16 autocast on CUDA under ``auto``/``bf16``; otherwise a no-op context."""
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if precision not in {"auto", "bf16", "fp32"}:
        raise UsageError(f"unknown train.precision '{precision}'; use auto, bf16 or fp32")
    if use_bf16:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
