"""What one micro-batch contributes to the loss: the model call(s) and the loss over them.

The engine owns devices, precision, parallelism and the optimizer; an objective owns
only how predictions are made from a window and compared with its targets.

Three objectives, chosen by the task settings ``task.t_ar`` and ``task.pushforward``:

- next frames (``t_ar=1``): one model call per window;
- unrolled (``t_ar=k``, the official DPOT ``T_ar``): ``k`` auto-regressive calls, input noise
  at each call, gradients through the whole unroll, losses summed over the calls;
- pushforward (``t_ar=k``, ``pushforward=true``; PDEBench, Brandstetter et al. 2022): ``k - 1``
  calls without gradient, then one trained call on the model's own prediction.

Every unroll puts padded channels back to the padding value before a prediction becomes
an input, so predicted padding is never fed back.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch

from pdebench_core.data.windows import reset_padding
from pdebench_core.errors import UsageError

Perturb = Optional[Callable[[torch.Tensor], torch.Tensor]]
Objective = Callable[..., torch.Tensor]


def _loss_mask(mask: torch.Tensor, loss_on_padding: bool) -> torch.Tensor | None:
    """The channels the loss averages over: all of them (``None``) or the real ones."""
    return None if loss_on_padding else mask


def next_input(x: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The input of the next auto-regressive call: the last ``t_in`` frames of ``x`` then ``pred``.

    Args:
        x: ``(B, t_in, *S, C)`` current input.
        pred: ``(B, t_out, *S, C)`` prediction from ``x``.
        mask: ``(B, C)`` or ``(C,)`` bool, True for real channels; padded channels of
            ``pred`` are reset to the padding value.
    """
    t_in = x.shape[1]
    return torch.cat([x, reset_padding(pred.to(x.dtype), mask)], dim=1)[:, -t_in:]


def next_frames_objective(loss_fn: Callable[..., torch.Tensor], loss_on_padding: bool = False) -> Objective:
    """One model call per window: predict ``y`` from ``x`` (optionally perturbed).

    Args:
        loss_fn: ``(pred, target, mask) -> summed loss`` (see :mod:`pdebench_core.losses`).
        loss_on_padding: Average the loss over padded channels too (the official DPOT loss).

    Returns:
        ``objective(model, x, y, mask, perturb) -> loss``, with ``x`` ``(B, t_in, *S, C)``,
        ``y`` ``(B, t_out, *S, C)`` and ``mask`` ``(B, C)`` or ``(C,)``.
    """

    def objective(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor,
                  perturb: Perturb = None) -> torch.Tensor:
        if perturb is not None:
            x = perturb(x)
        pred = model(x)  # (B, t_out, *S, C)
        return loss_fn(pred.float(), y, _loss_mask(mask, loss_on_padding))

    return objective


def unrolled_objective(loss_fn: Callable[..., torch.Tensor], steps: int,
                       loss_on_padding: bool = False) -> Objective:
    """The official ``T_ar`` training: ``steps`` auto-regressive calls, trained end to end.

    Each call's input is perturbed (when a perturbation is given), its prediction is scored
    against the next ``t_out`` target frames, and it is appended to the input window for the
    next call. The loss is the sum over calls; gradients flow through the whole unroll.

    Args:
        loss_fn: ``(pred, target, mask) -> summed loss``.
        steps: Auto-regressive calls per window (``task.t_ar``).
        loss_on_padding: Average the loss over padded channels too.

    Returns:
        ``objective(model, x, y, mask, perturb) -> loss`` with ``y`` ``(B, steps * t_out, *S, C)``.
    """

    def objective(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor,
                  perturb: Perturb = None) -> torch.Tensor:
        t_out, scored = y.shape[1] // steps, _loss_mask(mask, loss_on_padding)
        loss = torch.zeros((), device=y.device)
        for step in range(steps):
            if perturb is not None:
                x = perturb(x)
            pred = model(x)
            loss = loss + loss_fn(pred.float(), y[:, step * t_out:(step + 1) * t_out], scored)
            if step < steps - 1:
                x = next_input(x, pred, mask)
        return loss

    return objective


