"""Tests of the U-Net plugin."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from pdebench_core.errors import UsageError
from pdebench_core.testing.models import ModelPlugin, param_count, toy_spec
import pdeb_unet
from pdeb_unet import PROFILES, UNetConfig, build

MODEL = ModelPlugin.of(pdeb_unet, "unet", UNetConfig)
SMOKE = MODEL.smoke


def test_card_and_profiles():
    MODEL.check_card()


@pytest.mark.parametrize("shape", [(32,), (16, 12), (8, 8, 4)])
@pytest.mark.parametrize("norm", ["group", "batch", "none"])
def test_output_shape_every_dimension(shape, norm):
    MODEL.check_contract(replace(SMOKE, norm=norm, use_grid=True), toy_spec(shape, fields=("u", "v"), t_out=2))


def test_grid_must_divide_by_two_to_the_levels():
    with pytest.raises(UsageError, match="divisible by 16"):
        build(replace(SMOKE, levels=4), toy_spec((64, 40)))
    build(replace(SMOKE, levels=3), toy_spec((64, 40)))  # 40 = 5 * 8 fits three levels


def test_unsupported_dimension_and_bad_settings():
    MODEL.check_rejects_unsupported_dims(SMOKE)
    with pytest.raises(UsageError, match="norm"):
        build(replace(SMOKE, norm="layer"), toy_spec((16,)))
    with pytest.raises(UsageError, match="padding_mode"):
        build(replace(SMOKE, padding_mode="wrap"), toy_spec((16,)))


def test_padding_follows_the_boundary_condition():
    periodic = build(SMOKE, toy_spec((16, 16)))
    walls = build(SMOKE, toy_spec((16, 16), boundary="neumann"))
    assert periodic.encoder[0].net[0].padding_mode == "circular"
    assert walls.encoder[0].net[0].padding_mode == "zeros"


def test_param_counts_on_ns2d():
    spec = toy_spec((64, 64), fields=("vorticity",), t_in=10, t_out=1, name="ns2d")
    assert param_count(build(UNetConfig(), spec)) == 23_768_305
    assert param_count(build(replace(UNetConfig(), **PROFILES["paper"]), spec)) == 23_768_305
    assert param_count(build(replace(UNetConfig(), **PROFILES["small"]), spec)) == 1_943_585


def test_training_steps_lower_the_loss():
    torch.manual_seed(0)
    x = torch.randn(4, 2, 16, 16, 1)
    target = torch.roll(x[:, -1:], shifts=1, dims=2)  # a shift: local, so a 3-point stencil can learn it
    MODEL.check_learns(SMOKE, toy_spec((16, 16), t_in=2), steps=30, factor=0.5, inputs=x, target=target,
                       seed=None)
