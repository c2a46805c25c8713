"""Pseudo-spectral solver for 2D incompressible Navier-Stokes in vorticity form.

On the periodic unit square, with vorticity ``w``, stream function ``psi`` and
velocity ``u = (d psi/dy, -d psi/dx)``::

    dw/dt + u . grad(w) = nu * lap(w) + f,        -lap(psi) = w

This is the scheme of the FNO Navier-Stokes data protocol: Fourier
differentiation, the Poisson equation solved exactly in Fourier space, the
advection term evaluated on the grid and treated explicitly (forward Euler), the
viscous term treated with Crank-Nicolson, and the advection term dealiased with
the 2/3 rule. The grid is ``x_i = i / N`` and the first array axis is ``x``.

Everything is batched torch code; it runs on the device and in the precision of
the input tensors, and the same inputs always give the same outputs.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Callable, Iterator, Optional

if TYPE_CHECKING:  # torch is imported lazily so that importing the plugin stays cheap
    import torch

ProgressCallback = Callable[[int, int], None]


def fno_forcing(n: int, dtype=None, device=None) -> "torch.Tensor":
    """The protocol's forcing ``0.1 * (sin(2 pi (x + y)) + cos(2 pi (x + y)))``.

    Args:
        n: Grid points per axis.
        dtype: Torch dtype (default: torch's default float type).
        device: Torch device.

    Returns:
        Tensor ``(n, n)`` sampled on ``x_i = i / n`` (first axis ``x``).
    """
    import torch

    coords = torch.arange(n, dtype=torch.float64, device=device) / n  # (N,)
    phase = 2 * math.pi * (coords[:, None] + coords[None, :])  # (N, N)
    forcing = 0.1 * (torch.sin(phase) + torch.cos(phase))  # (N, N)
    return forcing.to(dtype or torch.get_default_dtype())


def step_counts(T: float, delta_t: float, record_steps: int) -> tuple[int, int]:
    """Solver steps between two recorded frames, and the total number of steps.

    The run takes ``ceil(T / delta_t)`` steps (up to a tolerance for rounding of
    the ratio) and records a frame every ``steps // record_steps`` steps;
    leftover steps after the last record would change nothing and are skipped.

    Raises:
        ValueError: If the settings leave fewer steps than frames to record.
    """
    if T <= 0 or delta_t <= 0 or record_steps < 1:
        raise ValueError(f"need T > 0, delta_t > 0, record_steps >= 1; got {T}, {delta_t}, {record_steps}")
    ratio = T / delta_t
    # 50 / 1e-4 is 500000.00000000006 in floating point: do not count an extra step for that.
    steps = round(ratio) if abs(ratio - round(ratio)) < 1e-9 * max(1.0, ratio) else math.ceil(ratio)
    per_record = steps // record_steps
    if per_record < 1:
        raise ValueError(f"T={T} with delta_t={delta_t} gives {steps} steps, fewer than {record_steps} frames")
    return per_record, per_record * record_steps


SCHEMES = ("cn-euler", "if-rk3")
# Largest advective Courant number 2 pi k_c max(|u| + |v|) h that "if-rk3" steps take;
# three-stage third-order Runge-Kutta is stable up to sqrt(3) on the imaginary axis.
MAX_COURANT = 1.0
# Grid points of the trajectories "if-rk3" steps together on a CPU: their spectra, stages and
# transforms then stay in the caches (measured fastest on 32 to 64 point grids).
CPU_CHUNK_POINTS = 1 << 15


def solve_vorticity(
    w0: "torch.Tensor",
    forcing: "torch.Tensor",
    visc: float,
    T: float,
    delta_t: float,
    record_steps: int,
    progress: Optional[ProgressCallback] = None,
    keep_every: int = 1,
    scheme: str = "cn-euler",
    lockstep: bool = False,
    chunk: Optional[int] = None,
) -> "torch.Tensor":
    """Integrate the vorticity equation and record evenly spaced frames.

    Args:
        w0: Initial vorticity ``(batch, N, N)`` (or ``(N, N)``), real, float32 or
            float64; the solver runs in this dtype and on this device.
        forcing: Time-independent forcing ``(N, N)`` or ``(batch, N, N)``.
        visc: Kinematic viscosity ``nu``.
        T: Final time.
        delta_t: Time step of ``"cn-euler"``; the largest step of ``"if-rk3"``.
        record_steps: Number of frames to record, at times ``T * k / record_steps``
            for ``k = 1..record_steps`` (the initial condition is not included).
        progress: Called as ``progress(frames_done, record_steps)`` after every
            recorded frame.
        keep_every: Record only every ``keep_every``-th grid point per axis (the
            protocol solves at 256 and keeps 64); saves memory on long records.
        scheme: ``"cn-euler"``, the protocol's scheme: fixed steps, Crank-Nicolson
            viscosity, forward Euler advection and forcing; at low viscosity it needs
            steps of about 1e-3 on a 64 grid. Or ``"if-rk3"``: exact viscous decay
            through an integrating factor and Kutta's third-order Runge-Kutta for
            advection and forcing, with the step shortened per
            trajectory and per frame to keep the advective Courant number below
            :data:`MAX_COURANT`; three times the work per step, stable and more
            accurate at steps ten times larger, for quick data away from the protocol.
            It drops the initial modes beyond the 2/3 cutoff, which would only decay.
            The batch steps ``chunk`` trajectories of similar work at a time, and a
            trajectory that has taken its steps through a frame leaves until the next
            frame, so a batch costs the sum of its members' steps.
        lockstep: ``"if-rk3"`` only: step the whole batch at once until its most demanding
            trajectory is done, finished ones waiting (the former schedule: the same
            numbers, slower); kept to measure the difference.
        chunk: ``"if-rk3"`` only: trajectories stepped together; ``None`` chooses
            (:func:`default_chunk`). Never changes the numbers.

    Returns:
        Vorticity ``(batch, record_steps, M, M)`` with ``M = N // keep_every``
        (no batch axis for an unbatched ``w0``), same dtype and device as ``w0``.
    """
    import torch

    unbatched = w0.dim() == 2
    w0 = w0[None] if unbatched else w0  # (B, N, N)
    n = w0.shape[-1]
    if w0.shape[-2] != n or forcing.shape[-2:] != w0.shape[-2:]:
        raise ValueError(f"need square grids of one size; got w0 {tuple(w0.shape)}, forcing {tuple(forcing.shape)}")
    if keep_every < 1 or n % keep_every:
        raise ValueError(f"keep_every={keep_every} must divide the grid size {n}")
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme '{scheme}'; choose one of {', '.join(SCHEMES)}")
    per_record, _ = step_counts(T, delta_t, record_steps)
    frame_time = T / record_steps
    real_dtype, device = w0.dtype, w0.device

    # Integer wavenumbers of an rfft2 of an (N, N) grid: full range along x (axis -2),
    # the non-negative half along y (axis -1). The Nyquist column keeps the wavenumber
    # -N/2 that fftfreq gives it, as the protocol's generator does; the sign only enters
    # first derivatives of that column, whose content is tiny for smooth fields.
    k_full = torch.fft.fftfreq(n, d=1.0 / n, dtype=real_dtype, device=device)  # (N,)
    k_x = k_full[:, None]  # (N, 1)
    k_y = k_full[None, : n // 2 + 1]  # (1, N/2+1)
    neg_lap = 4 * math.pi**2 * (k_x**2 + k_y**2)  # (N, N/2+1) symbol of -laplacian
    inv_neg_lap = torch.where(neg_lap > 0, 1.0 / neg_lap.clamp_min(1e-30), torch.zeros_like(neg_lap))
    d_x = 2j * math.pi * k_x  # (N, 1) symbol of d/dx
    d_y = 2j * math.pi * k_y  # (1, N/2+1) symbol of d/dy

    # One multiplier per field needed on the grid: u = dpsi/dy, v = -dpsi/dx, dw/dx, dw/dy.
    to_grid = torch.stack([
        d_y * inv_neg_lap,
        -d_x * inv_neg_lap,
        d_x.expand_as(neg_lap),
        d_y.expand_as(neg_lap),
    ])[:, None]  # (4, 1, N, N/2+1)

    # 2/3 rule: drop every mode with |k_x| or |k_y| above two thirds of N/2.
    cutoff = (2.0 / 3.0) * (n // 2)
    keep = ((k_x.abs() <= cutoff) & (k_y.abs() <= cutoff)).to(real_dtype)  # (N, N/2+1)

    def advection(w_h):  # dealiased u . grad(w) in Fourier space, (B, N, N/2+1)
        u, v, w_dx, w_dy = torch.fft.irfft2(to_grid * w_h, s=(n, n))  # each (B, N, N)
        return keep * _batch_independent(torch.fft.rfft2, u * w_dx + v * w_dy)  # (B, N, N/2+1)

    f_h = torch.fft.rfft2(forcing) if forcing.dim() == 2 else _batch_independent(torch.fft.rfft2, forcing)
    # f_h: (N, N/2+1), shared, or (B, N, N/2+1), one per trajectory
    w_h = _batch_independent(torch.fft.rfft2, w0)  # (B, N, N/2+1)
    m = n // keep_every
    frames = torch.empty(w0.shape[0], record_steps, m, m, dtype=real_dtype, device=device)  # (B, R, M, M)

    if scheme == "cn-euler":
        # w_new = ((1 - dt nu K / 2) w + dt (f - A(w))) / (1 + dt nu K / 2), K = |2 pi k|^2.
        implicit = 1.0 + 0.5 * delta_t * visc * neg_lap  # (N, N/2+1)
        decay = (1.0 - 0.5 * delta_t * visc * neg_lap) / implicit
        drive = delta_t * f_h / implicit

        def advance_frame(w_h):
            for _ in range(per_record):
                w_h = decay * w_h + drive - (delta_t / implicit) * advection(w_h)
            return w_h
    else:
        min_steps = math.ceil(frame_time / delta_t - 1e-9)
        # Modes beyond the 2/3 cutoff only decay: nothing feeds them and they feed nothing.
        # Dropping them at the start changes no dynamics and keeps float32 runs away from
        # denormal numbers, which slow CPU arithmetic down several times.
        w_h = keep * w_h

        steps_through = _rk3_lockstep if lockstep else _rk3_retiring
        chunk = chunk or default_chunk(n, device)

        def advance_frame(w_h):
            # Each trajectory takes as many equal steps through this frame as its own
            # fastest velocity needs, so its result does not depend on its batch mates.
            u, v = torch.fft.irfft2(to_grid[:2] * w_h, s=(n, n))  # each (B, N, N)
            speed = (u.abs() + v.abs()).amax(dim=(-2, -1))  # (B,)
            if not bool(torch.isfinite(speed).all()):
                raise ValueError("the vorticity is no longer finite; check the initial condition and forcing")
            needed = torch.ceil(frame_time * 2 * math.pi * cutoff * speed / MAX_COURANT)
            steps = needed.clamp_min(min_steps).long()  # (B,)
            h = (frame_time / steps.to(real_dtype))[:, None, None]  # (B, 1, 1), in the working precision
            full = torch.exp(-visc * neg_lap * h)  # (B, N, N/2+1) viscous decay over a step
            half = torch.exp(-0.5 * visc * neg_lap * h)  # over half a step
            return steps_through(w_h, steps, _Rk3Step(h, full, half, f_h, advection), chunk)

    for frame in range(record_steps):
        w_h = advance_frame(w_h)  # (B, N, N/2+1)
        w = _batch_independent(partial(torch.fft.irfft2, s=(n, n)), w_h)  # (B, N, N)
        frames[:, frame] = w[:, ::keep_every, ::keep_every]
        if progress is not None:
            progress(frame + 1, record_steps)
    return frames[0] if unbatched else frames


def _batch_independent(transform: Callable[["torch.Tensor"], "torch.Tensor"], x: "torch.Tensor") -> "torch.Tensor":
    """``transform(x)`` of a batch ``x`` ``(B, ...)``, the same to the last bit whatever ``B``.

    MKL rounds a lone 2D transform differently from a batch of them (the inverse on some
    CPUs, the forward one too on others); transforming at least two keeps a trajectory's
    numbers the same whatever its batch size and batch mates.
    """
    import torch

    if x.shape[0] == 1:
        return transform(torch.cat([x, x]))[:1]
    return transform(x)


class _Rk3Step:
    """One ``if-rk3`` step of chosen trajectories, each with its own step length.

    Kutta's third-order Runge-Kutta on ``v = exp(nu K t) w_hat`` (Lawson's form), written
    back in terms of ``w_hat``. Its stages move forward in time only, so every factor is
    a decay and stiff modes cannot overflow.

    Args:
        h: Step length per trajectory ``(B, 1, 1)``.
        full: Viscous decay over a step ``(B, N, N/2+1)``.
        half: Viscous decay over half a step.
        f_h: Forcing in Fourier space, ``(N, N/2+1)`` or one per trajectory ``(B, N, N/2+1)``.
        advection: ``w_hat -> `` the dealiased advection term in Fourier space.
    """

    def __init__(self, h, full, half, f_h, advection) -> None:
        self.h, self.full, self.half, self.f_h, self.advection = h, full, half, f_h, advection

    def reorder(self, order: "torch.Tensor") -> "_Rk3Step":
        """The same step with the trajectories taken in ``order``."""
        f_h = self.f_h[order] if self.f_h.dim() == 3 else self.f_h
        return _Rk3Step(self.h[order], self.full[order], self.half[order], f_h, self.advection)

    def __call__(self, w_h: "torch.Tensor", rows: slice = slice(None)) -> "torch.Tensor":
        """Advance ``w_h``, the trajectories ``rows`` of the batch, by one step each."""
        h, full, half = self.h[rows], self.full[rows], self.half[rows]
        f_h = self.f_h[rows] if self.f_h.dim() == 3 else self.f_h
        k1 = f_h - self.advection(w_h)  # (b, N, N/2+1) at t
        k2 = f_h - self.advection(half * (w_h + 0.5 * h * k1))  # at t + h/2
        k3 = f_h - self.advection(full * (w_h - h * k1) + 2.0 * h * half * k2)  # at t + h
        return full * w_h + (h / 6.0) * (full * k1 + 4.0 * half * k2 + k3)


def _rk3_lockstep(w_h: "torch.Tensor", steps: "torch.Tensor", step: _Rk3Step, chunk: int) -> "torch.Tensor":
    """Step the whole batch until its most demanding trajectory is done; finished ones wait."""
    import torch

    for i in range(int(steps.max())):
        w_h = torch.where((steps > i)[:, None, None], step(w_h), w_h)  # (B, N, N/2+1)
    return w_h


def _rk3_retiring(w_h: "torch.Tensor", steps: "torch.Tensor", step: _Rk3Step, chunk: int) -> "torch.Tensor":
    """Give each trajectory its ``steps``, ``chunk`` trajectories at a time; one that is done leaves.

    The batch is sorted by step count, most first, so the trajectories of a chunk need
    similar work and those still stepping are a leading slice of it: no copies, and the
    arithmetic of each is the same as in :func:`_rk3_lockstep`. A chunk's working set
    stays in the CPU caches, and a batch costs the sum of its members' steps instead of
    its size times the largest.
    """
    import torch

    order = torch.argsort(steps, descending=True, stable=True)  # (B,)
    w_h, step, counts = w_h[order], step.reorder(order), steps[order].tolist()
    for start in range(0, len(counts), chunk):
        active = min(chunk, len(counts) - start)
        for i in range(counts[start]):
            while counts[start + active - 1] <= i:  # the last ones have taken all their steps
                active -= 1
            rows = slice(start, start + active)
            w_h[rows] = step(w_h[rows], rows)
    restored = torch.empty_like(w_h)
    restored[order] = w_h
    return restored


def default_chunk(n: int, device: "torch.device") -> int:
    """Trajectories that ``if-rk3`` steps together: as many as keep a CPU's caches warm
    (:data:`CPU_CHUNK_POINTS` grid points), the whole batch on a GPU."""
    if device.type == "cuda":
        return 1 << 30
    return max(1, CPU_CHUNK_POINTS // (n * n))


@contextmanager
def rich_progress(description: str, total: int, enabled: bool = True) -> Iterator[Optional[ProgressCallback]]:
    """A rich progress bar as a solver callback that accumulates over several solves.

    Args:
        description: Text shown next to the bar.
        total: Total frames over every solve that will report to it.
        enabled: ``False`` yields ``None`` (no bar), convenient for tests and pipes.

    Yields:
        A callback for :func:`solve_vorticity` (or ``None`` when disabled). Each
        solve reports its own frame count; the bar adds them up.
    """
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(description, total=total)
        done_before = 0
        last_seen = 0

        def report(frames_done: int, frames_total: int) -> None:
            nonlocal done_before, last_seen
            if frames_done <= last_seen:  # within one solve the count only grows: a new solve started
                done_before += last_seen
            last_seen = frames_done
            bar.update(task, completed=done_before + frames_done)

        yield report
