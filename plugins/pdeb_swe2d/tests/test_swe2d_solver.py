"""Physics and numerics of the shallow-water solver."""

from __future__ import annotations

import math

import pytest
import torch

from pdeb_swe2d.solver import dam_break_state, frame_times, solve


def _volume(frames: torch.Tensor, extent: float, n: int) -> torch.Tensor:
    """Water volume per frame, ``(B, T)``."""
    return frames[..., 0].sum(dim=(2, 3)) * (2 * extent / n) ** 2


def _gaussian_hump(n: int, width: float = 0.3) -> torch.Tensor:
    """Exact cell averages of h = 1 + 0.2 exp(-(x^2 + y^2) / width^2) on [-1, 1]^2, at rest."""
    edges = torch.linspace(-1, 1, n + 1, dtype=torch.float64)
    g = (torch.special.erf(edges[1:] / width) - torch.special.erf(edges[:-1] / width))
    g = g * width * math.sqrt(math.pi) / 2 / (2 / n)  # cell average of exp(-x^2 / width^2)
    h = 1 + 0.2 * g[:, None] * g[None]
    return torch.stack((h, torch.zeros_like(h), torch.zeros_like(h)), dim=-1)[None]  # (1, n, n, 3)


def test_reflective_walls_conserve_volume_to_round_off():
    extent, n = 1.0, 24
    q0 = dam_break_state(0.5, n, n, ((-extent, extent), (-extent, extent)))[None]  # (1, n, n, 3)
    out, outflow = solve(q0, frame_times(2.0, 11), extent=((-extent, extent), (-extent, extent)),
                         boundary="reflective", return_outflow=True)
    volume = _volume(out, extent, n)
    assert (out[:, -1, ..., 1:].abs().amax() > 0.05)  # the walls were hit and the water still moves
    assert (volume - volume[:, :1]).abs().max() < 1e-12 * volume[0, 0]
    assert outflow.abs().max() == 0


def test_transmissive_walls_account_for_every_drop_that_leaves():
    extent, n = 1.0, 24
    q0 = dam_break_state(0.5, n, n, ((-extent, extent), (-extent, extent)))[None]
    out, outflow = solve(q0, frame_times(2.0, 11), extent=((-extent, extent), (-extent, extent)),
                         boundary="transmissive", return_outflow=True)
    volume = _volume(out, extent, n)
    assert outflow[0, -1] > 0.05  # water left through the walls ...
    assert (volume - volume[:, :1] + outflow).abs().max() < 1e-12 * volume[0, 0]  # ... and only there


def test_pdebench_dam_break_keeps_its_water_and_positive_depth():
    radii = [0.3, 0.7]
    q0 = torch.stack([dam_break_state(r, 32, 32) for r in radii])  # (2, 32, 32, 3)
    out, outflow = solve(q0, frame_times(1.0, 11), return_outflow=True)
    volume = _volume(out, 2.5, 32)
    assert (volume - volume[:, :1] + outflow).abs().max() < 1e-12 * volume[0, 0]
    # Up to t = 1 the waves stay inside [-2.5, 2.5]^2: only the numerically smeared foot
    # of the front touches the walls, so the water lost is negligible.
    assert outflow.abs().max() < 1e-8 * volume[0, 0]
    h = out[..., 0]
    assert h.min() > 0.2 and h.max() <= 2.0 + 1e-9
    # The released column spreads: the centre drops, the surrounding pool rises.
    assert (h[:, -1, 15:17, 15:17] < 1.5).all() and (h[:, -1] > 1.0 + 1e-3).any()
    # Radial symmetry survives the dimension-by-dimension scheme.
    assert (h - h.transpose(2, 3)).abs().max() < 1e-12
    assert (h - h.flip(2)).abs().max() < 1e-12


def test_lake_at_rest_stays_at_rest():
    q0 = torch.zeros(1, 8, 8, 3, dtype=torch.float64)
    q0[..., 0] = 1.3
    for boundary in ("transmissive", "reflective"):
        assert torch.equal(solve(q0, [0.0, 0.5], boundary=boundary)[:, -1], q0)


def test_second_order_convergence_on_a_smooth_wave():
    sizes, fine = (16, 32), 128
    extent = ((-1.0, 1.0), (-1.0, 1.0))
    solutions = {n: solve(_gaussian_hump(n), [0.0, 0.2], extent=extent)[0, -1] for n in sizes + (fine,)}
    errors = []
    for n in sizes:
        r = fine // n
        restricted = solutions[fine].reshape(n, r, n, r, 3).mean(dim=(1, 3))
        errors.append(float((solutions[n] - restricted).abs().mean()))
    order = math.log2(errors[0] / errors[1])
    assert 1.8 < order < 2.6, (errors, order)


def test_deterministic_and_independent_of_the_batch():
    q0 = torch.stack([dam_break_state(r, 16, 16) for r in (0.3, 0.45, 0.7)])
    times = frame_times(0.3, 4)
    together = solve(q0, times)
    assert torch.equal(together[2:], solve(q0[2:], times))
    assert torch.equal(together, solve(q0.clone(), times))


def test_rejects_dry_cells_and_unknown_walls():
    q0 = dam_break_state(0.5, 8, 8)[None]
    with pytest.raises(ValueError, match="positive"):
        solve(q0 * 0, [0.0, 0.1])
    with pytest.raises(ValueError, match="boundary"):
        solve(q0, [0.0, 0.1], boundary="periodic")


def test_distinct_radii_give_distinct_initial_states_on_a_coarse_grid():
    """Cell averages grow continuously with the radius: no two trajectories share a first frame
    (with point samples, many radii collapsed to one state at 32x32 and test trajectories
    repeated training ones)."""
    import math

    radii = torch.linspace(0.3, 0.7, 400, dtype=torch.float64)
    frames = {dam_break_state(float(r), 32, 32)[..., 0].float().numpy().tobytes() for r in radii}
    assert len(frames) == 400
    h = dam_break_state(0.5, 64, 64)[..., 0]  # (X, Y); the default domain is 5 x 5
    excess = float((h - 1.0).sum()) * (5 / 64) ** 2
    assert math.isclose(excess, math.pi * 0.25, rel_tol=1e-3)  # the disc's area, cell by cell
