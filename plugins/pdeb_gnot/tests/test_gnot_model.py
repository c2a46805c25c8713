"""Tests of the GNOT plugin."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from pdebench_core.errors import UsageError
from pdebench_core.spec import DataSpec
from pdeb_gnot import PROFILES, GNOTConfig, build, register_models
from pdeb_gnot.model import GatedExperts, NormalizedAttention

SMOKE = replace(GNOTConfig(), **PROFILES["smoke"])


def _spec(shape, fields=("u",), t_in=3, t_out=1, name="toy"):
    return DataSpec(name=name, fields=tuple(fields), spatial_shape=tuple(shape), t_in=t_in, t_out=t_out)


def test_card_and_profiles():
    found = {}
    register_models(register=lambda name, factory, **kw: found.setdefault(name, (factory, kw)))
    factory, kw = found["gnot"]
    assert factory is build and kw["config"] is GNOTConfig
    assert tuple(kw["dims"]) == (1, 2, 3)
    for overrides in kw["profiles"].values():
        replace(GNOTConfig(), **overrides)


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
    model = build(SMOKE, _spec(shape, fields=("u", "v"), t_out=2))
    y = model(torch.randn(2, 3, *shape, 2))
    assert y.shape == (2, 2, *shape, 2)
    assert torch.isfinite(y).all()


def test_unsupported_dimension_and_bad_config():
    with pytest.raises(UsageError, match="1D, 2D and 3D"):
        build(SMOKE, _spec((4, 4, 4, 4)))
    with pytest.raises(UsageError, match="n_experts"):
        build(replace(SMOKE, n_experts=0), _spec((16,)))


def test_param_count_of_default_on_ns2d():
    spec = _spec((64, 64), fields=("vorticity",), t_in=10, t_out=1, name="ns2d")
    assert sum(p.numel() for p in build(GNOTConfig(), spec).parameters()) == 1_742_355


def test_training_steps_lower_the_loss():
    torch.manual_seed(0)
    coords = torch.arange(16) * (2 * torch.pi / 16)
    phase = torch.rand(4, 2, 1, 1, 1) * 2 * torch.pi
    x = torch.sin(coords[:, None, None] + phase) + torch.cos(2 * coords[None, :, None] - phase)  # (B, 2, X, Y, 1)
    target = torch.roll(x[:, -1:], shifts=1, dims=2)
    model = build(SMOKE, _spec((16, 16), t_in=2))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss = torch.mean((model(x) - target) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # queries carry only coordinates, so every value must be routed through attention:
    # it starts near the field's mean and learns more slowly than the convolutional models
    assert losses[-1] < 0.7 * losses[0]
