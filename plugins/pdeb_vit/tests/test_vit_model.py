"""Tests of the patch-transformer (ViT) plugin."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from pdebench_core.errors import UsageError
from pdebench_core.spec import DataSpec
from pdeb_vit import PROFILES, ViTConfig, build, register_models
from pdeb_vit.model import SelfAttention

SMOKE = replace(ViTConfig(), **PROFILES["smoke"])


def _spec(shape, fields=("u",), t_in=3, t_out=1, name="toy"):
    return DataSpec(name=name, fields=tuple(fields), spatial_shape=tuple(shape), t_in=t_in, t_out=t_out)


def test_card_and_profiles():
    found = {}
    register_models(register=lambda name, factory, **kw: found.setdefault(name, (factory, kw)))
    factory, kw = found["vit"]
    assert factory is build and kw["config"] is ViTConfig
    assert tuple(kw["dims"]) == (1, 2, 3)
    for overrides in kw["profiles"].values():
        replace(ViTConfig(), **overrides)


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
    model = build(SMOKE, _spec(shape, fields=("u", "v"), t_out=2))
    y = model(torch.randn(2, 3, *shape, 2))
    assert y.shape == (2, 2, *shape, 2)
    assert torch.isfinite(y).all()


def test_other_resolution_resamples_the_position_embedding():
    model = build(SMOKE, _spec((16, 16)))
    assert model(torch.randn(1, 3, 32, 8, 1)).shape == (1, 1, 32, 8, 1)


def test_grid_must_divide_by_patch_and_heads_must_divide_dim():
    with pytest.raises(UsageError, match="patch_size"):
        build(replace(SMOKE, patch_size=8), _spec((64, 60)))
    with pytest.raises(UsageError, match="heads"):
        build(replace(SMOKE, heads=3), _spec((16,)))
    with pytest.raises(UsageError, match="1D, 2D and 3D"):
        build(SMOKE, _spec((4, 4, 4, 4)))


def test_param_count_of_default_on_ns2d():
    spec = _spec((64, 64), fields=("vorticity",), t_in=10, t_out=1, name="ns2d")
    assert sum(p.numel() for p in build(ViTConfig(), spec).parameters()) == 8_051_809
    small = build(replace(ViTConfig(), **PROFILES["small"]), spec)
    assert sum(p.numel() for p in small.parameters()) == 916_577


def test_training_steps_lower_the_loss():
    torch.manual_seed(0)
    x = torch.randn(4, 2, 16, 16, 1)
    target = x[:, -1:] * 0.5 + 0.25  # pointwise: reachable through the patch embedding and head
    model = build(SMOKE, _spec((16, 16), t_in=2))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss = torch.mean((model(x) - target) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
