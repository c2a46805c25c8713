"""DPOT's Fourier mixer: an AFNO-style block-diagonal complex MLP over Fourier modes.

The mixer transforms the latent field with a real Fourier transform, applies a two-layer
complex MLP (shared by every kept mode, block-diagonal over ``n_heads`` channel groups) to a
subset of modes, zeroes every other mode, transforms back and adds its input (the inner
skip). It works on 1, 2 or 3 spatial axes and holds the official parameters ``w1``, ``b1``,
``w2``, ``b2`` so official checkpoints load unchanged.

Only the kept modes are ever computed (:mod:`pdeb_dpot.spectral`: matmuls with a basis of
the kept modes on the CPU, FFTs elsewhere), on the channels-last field, and each complex
layer runs as one batched real matmul over heads (the complex product written as a 2x2 real
block matrix). The straightforward form (FFTs, einsums over the whole spectrum, then a
mask, as the official code computes it) lives with the tests as the oracle this one is
checked against (``pdeb_dpot/tests/oracle.py``).

One mixer serves inputs of several spatial dimensions when it is given a mode budget for
each (:meth:`FourierMixer.add_modes`); its weights do not depend on the dimension.

The transforms and the spectral MLP always run in IEEE float32 (``fp32_exact``: autocast
and TF32 off; the products through ``exact_bmm``), because bf16 FFTs are unsupported on
most devices and bf16 or TF32 products lose too many digits.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence

import torch
import torch.nn as nn

from pdebench_core.devices import exact_bmm, fp32_exact, keep_float32
from pdebench_core.errors import UsageError

from pdeb_dpot.spectral import forward_modes, inverse_modes, transform_for

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

    The block is ``[[re, im], [-im, re]]``. Written with ``cat`` and ``select``, autograd's
    backward zero-fills a weight-sized gradient for each of six selects and sums them; this
    backward adds the four quarters of the incoming gradient pairwise instead. It is itself
    differentiable and works under ``torch.func`` transforms.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(w: torch.Tensor) -> torch.Tensor:
        top = torch.cat([w[0], w[1]], dim=-1)  # (H, I, 2O): rows that multiply the real part
        bottom = torch.cat([-w[1], w[0]], dim=-1)  # (H, I, 2O): rows that multiply the imaginary part
        return torch.cat([top, bottom], dim=1)  # (H, 2I, 2O)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        pass  # linear: the backward needs nothing from the forward pass

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        quarters = grad.unflatten(1, (2, -1)).unflatten(-1, (2, -1))  # (H, 2, I, 2, O)
        return torch.stack([quarters[:, 0, :, 0] + quarters[:, 1, :, 1],
                            quarters[:, 0, :, 1] - quarters[:, 1, :, 0]])  # (2, H, I, O)


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

    Attributes:
        transform: How the kept modes are computed: ``"auto"`` (the default),
            ``"fft"`` or ``"dft"`` (see :mod:`pdeb_dpot.spectral`); the numbers agree to
            float32 rounding. :func:`use_transform` sets it for a whole model.
    """

    transform = "auto"

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
        keep_float32(self.w1, self.b1, self.w2, self.b2)  # real and imaginary parts of spectral weights

    def add_modes(self, modes: Sequence[int]) -> None:
        """Serve inputs with ``len(modes)`` spatial axes too, keeping ``modes`` per axis."""
        self.modes_by_ndim[len(modes)] = tuple(int(m) for m in modes)

    def extra_repr(self) -> str:
        budgets = ", ".join(f"{ndim}D {modes}" for ndim, modes in self.modes_by_ndim.items())
        return f"width={self.width}, n_heads={self.n_heads}, modes {budgets}, symmetric={self.symmetric}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mix ``x`` of shape ``(B, D, *S)``; returns the same shape and dtype.

        The work happens channels-last: given a channels-last ``x`` (as :class:`DPOT` passes
        it), no copy of the field is made besides the transforms' own.
        """
        modes = self.modes_by_ndim.get(x.ndim - 2)
        if modes is None:
            raise ValueError(f"mixer built for {sorted(self.modes_by_ndim)} spatial axes got input "
                             f"{tuple(x.shape)}")
        spatial = tuple(x.shape[2:])
        kept = self.kept_modes(spatial, modes)
        transform = transform_for(x.device, self.transform)
        with fp32_exact(x.device.type):
            x32 = x.float().movedim(1, -1)  # (B, *S, D)
            spectrum = forward_modes(x32, kept, transform)  # (B, *M, D): the kept modes only
            out = x32 + inverse_modes(self.mix_modes(spectrum), spatial, kept, transform)  # (B, *S, D)
        return out.movedim(-1, 1).to(x.dtype)

    def kept_modes(self, spatial: Sequence[int], modes: Sequence[int]) -> tuple[tuple[int, ...], ...]:
        """Indices of the kept modes per axis of the ``rfftn`` spectrum of a ``spatial`` grid."""
        last = len(spatial) - 1
        return tuple(tuple(kept_indices(n // 2 + 1 if axis == last else n, m, self.symmetric, half_axis=axis == last))
                     for axis, (n, m) in enumerate(zip(spatial, modes)))

    def weights(self) -> tuple[torch.Tensor, ...]:
        """``w1, b1, w2, b2`` in float32: ``(2, H, E, E)``, ``(2, H, E)``, twice; index 0 real, 1 imaginary."""
        return self.w1.float(), self.b1.float(), self.w2.float(), self.b2.float()

    def mix_modes(self, spectrum: torch.Tensor) -> torch.Tensor:
        """Apply the spectral MLP to every mode of ``spectrum``: complex ``(B, *M, D)`` -> the same."""
        H, E = self.n_heads, self.head_dim
        z = torch.view_as_real(spectrum).unflatten(-2, (H, E))  # (B, *M, H, E, 2)
        z = z.movedim(-3, 0).transpose(-1, -2).reshape(H, -1, 2 * E)  # (H, B*prod(M), 2E) = [re | im]
        w1, b1, w2, b2 = self.weights()
        hidden = self.act(exact_bmm(z, _ComplexAsRealBlock.apply(w1), _stacked_bias(b1)))  # (H, N, 2E)
        out = exact_bmm(hidden, _ComplexAsRealBlock.apply(w2), _stacked_bias(b2))  # (H, N, 2E)
        out = out.view(H, *spectrum.shape[:-1], 2, E).movedim(0, -3).transpose(-1, -2)  # (B, *M, H, E, 2)
        return torch.view_as_complex(out.reshape(*spectrum.shape, 2).contiguous())  # (B, *M, D)


def use_transform(model: nn.Module, transform: str) -> nn.Module:
    """Make every Fourier mixer of ``model`` compute its modes with ``transform``.

    Args:
        model: A model holding :class:`FourierMixer` modules.
        transform: ``"auto"``, ``"fft"`` or ``"dft"``.

    Returns:
        ``model`` itself.
    """
    transform_for(torch.device("cpu"), transform)  # refuses an unknown name
    for module in model.modules():
        if isinstance(module, FourierMixer):
            module.transform = transform
    return model


@contextlib.contextmanager
def transform_in(model: nn.Module, transform: str) -> Iterator[nn.Module]:
    """Every Fourier mixer of ``model`` on ``transform`` inside the block, as it was after.

    FLOP counts use it with ``"fft"``, so that the CPU's basis products, an implementation of
    the same transform, are not counted as the model's work.
    """
    before = {module: module.transform for module in model.modules() if isinstance(module, FourierMixer)}
    use_transform(model, transform)
    try:
        yield model
    finally:
        for module, choice in before.items():
            module.transform = choice
