"""Random initial states in the style of PDEBench's compressible "Rand" sets.

Each trajectory draws a background density ``rho0 ~ U(0.1, 10)`` and temperature
``T0 ~ U(0.1, 10)`` (pressure ``p0 = rho0 T0``). Density, pressure and every velocity
component are random superpositions of Fourier modes ``|k|^-decay sin(2 pi k.x + phi)``
with ``1 <= |k_i| <= k_max`` on every axis (no mode is constant along an axis) and
independent uniform phases. Density and pressure become ``rho0 (1 + a f / mean|f|)``
with relative amplitudes ``a ~ U(0.01, 0.2)``; the velocity is scaled so that its RMS
speed is ``mach`` times the background sound speed ``sqrt(gamma T0)``. With probability
``window_prob`` the perturbation is confined to a random box (smooth tanh edges of
width 0.01) outside which the gas is at rest at ``(rho0, p0)``.

Differences from PDEBench: the velocity is normalised by its RMS speed (PDEBench uses
the mean speed, about 10 % lower for these fields), and the density and pressure
perturbations are capped so that neither ever dips below 10 % of its background value
(PDEBench can produce negative values in rare draws).

Everything is drawn on the CPU in float64 from a ``torch.Generator``, so a seed gives
the same fields on any machine and device.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

RHO0_RANGE = (0.1, 10.0)  # background density
T0_RANGE = (0.1, 10.0)  # background temperature p0 / rho0
AMPLITUDE_RANGE = (0.01, 0.2)  # relative density / pressure perturbation
WINDOW_LEFT = (0.1, 0.45)  # lower edge of the optional box, per axis
WINDOW_RIGHT = (0.55, 0.9)  # upper edge of the optional box, per axis
WINDOW_EDGE = 0.01  # tanh width of the box edges
MAX_RELATIVE_DIP = 0.9  # density / pressure never fall below 10 % of the background


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator, dtype=torch.float64))


def random_modes(shape: Sequence[int], k_max: int, decay: float, n_fields: int,
                 generator: torch.Generator) -> Tensor:
    """Sums of random-phase sinusoids on a periodic unit box, sampled at cell centres.

    Args:
        shape: Grid size per axis (each must exceed ``2 * k_max``).
        k_max: Largest integer wavenumber per axis.
        decay: Amplitude of mode ``k`` is ``|2 pi k|^-decay``.
        n_fields: Independent fields to draw.
        generator: Source of the random phases.

    Returns:
        ``(n_fields, *shape)`` float64.
    """
    ndim = len(shape)
    if min(shape) <= 2 * k_max:
        raise ValueError(f"grid {tuple(shape)} too coarse for k_max={k_max}; need more than {2 * k_max} cells per axis")
    # Integer wavenumbers -k_max..-1, 1..k_max on every axis.
    axis_modes = torch.cat([torch.arange(-k_max, 0), torch.arange(1, k_max + 1)])
    grids = torch.meshgrid(*([axis_modes] * ndim), indexing="ij")
    k = torch.stack([g.flatten() for g in grids], dim=1)  # (M, D)
    amplitude = (2.0 * math.pi * k.double()).norm(dim=1) ** (-decay)  # (M,)
    phases = 2.0 * math.pi * torch.rand((n_fields, k.shape[0]), generator=generator, dtype=torch.float64)
    # sin(theta) = Re(exp(i (theta - pi/2))); the half-cell shift samples cell centres.
    centre_shift = 2.0 * math.pi * (k.double() * 0.5 / torch.tensor(shape, dtype=torch.float64)).sum(1)
    coefficients = amplitude * torch.exp(1j * (phases + centre_shift - 0.5 * math.pi))  # (F, M)
    spectrum = torch.zeros((n_fields, *shape), dtype=torch.complex128)
    index = tuple(k[:, d] % shape[d] for d in range(ndim))
    spectrum[(slice(None), *index)] = coefficients
    dims = tuple(range(1, ndim + 1))
    return torch.fft.ifftn(spectrum, dim=dims, norm="forward").real  # (F, *shape)


def _box_window(shape: Sequence[int], generator: torch.Generator) -> Tensor:
    """Smooth indicator of a random box, ``(*shape)`` float64."""
    window = torch.ones((), dtype=torch.float64)
    for d, n in enumerate(shape):
        left = _uniform(generator, *WINDOW_LEFT)
        right = _uniform(generator, *WINDOW_RIGHT)
        x = (torch.arange(n, dtype=torch.float64) + 0.5) / n
        profile = 0.5 * (torch.tanh((x - left) / WINDOW_EDGE) - torch.tanh((x - right) / WINDOW_EDGE))
        window = window.unsqueeze(-1) * profile.view(*([1] * d), n)
    return window


def _perturbed(background: float, field: Tensor, amplitude: float) -> Tensor:
    """``background (1 + amplitude f / mean|f|)``, capped to stay above 10 % of background."""
    scale = amplitude / field.abs().mean()
    deepest = float((-field).max())
    if deepest > 0:
        scale = min(float(scale), MAX_RELATIVE_DIP / deepest)
    return background * (1.0 + scale * field)


def random_state(shape: Sequence[int], seed: int, mach: float, gamma: float = 5.0 / 3.0,
                 k_max: int = 4, decay: float = 0.5, window_prob: float = 0.5) -> tuple[Tensor, Tensor, Tensor]:
    """One random initial state on the periodic unit box.

    Args:
        shape: Grid size per spatial axis, e.g. ``(128, 128)``.
        seed: Seed of this trajectory.
        mach: RMS Mach number of the initial velocity relative to the background sound speed.
        gamma: Ratio of specific heats.
        k_max: Largest integer wavenumber per axis.
        decay: Spectral decay exponent (PDEBench: 0.5 in 2D, 1 in 3D).
        window_prob: Probability of confining the perturbation to a random box.

    Returns:
        ``(rho, vel, p)``: float64 tensors ``(*S)``, ``(D, *S)``, ``(*S)`` on the CPU.
    """
    generator = torch.Generator().manual_seed(int(seed))
    ndim = len(shape)
    rho0 = _uniform(generator, *RHO0_RANGE)
    temperature0 = _uniform(generator, *T0_RANGE)
    amp_rho = _uniform(generator, *AMPLITUDE_RANGE)
    amp_p = _uniform(generator, *AMPLITUDE_RANGE)
    p0 = rho0 * temperature0
    fields = random_modes(shape, k_max, decay, 2 + ndim, generator)  # (2 + D, *S)
    rho = _perturbed(rho0, fields[0], amp_rho)
    p = _perturbed(p0, fields[1], amp_p)
    vel = fields[2:]  # (D, *S)
    rms_speed = (vel ** 2).sum(0).mean().sqrt()
    vel = vel * (mach * math.sqrt(gamma * temperature0) / rms_speed)
    windowed = float(torch.rand((), generator=generator, dtype=torch.float64)) < window_prob
    if windowed:
        window = _box_window(shape, generator)  # (*S)
        rho = rho * window + rho0 * (1.0 - window)
        p = p * window + p0 * (1.0 - window)
        vel = vel * window
    return rho, vel, p


def random_batch(shape: Sequence[int], seeds: Sequence[int], mach: float, gamma: float = 5.0 / 3.0,
                 k_max: int = 4, decay: float = 0.5, window_prob: float = 0.5) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`random_state` for several seeds, stacked: ``(B, *S)``, ``(B, D, *S)``, ``(B, *S)``."""
    states = [random_state(shape, s, mach, gamma, k_max, decay, window_prob) for s in seeds]
    return tuple(torch.stack(parts) for parts in zip(*states))  # type: ignore[return-value]
