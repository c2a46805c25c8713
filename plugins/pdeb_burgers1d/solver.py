"""Batched second-order finite-volume solver for the 1D viscous Burgers equation.

PDEBench's form on a periodic interval::

    u_t + (u^2 / 2)_x = (nu / pi) u_xx

Space: cell averages; MUSCL reconstruction with the monotonised-central (MC) limiter
and the exact Godunov flux of the convex flux ``u^2/2`` (entropy-satisfying at
sonic points); the viscous term is the standard second-order three-point
difference. Time: Strang splitting. The viscous half-steps are integrated exactly
(the periodic three-point Laplacian is diagonal in Fourier space), so viscosity
puts no limit on the step; the convective step is three-stage SSP Runge-Kutta
(Shu-Osher) under the advective CFL condition of each trajectory's own state,
shortened to land on every stored frame.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from pdebench_core.data.stepping import frame_times, march  # noqa: F401 (frame_times is re-exported)


def _mc_slope(w: torch.Tensor) -> torch.Tensor:
    """MC-limited slopes of the cells ``1 .. n-2`` of ``w`` ``(B, n)``."""
    forward = w[:, 2:] - w[:, 1:-1]
    backward = w[:, 1:-1] - w[:, :-2]
    central = 0.5 * (forward + backward)
    magnitude = torch.minimum(torch.minimum(2 * forward.abs(), 2 * backward.abs()), central.abs())
    return torch.where(forward * backward > 0, torch.sign(central) * magnitude, torch.zeros_like(central))


class ViscousBurgers1D:
    """Semi-discrete periodic Burgers operator ``du/dt = L(u)``.

    Args:
        nu: PDEBench's viscosity parameter; the diffusion coefficient is ``nu / pi``.
        dx: Cell width.
        cfl: Courant number ``dt * max|u| / dx`` of the convective step (at most 0.5,
            where the MUSCL scheme stays total-variation diminishing).
    """

    def __init__(self, nu: float, dx: float, cfl: float = 0.4) -> None:
        if nu < 0:
            raise ValueError(f"nu must be non-negative, got {nu}")
        if not 0 < cfl <= 0.5:
            raise ValueError(f"cfl must be in (0, 0.5], got {cfl}")
        self.kappa = nu / math.pi
        self.dx, self.cfl = dx, cfl

    def convection(self, u: torch.Tensor) -> torch.Tensor:
        """Convective time derivative ``-(u^2/2)_x`` of the cell averages ``u`` ``(B, N)``."""
        padded = torch.cat((u[:, -2:], u, u[:, :2]), dim=1)  # (B, N+4) periodic ghosts
        centre = padded[:, 1:-1]  # (B, N+2)
        slope = _mc_slope(padded)  # (B, N+2)
        left = (centre + 0.5 * slope)[:, :-1]  # (B, N+1) state left of faces -1/2 .. N-1/2
        right = (centre - 0.5 * slope)[:, 1:]  # (B, N+1) state right of those faces
        # Godunov flux of the convex flux f(u) = u^2/2.
        flux = 0.5 * torch.maximum(left.clamp(min=0) ** 2, right.clamp(max=0) ** 2)  # (B, N+1)
        return -(flux[:, 1:] - flux[:, :-1]) / self.dx  # (B, N)

    def viscosity(self, u: torch.Tensor) -> torch.Tensor:
        """Viscous time derivative ``kappa (u[i+1] - 2u[i] + u[i-1]) / dx^2`` ``(B, N)``."""
        return self.kappa * (u.roll(-1, dims=1) - 2 * u + u.roll(1, dims=1)) / self.dx**2

    def diffuse(self, u: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        """Exact solution of ``du/dt = viscosity(u)`` after ``dt`` ``(B,)``.

        A zero step returns ``u`` bit for bit (the FFT round trip's round-off is
        discarded), so a trajectory that has reached its frame is not perturbed by its batch.
        """
        n = u.shape[1]
        k = torch.arange(n // 2 + 1, device=u.device, dtype=torch.float64)
        symbol = -4 * self.kappa / self.dx**2 * torch.sin(torch.pi * k / n) ** 2  # (N/2+1,) eigenvalues
        decay = torch.exp(symbol[None] * dt[:, None])  # (B, N/2+1)
        spectrum = torch.fft.rfft(u, dim=1) * decay.to(u.dtype)  # (B, N/2+1)
        smoothed = torch.fft.irfft(spectrum, n=n, dim=1)  # (B, N)
        return torch.where((dt > 0)[:, None], smoothed, u)

    def stable_dt(self, u: torch.Tensor) -> torch.Tensor:
        """Convective CFL time step per trajectory, ``(B,)`` in float64."""
        speed = u.double().abs().amax(dim=1)  # (B,)
        return self.cfl * self.dx / (speed + 1e-12)

    def step(self, u: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        """One Strang step: half viscosity, SSP-RK3 convection, half viscosity.

        Args:
            u: Cell averages ``(B, N)``.
            dt: Step per trajectory ``(B,)`` in float64; a zero step leaves ``u`` unchanged.
        """
        h = dt.to(u.dtype).unsqueeze(1)  # (B, 1)
        v = self.diffuse(u, 0.5 * dt)
        v1 = v + h * self.convection(v)
        v2 = 0.75 * v + 0.25 * (v1 + h * self.convection(v1))
        v = v / 3 + 2 / 3 * (v2 + h * self.convection(v2))
        # The Shu-Osher weights do not reproduce u exactly when dt = 0; keep it bit for bit.
        return torch.where((dt > 0)[:, None], self.diffuse(v, 0.5 * dt), u)


def solve(
    u0: torch.Tensor,
    times: torch.Tensor | list[float],
    nu: float = 0.01,
    length: float = 1.0,
    cfl: float = 0.4,
    on_frame: Optional[Callable[[int], None]] = None,
) -> torch.Tensor:
    """Integrate a batch of periodic initial conditions and return the requested frames.

    Args:
        u0: Initial cell values ``(B, N)``; its dtype and device are used throughout.
        times: Increasing output times starting at 0.
        nu: Viscosity parameter (diffusion coefficient ``nu / pi``).
        length: Length of the periodic interval.
        cfl: Convective Courant number (at most 0.5).
        on_frame: Called with the frame index after each stored frame.

    Returns:
        Frames ``(B, T, N)``.
    """
    system = ViscousBurgers1D(nu, length / u0.shape[1], cfl)

    def check(u: torch.Tensor, t: float) -> None:
        if not bool(torch.isfinite(u).all()):
            raise FloatingPointError(f"Burgers solver diverged before t={t:g}")

    return torch.stack(march(u0, times, system.stable_dt, system.step, check, on_frame), dim=1)  # (B, T, N)


def cell_centres(n: int, length: float = 1.0) -> torch.Tensor:
    """Centres of ``n`` equal cells on ``[0, length]`` (float64)."""
    return (torch.arange(n, dtype=torch.float64) + 0.5) * (length / n)


def random_initial_condition(
    generator: torch.Generator,
    x: torch.Tensor,
    length: float = 1.0,
    max_mode: int = 4,
    n_modes: int = 2,
    p_abs: float = 0.1,
    p_window: float = 0.1,
) -> torch.Tensor:
    """PDEBench's random initial condition for Burgers, periodic on ``[0, length]``.

    ``n_modes`` wavenumbers are drawn from ``1 .. max_mode`` (a repeated draw counts
    once); each contributes ``A sin(2 pi m x / length + phi)`` with ``A ~ U(0, 1)`` and
    ``phi ~ U(0, 2 pi)``. With probability ``p_abs`` the sum is replaced by its absolute
    value; the sign is flipped with probability 1/2; with probability ``p_window`` it is
    multiplied by the smooth box ``(tanh((x - xl)/0.01) - tanh((x - xr)/0.01)) / 2`` with
    ``xl ~ U(0.1, 0.45)``, ``xr ~ U(0.55, 0.9)`` (fractions of ``length``).

    Args:
        generator: Seeded CPU generator (one per trajectory).
        x: Cell centres ``(N,)`` in float64.
        length: Period.
        max_mode: Largest wavenumber index.
        n_modes: Number of wavenumber draws.
        p_abs: Probability of taking the absolute value.
        p_window: Probability of the window.

    Returns:
        ``(N,)`` float64 on the CPU.
    """
    draws = torch.randint(1, max_mode + 1, (n_modes,), generator=generator)
    amplitude = torch.rand(max_mode, generator=generator, dtype=torch.float64)
    phase = 2 * math.pi * torch.rand(max_mode, generator=generator, dtype=torch.float64)
    u = torch.zeros_like(x)
    for mode in sorted(set(draws.tolist())):
        u = u + amplitude[mode - 1] * torch.sin(2 * math.pi * mode * x / length + phase[mode - 1])
    coins = torch.rand(3, generator=generator, dtype=torch.float64)
    if coins[0] < p_abs:
        u = u.abs()
    if coins[1] < 0.5:
        u = -u
    edges = torch.rand(2, generator=generator, dtype=torch.float64)
    if coins[2] < p_window:
        x_left = (0.1 + 0.35 * edges[0]) * length
        x_right = (0.55 + 0.35 * edges[1]) * length
        u = u * 0.5 * (torch.tanh((x - x_left) / (0.01 * length)) - torch.tanh((x - x_right) / (0.01 * length)))
    return u

