"""One DPOT for data of several spatial dimensions at once (e.g. 2D and 3D pre-training).

DPOT's Fourier mixer acts on channels with weights shared by every mode, and its
time aggregator on channels only, so one set of blocks serves 2D and 3D alike. This
model keeps a patch embedding, positional embedding and head per dimension and
shares the blocks and the time aggregator; each call dispatches on the input's
number of axes.

The shared blocks are the same module objects in every dimension's model (each
dimension's mixer keeps its own mode budget), so data-parallel wrappers see each
block once: FSDP shards it once and its hooks run whichever dimension calls it.
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from pdeb_dpot.mixer import FourierMixer
from pdeb_dpot.model import DPOT

_CONV_FN = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


class SharedPointwiseConv(nn.Module):
    """A 1x1 convolution over any number of spatial axes, holding another 1x1 conv's weights.

    The weights keep the source's shape (e.g. ``(out, in, 1, 1)`` for 2D) and gain or lose
    singleton axes on the fly, so every dimension trains the same parameters and the state
    dict keys and shapes stay those of the source.
    """

    def __init__(self, source: nn.Module) -> None:
        super().__init__()
        self.weight = source.weight
        self.bias = source.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ndim = x.ndim - 2
        weight = self.weight.reshape(*self.weight.shape[:2], *([1] * ndim))
        return _CONV_FN[ndim](x, weight, self.bias)  # (B, out, *S)


class _MixerForDim(FourierMixer):
    """One dimension's mixer settings (mode budget) reading its weights from the shared mixer.

    Not a registered submodule: it holds no parameters, so a wrapper that swaps the shared
    mixer's parameters (FSDP's unsharded copies) is seen here at once.
    """

    def __init__(self, template: FourierMixer, shared: "MultiDimMixer") -> None:
        with torch.random.fork_rng(devices=[]):  # the throw-away initial weights draw no global numbers
            super().__init__(template.width, template.n_heads, template.modes, symmetric=template.symmetric,
                             fused=template.fused)
        for name in ("w1", "b1", "w2", "b2"):
            delattr(self, name)
        self.act = template.act
        object.__setattr__(self, "shared", shared)  # a plain reference, not a child module

    def _weights(self) -> tuple[torch.Tensor, ...]:
        return self.shared.w1.float(), self.shared.b1.float(), self.shared.w2.float(), self.shared.b2.float()


class MultiDimMixer(nn.Module):
    """The owner's mixer weights (``w1``, ``b1``, ``w2``, ``b2``) used by every dimension.

    Args:
        mixers: ``{ndim: FourierMixer}`` of the same block in each dimension's model; the first
            is the owner, whose parameters this module takes over.
    """

    def __init__(self, mixers: Mapping[int, FourierMixer]) -> None:
        super().__init__()
        owner = next(iter(mixers.values()))
        for name in ("w1", "b1", "w2", "b2"):
            setattr(self, name, getattr(owner, name))
        self._by_dim = {ndim: _MixerForDim(mixer, self) for ndim, mixer in mixers.items()}

    def extra_repr(self) -> str:
        return "modes " + ", ".join(f"{ndim}D {mixer.modes}" for ndim, mixer in self._by_dim.items())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mix ``(B, D, *S)`` with the mode budget of ``len(S)`` axes."""
        return self._by_dim[x.ndim - 2](x)


def share_blocks(models: Mapping[int, DPOT], time_agg: bool = True) -> None:
    """Make every model use the first model's blocks (and time aggregator).

    The owner's blocks become dimension-agnostic (shared mixers, 1x1 convolutions that fit
    any number of axes) and every other model's ``blocks`` is the owner's ``ModuleList``.
    """
    items = list(models.items())
    owner = items[0][1]
    for index, block in enumerate(owner.blocks):
        block.filter = MultiDimMixer({ndim: model.blocks[index].filter for ndim, model in items})
        block.mlp[0] = SharedPointwiseConv(block.mlp[0])
        block.mlp[2] = SharedPointwiseConv(block.mlp[2])
    for _, other in items[1:]:
        other.blocks = owner.blocks
        if time_agg:
            other.time_agg_layer = owner.time_agg_layer


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T_in, *S, C)`` -> ``(B, T_out, *S, C)`` with the model for ``len(S)`` axes."""
        key = str(x.ndim - 3)
        if key not in self.by_dim:
            from pdebench_core.errors import UsageError

            raise UsageError(f"this DPOT serves {', '.join(k + 'D' for k in self.by_dim)} data, got {key}D input")
        return self.by_dim[key](x)
