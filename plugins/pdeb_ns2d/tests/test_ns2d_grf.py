"""Gaussian random field initial conditions: seeding, mean, variance and spectrum."""

from __future__ import annotations

import math

import pytest
import torch

from pdeb_ns2d.grf import default_sigma, gaussian_random_field, mode_amplitude

N, SAMPLES = 32, 256


@pytest.fixture(scope="module")
def fields() -> torch.Tensor:
    return gaussian_random_field(N, SAMPLES, generator=torch.Generator().manual_seed(1234))  # (S, N, N)


def test_same_seed_same_fields_and_other_seeds_differ():
    a = gaussian_random_field(16, 3, generator=torch.Generator().manual_seed(7))
    b = gaussian_random_field(16, 3, generator=torch.Generator().manual_seed(7))
    c = gaussian_random_field(16, 3, generator=torch.Generator().manual_seed(8))
    assert a.shape == (3, 16, 16) and a.dtype == torch.float64
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert not torch.allclose(a[0], a[1])  # samples of one draw are independent
    assert gaussian_random_field(16, 1, dtype=torch.float32).dtype == torch.float32


def test_protocol_amplitude():
    assert default_sigma(2.5, 7.0) == pytest.approx(7.0**1.5)


def test_zero_mean(fields):
    spatial_means = fields.mean(dim=(-2, -1))
    assert spatial_means.abs().max() < 1e-12 * fields.abs().max()  # the mean mode is zeroed
    # Ensemble mean at every point: each is a mean of SAMPLES draws with the field's std.
    std = fields.std()
    assert fields.mean(0).abs().max() < 5 * std / math.sqrt(SAMPLES)


def test_pointwise_variance_is_the_sum_of_mode_variances(fields):
    expected = float((mode_amplitude(N) ** 2).sum())  # Re(a xi e^{i theta}) has variance a^2
    assert fields.var() == pytest.approx(expected, rel=0.1)


def test_power_spectrum_follows_the_covariance(fields):
    # E|fft2(u)_k|^2 / N^4 = 2 sigma^2 (4 pi^2 |k|^2 + tau^2)^(-alpha), averaged over shells |k| ~ s.
    power = (torch.fft.fft2(fields).abs() ** 2).mean(0) / N**4  # (N, N)
    expected = mode_amplitude(N) ** 2
    k = torch.fft.fftfreq(N, d=1.0 / N, dtype=torch.float64)
    shell = torch.sqrt(k[:, None] ** 2 + k[None, :] ** 2).round().long()
    ratios, log_k, log_p = [], [], []
    for s in range(1, 12):
        in_shell = shell == s
        ratios.append(float(power[in_shell].mean() / expected[in_shell].mean()))
        log_k.append(math.log(4 * math.pi**2 * s**2 + 49.0))
        log_p.append(math.log(float(power[in_shell].mean())))
    assert all(0.85 < r < 1.15 for r in ratios), ratios
    # Slope of log power against log(4 pi^2 k^2 + tau^2) is -alpha = -2.5.
    mean_x, mean_y = sum(log_k) / len(log_k), sum(log_p) / len(log_p)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(log_k, log_p)) / sum((x - mean_x) ** 2 for x in log_k)
    assert slope == pytest.approx(-2.5, abs=0.1)


def test_smoothness_parameters_change_the_spectrum():
    g = torch.Generator().manual_seed(3)
    rough = gaussian_random_field(N, 64, alpha=1.5, generator=g)
    g = torch.Generator().manual_seed(3)
    smooth = gaussian_random_field(N, 64, alpha=3.5, generator=g)

    def high_fraction(u):
        power = torch.fft.fft2(u).abs() ** 2
        k = torch.fft.fftfreq(N, d=1.0 / N).abs()
        high = (k[:, None] > 4) | (k[None, :] > 4)
        return float(power[:, high].sum() / power.sum())

    assert high_fraction(rough) > 10 * high_fraction(smooth)