def pushforward_objective(loss_fn: Callable[..., torch.Tensor], steps: int,
                          loss_on_padding: bool = False) -> Objective:
    """The pushforward trick: ``steps - 1`` calls without gradient, then one trained call.

    The trained call sees the model's own (detached) predictions as its latest input frames,
    so the model learns to correct its own errors at the cost of a single backward pass.

    Args:
        loss_fn: ``(pred, target, mask) -> summed loss``.
        steps: Calls per window, the last one trained (``task.t_ar``, at least 2).
        loss_on_padding: Average the loss over padded channels too.

    Returns:
        ``objective(model, x, y, mask, perturb) -> loss`` with ``y`` ``(B, steps, *S, C)``;
        only the last target frame is scored.
    """

    def objective(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor,
                  perturb: Perturb = None) -> torch.Tensor:
        with torch.no_grad():
            for _ in range(steps - 1):
                if perturb is not None:
                    x = perturb(x)
                x = next_input(x, model(x), mask)
        if perturb is not None:
            x = perturb(x)
        pred = model(x)
        return loss_fn(pred.float(), y[:, -pred.shape[1]:], _loss_mask(mask, loss_on_padding))

    return objective


def _task_setting(task: Any, key: str, default: Any) -> Any:
    """``task.<key>``, or ``default`` for tasks without that setting."""
    value = task.get(key, default) if hasattr(task, "get") else getattr(task, key, default)
    return default if value is None else value


def unroll_steps(task: Any) -> int:
    """``task.t_ar``: auto-regressive calls per training window (1 for tasks without it)."""
    return int(_task_setting(task, "t_ar", 1))


def check_unroll_settings(task: Any, train: Any) -> None:
    """Refuse an auto-regressive setting that cannot train, with a one-line message.

    Raises:
        UsageError: ``task.t_ar`` below 1; a pushforward with ``train.t_out`` other than 1
            or with nothing to unroll (``task.t_ar`` below 2).
    """
    t_ar = unroll_steps(task)
    if t_ar < 1:
        raise UsageError(f"task.t_ar must be at least 1 (auto-regressive calls per training window), got {t_ar}")
    if not bool(_task_setting(task, "pushforward", False)):
        return
    if int(train.t_out) != 1:
        raise UsageError(f"task.pushforward=true needs a model predicting one frame per call, but train.t_out="
                         f"{train.t_out}; set train.t_out=1 or task.pushforward=false")
    if t_ar < 2:
        raise UsageError("task.pushforward=true unrolls task.t_ar - 1 steps without gradient before the trained "
                         f"one, so it needs task.t_ar >= 2 (got {t_ar}); e.g. task.t_ar=2")


def training_objective(cfg: Any) -> Objective:
    """The objective a run's settings ask for (``task.t_ar``, ``task.pushforward``,
    ``train.loss``, ``train.loss_on_padding``)."""
    from pdebench_core.losses import LOSSES

    check_unroll_settings(cfg.task, cfg.train)
    loss_fn = LOSSES.get(cfg.train.loss)
    if loss_fn is None:
        raise UsageError(f"unknown train.loss '{cfg.train.loss}'; use {' or '.join(LOSSES)}")
    steps, on_padding = unroll_steps(cfg.task), bool(cfg.train.loss_on_padding)
    if bool(_task_setting(cfg.task, "pushforward", False)):
        return pushforward_objective(loss_fn, steps, on_padding)
    if steps > 1:
        return unrolled_objective(loss_fn, steps, on_padding)
    return next_frames_objective(loss_fn, on_padding)


def check_training_settings(cfg: Any) -> None:
    """Refuse bad training settings before any data is built or any compute runs.

    Checks the optimizer and schedule (:func:`~pdebench_core.optim.check_optimizer_settings`),
    ``train.sampling``, ``train.loss`` and the auto-regressive task settings.

    Raises:
        UsageError: the first bad setting, named with its fix.
    """
    from pdebench_core.data.mixture import check_sampling
    from pdebench_core.optim import check_optimizer_settings

    check_optimizer_settings(cfg.train)
    check_sampling(cfg.train.sampling)
    training_objective(cfg)
