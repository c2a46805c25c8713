"""Autoregressive rollout evaluation over a dataset's horizon."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch

from pdebench_core.data.windows import conform
from pdebench_core.devices import autocast_for


@torch.no_grad()
def rollout(model: torch.nn.Module, initial: torch.Tensor, steps: int, t_out: int,
            precision: str = "fp32") -> torch.Tensor:
    """Predict ``steps`` frames autoregressively from ``initial`` ``(B, t_in, *S, C)``.

    Each call predicts ``t_out`` frames; the model always sees the latest ``t_in`` frames.

    Returns:
        ``(B, steps, *S, C)`` predictions.
    """
    t_in = initial.shape[1]
    window = initial
    preds = []
    produced = 0
    while produced < steps:
        with autocast_for(initial.device, precision):
            out = model(window)  # (B, t_out, *S, C)
        out = out.float()
        preds.append(out)
        produced += out.shape[1]
        window = torch.cat([window, out], dim=1)[:, -t_in:]
    return torch.cat(preds, dim=1)[:, :steps]


def _batches(trajectories: Sequence, batch_size: int, limit: int, rank: int = 0, world_size: int = 1):
    n = len(trajectories) if not limit else min(limit, len(trajectories))
    mine = list(range(rank, n, world_size))  # each rank rolls out its own share
    for start in range(0, len(mine), batch_size):
        yield [trajectories[i] for i in mine[start:start + batch_size]]


def _all_reduce(values: dict[str, torch.Tensor], reductions: Mapping[str, str], device) -> dict[str, torch.Tensor]:
    import torch.distributed as dist

    out = {}
    for name, value in values.items():
        tensor = value.to(device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX if reductions[name] == "max" else dist.ReduceOp.SUM)
        out[name] = tensor.cpu()
    return out


@torch.no_grad()
def evaluate_dataset(
    model: torch.nn.Module,
    trajectories: Sequence,
    metrics: Mapping[str, Callable[..., torch.Tensor]],
    t_in: int,
    t_out: int,
    horizon: int | None,
    device: torch.device,
    grid: Sequence[int] | None = None,
    n_channels: int | None = None,
    batch_size: int = 8,
    max_trajectories: int = 0,
    precision: str = "fp32",
    reductions: Mapping[str, str] | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> dict[str, Any]:
    """Roll out over every trajectory and score it.

    Every metric is computed per sample over the whole rollout, per rollout step and
    per real channel; padded channels are excluded. One-step (teacher-forced) error
    is reported for each metric under ``one_step``.

    Returns:
        ``{"summary": {metric: mean over samples}, "per_step": {metric: [T]},
        "per_channel": {metric: [C]}, "one_step": {metric: value}, "n_samples": N,
        "horizon": steps}``.
    """
    model.eval()
    totals: dict[str, torch.Tensor] = {}
    one_step: dict[str, torch.Tensor] = {}
    per_step: dict[str, torch.Tensor] = {}
    per_channel: dict[str, torch.Tensor] = {}
    reductions = {name: (reductions or {}).get(name, "mean") for name in metrics}
    count = 0
    steps = None
    for items in _batches(trajectories, batch_size, max_trajectories, rank, world_size):
        traj = torch.stack([conform(t, grid, n_channels) for t in items]).to(device)  # (B, T, *S, C)
        real = int(torch.as_tensor(items[0]).shape[-1])
        mask = torch.zeros(traj.shape[-1], dtype=torch.bool, device=device)
        mask[:real] = True
        available = traj.shape[1] - t_in
        steps = available if not horizon else min(horizon, available)
        if steps <= 0:
            from pdebench_core.errors import UsageError

            raise UsageError(f"trajectories have {traj.shape[1]} frames, not more than t_in={t_in}; nothing to roll out")
        pred = rollout(model, traj[:, :t_in], steps, t_out, precision)  # (B, steps, *S, C)
        true = traj[:, t_in:t_in + steps]
        with autocast_for(device, precision):
            first = model(traj[:, :t_in]).float()[:, :1]  # teacher-forced next frame
        for name, fn in metrics.items():
            combine = torch.maximum if reductions[name] == "max" else torch.add
            value = fn(pred, true, mask).double().cpu()  # (B,)
            curve = torch.stack([fn(pred[:, s:s + 1], true[:, s:s + 1], mask).double().cpu()
                                 for s in range(steps)], dim=1)  # (B, steps)
            chans = torch.stack([fn(pred, true, _only(mask, c)).double().cpu() for c in range(real)], dim=1)  # (B, real)
            single = fn(first, true[:, :1], mask).double().cpu()  # (B,)
            if reductions[name] == "max":
                value, curve, chans, single = value.max(0).values, curve.max(0).values, chans.max(0).values, single.max(0).values
            else:
                value, curve, chans, single = value.sum(0), curve.sum(0), chans.sum(0), single.sum(0)
            totals[name] = value if name not in totals else combine(totals[name], value)
            per_step[name] = curve if name not in per_step else combine(per_step[name], curve)
            per_channel[name] = chans if name not in per_channel else combine(per_channel[name], chans)
            one_step[name] = single if name not in one_step else combine(one_step[name], single)
        count += traj.shape[0]
    if world_size > 1:
        totals, per_step, per_channel, one_step = (_all_reduce(d, reductions, device)
                                                   for d in (totals, per_step, per_channel, one_step))
        count = int(_all_reduce({"n": torch.tensor(float(count))}, {"n": "sum"}, device)["n"])
        steps = int(_all_reduce({"s": torch.tensor(float(steps or 0))}, {"s": "max"}, device)["s"])

    def finish(name: str, value: torch.Tensor):
        value = value / count if reductions[name] != "max" else value
        return value.tolist() if value.ndim else float(value)

    return {
        "summary": {k: finish(k, v) for k, v in totals.items()},
        "per_step": {k: finish(k, v) for k, v in per_step.items()},
        "per_channel": {k: finish(k, v) for k, v in per_channel.items()},
        "one_step": {k: finish(k, v) for k, v in one_step.items()},
        "n_samples": count,
        "horizon": steps,
    }


def _only(mask: torch.Tensor, channel: int) -> torch.Tensor:
    single = torch.zeros_like(mask)
    single[channel] = True
    return single
