"""The mixture sampler: weights, dimension groups, ranks, accumulation, resumption."""

from __future__ import annotations

from collections import Counter

import pytest

from pdebench_core.data.mixture import MixtureBatchSampler
from pdebench_core.errors import UsageError


def _take(sampler, n):
    it = iter(sampler)
    return [next(it) for _ in range(n)]


def test_weights_replicate_datasets_per_epoch():
    sampler = MixtureBatchSampler([10, 10], [3.0, 1.0], [2, 2], batch_size=4, seed=0)
    epoch = [i for batch in sampler.global_batches(0) for i in batch]
    counts = Counter("a" if i < 10 else "b" for i in epoch)
    assert counts == {"a": 30, "b": 10}  # 40 windows, 10 full batches of 4
    assert sorted(Counter(i for i in epoch if i < 10).values()) == [3] * 10  # each window of "a" three times


def test_batches_never_mix_dimension_groups():
    sampler = MixtureBatchSampler([12, 12], [1.0, 1.0], [2, 3], batch_size=4, seed=1)
    for batch in sampler.global_batches(0):
        assert len({i < 12 for i in batch}) == 1


def test_ranks_and_accumulation_split_the_same_global_batch():
    one = MixtureBatchSampler([40], [1.0], [2], batch_size=8, seed=2)
    shards = [MixtureBatchSampler([40], [1.0], [2], batch_size=8, seed=2, rank=r, world_size=2, grad_accum=2)
              for r in range(2)]
    first_global = one.global_batches(0)[0]
    micro = [_take(s, 2) for s in shards]  # two accumulation steps per rank
    pieces = [i for rank in micro for batch in rank for i in batch]
    assert sorted(pieces) == sorted(first_global)
    assert not set(sum(micro[0], [])) & set(sum(micro[1], []))


def test_resume_mid_epoch_continues_the_same_sequence():
    full = _take(MixtureBatchSampler([30], [1.0], [1], batch_size=3, seed=4), 15)
    resumed = MixtureBatchSampler([30], [1.0], [1], batch_size=3, seed=4)
    resumed.load_state_dict({"epoch": 1, "position": 2})  # 10 batches per epoch
    assert _take(resumed, 3) == full[12:15]


def test_indivisible_batch_is_a_usage_error():
    with pytest.raises(UsageError, match="must be divisible"):
        MixtureBatchSampler([10], [1.0], [1], batch_size=5, world_size=2)
