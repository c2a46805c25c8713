"""Scoring a 20-step rollout with 5 metrics: one call per metric against one call per view.

Evaluation reports every metric over the whole rollout, per step, per channel and for the
teacher-forced step. It used to get them by calling each metric once for the rollout,
once on the steps flattened into one-frame rollouts, once per channel (every other channel
masked out) and once for the first step, each call casting the batch and recomputing the
error and its FFT. Now one :class:`pdebench_core.metrics.Pair` per batch holds the error and
its spectrum, and one ``Metric.score`` per metric gives all three views.

Both ways below run the same metric functions on the same batch; the old way repeats the
old call pattern (:func:`score_per_view`), the new way is evaluation's own
:func:`pdebench_core.evaluation.score_batch`. The script checks that both give the same
numbers, then prints the time of each and their ratio.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/evaluation.py [--batch 8] [--steps 20] [--grid 64]
        [--channels 4] [--metrics l2re,rmse,nrmse,vrmse,frmse_mid] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from typing import Callable, Mapping

import torch

from pdebench_core.evaluation import score_batch
from pdebench_core.metrics import METRICS, Metric, Pair

DEFAULT_METRICS = "l2re,rmse,nrmse,vrmse,frmse_mid"


def _summary(metric: Metric, pred: torch.Tensor, true: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """One call of a metric as it used to be called: its own cast, error and FFT, ``(B,)``."""
    return metric.score(Pair(pred, true), mask).summary


def _only_channel(n_channels: int, channel: int) -> torch.Tensor:
    mask = torch.zeros(n_channels, dtype=torch.bool)
    mask[channel] = True
    return mask


def score_per_view(metrics: Mapping[str, Metric], pred: torch.Tensor, true: torch.Tensor, first: torch.Tensor,
                   mask: torch.Tensor, scored: int) -> dict[str, dict[str, torch.Tensor]]:
    """The old call pattern: every view of every metric from calls of its own."""
    batch, steps = pred.shape[:2]
    flat_pred = pred.reshape(batch * steps, 1, *pred.shape[2:])
    flat_true = true.reshape(batch * steps, 1, *true.shape[2:])
    out = {}
    for name, metric in metrics.items():
        channels = [_summary(metric, pred, true, _only_channel(mask.shape[0], c)) for c in range(scored)]
        out[name] = {
            "summary": _summary(metric, pred, true, mask),
            "per_step": _summary(metric, flat_pred, flat_true, mask).reshape(batch, steps),
            "per_channel": torch.stack(channels, dim=1),
            "one_step": _summary(metric, first, true[:, :1], mask),
        }
    return out


def _best_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _same(old: dict, new: dict) -> bool:
    return all(torch.allclose(old[name][part], new[name][part], rtol=1e-12, atol=0.0, equal_nan=True)
               for name in old for part in old[name])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20, help="rollout steps scored")
    parser.add_argument("--grid", type=int, default=64, help="points per axis of a 2D grid")
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--metrics", default=DEFAULT_METRICS, help="comma-separated builtin metric names")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each way; the best counts")
    args = parser.parse_args()

    metrics = {name: METRICS[name] for name in args.metrics.split(",")}
    generator = torch.Generator().manual_seed(0)
    shape = (args.batch, args.steps, args.grid, args.grid, args.channels)
    true = torch.randn(shape, generator=generator) + 2
    pred = true + 0.1 * torch.randn(shape, generator=generator)
    first = pred[:, :1] + 0.01 * torch.randn(pred[:, :1].shape, generator=generator)
    mask = torch.ones(args.channels, dtype=torch.bool)

    def old() -> dict:
        return score_per_view(metrics, pred, true, first, mask, args.channels)

    def new() -> dict:
        return score_batch(metrics, pred, true, first, mask, args.channels)

    if not _same(old(), new()):
        raise SystemExit("the two ways disagree; not timing them")
    old_s, new_s = _best_time(old, args.repeats), _best_time(new, args.repeats)
    print(f"batch {'x'.join(map(str, shape))} (B, T, H, W, C), {len(metrics)} metrics: {', '.join(metrics)}; "
          f"torch threads {torch.get_num_threads()}")
    print(f"per view (old): {old_s:.3f} s")
    print(f"one call (new): {new_s:.3f} s")
    print(f"speed-up: {old_s / new_s:.1f}x")


if __name__ == "__main__":
    main()
