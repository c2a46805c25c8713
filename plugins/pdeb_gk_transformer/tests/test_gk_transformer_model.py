"""Tests of the Galerkin Transformer plugin."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from pdebench_core.errors import UsageError
from pdebench_core.spec import DataSpec
from pdeb_gk_transformer import PROFILES, GKTransformerConfig, build, register_models
from pdeb_gk_transformer.model import GalerkinAttention

SMOKE = replace(GKTransformerConfig(), **PROFILES["smoke"])


def _spec(shape, fields=("u",), t_in=3, t_out=1, name="toy"):
    return DataSpec(name=name, fields=tuple(fields), spatial_shape=tuple(shape), t_in=t_in, t_out=t_out)


def test_card_and_profiles():
    found = {}
    register_models(register=lambda name, factory, **kw: found.setdefault(name, (factory, kw)))
    factory, kw = found["gk-transformer"]
    assert factory is build and kw["config"] is GKTransformerConfig
    assert tuple(kw["dims"]) == (1, 2, 3)
    for overrides in kw["profiles"].values():
        replace(GKTransformerConfig(), **overrides)


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
    model = build(SMOKE, _spec(shape, fields=("u", "v"), t_out=2))
    y = model(torch.randn(2, 3, *shape, 2))
    assert y.shape == (2, 2, *shape, 2)
    assert torch.isfinite(y).all()
    assert model(torch.randn(1, 3, *(2 * n for n in shape), 2)).shape == (1, 2, *(2 * n for n in shape), 2)


def test_unsupported_dimension_and_bad_config():
    with pytest.raises(UsageError, match="1D, 2D and 3D"):
        build(SMOKE, _spec((4, 4, 4, 4)))
    with pytest.raises(UsageError, match="heads"):
        build(replace(SMOKE, heads=3), _spec((16,)))


def test_param_count_of_default_on_ns2d():
    spec = _spec((64, 64), fields=("vorticity",), t_in=10, t_out=1, name="ns2d")
    assert sum(p.numel() for p in build(GKTransformerConfig(), spec).parameters()) == 1_623_169


def test_training_steps_lower_the_loss():
    torch.manual_seed(0)
    coords = torch.arange(16) * (2 * torch.pi / 16)
    phase = torch.rand(4, 2, 1, 1, 1) * 2 * torch.pi
    x = torch.sin(coords[:, None, None] + phase) + torch.cos(2 * coords[None, :, None] - phase)  # (B, 2, X, Y, 1)
    target = torch.roll(x[:, -1:], shifts=1, dims=2)
    model = build(SMOKE, _spec((16, 16), t_in=2))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = torch.mean((model(x) - target) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
