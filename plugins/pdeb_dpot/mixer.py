"""DPOT's Fourier mixer: an AFNO-style block-diagonal complex MLP over Fourier modes.

The mixer transforms the latent field with a real FFT, applies a two-layer complex MLP
(shared by every kept mode, block-diagonal over ``n_heads`` channel groups) to a subset
of modes, zeroes every other mode, transforms back and adds its input (the inner skip).
It works on 1, 2 or 3 spatial axes and holds the official parameters ``w1``, ``b1``,
``w2``, ``b2`` so official checkpoints load unchanged.

Two implementations share those parameters:

- ``fused=True`` (default): gathers the kept modes once and runs each complex layer as one
  batched real matmul over heads (the complex product written as a 2x2 real block matrix),
  then lets the inverse FFT zero-pad the missing modes. No full-spectrum buffers.
- ``fused=False``: the straightforward form, one einsum per real/imaginary product on the
  whole spectrum followed by a mask; kept as the reference the fused path is tested against.

The FFTs and the spectral MLP always run in IEEE float32 (``fp32_exact``: autocast and TF32
off; the mode products through ``exact_bmm``), because bf16 FFTs are unsupported on most
devices and bf16 or TF32 products lose too many digits.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn as nn

from pdebench_core.devices import exact_bmm, fp32_exact
from pdebench_core.errors import UsageError

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.1),
    "softplus": nn.Softplus,
    "elu": nn.ELU,
    "silu": nn.SiLU,
}


def make_activation(name: str) -> nn.Module:
    """Return a fresh activation module for one of the names the official code accepts.

    Args:
        name: ``gelu``, ``tanh``, ``sigmoid``, ``relu``, ``leaky_relu`` (slope 0.1),
            ``softplus``, ``elu`` (the official spelling ``ELU`` works too) or ``silu``.

    Raises:
        UsageError: for an unknown name.
    """
    key = name.lower()
    if key not in ACTIVATIONS:
        raise UsageError(f"unknown activation '{name}'; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[key]()


def kept_indices(n: int, modes: int, symmetric: bool, half_axis: bool) -> list[int]:
    """Indices of the Fourier modes kept along one axis of an ``rfftn`` spectrum.

    Args:
        n: Length of this axis of the spectrum.
        modes: The mode budget for this axis.
        symmetric: Keep frequencies ``|k| < modes`` on full (two-sided) axes instead of the
            official ``0 <= k < modes``.
        half_axis: This is the last, one-sided axis of a real FFT (only ``k >= 0`` exists).

    Returns:
        Sorted indices into the axis.
    """
    if half_axis or not symmetric:
        return list(range(min(modes, n)))
    if 2 * modes - 1 >= n:
        return list(range(n))
    return list(range(modes)) + list(range(n - modes + 1, n))


def _complex_as_real_block(w: torch.Tensor) -> torch.Tensor:
    """``(2, H, I, O)`` real/imag weights -> ``(H, 2I, 2O)`` real matrix acting on ``[re, im]``."""
    top = torch.cat([w[0], w[1]], dim=-1)  # (H, I, 2O): rows that multiply the real part
    bottom = torch.cat([-w[1], w[0]], dim=-1)  # (H, I, 2O): rows that multiply the imaginary part
    return torch.cat([top, bottom], dim=1)  # (H, 2I, 2O)


def _stacked_bias(b: torch.Tensor) -> torch.Tensor:
    """``(2, H, O)`` real/imag biases -> ``(H, 1, 2O)``."""
    return torch.cat([b[0], b[1]], dim=-1).unsqueeze(1)


class FourierMixer(nn.Module):
    """Block-diagonal complex MLP over a truncated real-FFT spectrum, plus inner skip.

    Args:
        width: Channels ``D`` of the latent field.
        n_heads: Channel groups with separate weights (the official ``num_blocks``);
            must divide ``width``.
        modes: Mode budget per spatial axis, e.g. ``(32, 32)``; the official mixer keeps
            ``spectrum[:m0, :m1, ...]`` (non-negative frequencies on every axis).
        act: Activation applied to the real and imaginary parts of the hidden layer.
        symmetric: Keep ``|k| < m`` on the two-sided axes instead (not the official rule).
        fused: Use the batched-matmul implementation (same numbers, less memory).
    """

    def __init__(self, width: int, n_heads: int, modes: Sequence[int], act: str = "gelu",
                 symmetric: bool = False, fused: bool = True) -> None:
        super().__init__()
        if width % n_heads:
            raise ValueError(f"width {width} is not divisible by n_heads {n_heads}")
        self.width = width
        self.n_heads = n_heads
        self.head_dim = width // n_heads
        self.modes = tuple(int(m) for m in modes)
        self.symmetric = symmetric
        self.fused = fused
        self.act = make_activation(act)
        # Official initialisation: uniform in [0, 1 / head_dim^2).
        scale = 1.0 / (self.head_dim * self.head_dim)
        self.w1 = nn.Parameter(scale * torch.rand(2, n_heads, self.head_dim, self.head_dim))
        self.b1 = nn.Parameter(scale * torch.rand(2, n_heads, self.head_dim))
        self.w2 = nn.Parameter(scale * torch.rand(2, n_heads, self.head_dim, self.head_dim))
        self.b2 = nn.Parameter(scale * torch.rand(2, n_heads, self.head_dim))

    def extra_repr(self) -> str:
        return (f"width={self.width}, n_heads={self.n_heads}, modes={self.modes}, "
                f"symmetric={self.symmetric}, fused={self.fused}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mix ``x`` of shape ``(B, D, *S)``; returns the same shape and dtype."""
        if x.ndim - 2 != len(self.modes):
            raise ValueError(f"mixer built for {len(self.modes)} spatial axes got input {tuple(x.shape)}")
        spatial = x.shape[2:]
        fft_dims = tuple(range(2, x.ndim))
        with fp32_exact(x.device.type):
            x32 = x.float()  # (B, D, *S)
            spectrum = torch.fft.rfftn(x32, dim=fft_dims, norm="ortho")  # (B, D, *K)
            mix = self._mix_fused if self.fused else self._mix_reference
            mixed = mix(spectrum)  # (B, D, *K') with K' <= K; missing modes are zero
            # irfftn zero-pads every axis up to the full spectrum, which zeroes the dropped modes.
            out = torch.fft.irfftn(mixed, s=spatial, dim=fft_dims, norm="ortho")  # (B, D, *S)
            out = out + x32
        return out.to(x.dtype)

    def _weights(self) -> tuple[torch.Tensor, ...]:
        return self.w1.float(), self.b1.float(), self.w2.float(), self.b2.float()

    def _mix_fused(self, spectrum: torch.Tensor) -> torch.Tensor:
        B, D = spectrum.shape[:2]
        full_shape = spectrum.shape[2:]
        n_axes = len(full_shape)
        kept = spectrum
        scattered: list[tuple[int, torch.Tensor]] = []
        for axis, (n, m) in enumerate(zip(full_shape, self.modes)):
            index = kept_indices(n, m, self.symmetric, half_axis=axis == n_axes - 1)
            if index == list(range(len(index))):
                kept = kept.narrow(2 + axis, 0, len(index))  # a prefix: a view, no copy
            else:
                # Symmetric option: [0, m) and [n - m + 1, n), built on the device (no host copy).
                device = spectrum.device
                index_t = torch.cat([torch.arange(m, device=device),
                                     torch.arange(n - m + 1, n, device=device)])
                kept = kept.index_select(2 + axis, index_t)
                scattered.append((axis, index_t))
        kept_shape = kept.shape[2:]
        H, E = self.n_heads, self.head_dim
        z = torch.view_as_real(kept).unflatten(1, (H, E))  # (B, H, E, *M, 2)
        z = z.movedim(2, -1).movedim(1, 0).reshape(H, -1, 2 * E)  # (H, B*prod(M), 2E) = [re | im]
        w1, b1, w2, b2 = self._weights()
        hidden = self.act(exact_bmm(z, _complex_as_real_block(w1), _stacked_bias(b1)))  # (H, N, 2E)
        out = exact_bmm(hidden, _complex_as_real_block(w2), _stacked_bias(b2))  # (H, N, 2E)
        out = out.view(H, B, *kept_shape, 2, E).movedim(0, 1).movedim(-1, 2)  # (B, H, E, *M, 2)
        out = out.reshape(B, D, *kept_shape, 2)  # (B, D, *M, 2)
        for axis, index_t in reversed(scattered):
            # Only the symmetric option gets here: put the two frequency ranges back in place.
            shape = list(out.shape)
            shape[2 + axis] = full_shape[axis]
            out = out.new_zeros(shape).index_copy(2 + axis, index_t, out)
        return torch.view_as_complex(out.contiguous())  # (B, D, *K')

    def _mix_reference(self, spectrum: torch.Tensor) -> torch.Tensor:
        B, D = spectrum.shape[:2]
        full_shape = spectrum.shape[2:]
        n_axes = len(full_shape)
        H, E = self.n_heads, self.head_dim
        s = spectrum.movedim(1, -1).unflatten(-1, (H, E))  # (B, *K, H, E)
        re, im = s.real, s.imag
        w1, b1, w2, b2 = self._weights()
        mm = lambda a, w: torch.einsum("...hi,hio->...ho", a, w)  # noqa: E731
        h_re = self.act(mm(re, w1[0]) - mm(im, w1[1]) + b1[0])  # (B, *K, H, E)
        h_im = self.act(mm(im, w1[0]) + mm(re, w1[1]) + b1[1])
        o_re = mm(h_re, w2[0]) - mm(h_im, w2[1]) + b2[0]
        o_im = mm(h_im, w2[0]) + mm(h_re, w2[1]) + b2[1]
        mask = torch.ones((), device=spectrum.device)
        for axis, (n, m) in enumerate(zip(full_shape, self.modes)):
            keep = torch.zeros(n, device=spectrum.device)
            keep[kept_indices(n, m, self.symmetric, half_axis=axis == n_axes - 1)] = 1.0
            mask = mask.unsqueeze(-1) * keep  # (*K[:axis+1])
        mask = mask[..., None, None]  # (*K, 1, 1)
        out = torch.complex(o_re * mask, o_im * mask)  # (B, *K, H, E)
        return out.flatten(-2).movedim(-1, 1)  # (B, D, *K)
