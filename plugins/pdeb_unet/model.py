"""U-Net: a convolutional encoder-decoder with skip connections.

Level ``k`` works at grid ``S / 2**k`` with ``width * 2**k`` channels. Each level
applies two (3-point convolution, normalisation, GELU) steps; the encoder
halves the grid with max-pooling, the decoder doubles it with a transposed
convolution and concatenates the encoder's features of the same level.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from pdebench_core.folded_model import FoldedFrameModel

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_UP = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_POOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
_BATCH_NORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


def _norm(kind: str, ndim: int, channels: int) -> nn.Module:
    if kind == "group":
        return nn.GroupNorm(math.gcd(8, channels), channels)
    if kind == "batch":
        return _BATCH_NORM[ndim](channels)
    return nn.Identity()


class ConvBlock(nn.Module):
    """Two rounds of 3-point convolution, normalisation and GELU."""

    def __init__(self, ndim: int, in_channels: int, out_channels: int, norm: str, padding_mode: str) -> None:
        super().__init__()
        conv = _CONV[ndim]
        bias = norm == "none"  # a bias right before a normalisation is redundant
        self.net = nn.Sequential(
            conv(in_channels, out_channels, 3, padding=1, padding_mode=padding_mode, bias=bias),
            _norm(norm, ndim, out_channels),
            nn.GELU(),
            conv(out_channels, out_channels, 3, padding=1, padding_mode=padding_mode, bias=bias),
            _norm(norm, ndim, out_channels),
            nn.GELU(),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


class UNet(FoldedFrameModel):
    """U-Net mapping ``(B, t_in, *S, C)`` to ``(B, t_out, *S, C)``.

    Args:
        ndim, in_channels, out_frames, n_fields: Folded sizes, see :class:`FoldedFrameModel`.
        width: Channels of the first level.
        levels: Down-samplings.
        norm: ``"group"``, ``"batch"`` or ``"none"``.
        padding_mode: Border handling of the convolutions.
        use_grid: Append normalised coordinates to the input.
    """

    label = "U-Net"

    def __init__(self, ndim: int, in_channels: int, out_frames: int, n_fields: int, width: int,
                 levels: int, norm: str = "group", padding_mode: str = "zeros", use_grid: bool = False) -> None:
        super().__init__(ndim, in_channels, out_frames, n_fields, use_grid)
        self.levels = levels
        widths = [width * 2**k for k in range(levels + 1)]
        self.encoder = nn.ModuleList(
            ConvBlock(ndim, self.body_channels if k == 0 else widths[k - 1], widths[k], norm, padding_mode)
            for k in range(levels + 1)
        )
        self.pool = _POOL[ndim](2)
        self.up = nn.ModuleList(_UP[ndim](widths[k + 1], widths[k], 2, stride=2) for k in range(levels))
        self.decoder = nn.ModuleList(
            ConvBlock(ndim, 2 * widths[k], widths[k], norm, padding_mode) for k in range(levels)
        )
        self.head = _CONV[ndim](width, self.out_channels, 1)

    def body(self, h: torch.Tensor) -> torch.Tensor:
        grid = list(h.shape[1:-1])
        if any(n % 2**self.levels for n in grid):
            raise ValueError(f"U-Net with {self.levels} levels needs grid sizes divisible by {2**self.levels}, got {grid}")
        h = h.movedim(-1, 1)  # (B, T*C, *S)
        skips = []
        for k, block in enumerate(self.encoder):
            h = block(h if k == 0 else self.pool(h))  # (B, width * 2**k, *S / 2**k)
            skips.append(h)
        for k in reversed(range(self.levels)):
            h = self.up[k](h)  # (B, width * 2**k, *S / 2**k)
            h = self.decoder[k](torch.cat([skips[k], h], dim=1))  # (B, width * 2**k, *S / 2**k)
        return self.head(h).movedim(1, -1)  # (B, *S, t_out * C)
