"""Tests of the patch-transformer (ViT) plugin."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from pdebench_core.errors import UsageError
from pdebench_core.testing.models import ModelPlugin, param_count, toy_spec
import pdeb_vit
from pdeb_vit import PROFILES, ViTConfig, build
from pdeb_vit.model import SelfAttention

MODEL = ModelPlugin.of(pdeb_vit, "vit", ViTConfig)
SMOKE = MODEL.smoke


def test_card_and_profiles():
    MODEL.check_card()


def test_attention_is_softmax_attention():
    torch.manual_seed(0)
    attn = SelfAttention(8, 2)
    h = torch.randn(2, 5, 8)
    q, k, v = attn.qkv(h).split(8, dim=-1)
    heads = [
        torch.softmax(q[..., s] @ k[..., s].transpose(1, 2) / 2.0, dim=-1) @ v[..., s]  # sqrt(head_dim = 4)
        for s in (slice(0, 4), slice(4, 8))
    ]
    torch.testing.assert_close(attn(h), attn.out(torch.cat(heads, dim=-1)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(32,), (16, 12), (8, 8, 4)])
def test_output_shape_every_dimension(shape):
    MODEL.check_contract(SMOKE, toy_spec(shape, fields=("u", "v"), t_out=2))


def test_other_resolution_resamples_the_position_embedding():
    import torch.nn.functional as F

    torch.manual_seed(0)
    model = build(SMOKE, toy_spec((16, 16)))
    x = torch.randn(1, 3, 32, 8, 1)
    out = model(x)
    assert out.shape == (1, 1, 32, 8, 1)
    # The same weights built for the new grid, its embedding set to the interpolated one, agree exactly.
    native = build(SMOKE, toy_spec((32, 8)))
    state = dict(model.state_dict())
    patches = (32 // SMOKE.patch_size, 8 // SMOKE.patch_size)
    state["pos_embed"] = F.interpolate(model.pos_embed.detach(), size=patches, mode="bilinear", align_corners=False)
    native.load_state_dict(state)
    torch.testing.assert_close(native(x), out, rtol=0, atol=0)
    assert not torch.equal(model.pos_embed.detach()[..., :2, :2], state["pos_embed"][..., :2, :2])  # really resampled


def test_grid_must_divide_by_patch_and_heads_must_divide_dim():
    with pytest.raises(UsageError, match="patch_size"):
        build(replace(SMOKE, patch_size=8), toy_spec((64, 60)))
    with pytest.raises(UsageError, match="heads"):
        build(replace(SMOKE, heads=3), toy_spec((16,)))
    MODEL.check_rejects_unsupported_dims(SMOKE)


def test_param_count_of_default_on_ns2d():
    spec = toy_spec((64, 64), fields=("vorticity",), t_in=10, t_out=1, name="ns2d")
    assert param_count(build(ViTConfig(), spec)) == 8_051_809
    small = build(replace(ViTConfig(), **PROFILES["small"]), spec)
    assert param_count(small) == 916_577


def test_training_steps_lower_the_loss():
    torch.manual_seed(0)
    x = torch.randn(4, 2, 16, 16, 1)
    target = x[:, -1:] * 0.5 + 0.25  # pointwise: reachable through the patch embedding and head
    MODEL.check_learns(SMOKE, toy_spec((16, 16), t_in=2), steps=60, factor=0.5, inputs=x, target=target,
                       seed=None)
