"""Autoregressive rollout evaluation over a dataset's horizon.

Where the rollout is scored is the *grid mode* (``eval.grid``):

* ``model``: on the model's grid, against the data resized to it (what the model sees);
* ``native``: the prediction is resized back to the dataset's own grid and scored against
  the data as stored (no interpolation of the truth);
* ``strided``: on the model's grid, but only at every ``model // native``-th point per axis,
  as many points as the dataset's own grid has. The truth there is still the data resized to
  the model's grid: with ``align_corners=False`` those points sit a quarter cell off the
  stored ones, so this is not the stored data. This is how the official DPOT code scores (its
  target mask), and what the Table 1 protocol uses.

On a dataset whose grid equals the model's the three agree exactly.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from pdebench_core.data.normalization import to_physical
from pdebench_core.data.windows import conform, n_frames_of, reset_padding, resize_frames
from pdebench_core.devices import autocast_for, tf32_disabled
from pdebench_core.errors import UsageError
from pdebench_core.metrics import Metric, Pair

GRID_MODES = ("model", "native", "strided")


@torch.no_grad()
def rollout(model: torch.nn.Module, initial: torch.Tensor, steps: int, t_out: int,
            precision: str = "fp32", channel_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Predict ``steps`` frames autoregressively from ``initial`` ``(B, t_in, *S, C)``.

    Each call predicts ``t_out`` frames; the model always sees the latest ``t_in`` frames.

    Args:
        model: Maps ``(B, t_in, *S, C)`` to ``(B, t_out, *S, C)``.
        initial: The first ``t_in`` frames.
        steps: Frames to predict.
        t_out: Frames per model call.
        precision: ``fp32``, ``bf16`` or ``auto`` (see :func:`autocast_for`).
        channel_mask: ``(C,)`` bool, True for real channels. Padded channels of every
            prediction are put back to the padding value before they are fed back, so the
            model never sees its own guess of the padding.

    Returns:
        ``(B, steps, *S, C)`` predictions.
    """
    t_in = initial.shape[1]
    window = initial
    preds = []
    produced = 0
    while produced < steps:
        # fp32 means IEEE float32 here: TF32 (on for training matmuls on CUDA) is off too
        with autocast_for(initial.device, precision), tf32_disabled() if precision == "fp32" else nullcontext():
            out = model(window)  # (B, t_out, *S, C)
        out = out.float()
        if channel_mask is not None:
            out = reset_padding(out, channel_mask)
        preds.append(out)
        produced += out.shape[1]
        window = torch.cat([window, out], dim=1)[:, -t_in:]
    return torch.cat(preds, dim=1)[:, :steps]


@dataclass(frozen=True)
class EvalPlan:
    """What every process agrees on before rolling out (so collectives match on every rank).

    Attributes:
        n: Trajectories evaluated (over all processes).
        steps: Frames rolled out after ``t_in``.
        native_grid: The dataset's own spatial shape.
        real: Channels stored in the data (the rest of the model's channels is padding).
        scored: Channels that are scored (the first ``scored``; at most ``real``).
    """

    n: int
    steps: int
    native_grid: tuple[int, ...]
    real: int
    scored: int


def scored_channels_of(spec: Any) -> int | None:
    """How many leading channels of a dataset are scored (``None``: all of them).

    A spec limits scoring with ``channel_mask`` (``False`` = not scored) or with the
    parameter ``scored_fields`` (CFDBench's geometry mask is an input that is never scored).
    Either must name leading channels; otherwise every channel is scored.
    """
    fields = list(getattr(spec, "fields", ()) or ())
    mask = getattr(spec, "channel_mask", None)
    if mask:
        count = sum(bool(m) for m in mask)
        return count if all(mask[:count]) and count < len(mask) else None
    named = list((getattr(spec, "params", None) or {}).get("scored_fields") or [])
    if named and named == fields[:len(named)] and len(named) < len(fields):
        return len(named)
    return None


