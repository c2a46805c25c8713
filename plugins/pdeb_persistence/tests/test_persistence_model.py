"""Tests of the persistence baseline."""

from __future__ import annotations

import pytest
import torch

from pdebench_core.errors import UsageError
from pdebench_core.spec import DataSpec
from pdeb_persistence import PersistenceConfig, build, register_models


def _registered() -> dict:
    found = {}

    def register(name, factory, config=None, profiles=None, **card):
        found[name] = dict(factory=factory, config=config, profiles=profiles, card=card)

    register_models(register=register)
    return found


def test_card_declares_untrainable_and_dims():
    entry = _registered()["persistence"]
    assert entry["factory"] is build
    assert entry["config"] is PersistenceConfig
    assert entry["card"]["trainable"] is False
    assert tuple(entry["card"]["dims"]) == (1, 2, 3)
    assert set(entry["profiles"]) == {"smoke", "small", "paper"}


@pytest.mark.parametrize("shape", [(16,), (8, 12), (4, 6, 5)])
@pytest.mark.parametrize("t_out", [1, 3])
def test_repeats_last_frame(shape, t_out):
    spec = DataSpec(name="toy", fields=("u", "v"), spatial_shape=shape, t_in=4, t_out=t_out)
    model = build(PersistenceConfig(), spec)
    x = torch.randn(2, 4, *shape, 2)
    y = model(x)
    assert y.shape == (2, t_out, *shape, 2)
    for step in range(t_out):
        assert torch.equal(y[:, step], x[:, -1])
    assert sum(p.numel() for p in model.parameters()) == 0
    y[:, 0].zero_()  # the output owns its memory: writing it must not touch the input
    assert x[:, -1].abs().sum() > 0


def test_rejects_unsupported_dimension():
    spec = DataSpec(name="toy4d", fields=("u",), spatial_shape=(4, 4, 4, 4))
    with pytest.raises(UsageError, match="toy4d"):
        build(PersistenceConfig(), spec)


def test_rejects_wrong_rank_input():
    model = build(PersistenceConfig(), DataSpec(name="toy", fields=("u",), spatial_shape=(8, 8)))
    with pytest.raises(ValueError, match="spatial axes"):
        model(torch.zeros(1, 10, 8, 1))
