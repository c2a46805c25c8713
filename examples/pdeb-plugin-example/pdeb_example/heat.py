"""Exact solutions of the periodic 1D heat equation."""

from __future__ import annotations

import math

import torch

from pdebench_core.data import TrajectoryDataset, open_canonical
from pdebench_core.data.cache import cached_generate
from pdebench_core.data.generation import read_published
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


def random_initial(n: int, x_points: int, n_modes: int, seed: int) -> torch.Tensor:
    """Random smooth periodic fields: a few sine and cosine modes with decaying amplitude."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.arange(x_points, dtype=torch.float64) / x_points
    u = torch.zeros(n, x_points, dtype=torch.float64)
    for k in range(1, n_modes + 1):
        a, b = torch.randn(2, n, 1, generator=gen, dtype=torch.float64) / k
        u += a * torch.sin(2 * math.pi * k * x) + b * torch.cos(2 * math.pi * k * x)
    return u


def build_dataset(cfg) -> TrajectoryDataset:
    """Read ``data.heat1d.path`` when given; otherwise generate once, cache as canonical HDF5, read lazily."""
    spec = DataSpec(name="heat1d", fields=("u",), spatial_shape=(cfg.resolution,), t_in=cfg.t_in,
                    dt=cfg.dt, domain=((0.0, 1.0),), boundary="periodic",
                    params={"diffusivity": cfg.diffusivity}, horizon=cfg.horizon, n_frames=cfg.n_frames)
    if cfg.path:
        # A published or converted file: the core's readers handle every layout pdeb knows.
        return read_published(cfg, "heat1d", spec)
    counts = {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test}
    key = {"resolution": cfg.resolution, "diffusivity": cfg.diffusivity, "n_frames": cfg.n_frames, "dt": cfg.dt,
           "n_modes": cfg.n_modes, "seed": cfg.seed, **counts}

    def generate():
        splits = {}
        for offset, (split, n) in enumerate(counts.items()):
            u0 = random_initial(n, cfg.resolution, cfg.n_modes, seed=cfg.seed * 3 + offset)
            splits[split] = solve(u0, cfg.diffusivity, cfg.dt, cfg.n_frames).float()[..., None]  # (N, T, X, 1)
        return splits, spec, {"generator": "pdeb_example.heat", "seed": cfg.seed}

    path = cached_generate("heat1d", key, generate)
    stored, trajectories = open_canonical(path, preload=cfg.preload)
    return TrajectoryDataset(stored.replace(t_in=cfg.t_in, horizon=cfg.horizon), trajectories)
