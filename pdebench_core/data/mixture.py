"""Balanced, resumable, rank-sharded sampling over a mixture of datasets.

Each epoch, dataset ``k`` contributes ``weight_k * len_k`` windows (the official DPOT
recipe replicates dataset ``k`` ``w_k`` times); windows are shuffled, grouped so that
a batch never mixes spatial dimensions, and cut into *global* batches of
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
        max_per_dataset: Cap on windows per dataset per epoch (0 = none).
    """

    def __init__(self, sizes: Sequence[int], weights: Sequence[float], groups: Sequence[int], batch_size: int,
                 seed: int = 0, rank: int = 0, world_size: int = 1, grad_accum: int = 1,
                 max_per_dataset: int = 0) -> None:
        if len(sizes) != len(weights) or len(sizes) != len(groups):
            raise ValueError("sizes, weights and groups must have one entry per dataset")
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
        self.offsets = [sum(self.sizes[:k]) for k in range(len(self.sizes))]
        self.epoch = 0
        self.position = 0  # micro-batches of the current epoch already yielded on this rank

    def global_batches(self, epoch: int) -> list[list[int]]:
        """The epoch's optimizer-step batches (all ranks together), in order."""
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        by_group: dict[int, list[int]] = {}
        for k, (size, weight) in enumerate(zip(self.sizes, self.weights)):
            if size == 0 or weight <= 0:
                continue
            whole, frac = divmod(weight, 1.0)
            picks = [torch.randperm(size, generator=gen) for _ in range(int(whole))]
            if frac > 0:
                picks.append(torch.randperm(size, generator=gen)[: max(1, round(frac * size))])
            chosen = torch.cat(picks) if picks else torch.empty(0, dtype=torch.long)
            if self.max_per_dataset:
                chosen = chosen[: self.max_per_dataset]
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

    def batches_per_epoch(self) -> int:
        """Micro-batches this rank sees in one epoch."""
        return len(self.global_batches(0)) * self.grad_accum

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
