"""Batched finite-volume solver for PDEBench's 2D diffusion-reaction system.

FitzHugh-Nagumo activator ``u`` and inhibitor ``v`` on a rectangle with zero-flux
(homogeneous Neumann) walls::

    u_t = Du lap(u) + u - u^3 - k - v
    v_t = Dv lap(v) + u - v

Space: cell-centred finite volumes; the diffusive flux through a face is the
difference of the two neighbouring cell values over the spacing (second order),
and the flux through a wall is zero (a ghost cell that copies its neighbour).
Time: classical fourth-order Runge-Kutta with a step chosen per trajectory from
the stability limit of the current state, shortened so that every stored frame is
hit exactly. Each trajectory's step depends only on its own state, so a
trajectory's numbers do not depend on which others share its batch.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

from pdebench_core.data.stepping import frame_times, march  # noqa: F401 (frame_times is re-exported)

# Length of RK4's stability interval on the negative real axis.
RK4_REAL_STABILITY = 2.785


def laplacian_neumann(q: torch.Tensor, dx: float, dy: float) -> torch.Tensor:
    """Five-point finite-volume Laplacian with zero flux through the walls.

    Args:
        q: Cell averages, ``(B, C, X, Y)``.
        dx: Cell width along ``X``.
        dy: Cell width along ``Y``.

    Returns:
        ``lap(q)``, same shape as ``q``.
    """
    padded = F.pad(q, (1, 1, 1, 1), mode="replicate")  # (B, C, X+2, Y+2); ghost = neighbour: zero flux
    centre = padded[:, :, 1:-1, 1:-1]
    d2x = (padded[:, :, 2:, 1:-1] - 2 * centre + padded[:, :, :-2, 1:-1]) / dx**2
    d2y = (padded[:, :, 1:-1, 2:] - 2 * centre + padded[:, :, 1:-1, :-2]) / dy**2
    return d2x + d2y  # (B, C, X, Y)


class DiffusionReaction2D:
    """The semi-discrete system ``dq/dt = L(q)`` and its time integrator.

    Args:
        du: Diffusion coefficient of the activator ``u``.
        dv: Diffusion coefficient of the inhibitor ``v``.
        k: Constant threshold term in the activator's reaction.
        dx: Cell width along ``x``.
        dy: Cell width along ``y``.
        cfl: Fraction of RK4's stability limit used for the time step (below 1).
    """

    def __init__(self, du: float, dv: float, k: float, dx: float, dy: float, cfl: float = 0.8) -> None:
        if not 0 < cfl <= 1:
            raise ValueError(f"cfl must be in (0, 1], got {cfl}")
        self.du, self.dv, self.k = du, dv, k
        self.dx, self.dy, self.cfl = dx, dy, cfl
        # Largest eigenvalue magnitude of the discrete diffusion operator.
        self.diffusion_bound = 4 * max(du, dv) * (1 / dx**2 + 1 / dy**2)

    def rhs(self, q: torch.Tensor) -> torch.Tensor:
        """Time derivative of the state ``q`` ``(B, 2, X, Y)`` (channels u, v)."""
        u, v = q[:, 0], q[:, 1]  # (B, X, Y) each
        lap = laplacian_neumann(q, self.dx, self.dy)  # (B, 2, X, Y)
        du_dt = self.du * lap[:, 0] + u - u**3 - self.k - v
        dv_dt = self.dv * lap[:, 1] + u - v
        return torch.stack((du_dt, dv_dt), dim=1)  # (B, 2, X, Y)

    def stable_dt(self, q: torch.Tensor) -> torch.Tensor:
        """Largest stable RK4 step per trajectory, ``(B,)`` in float64.

        The reaction Jacobian ``[[1 - 3u^2, -1], [1, -1]]`` has spectral radius at most
        ``|1 - 3u^2| + 1``; it is added to the diffusion bound.
        """
        u = q[:, 0].flatten(1).double()  # (B, X*Y)
        reaction_bound = (1 - 3 * u**2).abs().amax(dim=1) + 1  # (B,)
        return self.cfl * RK4_REAL_STABILITY / (self.diffusion_bound + reaction_bound)

    def rk4_step(self, q: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        """One classical Runge-Kutta step with a step size per trajectory.

        Args:
            q: State ``(B, 2, X, Y)``.
            dt: Step per trajectory ``(B,)``; a zero step leaves that trajectory unchanged.
        """
        h = dt.to(q.dtype).view(-1, 1, 1, 1)  # (B, 1, 1, 1)
        k1 = self.rhs(q)
        k2 = self.rhs(q + 0.5 * h * k1)
        k3 = self.rhs(q + 0.5 * h * k2)
        k4 = self.rhs(q + h * k3)
        return q + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


def solve(
    q0: torch.Tensor,
    times: torch.Tensor | list[float],
    du: float = 1e-3,
    dv: float = 5e-3,
    k: float = 5e-3,
    extent: tuple[tuple[float, float], tuple[float, float]] = ((-1.0, 1.0), (-1.0, 1.0)),
    cfl: float = 0.8,
    on_frame: Optional[Callable[[int], None]] = None,
) -> torch.Tensor:
    """Integrate a batch of initial states and return the requested frames.

    Args:
        q0: Initial cell values ``(B, X, Y, 2)`` with channels ``(u, v)``; its dtype and
            device are used for the whole computation.
        times: Increasing output times starting at 0, e.g. ``linspace(0, 5, 101)``.
        du: Diffusion coefficient of ``u``.
        dv: Diffusion coefficient of ``v``.
        k: Reaction threshold.
        extent: ``((x_min, x_max), (y_min, y_max))`` of the domain.
        cfl: Fraction of the RK4 stability limit used as time step.
        on_frame: Called with the frame index after each stored frame.

    Returns:
        Frames ``(B, T, X, Y, 2)`` at ``times``.
    """
    _, nx, ny, _ = q0.shape
    (x0, x1), (y0, y1) = extent
    system = DiffusionReaction2D(du, dv, k, (x1 - x0) / nx, (y1 - y0) / ny, cfl)

    def check(q: torch.Tensor, t: float) -> None:
        if not bool(torch.isfinite(q).all()):
            raise FloatingPointError(f"diffusion-reaction solver diverged before t={t:g}")

    frames = march(q0.permute(0, 3, 1, 2).contiguous(), times, system.stable_dt, system.rk4_step, check,
                   on_frame)  # each (B, 2, X, Y)
    return torch.stack(frames, dim=1).permute(0, 1, 3, 4, 2)  # (B, T, X, Y, 2)


def cell_centres(n: int, lo: float, hi: float) -> torch.Tensor:
    """Centres of ``n`` equal cells on ``[lo, hi]`` (float64)."""
    h = (hi - lo) / n
    return lo + h * (torch.arange(n, dtype=torch.float64) + 0.5)


def random_initial_state(generator: torch.Generator, nx: int, ny: int) -> torch.Tensor:
    """PDEBench's initial condition: independent standard normal ``u`` and ``v`` per cell.

    Args:
        generator: Seeded CPU generator (one per trajectory).
        nx: Cells along ``x``.
        ny: Cells along ``y``.

    Returns:
        ``(X, Y, 2)`` float64 on the CPU.
    """
    return torch.randn(nx, ny, 2, generator=generator, dtype=torch.float64)
