"""Balanced, resumable, rank-sharded sampling over a mixture of datasets.

What an epoch draws from dataset ``k`` depends on the sampling unit:

- ``window``: every window of every trajectory, ``weight_k`` times (``weight_k * windows_k``
  samples);
- ``trajectory`` (the official DPOT epoch): every trajectory ``weight_k`` times, each draw
  one window at a random start (``weight_k * trajectories_k`` samples), so a dataset with
  long trajectories is not over-sampled.

Fractional weights draw a random subset for the fraction. Samples are shuffled, grouped so
that a batch never mixes spatial dimensions, and cut into *global* batches of
``batch_size`` windows, one per optimizer step. Each global batch is split into
``world_size * grad_accum`` equal micro-batches dealt to ranks and accumulation
steps, so the windows of a step are the same whatever the number of processes or
accumulation steps, and no two ranks see the same window. The sampler is a pure
function of ``(seed, epoch)``, so a run resumes mid-epoch from ``(epoch, position)``.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch

from pdebench_core.errors import UsageError

SAMPLING_MODES = ("window", "trajectory")


def check_sampling(mode: str) -> None:
    """Refuse an unknown ``train.sampling`` with a one-line message."""
    if mode not in SAMPLING_MODES:
        raise UsageError(f"unknown train.sampling '{mode}'; use trajectory (one random window per "
                         f"trajectory draw, the official DPOT epoch) or window (every window)")


class MixtureBatchSampler(torch.utils.data.Sampler):
    """Yields this rank's micro-batches: lists of indices into the concatenated datasets.

    Args:
        sizes: Windows per dataset.
        weights: Replication weight per dataset (fractional weights draw a random subset).
        groups: Group id per dataset (e.g. spatial dimension); batches stay in one group.
        batch_size: Windows per optimizer step, over all ranks and accumulation steps.
        seed: Base seed; epoch ``e`` shuffles with a seed derived from ``seed`` and ``e``.
        rank: This process's rank.
        world_size: Number of ranks.
        grad_accum: Micro-batches accumulated per optimizer step on each rank.
        max_per_dataset: Cap on samples per dataset per epoch (0 = none).
        trajectories: Trajectories per dataset (required for ``trajectory`` sampling);
            dataset ``k``'s windows are numbered trajectory by trajectory, the same number
            of windows for each.
        sampling: ``window`` or ``trajectory`` (see the module docstring).
    """

    def __init__(self, sizes: Sequence[int], weights: Sequence[float], groups: Sequence[int], batch_size: int,
                 seed: int = 0, rank: int = 0, world_size: int = 1, grad_accum: int = 1,
                 max_per_dataset: int = 0, trajectories: Sequence[int] | None = None,
                 sampling: str = "window") -> None:
        if len(sizes) != len(weights) or len(sizes) != len(groups):
            raise ValueError("sizes, weights and groups must have one entry per dataset")
        check_sampling(sampling)
        if sampling == "trajectory":
            if trajectories is None or len(trajectories) != len(sizes):
                raise ValueError("trajectory sampling needs the number of trajectories of every dataset")
            if any(n and size % n for size, n in zip(sizes, trajectories)):
                raise ValueError("every trajectory of a dataset must hold the same number of windows")
        self.pieces = world_size * grad_accum
        if batch_size % self.pieces:
            raise UsageError(
                f"train.batch_size={batch_size} must be divisible by processes x train.grad_accum "
                f"= {world_size} x {grad_accum}"
            )
        self.sizes, self.weights, self.groups = list(sizes), list(weights), list(groups)
        self.batch_size, self.seed = batch_size, seed
        self.rank, self.world_size, self.grad_accum = rank, world_size, grad_accum
        self.max_per_dataset = max_per_dataset
        self.sampling = sampling
        self.trajectories = list(trajectories) if trajectories is not None else list(sizes)
        self.offsets = [sum(self.sizes[:k]) for k in range(len(self.sizes))]
        self.epoch = 0
        self.position = 0  # micro-batches of the current epoch already yielded on this rank

    def _picks(self, k: int) -> tuple[int, int, int]:
        """``(units, whole passes, units of the partial pass)`` dataset ``k`` draws per epoch:
        its trajectories (``trajectory`` sampling) or windows, as its weight says."""
        units = self.trajectories[k] if self.sampling == "trajectory" else self.sizes[k]
        whole, frac = divmod(self.weights[k], 1.0)
        return units, int(whole), max(1, round(frac * units)) if frac > 0 else 0

    def _draw(self, k: int, gen: torch.Generator) -> torch.Tensor:
        """Dataset ``k``'s samples of one epoch, as window indices local to the dataset."""
        units, whole, partial = self._picks(k)
        picks = [torch.randperm(units, generator=gen) for _ in range(whole)]
        if partial:
            picks.append(torch.randperm(units, generator=gen)[:partial])
        chosen = torch.cat(picks) if picks else torch.empty(0, dtype=torch.long)
        if self.max_per_dataset:
            chosen = chosen[: self.max_per_dataset]
        if self.sampling == "trajectory":
            per_trajectory = self.sizes[k] // units
            starts = torch.randint(per_trajectory, (len(chosen),), generator=gen)
            chosen = chosen * per_trajectory + starts  # one random window of each drawn trajectory
        return chosen

    def samples_per_epoch(self, k: int) -> int:
        """Windows dataset ``k`` gives one epoch (the same in every epoch)."""
        if self.sizes[k] == 0 or self.weights[k] <= 0 or self.trajectories[k] == 0:
            return 0
        units, whole, partial = self._picks(k)
        count = whole * units + partial
        return min(count, self.max_per_dataset) if self.max_per_dataset else count

    def starved_groups(self) -> list[int]:
        """Groups whose windows of an epoch fill no whole batch: batches never mix groups, so
        what only they train (a dimension's embedding and head) would never be trained."""
        counts: dict[int, int] = {}
        for k, group in enumerate(self.groups):
            counts[group] = counts.get(group, 0) + self.samples_per_epoch(k)
        return [group for group, count in sorted(counts.items()) if 0 < count < self.batch_size]

    def global_batches(self, epoch: int) -> list[list[int]]:
        """The epoch's optimizer-step batches (all ranks together), in order."""
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        by_group: dict[int, list[int]] = {}
        for k, (size, weight) in enumerate(zip(self.sizes, self.weights)):
            if size == 0 or weight <= 0 or self.trajectories[k] == 0:
                continue
            chosen = self._draw(k, gen)
            by_group.setdefault(self.groups[k], []).extend((chosen + self.offsets[k]).tolist())
        batches: list[list[int]] = []
        for group in sorted(by_group):
            items = by_group[group]
            order = torch.randperm(len(items), generator=gen).tolist()
            items = [items[i] for i in order]
            for start in range(0, len(items) - self.batch_size + 1, self.batch_size):
                batches.append(items[start:start + self.batch_size])
        order = torch.randperm(len(batches), generator=gen).tolist()
        return [batches[i] for i in order]

    def _micro_batches(self, epoch: int) -> list[list[int]]:
        size = self.batch_size // self.pieces
        out = []
        for batch in self.global_batches(epoch):
            for step in range(self.grad_accum):
                piece = step * self.world_size + self.rank
                out.append(batch[piece * size:(piece + 1) * size])
        return out

    def steps_per_epoch(self) -> int:
        """Optimizer steps (global batches) in one epoch; the same for every epoch."""
        return len(self.global_batches(0))

    def batches_per_epoch(self) -> int:
        """Micro-batches this rank sees in one epoch."""
        return self.steps_per_epoch() * self.grad_accum

    def __iter__(self) -> Iterator[list[int]]:
        while True:
            micro = self._micro_batches(self.epoch)
            if not micro:
                raise UsageError(
                    f"the training data holds fewer windows than one batch (train.batch_size={self.batch_size}); "
                    f"lower train.batch_size or add trajectories"
                )
            for batch in micro[self.position:]:
                self.position += 1
                yield batch
            self.epoch += 1
            self.position = 0

    def state_dict(self) -> dict[str, int]:
        """Where the sampler stands (for checkpoints)."""
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume at a saved position."""
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
