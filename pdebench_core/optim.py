"""Optimizer and learning-rate schedule of a training run."""

from __future__ import annotations

import math
from typing import Any

import torch

from pdebench_core.errors import UsageError


def make_optimizer(model: torch.nn.Module, train: Any, device: torch.device) -> torch.optim.Optimizer:
    """Adam or AdamW over the trainable parameters (fused on CUDA)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not (train.lr > 0 and math.isfinite(train.lr)):
        raise UsageError(f"train.lr must be a positive number, got {train.lr}")
    kwargs: dict[str, Any] = {"lr": train.lr, "weight_decay": train.weight_decay}
    if device.type == "cuda" and all(p.is_floating_point() for p in params):
        kwargs["fused"] = True  # fused kernels refuse complex parameters (FNO's spectral weights)
    if train.optimizer == "adamw":
        return torch.optim.AdamW(params, **kwargs)
    if train.optimizer == "adam":
        return torch.optim.Adam(params, **kwargs)
    raise UsageError(f"unknown train.optimizer '{train.optimizer}'; use adam or adamw")


def make_scheduler(optimizer: torch.optim.Optimizer, train: Any):
    """One-cycle (DPOT's), cosine or constant learning rate over ``max_steps``."""
    steps = max(1, int(train.max_steps))
    if train.scheduler == "onecycle":
        total = max(steps + 1, 3)
        # Each phase needs at least one step, or the schedule divides by zero on short runs.
        warmup = min(max(train.warmup_frac, 1.5 / total), 1 - 1.5 / total)
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=train.lr, total_steps=total, pct_start=warmup, cycle_momentum=False,
        )
    if train.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    if train.scheduler == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    raise UsageError(f"unknown train.scheduler '{train.scheduler}'; use onecycle, cosine or constant")
