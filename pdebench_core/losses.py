"""Training losses over ``(B, T, *S, C)`` predictions, summed over samples."""

from __future__ import annotations

from typing import Callable

import torch


def relative_l2_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """DPOT's training loss: relative L2 per sample and channel, mean over real channels, sum over samples.

    Args:
        pred: ``(B, T, *S, C)``.
        target: ``(B, T, *S, C)``.
        mask: ``(B, C)`` or ``(C,)`` bool, True for real channels.
    """
    b, c = pred.shape[0], pred.shape[-1]
    diff = (pred - target).float().reshape(b, -1, c)  # (B, T*S, C)
    ref = target.float().reshape(b, -1, c)
    rel = diff.norm(dim=1) / ref.norm(dim=1).clamp_min(1e-8)  # (B, C)
    if mask is None:
        return rel.mean(dim=1).sum()
    mask = mask.expand(b, c).to(rel.dtype)
    return ((rel * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1)).sum()


def mse_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error over real channels, summed over samples (so micro-batches add up)."""
    b, c = pred.shape[0], pred.shape[-1]
    sq = (pred - target).float().pow(2).reshape(b, -1, c).mean(dim=1)  # (B, C)
    if mask is None:
        return sq.mean(dim=1).sum()
    mask = mask.expand(b, c).to(sq.dtype)
    return ((sq * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1)).sum()


LOSSES: dict[str, Callable[..., torch.Tensor]] = {"rel_l2": relative_l2_loss, "mse": mse_loss}
