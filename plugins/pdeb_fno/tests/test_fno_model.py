"""Tests of the FNO plugin: shapes, the fast spectral contraction, training, size."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
import torch

from pdebench_core.errors import UsageError
from pdebench_core.testing.models import ModelPlugin, param_count, toy_spec
import pdeb_fno
from pdeb_fno import PROFILES, FNOConfig, build, fitted_modes
from pdeb_fno.model import SpectralConv

MODEL = ModelPlugin.of(pdeb_fno, "fno", FNOConfig)
SMOKE = MODEL.smoke


def _naive_spectral_conv(layer: SpectralConv, x: torch.Tensor) -> torch.Tensor:
    """Reference: one einsum per frequency corner, as in the original FNO code."""
    grid = tuple(x.shape[2:])
    ndim = len(grid)
    modes = layer.modes
    x_ft = torch.fft.rfftn(x, dim=tuple(range(-ndim, 0)))
    out_ft = torch.zeros(x.shape[0], layer.out_channels, *x_ft.shape[2:], dtype=x_ft.dtype)
    letters = "xyz"[:ndim]
    for signs in itertools.product((1, -1), repeat=ndim - 1):
        spec_index, weight_index = [], []
        for sign, m in zip(signs, modes[:-1]):
            spec_index.append(slice(0, m) if sign > 0 else slice(-m, None))
            weight_index.append(slice(0, m) if sign > 0 else slice(m, 2 * m))
        spec_index.append(slice(0, modes[-1]))
        weight_index.append(slice(0, modes[-1]))
        corner = (slice(None), slice(None), *spec_index)
        w = layer.weight[tuple(weight_index)]
        out_ft[corner] = torch.einsum(f"bi{letters},{letters}io->bo{letters}", x_ft[corner], w)
    return torch.fft.irfftn(out_ft, s=grid, dim=tuple(range(-ndim, 0)))


def test_card_and_profiles():
    card = MODEL.check_card()
    assert card["paper"].startswith("Li et al.")


@pytest.mark.parametrize(
    "grid, modes",
    [((16,), (5,)), ((12, 10), (4, 3)), ((9, 7), (4, 4)), ((8, 8), (4, 5)), ((6, 8, 6), (2, 3, 2))],
)
def test_fast_contraction_equals_naive_einsum(grid, modes):
    torch.manual_seed(0)
    layer = SpectralConv(3, 5, modes)
    with torch.no_grad():  # a non-degenerate weight with signed real and imaginary parts
        layer.weight.copy_(torch.randn_like(layer.weight))
    x = torch.randn(2, 3, *grid)
    torch.testing.assert_close(layer(x), _naive_spectral_conv(layer, x), rtol=1e-4, atol=1e-4)


def test_coarser_grid_uses_the_matching_modes():
    torch.manual_seed(0)
    layer = SpectralConv(2, 2, (4, 4))
    with torch.no_grad():
        layer.weight.copy_(torch.randn_like(layer.weight))
    coarse = SpectralConv(2, 2, (2, 3))
    with torch.no_grad():  # the same frequencies, cut out by hand
        w = layer.weight
        coarse.weight.copy_(torch.cat([w[:2, :3], w[-2:, :3]], dim=0))
    x = torch.randn(1, 2, 4, 4)
    torch.testing.assert_close(layer(x), coarse(x))


@pytest.mark.parametrize("shape", [(32,), (16, 12), (8, 8, 6)])
@pytest.mark.parametrize("padding", [0, 3])
def test_output_shape_every_dimension(shape, padding):
    MODEL.check_contract(replace(SMOKE, padding=padding), toy_spec(shape, fields=("u", "v"), t_out=2))


def test_discretisation_invariant_forward():
    model = build(SMOKE, toy_spec((16, 16)))
    assert model(torch.randn(1, 3, 32, 24, 1)).shape == (1, 1, 32, 24, 1)
    assert model(torch.randn(1, 3, 6, 6, 1)).shape == (1, 1, 6, 6, 1)


def _band_limited(n: int) -> torch.Tensor:
    """Three frames of a periodic field holding only wavenumbers below 3: ``(1, 3, n, n, 1)``."""
    x = torch.arange(n, dtype=torch.float32) * (2 * torch.pi / n)
    gx, gy = torch.meshgrid(x, x, indexing="ij")
    frames = [torch.sin(gx + t) + 0.5 * torch.cos(2 * gy - t) + 0.3 * torch.sin(gx + gy) for t in range(3)]
    return torch.stack(frames)[None, ..., None]


# The coordinate channels are a sawtooth on a periodic grid, not band-limited, so with them
# the two resolutions agree to 5e-5 rather than to rounding (1.3e-3 with coordinates that
# included the end point and so did not line up).
@pytest.mark.parametrize("use_grid, tolerance", [(False, 1e-5), (True, 2e-4)])
def test_same_function_at_two_resolutions_gives_the_same_output(use_grid, tolerance):
    torch.manual_seed(0)
    model = build(replace(SMOKE, padding=0, use_grid=use_grid), toy_spec((16, 16), t_in=3))
    with torch.no_grad():
        fine, coarse = model(_band_limited(64)), model(_band_limited(32))  # (1, 1, 64, 64, 1), (1, 1, 32, 32, 1)
        other = model(_band_limited(32).roll(3, dims=2))
    scale = coarse.norm()
    assert (fine[:, :, ::2, ::2] - coarse).norm() < tolerance * scale  # the shared grid points agree
    assert (other - coarse).norm() > 1e-2 * scale  # while another input gives another output


def test_modes_fitted_to_small_grids():
    assert fitted_modes(12, (64, 64)) == (12, 12)
    assert fitted_modes(12, (10, 9)) == (5, 5)
    assert fitted_modes(12, (7,)) == (4,)
    model = build(FNOConfig(), toy_spec((8, 8)))
    assert model.spectral[0].modes == (4, 5)


def test_param_count_of_default_on_ns2d():
    spec = toy_spec((64, 64), fields=("vorticity",), t_in=10, t_out=1, name="ns2d")
    model = build(FNOConfig(), spec)
    # torch counts one element per complex weight: 4 * 2 * 12 * 12 * 20 * 20 spectral
    # + 4 * 420 pointwise + 260 lift + 2688 + 129 projection
    assert param_count(model) == 465_557


def test_training_steps_lower_the_loss():
    # a shift of smooth periodic fields: it lives in the kept modes
    MODEL.check_learns(SMOKE, toy_spec((16, 16), t_in=2), steps=30, factor=0.5)


def test_unsupported_dimension_and_bad_config():
    MODEL.check_rejects_unsupported_dims(SMOKE)
    with pytest.raises(UsageError, match="modes"):
        build(replace(SMOKE, modes=0), toy_spec((16,)))
    with pytest.raises(UsageError, match="padding"):
        build(replace(SMOKE, padding=-1), toy_spec((16,)))


def test_wrong_input_shape_is_reported():
    model = build(SMOKE, toy_spec((16, 16), t_in=3))
    with pytest.raises(ValueError, match="FNO built for"):
        model(torch.randn(1, 4, 16, 16, 1))


def test_bf16_autocast_keeps_ffts_in_float32():
    torch.manual_seed(0)
    model = build(SMOKE, toy_spec((16, 16)))
    x = torch.randn(2, 3, 16, 16, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = model(x)
    assert y.shape == (2, 1, 16, 16, 1)
    torch.testing.assert_close(y.float(), model(x), rtol=0.05, atol=0.05)


def test_builds_from_an_omegaconf_section():
    from omegaconf import OmegaConf

    cfg = OmegaConf.merge(OmegaConf.structured(FNOConfig), PROFILES["smoke"], {"padding": 2})
    model = build(cfg, toy_spec((12,)))
    assert model.spectral[0].modes == (4,) and model.padding == 2
    assert model(torch.randn(1, 3, 12, 1)).shape == (1, 1, 12, 1)
