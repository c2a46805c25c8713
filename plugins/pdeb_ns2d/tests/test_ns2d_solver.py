"""The vorticity solver: the FNO protocol reference, determinism, physics checks."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from pdeb_ns2d.solver import fno_forcing, rich_progress, solve_vorticity, step_counts

REFERENCE = Path(__file__).parent / "data" / "ns2d_fno_protocol_reference.pt"


@pytest.fixture(scope="module")
def reference():
    return torch.load(REFERENCE, weights_only=True)


def _relative_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _smooth_field(n: int, batch: int = 2, dtype=torch.float64) -> torch.Tensor:
    """A few low modes with batch-dependent phases, (batch, n, n)."""
    x = torch.arange(n, dtype=dtype) / n
    X, Y = torch.meshgrid(x, x, indexing="ij")
    fields = [torch.sin(2 * math.pi * (X + 0.3 * b)) * torch.cos(4 * math.pi * Y)
              + 0.5 * torch.cos(2 * math.pi * (2 * X - Y + 0.1 * b)) for b in range(batch)]
    return torch.stack(fields)  # (B, n, n)


def test_reproduces_fno_protocol_reference(reference):
    assert reference["w0"].dtype == torch.float64
    forcing = fno_forcing(reference["w0"].shape[-1], torch.float64)
    assert torch.allclose(forcing, reference["forcing"], rtol=0, atol=1e-15)
    out = solve_vorticity(reference["w0"], reference["forcing"], float(reference["visc"]), float(reference["T"]),
                          float(reference["delta_t"]), int(reference["record_steps"]))
    expected = reference["solution"].permute(0, 3, 1, 2)  # (B, R, N, N)
    assert out.shape == expected.shape and out.dtype == torch.float64
    assert _relative_l2(out, expected) <= 1e-6
    for k in range(expected.shape[1]):  # every recorded time, not only the whole record
        assert _relative_l2(out[:, k], expected[:, k]) <= 1e-6


def test_if_rk3_scheme_agrees_with_protocol_at_larger_steps(reference):
    out = solve_vorticity(reference["w0"], reference["forcing"], float(reference["visc"]), float(reference["T"]),
                          1e-2, int(reference["record_steps"]), scheme="if-rk3")
    expected = reference["solution"].permute(0, 3, 1, 2)
    # The protocol scheme's own time error at its step is ~3e-5 here; forward Euler at 1e-2 is ~3e-4.
    assert _relative_l2(out, expected) < 1e-4


def test_deterministic_and_keeps_dtype_and_device():
    w0 = _smooth_field(16, dtype=torch.float32)
    forcing = fno_forcing(16, torch.float32)
    first = solve_vorticity(w0, forcing, 1e-3, 1.0, 1e-2, 2)
    second = solve_vorticity(w0.clone(), forcing.clone(), 1e-3, 1.0, 1e-2, 2)
    assert first.dtype == torch.float32 and first.shape == (2, 2, 16, 16)
    assert torch.equal(first, second)
    single = solve_vorticity(w0[1], forcing, 1e-3, 1.0, 1e-2, 2)  # unbatched input
    assert single.shape == (2, 16, 16)
    assert torch.equal(single, first[1])  # alone or in a batch: the same numbers


def test_keep_every_subsamples_the_recorded_grid():
    w0, forcing = _smooth_field(32), fno_forcing(32, torch.float64)
    full = solve_vorticity(w0, forcing, 1e-3, 0.5, 1e-2, 2)
    kept = solve_vorticity(w0, forcing, 1e-3, 0.5, 1e-2, 2, keep_every=4)
    assert kept.shape == (2, 2, 8, 8)
    assert torch.equal(kept, full[..., ::4, ::4])


def test_single_mode_decays_at_the_viscous_rate():
    # One Fourier shell is a steady solution of the Euler equations (u . grad w = 0), so
    # without forcing it only decays: exp(-nu |2 pi k|^2 t).
    n, nu, T = 32, 1e-2, 1.0
    x = torch.arange(n, dtype=torch.float64) / n
    X, Y = torch.meshgrid(x, x, indexing="ij")
    w0 = torch.sin(2 * math.pi * (3 * X + 4 * Y))[None]  # |k| = 5
    exact = w0 * math.exp(-nu * (2 * math.pi * 5) ** 2 * T)
    zero = torch.zeros(n, n, dtype=torch.float64)
    rk3 = solve_vorticity(w0, zero, nu, T, 1e-2, 1, scheme="if-rk3")[:, -1]
    assert _relative_l2(rk3, exact) < 1e-12  # the integrating factor is exact for linear decay
    cn = solve_vorticity(w0, zero, nu, T, 1e-3, 1)[:, -1]
    a = 0.5 * 1e-3 * nu * (2 * math.pi * 5) ** 2
    assert _relative_l2(cn, w0 * ((1 - a) / (1 + a)) ** 1000) < 1e-12  # Crank-Nicolson amplification
    assert _relative_l2(cn, exact) < 1e-4


@pytest.mark.parametrize("scheme", ["cn-euler", "if-rk3"])
def test_unforced_energy_and_enstrophy_decay_at_the_rates_viscosity_sets(scheme):
    # With dealiasing the advection term conserves both energy E = <|u|^2>/2 and enstrophy
    # Z = <w^2>/2, so without forcing dE/dt = -2 nu Z and dZ/dt = -2 nu P, P = <|grad w|^2>/2.
    n, nu, frames = 32, 2e-3, 10
    w0 = 3.0 * _smooth_field(n, batch=1)
    w0 = w0 + 0.2 * torch.sin(2 * math.pi * (5 * torch.arange(n) / n))[None, :, None]
    zero = torch.zeros(n, n, dtype=torch.float64)
    w = torch.cat([w0[:, None], solve_vorticity(w0, zero, nu, 1.0, 1e-3, frames, scheme=scheme)], dim=1)[0]

    k = torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64)
    k_sq = 4 * math.pi**2 * (k[:, None] ** 2 + k[None, :] ** 2)  # (n, n) |2 pi k|^2
    power = torch.fft.fft2(w).abs() ** 2 / n**4  # (frames + 1, n, n) per-mode <|w_k|^2>
    inverse = torch.where(k_sq > 0, 1 / k_sq.clamp_min(1e-30), torch.zeros_like(k_sq))
    energy = 0.5 * (power * inverse).sum((-2, -1))
    enstrophy = 0.5 * power.sum((-2, -1))
    palinstrophy = 0.5 * (power * k_sq).sum((-2, -1))
    assert torch.all(energy[1:] < energy[:-1]) and torch.all(enstrophy[1:] < enstrophy[:-1])

    dt = 1.0 / frames
    for quantity, dissipation in ((energy, enstrophy), (enstrophy, palinstrophy)):
        rate = (quantity[1:] - quantity[:-1]) / dt  # centred at the midpoints
        predicted = -2 * nu * 0.5 * (dissipation[1:] + dissipation[:-1])
        assert torch.allclose(rate, predicted, rtol=5e-3)  # measured ~1e-3; a 10% error in nu gives 10%


def test_if_rk3_shortens_steps_per_trajectory_where_the_flow_is_fast():
    n = 32
    calm = 0.5 * _smooth_field(n, batch=1)
    fast = 40.0 * _smooth_field(n, batch=1)  # velocities that a step of 0.5 would blow up on
    forcing = fno_forcing(n, torch.float64)
    alone = solve_vorticity(calm, forcing, 1e-3, 2.0, 0.5, 2, scheme="if-rk3")
    together = solve_vorticity(torch.cat([calm, fast]), forcing, 1e-3, 2.0, 0.5, 2, scheme="if-rk3")
    # A trajectory takes its own steps: its result does not depend on its batch mates, to the bit.
    assert torch.equal(together[:1], alone)
    assert torch.isfinite(together).all()
    fine = solve_vorticity(fast, forcing, 1e-3, 2.0, 1e-3, 2, scheme="if-rk3")
    assert _relative_l2(together[1:], fine) < 1e-3


def _count_transformed_fields(monkeypatch) -> list:
    """Count the fields that go through ``rfft2`` (one per trajectory and Runge-Kutta stage)."""
    counted = []
    rfft2 = torch.fft.rfft2

    def counting(x, *args, **kwargs):
        counted.append(x.shape[0] if x.dim() == 3 else 1)
        return rfft2(x, *args, **kwargs)

    monkeypatch.setattr(torch.fft, "rfft2", counting)
    return counted


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_if_rk3_retires_finished_trajectories_with_the_same_numbers(monkeypatch, dtype):
    n = 32
    # One calm trajectory and three whose flows need ever more steps per frame.
    w0 = torch.cat([scale * _smooth_field(n, batch=1, dtype=dtype) for scale in (0.5, 10.0, 20.0, 40.0)])
    forcing = fno_forcing(n, dtype)
    counted = _count_transformed_fields(monkeypatch)
    lockstep = solve_vorticity(w0, forcing, 1e-3, 2.0, 0.5, 2, scheme="if-rk3", lockstep=True)
    lockstep_work, counted[:] = sum(counted), []
    retiring = solve_vorticity(w0, forcing, 1e-3, 2.0, 0.5, 2, scheme="if-rk3")
    assert torch.equal(retiring, lockstep)
    # The batch no longer costs its size times its most demanding member.
    assert sum(counted) < 0.7 * lockstep_work
    for chunk in (1, 3):  # trajectories stepped together, a few at a time: the same numbers
        assert torch.equal(solve_vorticity(w0, forcing, 1e-3, 2.0, 0.5, 2, scheme="if-rk3", chunk=chunk), retiring)
    for i in range(4):  # and each trajectory is what it is alone
        assert torch.equal(solve_vorticity(w0[i], forcing, 1e-3, 2.0, 0.5, 2, scheme="if-rk3"), retiring[i])


def test_if_rk3_takes_long_steps_through_stiff_viscosity():
    # nu |2 pi k|^2 h reaches ~1e3 here: integrating factors that grow would overflow.
    from pdeb_ns2d.grf import gaussian_random_field

    w0 = gaussian_random_field(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float32)
    forcing = fno_forcing(64, torch.float32)
    long_steps = solve_vorticity(w0, forcing, 0.05, 1.0, 0.5, 2, scheme="if-rk3")
    short_steps = solve_vorticity(w0, forcing, 0.05, 1.0, 0.01, 2, scheme="if-rk3")
    assert torch.isfinite(long_steps).all()
    assert _relative_l2(long_steps, short_steps) < 1e-4


def test_step_counts_tolerate_rounding_and_refuse_too_few_steps():
    assert step_counts(50.0, 1e-4, 50) == (10000, 500000)
    assert step_counts(2.0, 1e-3, 4) == (500, 2000)
    assert step_counts(1.0, 0.3, 1) == (4, 4)  # ceil, as the protocol's generator does
    with pytest.raises(ValueError):
        step_counts(1.0, 0.5, 4)


def test_progress_callback_reports_every_record_and_accumulates():
    w0, forcing = _smooth_field(8), fno_forcing(8, torch.float64)
    calls = []
    solve_vorticity(w0, forcing, 1e-3, 1.0, 0.05, 4, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    with rich_progress("off", 40, enabled=False) as callback:
        assert callback is None
