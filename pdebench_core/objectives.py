"""What one micro-batch contributes to the loss: the model call(s) and the loss over them.

The engine owns devices, precision, parallelism and the optimizer; an objective owns
only how predictions are made from a window and compared with its targets.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

Perturb = Optional[Callable[[torch.Tensor], torch.Tensor]]


def next_frames_objective(loss_fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """One model call per window: predict ``y`` from ``x`` (optionally perturbed).

    Args:
        loss_fn: ``(pred, target, mask) -> summed loss`` (see :mod:`pdebench_core.losses`).

    Returns:
        ``objective(model, x, y, mask, perturb) -> loss``, with ``x`` ``(B, t_in, *S, C)``,
        ``y`` ``(B, t_out, *S, C)`` and ``mask`` ``(B, C)`` or ``(C,)``.
    """

    def objective(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor,
                  perturb: Perturb = None) -> torch.Tensor:
        if perturb is not None:
            x = perturb(x)
        pred = model(x)  # (B, t_out, *S, C)
        return loss_fn(pred.float(), y, mask)

    return objective
