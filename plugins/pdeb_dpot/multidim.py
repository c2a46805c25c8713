"""One DPOT for data of several spatial dimensions at once (e.g. 2D and 3D pre-training).

DPOT's Fourier mixer acts on channels with weights shared by every mode, and its
time aggregator on channels only, so one set of blocks serves 2D and 3D alike. This
model keeps a patch embedding, positional embedding and head per dimension and
shares the blocks and the time aggregator; each call dispatches on the input's
number of axes.
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from pdeb_dpot.model import DPOT

_CONV_FN = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


class SharedPointwiseConv(nn.Module):
    """A 1x1 convolution for ``ndim`` axes that uses another model's 1x1 conv weights.

    The weights keep the source's shape (e.g. ``(out, in, 1, 1)`` for 2D) and gain or lose
    singleton axes on the fly, so both dimensions train the same parameters.
    """

    def __init__(self, source: nn.Module, ndim: int) -> None:
        super().__init__()
        self.weight = source.weight
        self.bias = source.bias
        self.ndim = ndim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.reshape(*self.weight.shape[:2], *([1] * self.ndim))
        return _CONV_FN[self.ndim](x, weight, self.bias)  # (B, out, *S)


def share_blocks(target: DPOT, source: DPOT, time_agg: bool = True) -> None:
    """Make ``target`` use ``source``'s block parameters (and time aggregator)."""
    for mine, theirs in zip(target.blocks, source.blocks):
        mine.norm1 = theirs.norm1
        mine.norm2 = theirs.norm2
        for name in ("w1", "b1", "w2", "b2"):
            setattr(mine.filter, name, getattr(theirs.filter, name))
        mine.mlp[0] = SharedPointwiseConv(theirs.mlp[0], target.ndim)
        mine.mlp[2] = SharedPointwiseConv(theirs.mlp[2], target.ndim)
    if time_agg:
        target.time_agg_layer = source.time_agg_layer


class MultiDimDPOT(nn.Module):
    """DPOT models per spatial dimension with shared blocks and time aggregator.

    Args:
        models: ``{ndim: DPOT}``; the first is the owner of the shared weights. All must
            have the same width, depth, heads and input frames.
    """

    def __init__(self, models: Mapping[int, DPOT]) -> None:
        super().__init__()
        items = list(models.items())
        owner = items[0][1]
        for _, other in items[1:]:
            share_blocks(other, owner)
        self.by_dim = nn.ModuleDict({str(ndim): model for ndim, model in items})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T_in, *S, C)`` -> ``(B, T_out, *S, C)`` with the model for ``len(S)`` axes."""
        key = str(x.ndim - 3)
        if key not in self.by_dim:
            from pdebench_core.errors import UsageError

            raise UsageError(f"this DPOT serves {', '.join(k + 'D' for k in self.by_dim)} data, got {key}D input")
        return self.by_dim[key](x)