def _trajectory_shape(trajectories: Sequence) -> tuple[int, ...]:
    """``(T, *S, C)`` of one trajectory: lazy readers state it as ``.shape``; a stacked
    ``(N, T, *S, C)`` array has it after its first axis."""
    import numpy as np

    if isinstance(trajectories, (np.ndarray, torch.Tensor)):
        return tuple(int(s) for s in trajectories.shape[1:])
    shape = getattr(trajectories, "shape", None)
    if shape:
        return tuple(int(s) for s in shape)
    return tuple(int(s) for s in np.shape(trajectories[0]))


def plan_evaluation(trajectories: Sequence, t_in: int, horizon: int | None, max_trajectories: int = 0,
                    scored_channels: int | None = None) -> EvalPlan | None:
    """The shape of an evaluation, from metadata only (``None`` when there is nothing to evaluate).

    Raises:
        UsageError: the trajectories have no frame after ``t_in``.
    """
    n = len(trajectories) if not max_trajectories else min(max_trajectories, len(trajectories))
    if n == 0:
        return None
    shape = _trajectory_shape(trajectories)
    available = n_frames_of(trajectories) - t_in
    if available <= 0:
        raise UsageError(f"trajectories have {t_in + available} frames, not more than t_in={t_in}; "
                         f"nothing to roll out")
    steps = available if not horizon else min(int(horizon), available)
    real = shape[-1]
    scored = real if scored_channels is None else min(int(scored_channels), real)
    return EvalPlan(n=n, steps=steps, native_grid=tuple(shape[1:-1]), real=real, scored=scored)


def _my_batches(trajectories: Sequence, n: int, batch_size: int, rank: int, world_size: int):
    mine = list(range(rank, n, world_size))  # each rank rolls out its own share
    for start in range(0, len(mine), batch_size):
        yield [trajectories[i] for i in mine[start:start + batch_size]]


def _first_channels(n_channels: int, count: int, device) -> torch.Tensor:
    mask = torch.zeros(n_channels, dtype=torch.bool, device=device)
    mask[:count] = True
    return mask


