"""Tests of the F-FNO plugin."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from pdebench_core.errors import UsageError
from pdebench_core.spec import DataSpec
from pdeb_ffno import PROFILES, FFNOConfig, build, register_models
from pdeb_ffno.model import axis_spectral_conv

SMOKE = FFNOConfig(**PROFILES["smoke"])


def _spec(shape, fields=("u",), t_in=3, t_out=1, name="toy"):
    return DataSpec(name=name, fields=tuple(fields), spatial_shape=tuple(shape), t_in=t_in, t_out=t_out)


def test_card_and_profiles():
    found = {}
    register_models(register=lambda name, factory, **kw: found.setdefault(name, (factory, kw)))
    factory, kw = found["ffno"]
    assert factory is build and kw["config"] is FFNOConfig
    assert tuple(kw["dims"]) == (1, 2, 3)
    for overrides in kw["profiles"].values():
        replace(FFNOConfig(), **overrides)


@pytest.mark.parametrize("axis", [1, 2])
def test_axis_spectral_conv_equals_einsum(axis):
    torch.manual_seed(0)
    h = torch.randn(2, 10, 12, 3)  # (B, X, Y, W)
    w = torch.randn(4, 3, 5, dtype=torch.cfloat)  # (m, I, O)
    h_ft = torch.fft.rfft(h, dim=axis)
    out_ft = torch.zeros(*h_ft.shape[:-1], 5, dtype=torch.cfloat)
    if axis == 1:
        out_ft[:, :4] = torch.einsum("bxyi,xio->bxyo", h_ft[:, :4], w)
    else:
        out_ft[:, :, :4] = torch.einsum("bxyi,yio->bxyo", h_ft[:, :, :4], w)
    expected = torch.fft.irfft(out_ft, n=h.shape[axis], dim=axis)
    torch.testing.assert_close(axis_spectral_conv(h, w, axis), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape", [(32,), (16, 12), (8, 6, 10)])
@pytest.mark.parametrize("share", [False, True])
def test_output_shape_every_dimension(shape, share):
    model = build(replace(SMOKE, share_weights=share), _spec(shape, fields=("u", "v"), t_in=3, t_out=2))
    y = model(torch.randn(2, 3, *shape, 2))
    assert y.shape == (2, 2, *shape, 2)
    assert torch.isfinite(y).all()
    assert model(torch.randn(1, 3, *(n // 2 for n in shape), 2)).shape[2:-1] == tuple(n // 2 for n in shape)


def test_param_count_of_default_on_ns2d():
    spec = _spec((64, 64), fields=("vorticity",), t_in=10, t_out=1, name="ns2d")
    count = sum(p.numel() for p in build(FFNOConfig(), spec).parameters())
    # 8 layers x (2 axes x 16 modes x 64 x 64 complex + 33,088 feed-forward) + 832 lift + 8,449 projection
    assert count == 1_322_561
    shared = sum(p.numel() for p in build(FFNOConfig(share_weights=True), spec).parameters())
    assert shared == count - 7 * 2 * 16 * 64 * 64


def test_training_steps_lower_the_loss():
    torch.manual_seed(0)
    coords = torch.arange(16) * (2 * torch.pi / 16)
    phase = torch.rand(4, 2, 1, 1, 1) * 2 * torch.pi
    x = torch.sin(coords[:, None, None] + phase) + torch.cos(2 * coords[None, :, None] - phase)  # (B, 2, X, Y, 1)
    target = torch.roll(x[:, -1:], shifts=1, dims=2)
    model = build(SMOKE, _spec((16, 16), t_in=2))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = torch.mean((model(x) - target) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_unsupported_dimension_and_bad_config():
    with pytest.raises(UsageError, match="1D, 2D and 3D"):
        build(SMOKE, _spec((4, 4, 4, 4)))
    with pytest.raises(UsageError, match="width"):
        build(replace(SMOKE, width=0), _spec((16,)))
