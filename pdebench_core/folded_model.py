"""Base module of the frames-as-channels models: fold, append coordinates, body, unfold.

A subclass builds its layers after calling the base ``__init__`` and implements
:meth:`FoldedFrameModel.body` on channel-last features; the base checks the input,
folds the ``t_in`` frames into channels, appends the grid coordinates when asked,
and unfolds the body's ``t_out * C`` outputs back into frames. The base holds no
parameters, so a subclass's parameter names are its own.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from pdebench_core.models import append_coordinates, check_folded_input, fold_time, unfold_time


class FoldedFrameModel(nn.Module):
    """Maps ``(B, t_in, *S, C)`` to ``(B, t_out, *S, C)`` through a channel-last body.

    Args:
        ndim: Spatial dimensions.
        in_channels: ``t_in * C``: input frames and fields folded into channels.
        out_frames: ``t_out``, frames predicted per call.
        n_fields: ``C``, the number of physical fields.
        use_grid: Append the normalised grid coordinates to the folded input.

    Attributes:
        label: The model's name in input-shape errors (``"FNO"``).
    """

    label = "model"

    def __init__(self, ndim: int, in_channels: int, out_frames: int, n_fields: int, use_grid: bool = False) -> None:
        super().__init__()
        self.ndim = ndim
        self.in_channels = in_channels
        self.out_frames = out_frames
        self.n_fields = n_fields
        self.use_grid = use_grid

    @property
    def body_channels(self) -> int:
        """Channels the body receives: ``t_in * C``, plus ``ndim`` coordinates with ``use_grid``."""
        return self.in_channels + (self.ndim if self.use_grid else 0)

    @property
    def out_channels(self) -> int:
        """Channels the body returns: ``t_out * C``."""
        return self.out_frames * self.n_fields

    def body(self, h: torch.Tensor) -> torch.Tensor:
        """The model proper.

        Args:
            h: ``(B, *S, body_channels)``.

        Returns:
            ``(B, *S, out_channels)``, or ``(B, N, out_channels)`` with the ``N`` grid
            points in row-major order.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement body()")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_folded_input(x, self.ndim, self.in_channels, self.n_fields, self.label)
        grid = x.shape[2:-1]
        h = fold_time(x)  # (B, *S, T*C)
        if self.use_grid:
            h = append_coordinates(h)  # (B, *S, T*C + ndim)
        return unfold_time(self.body(h), grid, self.out_frames)  # (B, t_out, *S, C)


def two_layer_mlp(in_width: int, hidden: int, out_width: int) -> nn.Sequential:
    """Pointwise ``Linear -> GELU -> Linear`` (parameters ``0.*`` and ``2.*``).

    Args:
        in_width: Input channels.
        hidden: Hidden channels.
        out_width: Output channels.

    Returns:
        The module, acting on the last axis.
    """
    return nn.Sequential(nn.Linear(in_width, hidden), nn.GELU(), nn.Linear(hidden, out_width))


__all__ = ["FoldedFrameModel", "two_layer_mlp"]
