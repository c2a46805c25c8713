"""Tests of the F-FNO plugin."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from pdebench_core.errors import UsageError
from pdebench_core.testing.models import ModelPlugin, param_count, toy_spec
import pdeb_ffno
from pdeb_ffno import FFNOConfig, build
from pdeb_ffno.model import axis_spectral_conv

MODEL = ModelPlugin.of(pdeb_ffno, "ffno", FFNOConfig)
SMOKE = MODEL.smoke


def test_card_and_profiles():
    MODEL.check_card()


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
    model = MODEL.check_contract(replace(SMOKE, share_weights=share), toy_spec(shape, fields=("u", "v"), t_out=2))
    assert model(torch.randn(1, 3, *(n // 2 for n in shape), 2)).shape[2:-1] == tuple(n // 2 for n in shape)


def test_param_count_of_default_on_ns2d():
    spec = toy_spec((64, 64), fields=("vorticity",), t_in=10, t_out=1, name="ns2d")
    count = param_count(build(FFNOConfig(), spec))
    # 8 layers x (2 axes x 16 modes x 64 x 64 complex + 33,088 feed-forward) + 832 lift + 8,449 projection
    assert count == 1_322_561
    shared = param_count(build(FFNOConfig(share_weights=True), spec))
    assert shared == count - 7 * 2 * 16 * 64 * 64


def test_training_steps_lower_the_loss():
    MODEL.check_learns(SMOKE, toy_spec((16, 16), t_in=2), steps=30, factor=0.5)


def test_unsupported_dimension_and_bad_config():
    MODEL.check_rejects_unsupported_dims(SMOKE)
    with pytest.raises(UsageError, match="width"):
        build(replace(SMOKE, width=0), toy_spec((16,)))
