"""Time stepping shared by the bundled explicit solvers: frame times and per-trajectory clocks.

Each trajectory of a batch keeps its own clock and reaches every frame time in equal
sub-steps no larger than its own stable step, so a trajectory's numbers never depend on
the others in its batch (on the CPU, batching never changes the data).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence, TypeVar

import torch

State = TypeVar("State")


def frame_times(t_end: float, n_frames: int) -> torch.Tensor:
    """``n_frames`` equally spaced output times on ``[0, t_end]`` (float64).

    Raises:
        ValueError: ``n_frames < 2`` or ``t_end`` is not a positive finite number.
    """
    if n_frames < 2 or not math.isfinite(t_end) or t_end <= 0:
        raise ValueError("need n_frames >= 2 and t_end > 0")
    return torch.linspace(0.0, t_end, n_frames, dtype=torch.float64)


def checked_times(times: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """Output times as float64, refused unless they start at 0 and increase.

    Raises:
        ValueError: The times do not start at 0 or do not increase.
    """
    times = torch.as_tensor(times, dtype=torch.float64)
    if times.ndim != 1 or times[0] != 0 or bool((times.diff() <= 0).any()):
        raise ValueError("times must be increasing and start at 0")
    return times


def march(
    state: State,
    times: torch.Tensor | Sequence[float],
    stable_dt: Callable[[State], torch.Tensor],
    step: Callable[[State, torch.Tensor], State],
    check: Callable[[State, float], None],
    on_frame: Optional[Callable[[int], None]] = None,
) -> list[State]:
    """Step a batch through ``times``, every trajectory on its own clock.

    Between two frames a trajectory takes equal sub-steps that land exactly on the frame
    time; a trajectory already there steps with ``dt = 0``, which ``step`` must leave
    unchanged.

    Args:
        state: The batch at ``t = 0``: a tensor ``(B, ...)`` or a tuple whose first
            element is one (the others ride along, e.g. a running total).
        times: Increasing output times starting at 0.
        stable_dt: ``f(state)``: the largest stable step of each trajectory, ``(B,)``.
        step: ``f(state, dt)``: the state after steps ``dt`` of shape ``(B,)`` (float64).
        check: ``f(state, t)`` raises when the state at frame time ``t`` is unusable
            (e.g. not finite).
        on_frame: Called with the frame index after each frame.

    Returns:
        The state at every time of ``times``, the initial one first.
    """
    times = checked_times(times)
    lead = state[0] if isinstance(state, tuple) else state
    clock = torch.zeros(lead.shape[0], dtype=torch.float64, device=lead.device)  # (B,)
    frames = [state]
    for index, target in enumerate(times[1:].tolist(), start=1):
        state, clock = _advance_to(target, state, clock, stable_dt, step)
        check(state, target)
        frames.append(state)
        if on_frame is not None:
            on_frame(index)
    return frames


def _advance_to(target: float, state: Any, clock: torch.Tensor, stable_dt: Callable, step: Callable):
    while True:
        remaining = target - clock  # (B,)
        if not bool((remaining > 0).any()):
            return state, clock
        # Equal sub-steps that land exactly on the frame time; 0 for finished trajectories.
        n_steps = torch.ceil(remaining / stable_dt(state)).clamp(min=1)
        dt = torch.where(remaining > 0, remaining / n_steps, torch.zeros_like(remaining))
        state = step(state, dt)
        clock = torch.where(n_steps <= 1, torch.full_like(clock, target), clock + dt)
