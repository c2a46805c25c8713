"""A residual convolutional next-frame model for 1D and 2D data."""

from __future__ import annotations

import torch
import torch.nn as nn


class ConvStepper(nn.Module):
    """Predicts ``t_out`` frames as the last input frame plus a learned correction.

    Args:
        cfg: :class:`pdeb_example.ConvStepperConfig`.
        spec: The data's :class:`pdebench_core.DataSpec`.
    """

    def __init__(self, cfg, spec) -> None:
        super().__init__()
        conv = {1: nn.Conv1d, 2: nn.Conv2d}[spec.ndim]
        c, self.t_out = spec.n_channels, spec.t_out
        layers: list[nn.Module] = []
        width_in = spec.t_in * c
        for _ in range(cfg.depth - 1):
            layers += [conv(width_in, cfg.width, cfg.kernel_size, padding="same", padding_mode="circular"), nn.GELU()]
            width_in = cfg.width
        layers.append(conv(width_in, self.t_out * c, cfg.kernel_size, padding="same", padding_mode="circular"))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, *space, c = x.shape
        h = x.movedim(-1, 2).reshape(b, t * c, *space)  # (B, T*C, *S)
        delta = self.net(h).reshape(b, self.t_out, c, *space).movedim(2, -1)  # (B, t_out, *S, C)
        return x[:, -1:] + delta
