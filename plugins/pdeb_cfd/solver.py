"""Batched finite-volume solver for the compressible Navier-Stokes equations.

The equations, on a periodic box in D = 1, 2 or 3 dimensions, for an ideal gas::

    d_t rho       + div(rho v)               = 0
    d_t (rho v)   + div(rho v v + p I)       = div(sigma)
    d_t E         + div((E + p) v)           = div(sigma v)
    E = p / (gamma - 1) + rho |v|^2 / 2
    sigma = mu (grad v + grad v^T - 2/3 div(v) I) + lam div(v) I

with shear viscosity ``mu`` and bulk viscosity ``lam``. By default (as in PDEBench's
generator) they scale with the local density, ``mu = eta rho`` and ``lam = zeta rho``,
so ``eta`` and ``zeta`` act as kinematic viscosities; with ``density_weighted=False``
they are constant dynamic viscosities. ``eta = zeta = 0`` gives the Euler equations.

Numerics: cell-centred finite volumes; MUSCL reconstruction of the primitive variables
(rho, v, p) with the MC or minmod limiter; HLLC Riemann fluxes; the viscous stress at
each face by central differences (normal derivatives across the face, tangential ones
averaged from the two neighbouring cells), added to the face flux so that mass,
momentum and energy stay conserved to round-off; SSP-RK2 (or SSP-RK3) time stepping
with a CFL-limited time step chosen per sample.

Every trajectory in a batch advances with its own time step, so its numbers do not
depend on which other trajectories share the batch.

Tensor layout: conservative state ``U`` is ``(B, 2 + D, *S)`` with channels
``(rho, rho v_1 .. rho v_D, E)``; primitive state ``W`` is ``(B, 2 + D, *S)`` with
channels ``(rho, v_1 .. v_D, p)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor

LIMITERS = ("mc", "minmod")
INTEGRATORS = ("ssprk2", "ssprk3")


class SolverError(RuntimeError):
    """The solver could not keep density and pressure positive."""


@dataclass(frozen=True)
class GasModel:
    """Material parameters of the gas.

    Attributes:
        gamma: Ratio of specific heats of the ideal gas (5/3: monatomic, as in PDEBench).
        eta: Shear viscosity (kinematic when ``density_weighted``).
        zeta: Bulk viscosity (kinematic when ``density_weighted``).
        density_weighted: Multiply ``eta`` and ``zeta`` by the local density (PDEBench's
            convention); otherwise they are constant dynamic viscosities.
    """

    gamma: float = 5.0 / 3.0
    eta: float = 0.0
    zeta: float = 0.0
    density_weighted: bool = True

    @property
    def viscous(self) -> bool:
        """Whether any viscous term is active."""
        return self.eta != 0.0 or self.zeta != 0.0


def conservative(rho: Tensor, vel: Tensor, p: Tensor, gamma: float) -> Tensor:
    """Conservative state from primitive fields.

    Args:
        rho: Density ``(B, *S)``.
        vel: Velocity ``(B, D, *S)``.
        p: Pressure ``(B, *S)``.
        gamma: Ratio of specific heats.

    Returns:
        ``U`` of shape ``(B, 2 + D, *S)``: density, momentum, total energy.
    """
    momentum = rho.unsqueeze(1) * vel  # (B, D, *S)
    energy = p / (gamma - 1.0) + 0.5 * (momentum * vel).sum(1)  # (B, *S)
    return torch.cat([rho.unsqueeze(1), momentum, energy.unsqueeze(1)], dim=1)


def primitive(U: Tensor, gamma: float) -> Tensor:
    """Primitive state ``(rho, v_1 .. v_D, p)`` from the conservative state, same shape."""
    rho = U[:, :1]  # (B, 1, *S)
    vel = U[:, 1:-1] / rho  # (B, D, *S)
    p = (gamma - 1.0) * (U[:, -1:] - 0.5 * (U[:, 1:-1] * vel).sum(1, keepdim=True))  # (B, 1, *S)
    return torch.cat([rho, vel, p], dim=1)


def _minmod(a: Tensor, b: Tensor) -> Tensor:
    """``minmod(a, b)``: the smaller in magnitude when the signs agree, else 0 (as a clamp of ``a``)."""
    return torch.clamp(a, min=b.clamp(max=0.0), max=b.clamp(min=0.0))


def _limited_slope(delta_minus: Tensor, delta_plus: Tensor, limiter: str) -> Tensor:
    """Limited cell slope from the one-sided differences (zero at extrema)."""
    if limiter == "minmod":
        return _minmod(delta_minus, delta_plus)
    # MC (monotonized central): minmod(2 a, 2 b, (a + b) / 2).
    bound = 2.0 * _minmod(delta_minus, delta_plus)
    return torch.clamp(0.5 * (delta_minus + delta_plus), min=bound.clamp(max=0.0), max=bound.clamp(min=0.0))


def hllc_flux(W_left: Tensor, W_right: Tensor, axis: int, gamma: float) -> Tensor:
    """HLLC approximate Riemann flux (Toro) with Davis wave-speed estimates.

    Written in the form ``F = [S* (S_K U_K - F_K) + S_K p* D*] / (S_K - S*)`` on the
    side ``K`` of the contact that holds the face. Clipping ``S_L`` to ``<= 0`` and
    ``S_R`` to ``>= 0`` makes the same expression return the upwind flux ``F_L``
    (or ``F_R``) when every wave leaves the face on one side, so no further branch
    is needed.

    Args:
        W_left: Primitive state on the left of each face ``(B, 2 + D, *S)``.
        W_right: Primitive state on the right of each face, same shape.
        axis: Spatial axis the faces are normal to.
        gamma: Ratio of specific heats.

    Returns:
        Flux of the conservative variables through each face, ``(B, 2 + D, *S)``.
    """
    normal = 1 + axis  # channel of the normal velocity
    rho_l, u_l, p_l = W_left[:, :1], W_left[:, normal:normal + 1], W_left[:, -1:]  # (B, 1, *S) each
    rho_r, u_r, p_r = W_right[:, :1], W_right[:, normal:normal + 1], W_right[:, -1:]
    c_l = torch.sqrt(gamma * p_l / rho_l)
    c_r = torch.sqrt(gamma * p_r / rho_r)
    s_l = torch.minimum(u_l - c_l, u_r - c_r)  # fastest left-going wave
    s_r = torch.maximum(u_l + c_l, u_r + c_r)  # fastest right-going wave
    mass_l = rho_l * (s_l - u_l)
    mass_r = rho_r * (s_r - u_r)
    s_star = (p_r - p_l + mass_l * u_l - mass_r * u_r) / (mass_l - mass_r)  # contact speed
    p_star = p_l + mass_l * (s_star - u_l)  # pressure in the star region (same from both sides)

    # lerp with a 0/1 weight selects exactly and is much faster than a broadcast where.
    use_left = (s_star >= 0).to(s_star.dtype)
    W_k = torch.lerp(W_right, W_left, use_left)  # (B, 2 + D, *S)
    s_k = torch.lerp(s_r.clamp(min=0.0), s_l.clamp(max=0.0), use_left)
    rho_k, vel_k, p_k = W_k[:, :1], W_k[:, 1:-1], W_k[:, -1:]
    u_k = W_k[:, normal:normal + 1]
    E_k = p_k / (gamma - 1.0) + 0.5 * rho_k * (vel_k ** 2).sum(1, keepdim=True)
    inflow = s_k - u_k
    mass = s_star * rho_k * inflow  # S* (S_K rho_K - rho_K u_K)
    momentum = mass * vel_k  # (B, D, *S)
    momentum[:, axis:axis + 1] += s_k * p_star - s_star * p_k
    energy = s_star * (E_k * inflow - p_k * u_k + s_k * p_star)
    return torch.cat([mass, momentum, energy], dim=1) / (s_k - s_star)


def viscous_flux(W: Tensor, axis: int, spacing: Sequence[float], gas: GasModel,
                 cell_gradient: Tensor) -> Tensor:
    """Viscous flux ``(0, sigma e_axis, sigma v . e_axis)`` at faces ``i + 1/2`` along ``axis``.

    Args:
        W: Primitive state ``(B, 2 + D, *S)``.
        axis: Spatial axis the faces are normal to.
        spacing: Grid spacing per axis.
        gas: Viscosities.
        cell_gradient: Central-difference velocity gradient at cell centres,
            ``(B, D, D, *S)`` with ``[:, i, j] = d v_i / d x_j``.

    Returns:
        Flux to subtract from the Euler flux, ``(B, 2 + D, *S)``.
    """
    dim = 2 + axis
    rho, vel = W[:, :1], W[:, 1:-1]  # (B, 1, *S), (B, D, *S)
    vel_next = torch.roll(vel, -1, dim)
    # Tangential derivatives: mean of the two cells; normal derivative: across the face.
    grad = 0.5 * (cell_gradient + torch.roll(cell_gradient, -1, dim + 1))  # (B, D, D, *S)
    grad[:, :, axis] = (vel_next - vel) / spacing[axis]
    divergence = torch.diagonal(grad, dim1=1, dim2=2).sum(-1)  # (B, *S)
    if gas.density_weighted:
        rho_face = 0.5 * (rho + torch.roll(rho, -1, dim))  # (B, 1, *S)
        mu, lam = gas.eta * rho_face, gas.zeta * rho_face
    else:
        mu, lam = gas.eta, gas.zeta
    # Row ``axis`` of the symmetric stress tensor: sigma_{i, axis}.
    stress = mu * (grad[:, :, axis] + grad[:, axis, :])  # (B, D, *S)
    stress[:, axis:axis + 1] += (lam - 2.0 / 3.0 * mu) * divergence.unsqueeze(1)
    work = (stress * 0.5 * (vel + vel_next)).sum(1, keepdim=True)  # (B, 1, *S)
    return torch.cat([torch.zeros_like(rho), stress, work], dim=1)


def velocity_gradient(vel: Tensor, spacing: Sequence[float]) -> Tensor:
    """Central-difference gradient ``(B, D, D, *S)``, ``[:, i, j] = d v_i / d x_j``."""
    parts = [(torch.roll(vel, -1, 2 + j) - torch.roll(vel, 1, 2 + j)) / (2.0 * spacing[j])
             for j in range(vel.shape[1])]
    return torch.stack(parts, dim=2)


def rate_of_change(U: Tensor, spacing: Sequence[float], gas: GasModel, limiter: str = "mc") -> Tensor:
    """Right-hand side ``dU/dt`` of the semi-discrete scheme.

    Args:
        U: Conservative state ``(B, 2 + D, *S)``.
        spacing: Grid spacing per spatial axis.
        gas: Material parameters.
        limiter: ``"mc"`` or ``"minmod"``.

    Returns:
        ``dU/dt``, same shape as ``U``.
    """
    W = primitive(U, gas.gamma)  # (B, 2 + D, *S)
    ndim = U.dim() - 2
    cell_gradient = velocity_gradient(W[:, 1:-1], spacing) if gas.viscous else None
    rate = torch.zeros_like(U)
    for axis in range(ndim):
        dim = 2 + axis
        delta_plus = torch.roll(W, -1, dim) - W
        slope = _limited_slope(torch.roll(delta_plus, 1, dim), delta_plus, limiter)
        W_left = W + 0.5 * slope  # state just left of face i + 1/2
        W_right = torch.roll(W - 0.5 * slope, -1, dim)  # state just right of face i + 1/2
        flux = hllc_flux(W_left, W_right, axis, gas.gamma)  # (B, 2 + D, *S) at faces i + 1/2
        if cell_gradient is not None:
            flux = flux - viscous_flux(W, axis, spacing, gas, cell_gradient)
        rate -= (flux - torch.roll(flux, 1, dim)) / spacing[axis]
    return rate


def stable_dt(U: Tensor, spacing: Sequence[float], gas: GasModel, cfl: float) -> Tensor:
    """Largest stable time step per sample, ``(B,)`` float64.

    Uses the unsplit advective limit ``sum_d (|v_d| + c) / dx_d`` plus the explicit
    diffusion limit ``2 nu sum_d 1 / dx_d^2`` with ``nu = 4/3 eta + zeta`` (divided by
    the smallest density for constant dynamic viscosities).
    """
    W = primitive(U, gas.gamma)
    rho, vel, p = W[:, 0], W[:, 1:-1], W[:, -1]
    sound = torch.sqrt(gas.gamma * p / rho)  # (B, *S)
    advective = sum((vel[:, d].abs() + sound) / spacing[d] for d in range(vel.shape[1]))
    rate = advective.flatten(1).amax(1).double()  # (B,)
    if gas.viscous:
        nu = 4.0 / 3.0 * gas.eta + gas.zeta
        inverse_sq = sum(1.0 / h ** 2 for h in spacing)
        if gas.density_weighted:
            rate = rate + 2.0 * nu * inverse_sq
        else:
            rate = rate + 2.0 * nu * inverse_sq / rho.flatten(1).amin(1).double()
    return cfl / rate


def ssp_step(U: Tensor, dt: Tensor, spacing: Sequence[float], gas: GasModel,
             limiter: str = "mc", integrator: str = "ssprk2") -> Tensor:
    """One strong-stability-preserving Runge-Kutta step.

    Args:
        U: Conservative state ``(B, 2 + D, *S)``.
        dt: Time step per sample ``(B,)``.
        spacing: Grid spacing per axis.
        gas: Material parameters.
        limiter: ``"mc"`` or ``"minmod"``.
        integrator: ``"ssprk2"`` (Heun) or ``"ssprk3"`` (Shu-Osher).

    Returns:
        The state after ``dt``.
    """
    dt = dt.to(U.dtype).view(-1, *([1] * (U.dim() - 1)))  # (B, 1, ..., 1)
    stage1 = U + dt * rate_of_change(U, spacing, gas, limiter)
    if integrator == "ssprk2":
        return 0.5 * U + 0.5 * (stage1 + dt * rate_of_change(stage1, spacing, gas, limiter))
    stage2 = 0.75 * U + 0.25 * (stage1 + dt * rate_of_change(stage1, spacing, gas, limiter))
    return U / 3.0 + 2.0 / 3.0 * (stage2 + dt * rate_of_change(stage2, spacing, gas, limiter))


def _physical_samples(U: Tensor, gamma: float) -> Tensor:
    """``(B,)`` bool: density and pressure positive and finite everywhere."""
    W = primitive(U, gamma)
    ok = (W[:, 0] > 0) & (W[:, -1] > 0) & torch.isfinite(W).all(1)
    return ok.flatten(1).all(1)


def simulate(
    rho: Tensor,
    vel: Tensor,
    p: Tensor,
    spacing: Sequence[float],
    save_times: Sequence[float],
    gas: GasModel,
    cfl: float = 0.5,
    limiter: str = "mc",
    integrator: str = "ssprk2",
    progress: bool | Callable[[float], None] = False,
    max_halvings: int = 10,
) -> Tensor:
    """Evolve a batch of initial states and record frames at ``save_times``.

    Each sample takes its own CFL-limited steps and lands exactly on every save
    time. A step that would make density or pressure non-positive is retried with
    half the time step (at most ``max_halvings`` times).

    Args:
        rho: Initial density ``(B, *S)``.
        vel: Initial velocity ``(B, D, *S)``.
        p: Initial pressure ``(B, *S)``.
        spacing: Grid spacing per spatial axis.
        save_times: Increasing output times; the first must be 0 (the initial state).
        gas: Material parameters.
        cfl: Courant number (fraction of the stable time step).
        limiter: ``"mc"`` or ``"minmod"``.
        integrator: ``"ssprk2"`` or ``"ssprk3"``.
        progress: ``True`` shows a rich progress bar; a callable receives the
            simulated time advanced, summed over samples, after every step.
        max_halvings: Retries with a halved step before giving up.

    Returns:
        Frames ``(B, T, 2 + D, *S)`` (float32, on the CPU) with channels in
        PDEBench's stored order: density, pressure, v_1 .. v_D.

    Raises:
        SolverError: A sample lost positivity even with the smallest retried step.
    """
    if limiter not in LIMITERS:
        raise ValueError(f"limiter must be one of {LIMITERS}, got {limiter!r}")
    if integrator not in INTEGRATORS:
        raise ValueError(f"integrator must be one of {INTEGRATORS}, got {integrator!r}")
    times = [float(t) for t in save_times]
    if not times or times[0] != 0.0 or any(b <= a for a, b in zip(times, times[1:])):
        raise ValueError("save_times must start at 0 and increase")
    U = conservative(rho, vel, p, gas.gamma)  # (B, 2 + D, *S)
    if not bool(_physical_samples(U, gas.gamma).all()):
        raise SolverError("initial density and pressure must be positive and finite")
    batch = U.shape[0]
    frames = torch.empty((batch, len(times), *U.shape[1:]), dtype=torch.float32)  # (B, T, C, *S)
    frames[:, 0] = _stored_order(U, gas.gamma)

    report, close = _progress_reporter(progress, batch * times[-1])
    now = torch.zeros(batch, dtype=torch.float64)  # time of each sample
    next_frame = torch.ones(batch, dtype=torch.long)  # index of the next save time
    targets = torch.tensor(times, dtype=torch.float64)
    try:
        while True:
            active = (next_frame < len(times)).nonzero().flatten()
            if active.numel() == 0:
                break
            everyone = active.numel() == batch
            U_active = U if everyone else U[active.to(U.device)]
            remaining = targets[next_frame[active]] - now[active]
            dt = stable_dt(U_active, spacing, gas, cfl).cpu()
            lands = dt >= remaining
            dt = torch.where(lands, remaining, dt)
            for _ in range(max_halvings + 1):
                U_next = ssp_step(U_active, dt.to(U.device), spacing, gas, limiter, integrator)
                ok = _physical_samples(U_next, gas.gamma).cpu()
                if bool(ok.all()):
                    break
                dt = torch.where(ok, dt, 0.5 * dt)
                lands = lands & ok
            else:
                raise SolverError(
                    f"density or pressure became non-positive even with time step {float(dt.min()):.3g}; "
                    "lower the Mach number or the Courant number"
                )
            if everyone:
                U = U_next
            else:
                U[active.to(U.device)] = U_next
            now[active] = torch.where(lands, targets[next_frame[active]], now[active] + dt)
            landed = active[lands]
            if landed.numel():
                stored = _stored_order(U_next[lands.to(U.device)], gas.gamma)
                frames[landed, next_frame[landed]] = stored
                next_frame[landed] += 1
            report(float(dt.sum()))
    finally:
        close()
    return frames


def _stored_order(U: Tensor, gamma: float) -> Tensor:
    """Primitive fields in stored order (density, pressure, v_1 .. v_D), float32 on the CPU."""
    W = primitive(U, gamma)
    return torch.cat([W[:, :1], W[:, -1:], W[:, 1:-1]], dim=1).float().cpu()


def _progress_reporter(progress: bool | Callable[[float], None], total: float):
    """``(report, close)`` for a progress option of :func:`simulate`."""
    if callable(progress):
        return progress, lambda: None
    if not progress:
        return (lambda advanced: None), (lambda: None)
    from rich.progress import Progress

    bar = Progress(transient=True)
    bar.start()
    task = bar.add_task("compressible NS", total=total)
    return (lambda advanced: bar.advance(task, advanced)), bar.stop


def cell_centres(n: int, length: float = 1.0) -> Tensor:
    """Cell-centre coordinates ``(n,)`` float64 of a uniform periodic grid on ``[0, length)``."""
    return (torch.arange(n, dtype=torch.float64) + 0.5) * (length / n)


def default_save_times(t_end: float, n_frames: int) -> list[float]:
    """``n_frames`` equally spaced times from 0 to ``t_end``."""
    return [t_end * i / (n_frames - 1) for i in range(n_frames)]


__all__ = [
    "GasModel",
    "SolverError",
    "cell_centres",
    "conservative",
    "default_save_times",
    "hllc_flux",
    "primitive",
    "rate_of_change",
    "simulate",
    "ssp_step",
    "stable_dt",
]
