"""Exact solutions of the periodic 1D heat equation: the solver of ``heat1d``."""

from __future__ import annotations

import math
from typing import Any

import torch

from pdebench_core.data.generation import SolverBatch
from pdebench_core.spec import DataSpec


def solve(u0: torch.Tensor, diffusivity: float, dt: float, n_frames: int) -> torch.Tensor:
    """Evolve ``u0`` ``(B, X)`` exactly: each Fourier mode decays as ``exp(-kappa k^2 t)``.

    Returns:
        ``(B, n_frames, X)``, frame 0 being ``u0``.
    """
    x_points = u0.shape[-1]
    k = 2 * math.pi * torch.fft.rfftfreq(x_points, d=1.0 / x_points, dtype=torch.float64)
    times = dt * torch.arange(n_frames, dtype=torch.float64)
    decay = torch.exp(-diffusivity * k[None, :] ** 2 * times[:, None])  # (T, K)
    u_hat = torch.fft.rfft(u0.double(), dim=-1)  # (B, K)
    return torch.fft.irfft(u_hat[:, None, :] * decay, n=x_points, dim=-1)  # (B, T, X)


def random_initial(x_points: int, n_modes: int, seed: int) -> torch.Tensor:
    """One random smooth periodic field ``(X,)``: sine and cosine modes with decaying amplitude."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.arange(x_points, dtype=torch.float64) / x_points
    u = torch.zeros(x_points, dtype=torch.float64)
    for k in range(1, n_modes + 1):
        a, b = torch.randn(2, generator=gen, dtype=torch.float64) / k
        u += a * torch.sin(2 * math.pi * k * x) + b * torch.cos(2 * math.pi * k * x)
    return u


def solve_trajectories(cfg: Any, batch: SolverBatch) -> torch.Tensor:
    """The trajectories of one batch: each draws its initial field from its own seed.

    Returns:
        float32 ``(len(batch), n_frames, resolution, 1)``.
    """
    u0 = torch.stack([random_initial(int(cfg.resolution), int(cfg.n_modes), seed) for seed in batch.seeds])
    frames = solve(u0, float(cfg.diffusivity), float(cfg.dt), int(cfg.n_frames))  # (b, T, X)
    batch.advance(len(batch) * (int(cfg.n_frames) - 1))
    return frames.float()[..., None]


def heat_spec(cfg: Any) -> DataSpec:
    """What generated ``heat1d`` data holds with these settings."""
    return DataSpec(name="heat1d", fields=("u",), spatial_shape=(int(cfg.resolution),), dt=float(cfg.dt),
                    domain=((0.0, 1.0),), boundary="periodic", params={"diffusivity": float(cfg.diffusivity)},
                    n_frames=int(cfg.n_frames))
