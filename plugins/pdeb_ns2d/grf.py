"""Periodic Gaussian random fields: the initial vorticity of the FNO protocol.

A field on the unit torus with covariance operator ``sigma^2 (-lap + tau^2)^(-alpha)``
and zero mean: every Fourier mode ``k != 0`` gets an independent complex normal
coefficient scaled by ``sqrt(2) * sigma * (4 pi^2 |k|^2 + tau^2)^(-alpha / 2)`` and
the real part of the resulting sum is kept, so that ``E |fft2(u)_k|^2 / N^4``
equals ``2 sigma^2 (4 pi^2 |k|^2 + tau^2)^(-alpha)``. The protocol uses
``alpha = 2.5``, ``tau = 7`` and ``sigma = tau^(alpha - 1)`` (the 2D case of
``tau^(0.5 (2 alpha - d))``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # torch is imported lazily so that importing the plugin stays cheap
    import torch


def default_sigma(alpha: float, tau: float) -> float:
    """The protocol's amplitude ``tau^(0.5 (2 alpha - 2))`` for a 2D field."""
    return tau ** (0.5 * (2 * alpha - 2))


def mode_amplitude(n: int, alpha: float = 2.5, tau: float = 7.0, sigma: Optional[float] = None,
                   dtype=None, device=None) -> "torch.Tensor":
    """Standard deviation of each Fourier coefficient of a field, before the real part.

    Args:
        n: Grid points per axis.
        alpha: Smoothness exponent (larger is smoother).
        tau: Inverse correlation length.
        sigma: Overall amplitude; ``None`` means :func:`default_sigma`.
        dtype: Real torch dtype (default float64).
        device: Torch device.

    Returns:
        ``(n, n)`` amplitudes in ``fft2`` order, zero for the mean mode.
    """
    import torch

    sigma = default_sigma(alpha, tau) if sigma is None else sigma
    k = torch.fft.fftfreq(n, d=1.0 / n, dtype=dtype or torch.float64, device=device)  # (N,)
    k_squared = k[:, None] ** 2 + k[None, :] ** 2  # (N, N)
    amplitude = math.sqrt(2.0) * sigma * (4 * math.pi**2 * k_squared + tau**2) ** (-alpha / 2)  # (N, N)
    amplitude[0, 0] = 0.0  # zero-mean field
    return amplitude


def gaussian_random_field(
    n: int,
    batch: int = 1,
    alpha: float = 2.5,
    tau: float = 7.0,
    sigma: Optional[float] = None,
    generator: Optional["torch.Generator"] = None,
    dtype=None,
) -> "torch.Tensor":
    """Draw periodic Gaussian random fields on an ``n x n`` grid of the unit square.

    The noise is drawn on the CPU from ``generator``, so a given generator state
    gives the same fields on every machine and device.

    Args:
        n: Grid points per axis (grid ``x_i = i / n``).
        batch: Number of independent fields.
        alpha: Smoothness exponent.
        tau: Inverse correlation length.
        sigma: Amplitude; ``None`` means ``tau^(alpha - 1)``.
        generator: Source of randomness (a seeded ``torch.Generator``).
        dtype: Real dtype of the result (default float64).

    Returns:
        Fields ``(batch, n, n)`` on the CPU.
    """
    import torch

    dtype = dtype or torch.float64
    noise = torch.randn(batch, n, n, 2, generator=generator, dtype=torch.float64)  # (B, N, N, 2)
    coefficients = torch.view_as_complex(noise) * mode_amplitude(n, alpha, tau, sigma)  # (B, N, N)
    # ifft2 divides by N^2; multiply back so each coefficient is one mode's amplitude.
    field = torch.fft.ifft2(coefficients).real * n**2  # (B, N, N)
    return field.to(dtype)
