"""Tests of the GNOT plugin."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from pdebench_core.errors import UsageError
from pdebench_core.testing.models import ModelPlugin, param_count, toy_spec
import pdeb_gnot
from pdeb_gnot import GNOTConfig, build
from pdeb_gnot.model import GatedExperts, NormalizedAttention

MODEL = ModelPlugin.of(pdeb_gnot, "gnot", GNOTConfig)
SMOKE = MODEL.smoke


def test_card_and_profiles():
    MODEL.check_card()


def test_normalized_attention_equals_quadratic_form():
    torch.manual_seed(0)
    attn = NormalizedAttention(4, 1)
    queries, context = torch.randn(2, 3, 4), torch.randn(2, 6, 4)
    q = attn.to_q(queries).softmax(-1)
    k, v = attn.to_kv(context).split(4, dim=-1)
    scores = q @ k.softmax(-1).transpose(1, 2)  # (B, 3, 6), all positive
    expected = (scores / scores.sum(-1, keepdim=True)) @ v
    torch.testing.assert_close(attn(queries, context), attn.out(expected), rtol=1e-5, atol=1e-5)


def test_gate_is_a_partition_of_unity():
    torch.manual_seed(0)
    moe = GatedExperts(4, 8, 3, ndim=2, gate_width=5)
    for expert in moe.experts[1:]:
        expert.load_state_dict(moe.experts[0].state_dict())
    h, coords = torch.randn(2, 7, 4), torch.rand(7, 2)
    torch.testing.assert_close(moe(h, coords), moe.experts[0](h), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(32,), (16, 12), (8, 6, 4)])
def test_output_shape_every_dimension(shape):
    MODEL.check_contract(SMOKE, toy_spec(shape, fields=("u", "v"), t_out=2))


def test_unsupported_dimension_and_bad_config():
    MODEL.check_rejects_unsupported_dims(SMOKE)
    with pytest.raises(UsageError, match="n_experts"):
        build(replace(SMOKE, n_experts=0), toy_spec((16,)))


def test_param_count_of_default_on_ns2d():
    spec = toy_spec((64, 64), fields=("vorticity",), t_in=10, t_out=1, name="ns2d")
    assert param_count(build(GNOTConfig(), spec)) == 1_742_355


def test_training_steps_lower_the_loss():
    # queries carry only coordinates, so every value must be routed through attention:
    # it starts near the field's mean and learns more slowly than the convolutional models
    MODEL.check_learns(SMOKE, toy_spec((16, 16), t_in=2), steps=200, factor=0.7)
