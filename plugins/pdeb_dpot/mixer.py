"""DPOT's Fourier mixer: an AFNO-style block-diagonal complex MLP over Fourier modes.

The mixer transforms the latent field with a real FFT, applies a two-layer complex MLP
(shared by every kept mode, block-diagonal over ``n_heads`` channel groups) to a subset
of modes, zeroes every other mode, transforms back and adds its input (the inner skip).
It works on 1, 2 or 3 spatial axes and holds the official parameters ``w1``, ``b1``,
``w2``, ``b2`` so official checkpoints load unchanged.

The kept modes are gathered once and each complex layer runs as one batched real matmul
over heads (the complex product written as a 2x2 real block matrix); the inverse FFT then
zero-pads the modes that were dropped, so no full-spectrum buffer is ever built. The
straightforward form (einsums over the whole spectrum, then a mask) lives with the tests
as the oracle this one is checked against (``pdeb_dpot/tests/mixer_oracle.py``).

One mixer serves inputs of several spatial dimensions when it is given a mode budget for
each (:meth:`FourierMixer.add_modes`); its weights do not depend on the dimension.

The FFTs and the spectral MLP always run in IEEE float32 (``fp32_exact``: autocast and TF32
off; the mode products through ``exact_bmm``), because bf16 FFTs are unsupported on most
devices and bf16 or TF32 products lose too many digits.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn as nn
from torch.autograd.function import once_differentiable

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


class _ComplexAsRealBlock(torch.autograd.Function):
    """``(2, H, I, O)`` real/imag weights -> ``(H, 2I, 2O)`` real matrix acting on ``[re | im]``.

    The block is ``[[re, im], [-im, re]]``. Written with ``cat`` and ``select`` its backward
    zero-fills a weight-sized gradient for each of the six selects and sums them; here the
    backward reads each quarter of the incoming gradient once.
    """

    @staticmethod
    def forward(ctx, w: torch.Tensor) -> torch.Tensor:
        _, H, I, O = w.shape
        block = w.new_empty(H, 2, I, 2, O)
        block[:, 0, :, 0] = w[0]  # rows multiplying the real part
        block[:, 0, :, 1] = w[1]
        torch.neg(w[1], out=block[:, 1, :, 0])  # rows multiplying the imaginary part
        block[:, 1, :, 1] = w[0]
        return block.view(H, 2 * I, 2 * O)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        H, two_i, two_o = grad.shape
        quarters = grad.reshape(H, 2, two_i // 2, 2, two_o // 2)
        grad_w = grad.new_empty(2, H, two_i // 2, two_o // 2)
        torch.add(quarters[:, 0, :, 0], quarters[:, 1, :, 1], out=grad_w[0])
        torch.sub(quarters[:, 0, :, 1], quarters[:, 1, :, 0], out=grad_w[1])
        return grad_w


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
    """

    def __init__(self, width: int, n_heads: int, modes: Sequence[int], act: str = "gelu",
                 symmetric: bool = False) -> None:
        super().__init__()
        if width % n_heads:
            raise ValueError(f"width {width} is not divisible by n_heads {n_heads}")
        self.width = width
        self.n_heads = n_heads
        self.head_dim = width // n_heads
        self.modes_by_ndim: dict[int, tuple[int, ...]] = {}
        self.add_modes(modes)
        self.symmetric = symmetric
        self.act = make_activation(act)
        # Official initialisation: uniform in [0, 1 / head_dim^2).
        scale = 1.0 / (self.head_dim * self.head_dim)
        self.w1 = nn.Parameter(scale * torch.rand(2, n_heads, self.head_dim, self.head_dim))
        self.b1 = nn.Parameter(scale * torch.rand(2, n_heads, self.head_dim))
        self.w2 = nn.Parameter(scale * torch.rand(2, n_heads, self.head_dim, self.head_dim))
        self.b2 = nn.Parameter(scale * torch.rand(2, n_heads, self.head_dim))

    def add_modes(self, modes: Sequence[int]) -> None:
        """Serve inputs with ``len(modes)`` spatial axes too, keeping ``modes`` per axis."""
        self.modes_by_ndim[len(modes)] = tuple(int(m) for m in modes)

    def extra_repr(self) -> str:
        budgets = ", ".join(f"{ndim}D {modes}" for ndim, modes in self.modes_by_ndim.items())
        return f"width={self.width}, n_heads={self.n_heads}, modes {budgets}, symmetric={self.symmetric}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mix ``x`` of shape ``(B, D, *S)``; returns the same shape and dtype."""
        modes = self.modes_by_ndim.get(x.ndim - 2)
        if modes is None:
            raise ValueError(f"mixer built for {sorted(self.modes_by_ndim)} spatial axes got input "
                             f"{tuple(x.shape)}")
        spatial = x.shape[2:]
        fft_dims = tuple(range(2, x.ndim))
        with fp32_exact(x.device.type):
            x32 = x.float()  # (B, D, *S)
            spectrum = torch.fft.rfftn(x32, dim=fft_dims, norm="ortho")  # (B, D, *K)
            mixed = self.mix_modes(spectrum, modes)  # (B, D, *K') with K' <= K; missing modes are zero
            # irfftn zero-pads every axis up to the full spectrum, which zeroes the dropped modes.
            out = torch.fft.irfftn(mixed, s=spatial, dim=fft_dims, norm="ortho")  # (B, D, *S)
            out = x32 + out  # x32 first: the sum keeps the input's memory layout
        return out.to(x.dtype)

    def weights(self) -> tuple[torch.Tensor, ...]:
        """``w1, b1, w2, b2`` in float32: ``(2, H, E, E)``, ``(2, H, E)``, twice; index 0 real, 1 imaginary."""
        return self.w1.float(), self.b1.float(), self.w2.float(), self.b2.float()

    def mix_modes(self, spectrum: torch.Tensor, modes: Sequence[int]) -> torch.Tensor:
        """Apply the spectral MLP to the kept modes of ``spectrum`` ``(B, D, *K)``.

        Returns:
            ``(B, D, *K')``: every axis cut after its last kept mode; the modes not kept are zero.
        """
        B, D = spectrum.shape[:2]
        kept, scattered = self._gather_kept(spectrum, modes)  # (B, D, *M)
        kept_shape = kept.shape[2:]
        H, E = self.n_heads, self.head_dim
        z = torch.view_as_real(kept).unflatten(1, (H, E))  # (B, H, E, *M, 2)
        z = z.movedim(2, -1).movedim(1, 0).reshape(H, -1, 2 * E)  # (H, B*prod(M), 2E) = [re | im]
        w1, b1, w2, b2 = self.weights()
        hidden = self.act(exact_bmm(z, _ComplexAsRealBlock.apply(w1), _stacked_bias(b1)))  # (H, N, 2E)
        out = exact_bmm(hidden, _ComplexAsRealBlock.apply(w2), _stacked_bias(b2))  # (H, N, 2E)
        out = out.view(H, B, *kept_shape, 2, E).movedim(0, 1).movedim(-1, 2)  # (B, H, E, *M, 2)
        out = out.reshape(B, D, *kept_shape, 2)  # (B, D, *M, 2)
        for axis, index_t, n in reversed(scattered):
            # Only the symmetric option gets here: put the two frequency ranges back in place.
            shape = list(out.shape)
            shape[2 + axis] = n
            out = out.new_zeros(shape).index_copy(2 + axis, index_t, out)
        return torch.view_as_complex(out.contiguous())  # (B, D, *K')

    def _gather_kept(self, spectrum: torch.Tensor, modes: Sequence[int]
                     ) -> tuple[torch.Tensor, list[tuple[int, torch.Tensor, int]]]:
        """The kept modes ``(B, D, *M)``, and ``(axis, indices, length)`` of each gathered (not sliced) axis."""
        full_shape = spectrum.shape[2:]
        kept = spectrum
        scattered: list[tuple[int, torch.Tensor, int]] = []
        for axis, (n, m) in enumerate(zip(full_shape, modes)):
            index = kept_indices(n, m, self.symmetric, half_axis=axis == len(full_shape) - 1)
            if index == list(range(n)):
                continue  # every mode: no slice, whose backward would zero-fill a copy of the gradient
            if index == list(range(len(index))):
                kept = kept.narrow(2 + axis, 0, len(index))  # a prefix: a view, no copy
            else:
                # Symmetric option: [0, m) and [n - m + 1, n), built on the device (no host copy).
                device = spectrum.device
                index_t = torch.cat([torch.arange(m, device=device), torch.arange(n - m + 1, n, device=device)])
                kept = kept.index_select(2 + axis, index_t)
                scattered.append((axis, index_t, n))
        return kept, scattered
