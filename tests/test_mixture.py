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


# -- trajectory sampling: the official DPOT epoch ------------------------------------------

def _trajectory_sampler(**kwargs):
    # Dataset a: 5 trajectories of 8 windows; dataset b: 3 trajectories of 2 windows.
    options = dict(sizes=[40, 6], weights=[2.0, 3.0], groups=[2, 2], batch_size=1, seed=3,
                   trajectories=[5, 3], sampling="trajectory")
    options.update(kwargs)
    return MixtureBatchSampler(**options)


def test_trajectory_epoch_draws_each_trajectory_weight_times():
    sampler = _trajectory_sampler()
    epoch = [i for batch in sampler.global_batches(0) for i in batch]
    assert len(epoch) == 5 * 2 + 3 * 3  # sum of trajectories x weight, not of windows x weight
    per_trajectory = Counter(("a", i // 8) if i < 40 else ("b", (i - 40) // 2) for i in epoch)
    assert per_trajectory == {**{("a", t): 2 for t in range(5)}, **{("b", t): 3 for t in range(3)}}


def test_trajectory_windows_start_at_random_and_depend_only_on_seed_and_epoch():
    sampler = _trajectory_sampler(sizes=[400, 6], trajectories=[5, 3])  # 80 windows per trajectory of a
    first, second = sampler.global_batches(0), sampler.global_batches(1)
    assert first == _trajectory_sampler(sizes=[400, 6], trajectories=[5, 3]).global_batches(0)
    starts = {i % 80 for batch in first + second for i in batch if i < 400}
    assert len(starts) > 5  # windows are drawn, not always the first one of a trajectory
    assert sorted(map(sorted, first)) != sorted(map(sorted, second))


def test_trajectory_sampling_resumes_mid_epoch():
    full = _take(_trajectory_sampler(batch_size=2), 15)  # 19 samples -> 9 batches per epoch
    resumed = _trajectory_sampler(batch_size=2)
    resumed.load_state_dict({"epoch": 1, "position": 3})
    assert _take(resumed, 3) == full[12:15]


def test_trajectory_sampling_splits_the_global_batch_over_ranks_and_keeps_groups_apart():
    options = dict(groups=[1, 2], batch_size=4)
    first_global = _trajectory_sampler(**options).global_batches(0)[0]
    shards = [_trajectory_sampler(**options, rank=r, world_size=2, grad_accum=2) for r in range(2)]
    pieces = [i for s in shards for batch in _take(s, 2) for i in batch]
    assert sorted(pieces) == sorted(first_global)
    for batch in _trajectory_sampler(**options).global_batches(0):
        assert len({i < 40 for i in batch}) == 1


def test_unknown_sampling_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown train.sampling 'frames'"):
        MixtureBatchSampler([10], [1.0], [1], batch_size=2, trajectories=[2], sampling="frames")


@pytest.mark.parametrize("weights, max_per_dataset, sampling", [
    ([1.0, 1.0], 0, "window"), ([2.5, 0.4], 0, "window"), ([1.0, 1.0], 5, "window"), ([1.5, 1.0], 0, "trajectory"),
])
def test_samples_per_epoch_is_what_an_epoch_draws(weights, max_per_dataset, sampling):
    sampler = MixtureBatchSampler([12, 8], weights, [1, 2], batch_size=1, seed=3, max_per_dataset=max_per_dataset,
                                  trajectories=[4, 2], sampling=sampling)
    drawn = Counter(i < 12 for batch in sampler.global_batches(0) for i in batch)
    assert [sampler.samples_per_epoch(0), sampler.samples_per_epoch(1)] == [drawn[True], drawn[False]]


def test_a_dimension_with_fewer_windows_than_a_batch_is_refused_rather_than_never_trained():
    """Batches never mix dimensions: 2D data that fills no batch would leave the model's 2D
    part untrained while the run looked fine."""
    import numpy as np

    from pdebench_core.data.pipeline import plan_mixture, training_loader
    from pdebench_core.spec import DataSpec

    class Data:
        def __init__(self, name, grid, n):
            self.spec = DataSpec(name=name, fields=("u",), spatial_shape=grid, t_in=2)
            self.trajectories = [np.zeros((4, *grid, 1), np.float32) for _ in range(n)]

        def split(self, name):
            return self.trajectories

    mixture = plan_mixture({"line": Data("line", (8,), 10), "square": Data("square", (8, 8), 2)}, t_out=1)
    with pytest.raises(UsageError, match=r"^the 2D data \(square\) gives 2 training windows per epoch, fewer than "
                                         r"one batch \(train.batch_size=6\), and batches never mix dimensions: the "
                                         r"model's 2D part would never train; lower train.batch_size"):
        training_loader(mixture, "train", batch_size=6, seed=0, sampling="trajectory")
    training_loader(mixture, "train", batch_size=2, seed=0, sampling="trajectory")  # each fills a batch: fine
