"""Tests of the OFormer plugin."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from pdebench_core.errors import UsageError
from pdebench_core.spec import DataSpec
from pdeb_oformer import PROFILES, OFormerConfig, build, register_models
from pdeb_oformer.model import LinearAttention

SMOKE = replace(OFormerConfig(), **PROFILES["smoke"])


def _spec(shape, fields=("u",), t_in=3, t_out=1, name="toy"):
    return DataSpec(name=name, fields=tuple(fields), spatial_shape=tuple(shape), t_in=t_in, t_out=t_out)


def test_card_and_profiles():
    found = {}
    register_models(register=lambda name, factory, **kw: found.setdefault(name, (factory, kw)))
    factory, kw = found["oformer"]
    assert factory is build and kw["config"] is OFormerConfig
    assert tuple(kw["dims"]) == (1, 2, 3)
    for overrides in kw["profiles"].values():
        replace(OFormerConfig(), **overrides)


def test_cross_attention_formula():
    torch.manual_seed(0)
    attn = LinearAttention(4, 6, 1)
    queries, context = torch.randn(2, 3, 4), torch.randn(2, 5, 6)
    k, v = attn.to_kv(context).split(4, dim=-1)
    expected = attn.to_q(queries) @ (attn.k_norm(k).transpose(1, 2) @ attn.v_norm(v)) / 5
    torch.testing.assert_close(attn(queries, context), attn.out(expected), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(32,), (16, 12), (8, 6, 4)])
def test_output_shape_every_dimension(shape):
    model = build(SMOKE, _spec(shape, fields=("u", "v"), t_out=3))
    y = model(torch.randn(2, 3, *shape, 2))
    assert y.shape == (2, 3, *shape, 2)
    assert torch.isfinite(y).all()


def test_frames_come_from_successive_propagator_steps():
    """Predicting 3 frames at once starts with the frame a 1-frame model predicts."""
    torch.manual_seed(0)
    three = build(SMOKE, _spec((8, 8), t_out=3))
    one = build(SMOKE, _spec((8, 8), t_out=1))
    one.load_state_dict(three.state_dict())
    x = torch.randn(2, 3, 8, 8, 1)
    torch.testing.assert_close(three(x)[:, :1], one(x))


def test_unsupported_dimension_and_bad_config():
    with pytest.raises(UsageError, match="1D, 2D and 3D"):
        build(SMOKE, _spec((4, 4, 4, 4)))
    with pytest.raises(UsageError, match="heads"):
        build(replace(SMOKE, latent_dim=15), _spec((16,)))


def test_param_count_of_default_on_ns2d():
    spec = _spec((64, 64), fields=("vorticity",), t_in=10, t_out=1, name="ns2d")
    assert sum(p.numel() for p in build(OFormerConfig(), spec).parameters()) == 1_901_057


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
    assert losses[-1] < 0.5 * losses[0]
