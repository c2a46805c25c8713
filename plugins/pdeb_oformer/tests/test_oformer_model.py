"""Tests of the OFormer plugin."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from pdebench_core.errors import UsageError
from pdebench_core.testing.models import ModelPlugin, param_count, toy_spec
import pdeb_oformer
from pdeb_oformer import OFormerConfig, build
from pdeb_oformer.model import LinearAttention

MODEL = ModelPlugin.of(pdeb_oformer, "oformer", OFormerConfig)
SMOKE = MODEL.smoke


def test_card_and_profiles():
    MODEL.check_card()


def test_cross_attention_formula():
    torch.manual_seed(0)
    attn = LinearAttention(4, 6, 1)
    queries, context = torch.randn(2, 3, 4), torch.randn(2, 5, 6)
    k, v = attn.to_kv(context).split(4, dim=-1)
    expected = attn.to_q(queries) @ (attn.k_norm(k).transpose(1, 2) @ attn.v_norm(v)) / 5
    torch.testing.assert_close(attn(queries, context), attn.out(expected), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(32,), (16, 12), (8, 6, 4)])
def test_output_shape_every_dimension(shape):
    MODEL.check_contract(SMOKE, toy_spec(shape, fields=("u", "v"), t_out=3))


def test_frames_come_from_successive_propagator_steps():
    """Predicting 3 frames at once starts with the frame a 1-frame model predicts."""
    torch.manual_seed(0)
    three = build(SMOKE, toy_spec((8, 8), t_out=3))
    one = build(SMOKE, toy_spec((8, 8), t_out=1))
    one.load_state_dict(three.state_dict())
    x = torch.randn(2, 3, 8, 8, 1)
    torch.testing.assert_close(three(x)[:, :1], one(x))


def test_unsupported_dimension_and_bad_config():
    MODEL.check_rejects_unsupported_dims(SMOKE)
    with pytest.raises(UsageError, match="heads"):
        build(replace(SMOKE, latent_dim=15), toy_spec((16,)))


def test_param_count_of_default_on_ns2d():
    spec = toy_spec((64, 64), fields=("vorticity",), t_in=10, t_out=1, name="ns2d")
    assert param_count(build(OFormerConfig(), spec)) == 1_901_057


def test_training_steps_lower_the_loss():
    MODEL.check_learns(SMOKE, toy_spec((16, 16), t_in=2), steps=150, factor=0.5)
