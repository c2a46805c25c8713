"""The straightforward forms of DPOT's fused layers: the oracles they are checked against.

- :class:`ReferenceFourierMixer` computes the mixer the obvious way, as the official DPOT
  code does: ``rfftn`` of the channels-first field, one einsum per real/imaginary product on
  the whole spectrum, a mask of the kept modes, ``irfftn``. It shares only the parameters,
  the mode rule (``kept_indices``) and the float32 policy with the model's mixer, so it
  checks the transforms, the gathering of modes and the fused products.
- :class:`ReferenceTimeAggregator` forms the latent frames (the embedding's 1x1 layer plus
  the positional embedding), modulates them and sums ``W_t^T z_t`` over frames, as the
  official code does, instead of folding the embedding's layer into the weight.

Tests import it as ``pdeb_dpot.tests.oracle``; ``benchmarks/dpot_step.py`` and
``benchmarks/gpu_check.py`` use :func:`use_reference_layers` for an official-style model
when the official code is not at hand.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from pdebench_core.devices import fp32_exact

from pdeb_dpot.mixer import FourierMixer, kept_indices
from pdeb_dpot.model import TimeAggregator


class ReferenceFourierMixer(FourierMixer):
    """:class:`FourierMixer` computed with full-grid FFTs, full-spectrum einsums and a mask."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mix ``x`` of shape ``(B, D, *S)``."""
        modes = self.modes_by_ndim[x.ndim - 2]
        fft_dims = tuple(range(2, x.ndim))
        with fp32_exact(x.device.type):
            x32 = x.float()
            spectrum = torch.fft.rfftn(x32, dim=fft_dims, norm="ortho")  # (B, D, *K)
            mixed = self.mix_full_spectrum(spectrum, modes)  # (B, D, *K)
            out = x32 + torch.fft.irfftn(mixed, s=x.shape[2:], dim=fft_dims, norm="ortho")
        return out.to(x.dtype)

    def mix_full_spectrum(self, spectrum: torch.Tensor, modes: Sequence[int]) -> torch.Tensor:
        """Apply the spectral MLP to every mode of ``(B, D, *K)``, then zero the modes not kept."""
        full_shape = spectrum.shape[2:]
        H, E = self.n_heads, self.head_dim
        s = spectrum.movedim(1, -1).unflatten(-1, (H, E))  # (B, *K, H, E)
        re, im = s.real, s.imag
        w1, b1, w2, b2 = self.weights()
        mm = lambda a, w: torch.einsum("...hi,hio->...ho", a, w)  # noqa: E731
        h_re = self.act(mm(re, w1[0]) - mm(im, w1[1]) + b1[0])  # (B, *K, H, E)
        h_im = self.act(mm(im, w1[0]) + mm(re, w1[1]) + b1[1])  # (B, *K, H, E)
        o_re = mm(h_re, w2[0]) - mm(h_im, w2[1]) + b2[0]  # (B, *K, H, E)
        o_im = mm(h_im, w2[0]) + mm(h_re, w2[1]) + b2[1]  # (B, *K, H, E)
        mask = torch.ones((), device=spectrum.device)
        for axis, (n, m) in enumerate(zip(full_shape, modes)):
            keep = torch.zeros(n, device=spectrum.device)
            keep[kept_indices(n, m, self.symmetric, half_axis=axis == len(full_shape) - 1)] = 1.0
            mask = mask.unsqueeze(-1) * keep  # (*K[:axis+1])
        mask = mask[..., None, None]  # (*K, 1, 1)
        out = torch.complex(o_re * mask, o_im * mask)  # (B, *K, H, E)
        return out.flatten(-2).movedim(-1, 1)  # (B, D, *K)


class ReferenceTimeAggregator(TimeAggregator):
    """:class:`TimeAggregator` that forms the ``(B, N, T, D)`` latent frames and sums over them."""

    def forward(self, hidden: torch.Tensor, act: nn.Module, embed_weight: torch.Tensor,
                embed_bias: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """The same arguments and result as :meth:`TimeAggregator.forward`."""
        T = hidden.shape[2]
        z = nn.functional.linear(act(hidden), embed_weight, embed_bias) + shift.unsqueeze(1)  # (B, N, T, D)
        if self.kind == "exp_mlp":
            t = torch.linspace(0, 1, T, device=z.device).unsqueeze(-1)  # (T, 1)
            z = z * torch.cos(t * self.gamma.float())  # (B, N, T, D)
        return torch.einsum("bntd,tde->bne", z, self.w)  # (B, N, D)


def use_reference_mixers(model: nn.Module) -> nn.Module:
    """Switch every Fourier mixer of ``model`` to the reference form, in place.

    Only the class changes: parameters, mode budgets and state-dict keys stay, so a model
    with loaded weights computes the same function the straightforward way.

    Returns:
        ``model`` itself.
    """
    for module in model.modules():
        if type(module) is FourierMixer:
            module.__class__ = ReferenceFourierMixer
    return model


def use_reference_layers(model: nn.Module) -> nn.Module:
    """Switch every Fourier mixer and time aggregator of ``model`` to the reference form, in place.

    The model then computes as the official code does, with the same parameters.

    Returns:
        ``model`` itself.
    """
    for module in use_reference_mixers(model).modules():
        if type(module) is TimeAggregator:
            module.__class__ = ReferenceTimeAggregator
    return model
