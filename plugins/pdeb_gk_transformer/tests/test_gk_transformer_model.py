"""Tests of the Galerkin Transformer plugin."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from pdebench_core.errors import UsageError
from pdebench_core.testing.models import ModelPlugin, param_count, toy_spec
import pdeb_gk_transformer
from pdeb_gk_transformer import GKTransformerConfig, build
from pdeb_gk_transformer.model import GalerkinAttention

MODEL = ModelPlugin.of(pdeb_gk_transformer, "gk-transformer", GKTransformerConfig)
SMOKE = MODEL.smoke


def test_card_and_profiles():
    MODEL.check_card()


def test_galerkin_attention_formula():
    torch.manual_seed(0)
    attn = GalerkinAttention(8, 2)
    h = torch.randn(2, 7, 8)
    q, k, v = attn.qkv(h).split(8, dim=-1)
    heads = []
    for i, cols in enumerate((slice(0, 4), slice(4, 8))):
        kn = (k[..., cols] - k[..., cols].mean(-1, keepdim=True)) / torch.sqrt(k[..., cols].var(-1, unbiased=False, keepdim=True) + 1e-5)
        vn = (v[..., cols] - v[..., cols].mean(-1, keepdim=True)) / torch.sqrt(v[..., cols].var(-1, unbiased=False, keepdim=True) + 1e-5)
        # no softmax: a sum over the 7 tokens, divided by their number
        heads.append(q[..., cols] @ (kn.transpose(1, 2) @ vn) / 7)
    torch.testing.assert_close(attn(h), attn.out(torch.cat(heads, dim=-1)), rtol=1e-5, atol=1e-5)


def test_attention_averages_over_tokens():
    """Listing every token twice leaves the output unchanged: K^T V is divided by the count."""
    torch.manual_seed(0)
    attn = GalerkinAttention(8, 2)
    h = torch.randn(1, 5, 8)
    torch.testing.assert_close(attn(torch.cat([h, h], dim=1))[:, :5], attn(h), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(32,), (16, 12), (8, 6, 4)])
def test_output_shape_every_dimension(shape):
    model = MODEL.check_contract(SMOKE, toy_spec(shape, fields=("u", "v"), t_out=2))
    assert model(torch.randn(1, 3, *(2 * n for n in shape), 2)).shape == (1, 2, *(2 * n for n in shape), 2)


def test_unsupported_dimension_and_bad_config():
    MODEL.check_rejects_unsupported_dims(SMOKE)
    with pytest.raises(UsageError, match="heads"):
        build(replace(SMOKE, heads=3), toy_spec((16,)))


def test_param_count_of_default_on_ns2d():
    spec = toy_spec((64, 64), fields=("vorticity",), t_in=10, t_out=1, name="ns2d")
    assert param_count(build(GKTransformerConfig(), spec)) == 1_623_169


def test_training_steps_lower_the_loss():
    MODEL.check_learns(SMOKE, toy_spec((16, 16), t_in=2), steps=40, factor=0.5)
