"""Tests of the U-Net plugin."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from pdebench_core.errors import UsageError
from pdebench_core.spec import DataSpec
from pdeb_unet import PROFILES, UNetConfig, build, register_models

SMOKE = UNetConfig(**PROFILES["smoke"])


def _spec(shape, fields=("u",), t_in=3, t_out=1, name="toy", boundary="periodic"):
    return DataSpec(name=name, fields=tuple(fields), spatial_shape=tuple(shape), t_in=t_in, t_out=t_out,
                    boundary=boundary)


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_card_and_profiles():
    found = {}
    register_models(register=lambda name, factory, **kw: found.setdefault(name, (factory, kw)))
    factory, kw = found["unet"]
    assert factory is build and kw["config"] is UNetConfig
    assert tuple(kw["dims"]) == (1, 2, 3)
    for overrides in kw["profiles"].values():
        replace(UNetConfig(), **overrides)


@pytest.mark.parametrize("shape", [(32,), (16, 12), (8, 8, 4)])
@pytest.mark.parametrize("norm", ["group", "batch", "none"])
def test_output_shape_every_dimension(shape, norm):
    model = build(replace(SMOKE, norm=norm, use_grid=True), _spec(shape, fields=("u", "v"), t_out=2))
    y = model(torch.randn(2, 3, *shape, 2))
    assert y.shape == (2, 2, *shape, 2)
    assert torch.isfinite(y).all()


def test_grid_must_divide_by_two_to_the_levels():
    with pytest.raises(UsageError, match="divisible by 16"):
        build(replace(SMOKE, levels=4), _spec((64, 40)))
    build(replace(SMOKE, levels=3), _spec((64, 40)))  # 40 = 5 * 8 fits three levels


def test_unsupported_dimension_and_bad_settings():
    with pytest.raises(UsageError, match="1D, 2D and 3D"):
        build(SMOKE, _spec((4, 4, 4, 4)))
    with pytest.raises(UsageError, match="norm"):
        build(replace(SMOKE, norm="layer"), _spec((16,)))
    with pytest.raises(UsageError, match="padding_mode"):
        build(replace(SMOKE, padding_mode="wrap"), _spec((16,)))


def test_padding_follows_the_boundary_condition():
    periodic = build(SMOKE, _spec((16, 16)))
    walls = build(SMOKE, _spec((16, 16), boundary="neumann"))
    assert periodic.encoder[0].net[0].padding_mode == "circular"
    assert walls.encoder[0].net[0].padding_mode == "zeros"


def test_param_counts_on_ns2d():
    spec = _spec((64, 64), fields=("vorticity",), t_in=10, t_out=1, name="ns2d")
    assert _count(build(UNetConfig(), spec)) == 23_768_305
    assert _count(build(replace(UNetConfig(), **PROFILES["paper"]), spec)) == 23_768_305
    assert _count(build(replace(UNetConfig(), **PROFILES["small"]), spec)) == 1_943_585


def test_training_steps_lower_the_loss():
    torch.manual_seed(0)
    x = torch.randn(4, 2, 16, 16, 1)
    target = torch.roll(x[:, -1:], shifts=1, dims=2)  # a shift: local, so a 3-point stencil can learn it
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
