"""One DPOT for data of several spatial dimensions at once (e.g. 2D and 3D pre-training).

DPOT's Fourier mixer acts on channels with weights shared by every mode, its block MLP is
made of 1x1 convolutions and its time aggregator acts on channels only, so one set of
blocks serves 2D and 3D alike. This model keeps a patch embedding, positional embedding
and head per dimension and shares the blocks and the time aggregator; each call
dispatches on the input's number of axes.

Sharing is by construction: every dimension's model holds the owner's very ``blocks``
and ``time_agg_layer`` modules, whose only per-dimension setting (each mixer's mode
budget) is kept by the mixer per number of axes. Nothing copies or ties parameters one by
one, so a parameter added to a block is shared too, data-parallel wrappers see each
block once (FSDP shards it once) and its hooks run whichever dimension calls it.
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn as nn

from pdebench_core.errors import UsageError
from pdeb_dpot.model import DPOT


def share_blocks(models: Mapping[int, DPOT]) -> None:
    """Make every model use the first model's blocks and time aggregator.

    Each shared mixer learns the mode budget of every dimension; the other models' own
    blocks and time aggregators are dropped.

    Raises:
        UsageError: when the models differ in width, depth, heads, MLP width or input frames.
    """
    owner, *others = models.values()
    for other in others:
        _check_shareable(owner, other)
        for own_block, other_block in zip(owner.blocks, other.blocks):
            for modes in other_block.filter.modes_by_ndim.values():
                own_block.filter.add_modes(modes)
        other.blocks = owner.blocks
        other.time_agg_layer = owner.time_agg_layer


def _check_shareable(owner: DPOT, other: DPOT) -> None:
    fields = ("embed_dim", "depth", "n_blocks", "mlp_ratio", "in_timesteps", "time_agg", "symmetric_modes",
              "act", "mixer_act")
    differ = [f"{name} {getattr(owner.arch, name)} vs {getattr(other.arch, name)}"
              for name in fields if getattr(owner.arch, name) != getattr(other.arch, name)]
    if differ:
        raise UsageError(f"DPOT models of different dimensions cannot share blocks: {'; '.join(differ)}")


class MultiDimDPOT(nn.Module):
    """DPOT models per spatial dimension with shared blocks and time aggregator.

    Args:
        models: ``{ndim: DPOT}``; the first is the owner of the shared weights. All must
            have the same width, depth, heads and input frames.
    """

    def __init__(self, models: Mapping[int, DPOT]) -> None:
        super().__init__()
        share_blocks(models)
        self.by_dim = nn.ModuleDict({str(ndim): model for ndim, model in models.items()})

    def padded_channels(self, ndim: int) -> int:
        """:meth:`DPOT.padded_channels` of the model for ``ndim`` axes (0 for another dimension)."""
        model = self.by_dim[str(ndim)] if str(ndim) in self.by_dim else None
        return model.padded_channels(ndim) if model is not None else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T_in, *S, C)`` -> ``(B, T_out, *S, C)`` with the model for ``len(S)`` axes."""
        key = str(x.ndim - 3)
        if key not in self.by_dim:
            raise UsageError(f"this DPOT serves {', '.join(k + 'D' for k in self.by_dim)} data, got {key}D input")
        return self.by_dim[key](x)
