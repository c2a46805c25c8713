"""Fourier Neural Operator: lift, ``n_layers`` Fourier layers, project.

Each Fourier layer computes ``gelu(K(h) + W h)``: ``K`` multiplies the lowest
Fourier modes of ``h`` by learned complex matrices (one ``width x width`` matrix
per kept mode) and ``W`` is a pointwise linear map. The per-mode products are a
single batched complex matmul with the modes as the batch dimension (one BLAS
call instead of one einsum per frequency corner), and the inverse FFT skips the
columns that are known to be zero; ``benchmarks/spectral_contraction.py`` times
both against the textbook einsum + ``irfftn`` version.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from pdebench_core.devices import exact_bmm, fp32_exact
from pdebench_core.folded_model import FoldedFrameModel, two_layer_mlp

_POINTWISE = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


def gather_modes(x_ft: torch.Tensor, modes: tuple[int, ...]) -> torch.Tensor:
    """Cut the kept low-frequency block out of a real-FFT spectrum.

    Args:
        x_ft: Spectrum ``(B, C, *N[:-1], N[-1] // 2 + 1)`` from ``rfftn`` over the
            trailing ``len(modes)`` axes.
        modes: Modes per axis; ``modes[i] <= N[i] // 2`` on all but the last axis.

    Returns:
        ``(B, C, 2 * m_0, ..., 2 * m_{d-2}, m_{d-1})``: on every axis but the last the
        non-negative frequencies ``0..m-1`` followed by the negative ``-m..-1``.
    """
    ndim = len(modes)
    out = x_ft[..., : modes[-1]]
    for axis, m in zip(range(-ndim, -1), modes[:-1]):
        n = out.shape[axis]
        if 2 * m < n:  # otherwise the block already is the whole axis
            out = torch.cat([out.narrow(axis, 0, m), out.narrow(axis, n - m, m)], dim=axis)
    return out


def modes_to_field(block: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
    """Inverse real FFT of a spectrum that is zero outside the kept mode block.

    Equal to ``irfftn`` of the block placed into a zero spectrum, but cheaper: the
    inverse transform along each full axis runs only over the kept columns of the
    last axis, and the real inverse along the last axis pads the rest itself.

    Args:
        block: ``(B, C, 2 * m_0, ..., 2 * m_{d-2}, m_{d-1})`` as returned by
            :func:`gather_modes`.
        grid: Spatial grid size ``N`` of the output.

    Returns:
        The real field ``(B, C, *N)``.
    """
    ndim = len(grid)
    out = block
    for axis, n in zip(range(-ndim, -1), grid[:-1]):
        two_m = out.shape[axis]
        if two_m < n:  # put the zero (high-frequency) gap between the two halves
            m = two_m // 2
            gap = list(out.shape)
            gap[axis] = n - two_m
            out = torch.cat([out.narrow(axis, 0, m), out.new_zeros(gap), out.narrow(axis, m, m)], dim=axis)
        out = torch.fft.ifft(out, dim=axis)
    return torch.fft.irfft(out, n=grid[-1], dim=-1)


class SpectralConv(nn.Module):
    """Convolution as a product in Fourier space over the lowest modes.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        modes: Modes kept per spatial axis (see :func:`gather_modes`).
    """

    def __init__(self, in_channels: int, out_channels: int, modes: tuple[int, ...]) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.modes = tuple(modes)
        block = tuple(2 * m for m in self.modes[:-1]) + (self.modes[-1],)
        # One complex (in, out) matrix per kept mode, modes first so that the
        # contraction is a batched matmul with the modes as the batch.
        scale = 1.0 / (in_channels * out_channels)
        self.weight = nn.Parameter(
            scale * torch.rand(*block, in_channels, out_channels, dtype=torch.cfloat)
        )  # (*block, I, O)

    def _weight_for(self, modes: tuple[int, ...]) -> torch.Tensor:
        """The weights of the modes a (possibly coarser) grid holds."""
        if modes == self.modes:
            return self.weight
        w = self.weight[(Ellipsis, slice(0, modes[-1]), slice(None), slice(None))]
        for axis, (m_have, m_use) in enumerate(zip(self.modes[:-1], modes[:-1])):
            if m_use < m_have:  # keep frequencies 0..m_use-1 and -m_use..-1
                w = torch.cat([w.narrow(axis, 0, m_use), w.narrow(axis, 2 * m_have - m_use, m_use)], dim=axis)
        return w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = tuple(x.shape[2:])
        ndim = len(grid)
        modes = tuple(min(m, n // 2) for m, n in zip(self.modes[:-1], grid[:-1]))
        modes += (min(self.modes[-1], grid[-1] // 2 + 1),)
        with fp32_exact(x.device.type):  # FFTs and the mode products in IEEE float32, never bf16 or TF32
            x_ft = torch.fft.rfftn(x.float(), dim=tuple(range(-ndim, 0)))  # (B, I, *N[:-1], N[-1]//2+1)
            block = gather_modes(x_ft, modes)  # (B, I, *K)
            batch, _, *block_shape = block.shape
            n_modes = math.prod(block_shape)
            a = block.reshape(batch, self.in_channels, n_modes).permute(2, 0, 1).contiguous()  # (K, B, I)
            w = self._weight_for(modes).reshape(n_modes, self.in_channels, self.out_channels)  # (K, I, O)
            y = exact_bmm(a, w)  # (K, B, O)
            y = y.permute(1, 2, 0).reshape(batch, self.out_channels, *block_shape)  # (B, O, *K)
            return modes_to_field(y, grid)  # (B, O, *N)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, modes={self.modes}"


class FNO(FoldedFrameModel):
    """Fourier Neural Operator mapping ``(B, t_in, *S, C)`` to ``(B, t_out, *S, C)``.

    Args:
        ndim, in_channels, out_frames, n_fields: Folded sizes, see :class:`FoldedFrameModel`.
        width: Hidden channels.
        modes: Modes kept per axis (already fitted to the grid).
        n_layers: Fourier layers.
        projection_width: Hidden width of the output projection.
        padding: Zero grid points appended per axis inside the model.
        use_grid: Append normalised coordinates to the input.
    """

    label = "FNO"

    def __init__(self, ndim: int, in_channels: int, out_frames: int, n_fields: int, width: int,
                 modes: tuple[int, ...], n_layers: int, projection_width: int, padding: int = 0,
                 use_grid: bool = True) -> None:
        super().__init__(ndim, in_channels, out_frames, n_fields, use_grid)
        self.padding = padding
        self.lift = nn.Linear(self.body_channels, width)
        self.spectral = nn.ModuleList(SpectralConv(width, width, modes) for _ in range(n_layers))
        self.pointwise = nn.ModuleList(_POINTWISE[ndim](width, width, 1) for _ in range(n_layers))
        self.project = two_layer_mlp(width, projection_width, self.out_channels)

    def body(self, h: torch.Tensor) -> torch.Tensor:
        grid = h.shape[1:-1]
        h = self.lift(h).movedim(-1, 1)  # (B, W, *S)
        if self.padding:
            h = F.pad(h, (0, self.padding) * self.ndim)  # (B, W, *(S + pad))
        for i, (spectral, pointwise) in enumerate(zip(self.spectral, self.pointwise)):
            h = spectral(h) + pointwise(h)  # (B, W, *S)
            if i < len(self.spectral) - 1:
                h = F.gelu(h)
        if self.padding:
            h = h[(Ellipsis, *(slice(0, n) for n in grid))]  # (B, W, *S)
        return self.project(h.movedim(1, -1))  # (B, *S, t_out * C)
