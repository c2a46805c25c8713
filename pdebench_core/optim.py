"""Optimizer and learning-rate schedule of a training run."""

from __future__ import annotations

import math
from typing import Any

import torch

from pdebench_core.errors import UsageError

OPTIMIZERS = ("adam", "adamw")
SCHEDULERS = ("onecycle", "cosine", "constant")
# torch's OneCycleLR defaults, which the official DPOT code relies on: beta1 runs from 0.95
# down to 0.85 while the learning rate warms up, then back.
BASE_MOMENTUM, MAX_MOMENTUM = 0.85, 0.95


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def check_optimizer_settings(train: Any) -> None:
    """Refuse optimizer and schedule settings that cannot work, each with a one-line message.

    Args:
        train: The ``train`` config section.

    Raises:
        UsageError: an unknown optimizer or scheduler, a learning rate that is not a positive
            number, ``betas`` that are not two numbers in [0, 1), a one-cycle divisor that is
            not positive, or a warm-up fraction outside [0, 1].
    """
    if not _positive(train.lr):
        raise UsageError(f"train.lr must be a positive number, got {train.lr}")
    if train.optimizer not in OPTIMIZERS:
        raise UsageError(f"unknown train.optimizer '{train.optimizer}'; use adam or adamw")
    if train.scheduler not in SCHEDULERS:
        raise UsageError(f"unknown train.scheduler '{train.scheduler}'; use onecycle, cosine or constant")
    betas = list(train.betas)
    if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas):
        raise UsageError(f"train.betas must be two numbers in [0, 1), e.g. train.betas=[0.9,0.9]; got {betas}")
    for key in ("div_factor", "final_div_factor"):
        value = getattr(train, key)
        if not _positive(value):
            raise UsageError(f"train.{key} must be a positive number, got {value}")
    if not 0 <= train.warmup_frac <= 1:
        raise UsageError(f"train.warmup_frac must lie in [0, 1], got {train.warmup_frac}")


# Devices with a fused Adam/AdamW kernel (the CPU one arrived in torch 2.4).
_FUSED_DEVICES = ("cuda", "cpu") if torch.torch_version.TorchVersion(torch.__version__) >= "2.4" else ("cuda",)


def make_optimizer(model: torch.nn.Module, train: Any, device: torch.device) -> torch.optim.Optimizer:
    """Adam or AdamW with ``train.betas`` over the trainable parameters.

    The update is fused (one kernel over every tensor) where torch has that kernel: on CUDA, and
    on the CPU from torch 2.4, where it is about 10x faster than the per-tensor loop torch
    otherwise runs there (DPOT-Ti: 7 ms instead of 70 ms a step). Fused kernels refuse complex
    parameters (FNO's spectral weights); such models keep the default implementation.
    """
    check_optimizer_settings(train)
    params = [p for p in model.parameters() if p.requires_grad]
    kwargs: dict[str, Any] = {"lr": train.lr, "weight_decay": train.weight_decay,
                              "betas": tuple(float(b) for b in train.betas)}
    if device.type in _FUSED_DEVICES and all(p.is_floating_point() for p in params):
        kwargs["fused"] = True
    if train.optimizer == "adamw":
        return torch.optim.AdamW(params, **kwargs)
    return torch.optim.Adam(params, **kwargs)


def make_scheduler(optimizer: torch.optim.Optimizer, train: Any):
    """One-cycle (DPOT's), cosine or constant learning rate over ``max_steps``.

    The one-cycle schedule is torch's ``OneCycleLR`` over ``max_steps`` steps, as the official
    code builds it: start at ``lr / div_factor``, peak at ``lr`` after ``warmup_frac`` of the
    steps, end at ``lr / div_factor / final_div_factor``; with ``cycle_momentum`` beta1 moves
    between 0.95 and 0.85, inversely to the learning rate.
    """
    check_optimizer_settings(train)
    steps = max(1, int(train.max_steps))
    if train.scheduler == "onecycle":
        total = max(steps, 3)
        # Each phase needs at least one step, or the schedule divides by zero on very short runs.
        warmup = min(max(train.warmup_frac, 1.5 / total), 1 - 1.5 / total)
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=train.lr, total_steps=total, pct_start=warmup,
            div_factor=float(train.div_factor), final_div_factor=float(train.final_div_factor),
            cycle_momentum=bool(train.cycle_momentum), base_momentum=BASE_MOMENTUM, max_momentum=MAX_MOMENTUM,
        )
    if train.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
