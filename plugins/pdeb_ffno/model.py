"""Factorised Fourier Neural Operator.

A layer computes ``h + FF(sum_d K_d(h))``: ``K_d`` takes a real FFT along spatial
axis ``d`` only, multiplies each of the lowest ``modes`` frequencies by a complex
``width x width`` matrix (one batched matmul, modes as the batch) and transforms
back; ``FF`` is a two-layer pointwise MLP. Activations stay channel-last.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from pdebench_core.devices import exact_bmm, fp32_exact
from pdebench_core.folded_model import FoldedFrameModel, two_layer_mlp


class AxisSpectralWeights(nn.Module):
    """Complex channel-mixing matrices for every kept mode of every spatial axis.

    Args:
        width: Input and output channels.
        modes: Modes kept per axis.
    """

    def __init__(self, width: int, modes: tuple[int, ...]) -> None:
        super().__init__()
        self.modes = tuple(modes)
        std = math.sqrt(1.0 / width)  # each of real and imaginary part: unit gain per mode
        self.weights = nn.ParameterList(
            nn.Parameter(std / math.sqrt(2) * torch.randn(m, width, width, dtype=torch.cfloat)) for m in self.modes
        )  # each (m, I, O)


def axis_spectral_conv(h: torch.Tensor, weight: torch.Tensor, axis: int) -> torch.Tensor:
    """Spectral convolution along one spatial axis of a channel-last tensor.

    Args:
        h: ``(B, *S, W)`` real activations.
        weight: ``(m, W, W)`` complex weights for the lowest ``m`` modes.
        axis: Index of the spatial axis in ``h`` (1 for the first).

    Returns:
        ``(B, *S, W)``.
    """
    n = h.shape[axis]
    x = h.movedim(axis, -2)  # (B, *rest, N, W)
    lead = x.shape[:-2]
    m = min(weight.shape[0], n // 2 + 1)
    x_ft = torch.fft.rfft(x, dim=-2)[..., :m, :]  # (B, *rest, m, W)
    a = x_ft.reshape(-1, m, x_ft.shape[-1]).transpose(0, 1)  # (m, B*R, W)
    y = exact_bmm(a, weight[:m])  # (m, B*R, W)
    y = y.transpose(0, 1).reshape(*lead, m, weight.shape[-1])  # (B, *rest, m, W)
    return torch.fft.irfft(y, n=n, dim=-2).movedim(-2, axis)  # (B, *S, W)


class FeedForward(nn.Module):
    """Pointwise ``Linear -> GELU -> Linear`` on the channel axis."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.net = two_layer_mlp(width, hidden, width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


class FFNO(FoldedFrameModel):
    """Factorised FNO mapping ``(B, t_in, *S, C)`` to ``(B, t_out, *S, C)``.

    Args:
        ndim, in_channels, out_frames, n_fields: Folded sizes, see :class:`FoldedFrameModel`.
        width: Hidden channels.
        modes: Modes kept per axis (already fitted to the grid).
        n_layers: Factorised Fourier layers.
        ff_mult: Feed-forward hidden width / ``width``.
        share_weights: Share the spectral weights between layers.
        projection_width: Hidden width of the output projection.
        use_grid: Append normalised coordinates to the input.
    """

    label = "F-FNO"

    def __init__(self, ndim: int, in_channels: int, out_frames: int, n_fields: int, width: int,
                 modes: tuple[int, ...], n_layers: int, ff_mult: int, share_weights: bool,
                 projection_width: int, use_grid: bool = True) -> None:
        super().__init__(ndim, in_channels, out_frames, n_fields, use_grid)
        self.n_layers = n_layers
        self.lift = nn.Linear(self.body_channels, width)
        n_weight_sets = 1 if share_weights else n_layers
        self.spectral = nn.ModuleList(AxisSpectralWeights(width, modes) for _ in range(n_weight_sets))
        self.feed_forward = nn.ModuleList(FeedForward(width, ff_mult * width) for _ in range(n_layers))
        self.project = two_layer_mlp(width, projection_width, self.out_channels)

    def body(self, h: torch.Tensor) -> torch.Tensor:
        h = self.lift(h)  # (B, *S, W)
        for i, feed_forward in enumerate(self.feed_forward):
            weights = self.spectral[0 if len(self.spectral) == 1 else i].weights
            with fp32_exact(h.device.type):  # FFTs and the mode products in IEEE float32, never bf16 or TF32
                h32 = h.float()
                mixed = sum(axis_spectral_conv(h32, w, axis=1 + j) for j, w in enumerate(weights))  # (B, *S, W)
            h = h + feed_forward(mixed)  # (B, *S, W)
        return self.project(h)  # (B, *S, t_out * C)
