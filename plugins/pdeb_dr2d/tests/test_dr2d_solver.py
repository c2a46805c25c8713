"""Physics and numerics of the diffusion-reaction solver."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pdeb_dr2d.solver import frame_times, laplacian_neumann, random_initial_state, solve


def _noise(seeds, n, dtype=torch.float64):
    return torch.stack([random_initial_state(torch.Generator().manual_seed(s), n, n) for s in seeds]).to(dtype)


def _cell_average_cos(n: int, mode: int) -> torch.Tensor:
    """Exact cell averages of cos(mode pi (x + 1) / 2) on n cells of [-1, 1] (zero slope at the walls)."""
    edges = torch.linspace(-1, 1, n + 1, dtype=torch.float64)
    a = mode * math.pi / 2
    return (torch.sin(a * (edges[1:] + 1)) - torch.sin(a * (edges[:-1] + 1))) / (a * 2 / n)


def _smooth_state(n: int) -> torch.Tensor:
    u = 0.8 * _cell_average_cos(n, 1)[:, None] * _cell_average_cos(n, 2)[None]
    v = 0.5 * _cell_average_cos(n, 2)[:, None] * _cell_average_cos(n, 1)[None]
    return torch.stack((u, v), dim=-1)[None]  # (1, n, n, 2)


def test_zero_flux_walls_keep_the_total_of_the_laplacian_zero():
    q = torch.randn(2, 2, 12, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    lap = laplacian_neumann(q, 0.1, 0.2)
    assert lap.sum(dim=(2, 3)).abs().max() < 1e-10 * lap.abs().max()
    assert laplacian_neumann(torch.full_like(q, 3.0), 0.1, 0.2).abs().max() == 0


def test_uniform_state_follows_the_reaction_ode_at_fourth_order_in_time():
    from scipy.integrate import solve_ivp

    k = 5e-3
    q0 = torch.zeros(1, 8, 8, 2, dtype=torch.float64)
    q0[..., 0], q0[..., 1] = 1.7, -0.4
    errors = []
    for n_frames in (21, 41, 81):  # frame spacing caps the step: 0.1, 0.05, 0.025
        times = frame_times(2.0, n_frames)
        out = solve(q0, times, k=k)  # (1, T, 8, 8, 2)
        assert (out - out[:, :, :1, :1]).abs().max() == 0  # zero-flux walls: no gradients appear
        ode = solve_ivp(lambda t, y: [y[0] - y[0] ** 3 - k - y[1], y[0] - y[1]], (0, 2.0), [1.7, -0.4],
                        t_eval=times.numpy(), rtol=1e-12, atol=1e-13)
        errors.append(float(np.abs(out[0, :, 0, 0].numpy() - ode.y.T).max()))
    orders = [math.log2(errors[i] / errors[i + 1]) for i in range(2)]
    assert errors[1] < 1e-5  # the dataset's frame spacing, 0.05
    assert all(3.6 < p < 4.6 for p in orders), (errors, orders)


def test_noise_initial_state_stays_bounded():
    out = solve(_noise([1, 2], 24), frame_times(5.0, 21))  # (2, 21, 24, 24, 2)
    assert torch.isfinite(out).all()
    start = out[:, 0].abs().amax()
    assert start > 2.5  # standard-normal noise
    assert out[:, 1:].abs().amax() < start
    # The cubic damping pulls u into the FitzHugh-Nagumo range within one time unit.
    assert out[:, 4:].abs().amax() < 1.5


def test_second_order_convergence_on_a_smooth_state():
    sizes, fine = (8, 16, 32), 128
    solutions = {n: solve(_smooth_state(n), [0.0, 0.5])[0, -1] for n in sizes + (fine,)}
    errors = []
    for n in sizes:
        r = fine // n
        restricted = solutions[fine].reshape(n, r, n, r, 2).mean(dim=(1, 3))  # cell averages
        errors.append(float((solutions[n] - restricted).abs().mean()))
    orders = [math.log2(errors[i] / errors[i + 1]) for i in range(len(errors) - 1)]
    assert all(1.8 < p < 2.4 for p in orders), (errors, orders)


def test_deterministic_and_independent_of_the_batch():
    q0 = _noise([3, 4, 5], 16)
    times = frame_times(1.0, 6)
    together = solve(q0, times)
    alone = solve(q0[1:2], times)
    assert torch.equal(together[1:2], alone)
    assert torch.equal(together, solve(q0.clone(), times))


def test_rejects_bad_times():
    with pytest.raises(ValueError):
        solve(_noise([0], 8), [0.0, 0.5, 0.5])
