"""Physics and numerics of the Burgers solver."""

from __future__ import annotations

import math

import torch

from pdeb_burgers1d.solver import ViscousBurgers1D, cell_centres, frame_times, random_initial_condition, solve


def _random_batch(seeds, n):
    x = cell_centres(n)
    return torch.stack([random_initial_condition(torch.Generator().manual_seed(s), x) for s in seeds])


def _smooth_average(n: int) -> torch.Tensor:
    """Exact cell averages of 0.5 sin(2 pi x) + 0.3 cos(4 pi x) on n cells of [0, 1]."""
    edges = torch.linspace(0, 1, n + 1, dtype=torch.float64)

    def antiderivative(x):
        return -0.5 * torch.cos(2 * math.pi * x) / (2 * math.pi) + 0.3 * torch.sin(4 * math.pi * x) / (4 * math.pi)

    return ((antiderivative(edges[1:]) - antiderivative(edges[:-1])) * n)[None]  # (1, n)


def test_energy_decays_and_mass_is_conserved():
    u0 = _random_batch(range(6), 128)
    out = solve(u0, frame_times(2.0, 41), nu=0.01)  # (6, 41, 128); fronts steepen into shocks
    energy = (out**2).mean(dim=-1)  # (6, 41)
    assert (energy.diff(dim=1) <= 0).all()
    assert (energy[:, -1] < 0.8 * energy[:, 0]).all()
    mean = out.mean(dim=-1)
    assert (mean - mean[:, :1]).abs().max() < 1e-13


def test_riemann_problem_has_the_entropy_solution():
    # u = 1 on (0, 1/2), 0 elsewhere: a rarefaction fan from x = 0 and a shock at speed 1/2.
    n, t = 400, 0.3
    x = cell_centres(n)
    u0 = (x < 0.5).double()[None]
    u = solve(u0, [0.0, t], nu=0.0)[0, -1]
    exact = torch.where(x < t, x / t, torch.where(x < 0.5 + t / 2, torch.ones_like(x), torch.zeros_like(x)))
    assert (u - exact).abs().mean() < 5e-3


def test_exact_viscous_step_matches_the_three_point_laplacian():
    system = ViscousBurgers1D(nu=0.05, dx=1 / 64)
    u = _random_batch([7, 8], 64)
    dt = torch.tensor([1e-3, 0.0], dtype=torch.float64)
    smoothed = system.diffuse(u, dt)
    # It agrees with a fine RK4 integration of du/dt = viscosity(u) ...
    v, h = u[:1].clone(), float(dt[0]) / 20
    for _ in range(20):
        k1 = system.viscosity(v)
        k2 = system.viscosity(v + h / 2 * k1)
        k3 = system.viscosity(v + h / 2 * k2)
        k4 = system.viscosity(v + h * k3)
        v = v + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    assert (smoothed[:1] - v).abs().max() < 1e-10
    assert (smoothed[:1] - u[:1]).abs().max() > 1e-3  # and it did smooth
    # ... a zero step leaves the state untouched, bit for bit ...
    assert torch.equal(smoothed[1], u[1])
    # ... and a discrete Fourier mode decays at its eigenvalue.
    mode = torch.sin(2 * math.pi * 3 * cell_centres(64))[None]
    rate = 4 * system.kappa / system.dx**2 * math.sin(math.pi * 3 / 64) ** 2
    decayed = system.diffuse(mode, torch.tensor([0.2], dtype=torch.float64))
    assert torch.allclose(decayed, mode * math.exp(-rate * 0.2), atol=1e-13)


def test_second_order_convergence_on_a_smooth_solution():
    sizes, fine = (64, 128), 1024
    solutions = {n: solve(_smooth_average(n), [0.0, 0.3], nu=0.1)[0, -1] for n in sizes + (fine,)}
    errors = [float((solutions[n] - solutions[fine].reshape(n, fine // n).mean(dim=1)).abs().mean())
              for n in sizes]
    order = math.log2(errors[0] / errors[1])
    assert 1.8 < order < 2.3, (errors, order)


def test_deterministic_and_independent_of_the_batch():
    u0 = _random_batch([11, 12, 13], 64)
    times = frame_times(0.5, 6)
    together = solve(u0, times)
    assert torch.equal(together[:1], solve(u0[:1], times))
    assert torch.equal(together, solve(u0.clone(), times))


def test_random_initial_conditions_follow_pdebench_recipe():
    x = cell_centres(256)
    first = random_initial_condition(torch.Generator().manual_seed(3), x)
    assert torch.equal(first, random_initial_condition(torch.Generator().manual_seed(3), x))
    batch = _random_batch(range(200), 256)
    assert batch.abs().amax() <= 2.0  # at most two unit-amplitude modes
    # Periodic: the jump across x = 0 is no larger than between neighbours.
    wrap = (batch[:, 0] - batch[:, -1]).abs()
    inner = (batch[:, 1:] - batch[:, :-1]).abs().amax(dim=1)
    assert (wrap <= inner + 1e-12).all()
    # Some are non-negative or non-positive throughout (abs + random sign), most change sign.
    one_signed = ((batch >= 0).all(dim=1) | (batch <= 0).all(dim=1)).float().mean()
    assert 0.02 < one_signed < 0.3
