"""Tests of the persistence baseline."""

from __future__ import annotations

import pytest
import torch

from pdebench_core.testing.models import check_model_card, check_rejects_unsupported_dims, param_count, toy_spec
from pdeb_persistence import PersistenceConfig, build, register_models


def test_registers_dims_and_has_nothing_to_train():
    card = check_model_card(register_models, "persistence", build, PersistenceConfig)
    assert "trainable" not in card  # pdeb counts the parameters; nothing to declare
    assert param_count(build(PersistenceConfig(), toy_spec((16,)))) == 0


@pytest.mark.parametrize("shape", [(16,), (8, 12), (4, 6, 5)])
@pytest.mark.parametrize("t_out", [1, 3])
def test_repeats_last_frame(shape, t_out):
    model = build(PersistenceConfig(), toy_spec(shape, fields=("u", "v"), t_in=4, t_out=t_out))
    x = torch.randn(2, 4, *shape, 2)
    y = model(x)
    assert y.shape == (2, t_out, *shape, 2)
    for step in range(t_out):
        assert torch.equal(y[:, step], x[:, -1])
    assert param_count(model) == 0
    y[:, 0].zero_()  # the output owns its memory: writing it must not touch the input
    assert x[:, -1].abs().sum() > 0


def test_rejects_unsupported_dimension():
    check_rejects_unsupported_dims(build, PersistenceConfig())


def test_rejects_wrong_rank_input():
    model = build(PersistenceConfig(), toy_spec((8, 8), t_in=10))
    with pytest.raises(ValueError, match="spatial axes"):
        model(torch.zeros(1, 10, 8, 1))
