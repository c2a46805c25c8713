"""Persistence forecast: predict that nothing changes.

Given frames ``x[:, :t_in]`` it returns the last one ``t_out`` times. In an
autoregressive rollout the last input frame is kept forever, so the model's L2RE
is the relative change of the solution over the evaluation horizon.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class Persistence(nn.Module):
    """Returns the last input frame repeated ``t_out`` times; has no parameters.

    Args:
        t_out: Frames to predict per call.
        ndim: Number of spatial axes of the data (1, 2 or 3).
    """

    def __init__(self, t_out: int, ndim: int) -> None:
        super().__init__()
        self.t_out = t_out
        self.ndim = ndim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != self.ndim + 3:
            raise ValueError(
                f"persistence expects (B, T, *S, C) with {self.ndim} spatial axes, "
                f"got shape {tuple(x.shape)}"
            )
        last = x[:, -1:]  # (B, 1, *S, C)
        return last.expand(-1, self.t_out, *last.shape[2:]).clone()  # (B, t_out, *S, C)

    def extra_repr(self) -> str:
        return f"t_out={self.t_out}, ndim={self.ndim}"
