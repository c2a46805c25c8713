"""Balanced, resumable, rank-sharded sampling over a mixture of datasets.

Each epoch, dataset ``k`` contributes ``weight_k * len_k`` windows (the official DPOT
recipe replicates dataset ``k`` ``w_k`` times); windows are shuffled, grouped so that
a batch never mixes spatial dimensions, and the batches are dealt to ranks so no two
ranks see the same window. The sampler is a pure function of ``(seed, epoch)``, so
a run can resume mid-epoch from ``(epoch, position)``.
"""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import torch


class MixtureBatchSampler(torch.utils.data.Sampler):
    """Yields lists of indices into the concatenation of the mixture's datasets.

    Args:
        sizes: Windows per dataset.
        weights: Replication weight per dataset (fractional weights draw a random subset).
        groups: Group id per dataset (e.g. spatial dimension); batches stay in one group.
        batch_size: Windows per batch on this rank.
        seed: Base seed; epoch ``e`` shuffles with ``seed + e``.
        rank: This process's rank.
        world_size: Number of ranks.
        max_per_dataset: Cap on windows per dataset per epoch (0 = none).
    """

    def __init__(self, sizes: Sequence[int], weights: Sequence[float], groups: Sequence[int], batch_size: int,
                 seed: int = 0, rank: int = 0, world_size: int = 1, max_per_dataset: int = 0) -> None:
        if len(sizes) != len(weights) or len(sizes) != len(groups):
            raise ValueError("sizes, weights and groups must have one entry per dataset")
        self.sizes, self.weights, self.groups = list(sizes), list(weights), list(groups)
        self.batch_size, self.seed = batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.max_per_dataset = max_per_dataset
        self.offsets = [sum(self.sizes[:k]) for k in range(len(self.sizes))]
        self.epoch = 0
        self.position = 0  # batches of the current epoch already consumed on this rank

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
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
        global_batch = self.batch_size * self.world_size
        batches: list[list[int]] = []
        for group in sorted(by_group):
            items = by_group[group]
            order = torch.randperm(len(items), generator=gen).tolist()
            items = [items[i] for i in order]
            usable = len(items) - len(items) % global_batch if len(items) >= global_batch else len(items)
            for start in range(0, usable, global_batch):
                chunk = items[start:start + global_batch]
                if len(chunk) < self.world_size:
                    continue
                batches.append(chunk)
        order = torch.randperm(len(batches), generator=gen).tolist()
        per_rank = []
        for b in order:
            chunk = batches[b]
            share = math.ceil(len(chunk) / self.world_size)
            mine = chunk[self.rank * share:(self.rank + 1) * share]
            if mine:
                per_rank.append(mine)
        return per_rank

    def batches_per_epoch(self) -> int:
        """Batches this rank sees in one epoch."""
        return len(self._epoch_batches(0))

    def __iter__(self) -> Iterator[list[int]]:
        while True:
            batches = self._epoch_batches(self.epoch)
            if not batches:
                raise ValueError("the training mixture yields no batch; lower train.batch_size or add data")
            for batch in batches[self.position:]:
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