def strides_for(model_grid: Sequence[int], native_grid: Sequence[int]) -> tuple[int, ...]:
    """Per axis ``model // native`` (at least 1): the stride of the official DPOT target mask."""
    return tuple(max(1, int(m) // int(n)) for m, n in zip(model_grid, native_grid))


def _to_native(frames: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """``(B, T, *S, C)`` resized to ``(B, T, *grid, C)``."""
    batch, steps = frames.shape[:2]
    flat = frames.reshape(batch * steps, *frames.shape[2:])
    return resize_frames(flat, grid).reshape(batch, steps, *grid, frames.shape[-1])


class _Scorer:
    """Brings predictions and truth onto the grid of the chosen mode."""

    def __init__(self, mode: str, plan: EvalPlan, model_grid: Sequence[int] | None) -> None:
        if mode not in GRID_MODES:
            raise UsageError(f"unknown eval.grid '{mode}'; use one of {', '.join(GRID_MODES)}")
        self.mode, self.plan = mode, plan
        self.model_grid = tuple(model_grid) if model_grid is not None else plan.native_grid
        strides = strides_for(self.model_grid, plan.native_grid)
        self.slices = (slice(None), slice(None), *(slice(None, None, s) for s in strides), slice(None))

    def __call__(self, pred: torch.Tensor, model_truth: torch.Tensor, native_truth: torch.Tensor | None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mode == "native":
            return _to_native(pred, self.plan.native_grid), native_truth
        if self.mode == "strided":
            return pred[self.slices], model_truth[self.slices]
        return pred, model_truth


class _Totals:
    """Per-metric sums (or maxima) over samples, kept on the evaluation device."""

    def __init__(self, metrics: Mapping[str, Metric], steps: int, scored: int, device) -> None:
        self.reductions = {name: metric.reduction for name, metric in metrics.items()}
        self.count = torch.zeros((), dtype=torch.float64, device=device)
        self.values: dict[str, dict[str, torch.Tensor]] = {}
        for name, how in self.reductions.items():
            start = -float("inf") if how == "max" else 0.0  # neutral: a rank with no samples adds nothing
            self.values[name] = {
                "summary": torch.full((), start, dtype=torch.float64, device=device),
                "per_step": torch.full((steps,), start, dtype=torch.float64, device=device),
                "per_channel": torch.full((scored,), start, dtype=torch.float64, device=device),
                "one_step": torch.full((), start, dtype=torch.float64, device=device),
            }

    def add(self, name: str, part: str, per_sample: torch.Tensor) -> None:
        """Fold ``(B, ...)`` per-sample values into the total of ``name``/``part``."""
        held = self.values[name][part]
        per_sample = per_sample.to(held.dtype)
        if self.reductions[name] == "max":
            self.values[name][part] = torch.maximum(held, per_sample.max(0).values)
        else:
            self.values[name][part] = held + per_sample.sum(0)

    def all_reduce(self) -> None:
        """Combine every process's totals; each rank makes the same calls with the same sizes."""
        import torch.distributed as dist

        for how, op in (("mean", dist.ReduceOp.SUM), ("max", dist.ReduceOp.MAX)):
            names = [n for n, r in self.reductions.items() if (r == "max") == (how == "max")]
            parts = [self.values[n][p].reshape(-1) for n in names for p in self.values[n]]
            if how == "mean":
                parts.append(self.count.reshape(1))
            if not parts:
                continue
            flat = torch.cat(parts)
            dist.all_reduce(flat, op=op)
            self._unpack(names, flat, with_count=how == "mean")

    def _unpack(self, names: list[str], flat: torch.Tensor, with_count: bool) -> None:
        offset = 0
        for name in names:
            for part, held in self.values[name].items():
                size = held.numel()
                self.values[name][part] = flat[offset:offset + size].reshape(held.shape)
                offset += size
        if with_count:
            self.count = flat[offset]

    def results(self) -> dict[str, Any]:
        """Means (or maxima) as Python numbers, after a single transfer to the host."""
        pieces = [self.count.reshape(1)] + [v.reshape(-1) for parts in self.values.values() for v in parts.values()]
        host = torch.cat(pieces).cpu()
        count = max(float(host[0]), 1.0)
        out: dict[str, Any] = {"summary": {}, "per_step": {}, "per_channel": {}, "one_step": {},
                               "count": int(round(float(host[0])))}
        offset = 1
        for name, parts in self.values.items():
            scale = 1.0 if self.reductions[name] == "max" else 1.0 / count
            for part, held in parts.items():
                values = host[offset:offset + held.numel()] * scale
                out[part][name] = values.tolist() if held.ndim else float(values[0])
                offset += held.numel()
        return out


def score_batch(metrics: Mapping[str, Metric], pred: torch.Tensor, true: torch.Tensor, first: torch.Tensor,
                mask: torch.Tensor, scored: int) -> dict[str, dict[str, torch.Tensor]]:
    """Every view of every metric on one batch: one evaluation per metric of the rollout.

    The metrics share one :class:`Pair` for the rollout and one for the teacher-forced
    step, so the error and its spectrum are computed once per batch.

    Args:
        metrics: Name -> :class:`Metric`.
        pred: Rolled-out prediction ``(B, T, *S, C)``.
        true: Ground truth, same shape.
        first: Teacher-forced prediction of the first step ``(B, 1, *S, C)``.
        mask: ``(C,)`` bool, True for the scored channels.
        scored: The scored channels are the first ``scored``.

    Returns:
        ``{name: {"summary": (B,), "per_step": (B, T), "per_channel": (B, scored), "one_step": (B,)}}``.
    """
    rollout_pair, first_pair = Pair(pred, true), Pair(first, true[:, :1])
    out = {}
    for name, metric in metrics.items():
        scores = metric.score(rollout_pair, mask)
        out[name] = {"summary": scores.summary, "per_step": scores.per_step,
                     "per_channel": scores.per_channel[:, :scored],
                     "one_step": metric.score(first_pair, mask).summary}
    return out


def _checked_metrics(metrics: Mapping[str, Any]) -> dict[str, Metric]:
    for name, metric in metrics.items():
        if not isinstance(metric, Metric):
            raise UsageError(f"metric '{name}' is a {type(metric).__name__}, not a pdebench_core.metrics.Metric; "
                             f"look metrics up with workflow.metric_functions or pdebench_core.metrics.METRICS")
    return dict(metrics)


def _load_batch(items: list, grid: Sequence[int] | None, n_channels: int | None, device, native: bool
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The batch on the model grid ``(B, T, *grid, C)``, and as stored (channels padded) when needed."""
    on_model = torch.stack([conform(t, grid, n_channels) for t in items]).to(device)
    if not native:
        return on_model, None
    stored = torch.stack([conform(t, None, n_channels) for t in items]).to(device)
    return on_model, stored


@torch.no_grad()
def evaluate_dataset(
    model: torch.nn.Module,
    trajectories: Sequence,
    metrics: Mapping[str, Metric],
    t_in: int,
    t_out: int,
    horizon: int | None,
    device: torch.device,
    grid: Sequence[int] | None = None,
    n_channels: int | None = None,
    batch_size: int = 8,
    max_trajectories: int = 0,
    precision: str = "fp32",
    rank: int = 0,
    world_size: int = 1,
    grid_mode: str = "model",
    scored_channels: int | None = None,
    normalization: tuple[Any, Any] | None = None,
) -> dict[str, Any]:
    """Roll out over every trajectory and score it.

    Every metric is evaluated once per batch and gives its value per sample over the
    whole rollout, per rollout step and per scored channel; padded channels are never
    scored and are reset to the padding value at every rollout step. One-step
    (teacher-forced) error is reported for each metric under ``one_step``. Samples
    combine as each metric's ``reduction`` says (mean or max). With several processes
    each rolls out its share and the totals are summed (or maxed); a process without
    trajectories still takes part, adding nothing.

    Args:
        metrics: Name -> :class:`pdebench_core.metrics.Metric` (``workflow.metric_functions``).
        grid_mode: ``model``, ``native`` or ``strided`` (see the module docstring).
        scored_channels: Score only the first this many real channels (all when ``None``).
        normalization: ``(mean, std)`` per channel when the trajectories come normalised
            (``data.<name>.normalize``); predictions and targets are turned back into
            physical values before scoring.

    Returns:
        ``{"summary": {metric: mean over samples}, "per_step": {metric: [T]},
        "per_channel": {metric: [C]}, "one_step": {metric: value}, "n_samples": N,
        "horizon": steps}``.
    """
    model.eval()
    metrics = _checked_metrics(metrics)
    plan = plan_evaluation(trajectories, t_in, horizon, max_trajectories, scored_channels)
    if plan is None:
        return {"summary": {}, "per_step": {}, "per_channel": {}, "one_step": {}, "n_samples": 0, "horizon": None}
    scorer = _Scorer(grid_mode, plan, grid)
    width = n_channels if n_channels is not None else plan.real
    keep, score_mask = _first_channels(width, plan.real, device), _first_channels(width, plan.scored, device)
    totals = _Totals(metrics, plan.steps, plan.scored, device)
    for items in _my_batches(trajectories, plan.n, batch_size, rank, world_size):
        traj, stored = _load_batch(items, grid, n_channels, device, grid_mode == "native")
        start = reset_padding(traj[:, :t_in], keep)
        pred = rollout(model, start, plan.steps, t_out, precision, keep)  # (B, steps, *S, C)
        with autocast_for(device, precision):
            first = reset_padding(model(start).float()[:, :1], keep)  # teacher-forced next frame
        truth_native = stored[:, t_in:t_in + plan.steps] if stored is not None else None
        pred_s, true_s = scorer(pred, traj[:, t_in:t_in + plan.steps], truth_native)
        first_s, _ = scorer(first, traj[:, t_in:t_in + 1], None if stored is None else stored[:, t_in:t_in + 1])
        pred_s, true_s, first_s = (to_physical(v, normalization) for v in (pred_s, true_s, first_s))
        for name, parts in score_batch(metrics, pred_s, true_s, first_s, score_mask, plan.scored).items():
            for part, per_sample in parts.items():
                totals.add(name, part, per_sample)
        totals.count += traj.shape[0]
    if world_size > 1:
        totals.all_reduce()
    out = totals.results()
    out.update({"n_samples": out.pop("count"), "horizon": plan.steps})
    return out
