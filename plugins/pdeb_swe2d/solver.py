"""Batched second-order finite-volume solver for the 2D shallow-water equations.

Conserved state ``q = (h, hu, hv)`` on a rectangle of square-ish cells::

    h_t  + (hu)_x             + (hv)_y             = 0
    hu_t + (hu^2 + g h^2/2)_x + (hu hv)_y          = 0
    hv_t + (hu hv)_x          + (hv^2 + g h^2/2)_y = 0

Space: MUSCL reconstruction of the primitive variables ``(h, u, v)`` with the
monotonised-central (MC) limiter, HLL fluxes with Davis wave-speed bounds, unsplit
(x and y fluxes added). Time: Heun's method (two-stage SSP Runge-Kutta), step from
the CFL condition of each trajectory's own state, shortened to land on every
stored frame. Walls are ``"transmissive"`` (zero-gradient ghost cells: waves
leave, as PDEBench's Clawpack set-up) or ``"reflective"`` (mirrored ghost cells
with the normal momentum negated: water volume is conserved to round-off).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from pdebench_core.data.stepping import frame_times, march  # noqa: F401 (frame_times is re-exported)

BOUNDARIES = ("transmissive", "reflective")
GHOST = 2  # ghost cells per side needed by the MUSCL stencil


def _pad_axis(q: torch.Tensor, axis: int, boundary: str) -> torch.Tensor:
    """Add ``GHOST`` ghost cells on both ends of spatial ``axis`` (2 = x, 3 = y).

    Args:
        q: Conserved state ``(B, 3, X, Y)``.
        axis: Tensor dimension to pad.
        boundary: ``"transmissive"`` or ``"reflective"``.
    """
    n = q.shape[axis]
    first, last = q.narrow(axis, 0, 1), q.narrow(axis, n - 1, 1)
    if boundary == "transmissive":
        lo = torch.cat([first] * GHOST, dim=axis)
        hi = torch.cat([last] * GHOST, dim=axis)
    else:
        # Mirror image of the cells next to the wall; the wall-normal momentum flips sign.
        lo = q.narrow(axis, 0, GHOST).flip(axis)
        hi = q.narrow(axis, n - GHOST, GHOST).flip(axis)
        sign = torch.ones(1, 3, 1, 1, dtype=q.dtype, device=q.device)
        sign[0, axis - 1] = -1  # axis 2 (x) -> hu is channel 1; axis 3 (y) -> hv is channel 2
        lo, hi = lo * sign, hi * sign
    return torch.cat((lo, q, hi), dim=axis)


def _mc_slope(w: torch.Tensor, axis: int) -> torch.Tensor:
    """Monotonised-central limited slope of every cell but the outermost ones along ``axis``."""
    n = w.shape[axis]
    forward = w.narrow(axis, 2, n - 2) - w.narrow(axis, 1, n - 2)
    backward = w.narrow(axis, 1, n - 2) - w.narrow(axis, 0, n - 2)
    central = 0.5 * (forward + backward)
    magnitude = torch.minimum(torch.minimum(2 * forward.abs(), 2 * backward.abs()), central.abs())
    same_sign = (forward * backward) > 0
    return torch.where(same_sign, torch.sign(central) * magnitude, torch.zeros_like(central))


class ShallowWater2D:
    """Semi-discrete shallow-water operator ``dq/dt = L(q)`` on a uniform grid.

    Args:
        gravity: Gravitational acceleration ``g``.
        dx: Cell width along ``x``.
        dy: Cell width along ``y``.
        boundary: ``"transmissive"`` or ``"reflective"`` on all four walls.
        cfl: Courant number of the unsplit step, ``dt * (max(|u|+c)/dx + max(|v|+c)/dy)``.
    """

    def __init__(self, gravity: float, dx: float, dy: float, boundary: str = "transmissive",
                 cfl: float = 0.4) -> None:
        if boundary not in BOUNDARIES:
            raise ValueError(f"boundary must be one of {BOUNDARIES}, got '{boundary}'")
        if not 0 < cfl <= 0.5:
            raise ValueError(f"cfl must be in (0, 0.5] for the MUSCL scheme, got {cfl}")
        self.g, self.dx, self.dy, self.boundary, self.cfl = gravity, dx, dy, boundary, cfl

    def _face_flux(self, q: torch.Tensor, axis: int) -> torch.Tensor:
        """HLL fluxes through every face normal to ``axis`` (interior and walls).

        Returns:
            ``(B, 3, X+1, Y)`` for ``axis == 2`` or ``(B, 3, X, Y+1)`` for ``axis == 3``.
        """
        padded = _pad_axis(q, axis, self.boundary)  # (B, 3, X+4, Y) or (B, 3, X, Y+4)
        h = padded[:, 0:1]
        w = torch.cat((h, padded[:, 1:] / h), dim=1)  # primitive (h, u, v)
        slope = _mc_slope(w, axis)  # cells 1 .. n+2 of the padded axis
        centre = w.narrow(axis, 1, w.shape[axis] - 2)
        n_faces = q.shape[axis] + 1
        left = (centre + 0.5 * slope).narrow(axis, 0, n_faces)  # state left of each face
        right = (centre - 0.5 * slope).narrow(axis, 1, n_faces)  # state right of each face
        return self._hll(left, right, normal=axis - 1)

    def _hll(self, left: torch.Tensor, right: torch.Tensor, normal: int) -> torch.Tensor:
        """HLL flux between primitive states ``(h, u, v)`` ``(B, 3, ...)``; ``normal`` is 1 (x) or 2 (y)."""
        h_l, h_r = left[:, :1], right[:, :1]  # (B, 1, ...)
        un_l, un_r = left[:, normal:normal + 1], right[:, normal:normal + 1]
        c_l, c_r = torch.sqrt(self.g * h_l), torch.sqrt(self.g * h_r)
        s_l = torch.minimum(un_l - c_l, un_r - c_r).clamp(max=0)  # Davis bounds, clipped so the
        s_r = torch.maximum(un_l + c_l, un_r + c_r).clamp(min=0)  # formula also covers upwind cases
        cons_l = torch.cat((h_l, h_l * left[:, 1:]), dim=1)  # (B, 3, ...) = (h, hu, hv)
        cons_r = torch.cat((h_r, h_r * right[:, 1:]), dim=1)
        flux_l, flux_r = un_l * cons_l, un_r * cons_r  # advective part of the normal flux
        flux_l[:, normal] += 0.5 * self.g * h_l[:, 0] ** 2  # hydrostatic pressure
        flux_r[:, normal] += 0.5 * self.g * h_r[:, 0] ** 2
        return (s_r * flux_l - s_l * flux_r + s_l * s_r * (cons_r - cons_l)) / (s_r - s_l)

    def rhs(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Time derivative of ``q`` ``(B, 3, X, Y)`` and the volume leaving per unit time ``(B,)``."""
        fx = self._face_flux(q, axis=2)  # (B, 3, X+1, Y)
        fy = self._face_flux(q, axis=3)  # (B, 3, X, Y+1)
        dq = -(fx[:, :, 1:] - fx[:, :, :-1]) / self.dx - (fy[:, :, :, 1:] - fy[:, :, :, :-1]) / self.dy
        outflow = (
            (fx[:, 0, -1].sum(-1) - fx[:, 0, 0].sum(-1)) * self.dy
            + (fy[:, 0, :, -1].sum(-1) - fy[:, 0, :, 0].sum(-1)) * self.dx
        )  # (B,)
        return dq, outflow

    def stable_dt(self, q: torch.Tensor) -> torch.Tensor:
        """CFL time step per trajectory, ``(B,)`` in float64."""
        h = q[:, 0].double()
        c = torch.sqrt(self.g * h)
        sx = (q[:, 1].double() / h).abs() + c  # (B, X, Y)
        sy = (q[:, 2].double() / h).abs() + c
        rate = (sx / self.dx + sy / self.dy).flatten(1).amax(dim=1)  # (B,)
        return self.cfl / rate

    def heun_step(self, q: torch.Tensor, dt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One two-stage SSP Runge-Kutta step; returns the new state and the volume that left."""
        h = dt.to(q.dtype).view(-1, 1, 1, 1)  # (B, 1, 1, 1)
        k1, out1 = self.rhs(q)
        stage = q + h * k1
        k2, out2 = self.rhs(stage)
        new = 0.5 * (q + stage + h * k2)
        return new, 0.5 * dt * (out1.double() + out2.double())


def solve(
    q0: torch.Tensor,
    times: torch.Tensor | list[float],
    gravity: float = 1.0,
    extent: tuple[tuple[float, float], tuple[float, float]] = ((-2.5, 2.5), (-2.5, 2.5)),
    boundary: str = "transmissive",
    cfl: float = 0.4,
    on_frame: Optional[Callable[[int], None]] = None,
    return_outflow: bool = False,
):
    """Integrate a batch of shallow-water states and return the requested frames.

    Args:
        q0: Initial conserved state ``(B, X, Y, 3)`` = ``(h, hu, hv)``; its dtype and device
            are used throughout. ``h`` must be positive.
        times: Increasing output times starting at 0.
        gravity: Gravitational acceleration ``g``.
        extent: ``((x_min, x_max), (y_min, y_max))``.
        boundary: ``"transmissive"`` or ``"reflective"``.
        cfl: Courant number (at most 0.5).
        on_frame: Called with the frame index after each stored frame.
        return_outflow: Also return the cumulative volume that left through the walls,
            ``(B, T)`` in float64.

    Returns:
        Frames ``(B, T, X, Y, 3)``, plus the outflow when asked.
    """
    if not bool((q0[..., 0] > 0).all()):
        raise ValueError("the water depth h must be positive everywhere")
    batch, nx, ny, _ = q0.shape
    (x0, x1), (y0, y1) = extent
    system = ShallowWater2D(gravity, (x1 - x0) / nx, (y1 - y0) / ny, boundary, cfl)

    def step(state: tuple[torch.Tensor, torch.Tensor], dt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q, volume_out = system.heun_step(state[0], dt)
        return q, state[1] + volume_out  # the volume that left so far rides along

    def check(state: tuple[torch.Tensor, torch.Tensor], t: float) -> None:
        q = state[0]
        if not bool(torch.isfinite(q).all()) or not bool((q[:, 0] > 0).all()):
            raise FloatingPointError(f"shallow-water solver lost positivity or diverged before t={t:g}")

    start = (q0.permute(0, 3, 1, 2).contiguous(), torch.zeros(batch, dtype=torch.float64, device=q0.device))
    frames = march(start, times, lambda state: system.stable_dt(state[0]), step, check, on_frame)
    out = torch.stack([q for q, _ in frames], dim=1).permute(0, 1, 3, 4, 2)  # (B, T, X, Y, 3)
    if return_outflow:
        return out, torch.stack([left for _, left in frames], dim=1)  # (B, T, X, Y, 3), (B, T)
    return out


def cell_centres(n: int, lo: float, hi: float) -> torch.Tensor:
    """Centres of ``n`` equal cells on ``[lo, hi]`` (float64)."""
    h = (hi - lo) / n
    return lo + h * (torch.arange(n, dtype=torch.float64) + 0.5)


def _disc_cover(radius: float, n_sampled: int, n_exact: int, sampled: tuple[float, float],
                exact: tuple[float, float], subsamples: int) -> torch.Tensor:
    """Fraction of each cell inside the centred disc: averaged over ``subsamples`` lines along
    the first axis, exact along the second. ``(n_sampled, n_exact)``."""
    lo, hi = sampled
    x = cell_centres(n_sampled * subsamples, lo, hi) - 0.5 * (lo + hi)  # line positions
    lo_e, hi_e = exact
    d = (hi_e - lo_e) / n_exact
    lower = lo_e - 0.5 * (lo_e + hi_e) + d * torch.arange(n_exact, dtype=torch.float64)  # lower cell edges
    half = torch.sqrt(torch.clamp(radius**2 - x**2, min=0.0))  # half chord of the disc on each line
    top = torch.minimum(lower[None, :] + d, half[:, None])
    bottom = torch.maximum(lower[None, :], -half[:, None])
    return (torch.clamp(top - bottom, min=0.0) / d).reshape(n_sampled, subsamples, n_exact).mean(dim=1)


def dam_break_state(radius: float, nx: int, ny: int,
                    extent: tuple[tuple[float, float], tuple[float, float]] = ((-2.5, 2.5), (-2.5, 2.5)),
                    inner_height: float = 2.0, outer_height: float = 1.0, subsamples: int = 16) -> torch.Tensor:
    """Radial dam break at rest: depth ``inner_height`` where ``r <= radius``, else ``outer_height``.

    The disc is centred on the domain centre. Each cell gets the cell average of the depth,
    as a finite-volume state should: the covered fraction is exact along one axis and
    averaged over ``subsamples`` lines along the other, taken both ways round and averaged
    so the state keeps the disc's symmetry. It grows continuously with the radius, so distinct
    radii give distinct initial states on any grid. (PDEBench samples only the cell centre;
    on coarse grids that maps many radii to one initial state, which would repeat trajectories
    across splits.)

    Returns:
        ``(X, Y, 3)`` float64 conserved state ``(h, hu, hv)``.
    """
    (x0, x1), (y0, y1) = extent
    covered = 0.5 * (_disc_cover(radius, nx, ny, (x0, x1), (y0, y1), subsamples)
                     + _disc_cover(radius, ny, nx, (y0, y1), (x0, x1), subsamples).T)  # (X, Y)
    h = outer_height + (inner_height - outer_height) * covered
    return torch.stack((h, torch.zeros_like(h), torch.zeros_like(h)), dim=-1)  # (X, Y, 3)
