"""Metrics against hand-computed values, in 1D, 2D and 3D; their three views; their registration."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
from pathlib import Path

import pluggy
import pytest
import torch

from pdebench_core import hookimpl, hookspecs, plugins
from pdebench_core import metrics as M
from pdebench_core.builtin import metrics as builtin_metrics
from pdebench_core.errors import UsageError


def scores(name: str, pred: torch.Tensor, target: torch.Tensor, mask=None) -> M.Scores:
    return M.METRICS[name].score(M.Pair(pred, target), mask)


def summary(name: str, pred: torch.Tensor, target: torch.Tensor, mask=None) -> torch.Tensor:
    """``(B,)``: the metric over the whole rollout."""
    return scores(name, pred, target, mask).summary


def per_step(name: str, pred: torch.Tensor, target: torch.Tensor, mask=None) -> torch.Tensor:
    """``(B, T)``: the metric's curve over the rollout steps."""
    return scores(name, pred, target, mask).per_step


def close(actual: torch.Tensor, expected: list, rel: float = 1e-9) -> None:
    """Element-wise comparison of a tensor with (possibly nested) lists of numbers."""
    flat_expected = torch.tensor(expected, dtype=torch.float64).reshape(-1).tolist()
    assert actual.reshape(-1).tolist() == pytest.approx(flat_expected, rel=rel, abs=1e-12, nan_ok=True)
    assert tuple(actual.shape) == tuple(torch.tensor(expected).shape)


def as_batch(steps: list[list[float]]) -> torch.Tensor:
    """(T, X) nested lists -> (1, T, X, 1) float64 tensor."""
    return torch.tensor(steps, dtype=torch.float64)[None, ..., None]


# ------------------------------------------------------------------ 1D, by hand

# Two steps on a 4-point grid. Errors: step 0 = [0, 0, 0, 2], step 1 = [1, -1, 0, 0].
TARGET_1D = as_batch([[1, 2, 3, 4], [2, 2, 4, 4]])
PRED_1D = as_batch([[1, 2, 3, 6], [3, 1, 4, 4]])


def test_1d_hand_computed_values():
    p, y = PRED_1D, TARGET_1D
    # step 0: mse 4/4, mean(y^2) 30/4, var(y) 1.25; step 1: mse 2/4, mean(y^2) 40/4, var(y) 1.
    close(summary("rmse", p, y), [(1 + math.sqrt(0.5)) / 2])
    close(summary("nrmse", p, y), [(1 / math.sqrt(7.5) + math.sqrt(0.5) / math.sqrt(10)) / 2])
    close(summary("l2re", p, y), [math.sqrt(6) / (math.sqrt(70) + 1e-8)])
    close(summary("crmse", p, y), [(0.5 + 0.0) / 2])
    # boundary = points 0 and 3: errors [0, 2] then [1, 0]
    close(summary("brmse", p, y), [(math.sqrt(2) + math.sqrt(0.5)) / 2])
    close(summary("vrmse", p, y), [(math.sqrt(1 / (1.25 + 1e-7)) + math.sqrt(0.5 / (1 + 1e-7))) / 2])
    close(summary("max_error", p, y), [2.0])
    # N = 4: cut-off 2, so the low band holds all 4 modes and Parseval gives rmse / 2 per step.
    close(summary("frmse_low", p, y), [(0.5 + math.sqrt(0.5) / 2) / 2])
    assert math.isnan(summary("frmse_mid", p, y).item()) and math.isnan(summary("frmse_high", p, y).item())


def test_1d_per_step_curves():
    p, y = PRED_1D, TARGET_1D
    close(per_step("rmse", p, y), [[1.0, math.sqrt(0.5)]])
    close(per_step("l2re", p, y), [[2 / (math.sqrt(30) + 1e-8), math.sqrt(2) / (math.sqrt(40) + 1e-8)]])
    close(per_step("max_error", p, y), [[2.0, 1.0]])
    close(per_step("crmse", p, y), [[0.5, 0.0]])


def test_1d_matches_pdebench_reference_at_batch_size_one():
    """Values from PDEBench's metric_func on this input (batch of one sample, ``initial_step=0``:
    the tensors hold predicted frames only).

    PDEBench and pdeb agree on rmse, nrmse, crmse and 1D brmse when the batch holds a
    single sample; PDEBench's "max" averages the per-step maxima (0.225 here) where
    pdeb takes the maximum over the sample (0.35).
    """
    x = (torch.arange(16, dtype=torch.float64) / 16).reshape(1, 16, 1)
    t = torch.arange(3, dtype=torch.float64).reshape(3, 1, 1)
    c = torch.arange(2, dtype=torch.float64).reshape(1, 1, 2)
    y = torch.sin(2 * math.pi * x * (c + 1)) + 0.5 * t + 1
    p = y + 0.1 * torch.cos(2 * math.pi * 3 * x) * (t + 1) + 0.05 * c
    p, y = p[None], y[None]  # (1, 3, 16, 2)
    close(summary("rmse", p, y), [0.146468592711], rel=1e-10)
    close(summary("nrmse", p, y), [0.0844866047227], rel=1e-10)
    close(summary("crmse", p, y), [0.025], rel=1e-10)
    close(summary("brmse", p, y), [0.174836463627], rel=1e-10)
    close(summary("max_error", p, y), [0.35], rel=1e-10)


# ------------------------------------------------------------------ 2D, by hand


def _case_2d() -> tuple[torch.Tensor, torch.Tensor]:
    """One step on a 3x3 grid; channel 0 is real, channel 1 is padding."""
    y = torch.zeros(1, 1, 3, 3, 2, dtype=torch.float64)
    y[0, 0, :, :, 0] = torch.tensor([[1, 1, 1], [1, 5, 1], [1, 1, 1]])
    error = torch.tensor([[1.0, 0, 0], [0, 3, 0], [0, 0, 0]], dtype=torch.float64)
    p = y.clone()
    p[0, 0, :, :, 0] += error
    p[0, 0, :, :, 1] = 7.0  # a padded channel holds anything; its target is all zeros
    return p, y


def test_2d_hand_computed_values_with_padded_channel():
    p, y = _case_2d()
    mask = [True, False]
    # sum of squared errors 10 over 9 points; sum y^2 = 33; mean y = 13/9; var y = 128/81.
    close(summary("rmse", p, y, mask), [math.sqrt(10 / 9)])
    close(summary("nrmse", p, y, mask), [math.sqrt(10 / 33)])
    close(summary("l2re", p, y, mask), [math.sqrt(10) / (math.sqrt(33) + 1e-8)])
    close(summary("crmse", p, y, mask), [4 / 9])
    close(summary("brmse", p, y, mask), [math.sqrt(1 / 8)])  # 8 boundary points, one error of 1
    close(summary("vrmse", p, y, mask), [math.sqrt((10 / 9) / (128 / 81 + 1e-7))])
    close(summary("max_error", p, y, mask), [3.0])


def test_padded_channel_changes_the_unmasked_result_and_not_the_masked_one():
    p, y = _case_2d()
    # Unmasked, the padded channel counts: rmse averages sqrt(10/9) with 7.
    close(summary("rmse", p, y), [(math.sqrt(10 / 9) + 7) / 2])
    assert summary("max_error", p, y).item() == 7.0
    # nrmse of an all-zero target is inf; the mask keeps it out.
    assert math.isinf(summary("nrmse", p, y).item())
    for name in M.METRICS:
        single = summary(name, p[..., :1], y[..., :1])
        for mask in ([True, False], (True, False), torch.tensor([True, False]), torch.tensor([[True, False]])):
            close(summary(name, p, y, mask), single.tolist())


def test_2d_matches_pdebench_reference_at_batch_size_one():
    """PDEBench's metric_func (``initial_step=0``) on this 8x8 input; its bRMSE counts the 4 corners twice
    (0.0647071226277), pdeb counts each boundary point once."""
    g = torch.arange(8, dtype=torch.float64) / 8
    X, Y = torch.meshgrid(g, g, indexing="ij")
    t = torch.arange(2, dtype=torch.float64).reshape(2, 1, 1)
    y = (torch.cos(2 * math.pi * X) * torch.sin(2 * math.pi * Y) + 2 + t)[None, ..., None]
    p = y + (0.2 * X * Y)[None, None, ..., None]
    close(summary("rmse", p, y), [0.0546875], rel=1e-10)
    close(summary("nrmse", p, y), [0.0222542366124], rel=1e-10)
    close(summary("crmse", p, y), [0.03828125], rel=1e-10)
    close(summary("max_error", p, y), [0.153125], rel=1e-10)
    # Each boundary point once: 28 points on an 8x8 grid.
    on_face = M.boundary_mask((8, 8))
    squared = (0.2 * X * Y)[on_face].pow(2)
    close(summary("brmse", p, y), [math.sqrt(squared.mean().item())], rel=1e-10)


# ------------------------------------------------------------------ 3D, by hand


def test_3d_hand_computed_values_two_samples():
    y = torch.arange(3, dtype=torch.float64).reshape(3, 1, 1).expand(3, 3, 3)  # y = i
    target = y.reshape(1, 1, 3, 3, 3, 1).repeat(2, 2, 1, 1, 1, 1)  # (B=2, T=2, 3, 3, 3, 1)
    pred = target.clone()
    pred[0, 0, 1, 1, 1, 0] += 4  # sample 0, step 0: error 4 at the only interior point
    pred[0, 1] += 1  # sample 0, step 1: error 1 everywhere
    # Per step: mean y^2 = 5/3, var y = 2/3, sum y^2 = 45.
    rmse0 = (4 / math.sqrt(27) + 1) / 2
    close(summary("rmse", pred, target), [rmse0, 0.0])
    close(summary("nrmse", pred, target), [rmse0 / math.sqrt(5 / 3), 0.0])
    close(summary("l2re", pred, target), [math.sqrt(16 + 27) / (math.sqrt(90) + 1e-8), 0.0])
    close(summary("crmse", pred, target), [(4 / 27 + 1) / 2, 0.0])
    close(summary("brmse", pred, target), [(0 + 1) / 2, 0.0])  # 26 boundary points, none at step 0
    vrmse0 = (math.sqrt((16 / 27) / (2 / 3 + 1e-7)) + math.sqrt(1 / (2 / 3 + 1e-7))) / 2
    close(summary("vrmse", pred, target), [vrmse0, 0.0])
    close(summary("max_error", pred, target), [4.0, 0.0])
    # Cut-off 1: the low band holds the 7 modes with |k| <= 1. A point error 4 has
    # |F_k| = 4/27 at every k; a uniform error 1 has F_0 = 1 and nothing else.
    close(summary("frmse_low", pred, target), [(4 / 27 + math.sqrt(1 / 7)) / 2, 0.0])


# ---------------------------------------------------------- Fourier bands in depth


def brute_force_band_count(shape: tuple[int, ...], start: int, stop: int | None) -> int:
    cutoff_sq = (min(shape) // 2) ** 2
    axes = [[j if j < (n + 1) // 2 else j - n for j in range(n)] for n in shape]
    count = 0
    for k in itertools.product(*axes):
        r2 = sum(v * v for v in k)
        if start * start <= r2 <= cutoff_sq and (stop is None or r2 < stop * stop):
            count += 1
    return count


@pytest.mark.parametrize("shape", [(32,), (7,), (32, 32), (32, 20), (9, 9), (24, 24, 24)])
def test_band_masks_match_a_brute_force_count(shape):
    for band, (start, stop) in M.FOURIER_BANDS.items():
        assert int(M.fourier_band_mask(shape, band).sum()) == brute_force_band_count(shape, start, stop)


def test_1d_bands_by_hand():
    assert [int(M.fourier_band_mask((32,), b).sum()) for b in ("low", "mid", "high")] == [7, 16, 9]
    x = torch.arange(32, dtype=torch.float64) / 32
    error = 0.3 * torch.cos(2 * math.pi * 5 * x)  # amplitude 0.15 at k = +5 and -5
    target = torch.ones(1, 1, 32, 1, dtype=torch.float64)
    pred = target + error.reshape(1, 1, 32, 1)
    close(summary("frmse_low", pred, target), [0.0])
    close(summary("frmse_mid", pred, target), [math.sqrt(2 * 0.15**2 / 16)])
    close(summary("frmse_high", pred, target), [0.0])


def test_1d_bands_split_the_mse_exactly():
    """In 1D no mode lies beyond the cut-off, so sum_band n_band * frmse_band^2 = mse."""
    generator = torch.Generator().manual_seed(3)
    pred = torch.randn(1, 1, 32, 1, generator=generator, dtype=torch.float64)
    target = torch.randn(1, 1, 32, 1, generator=generator, dtype=torch.float64)
    band = {name: summary(f"frmse_{name}", pred, target) for name in ("low", "mid", "high")}
    total = 7 * band["low"] ** 2 + 16 * band["mid"] ** 2 + 9 * band["high"] ** 2
    close(total, (summary("rmse", pred, target) ** 2).tolist(), rel=1e-12)


def test_2d_single_mode_lands_in_its_band():
    g = torch.arange(32, dtype=torch.float64) / 32
    X, Y = torch.meshgrid(g, g, indexing="ij")
    error = torch.cos(2 * math.pi * (3 * X + 4 * Y))  # |k| = 5: coefficients 1/2 at +-(3, 4)
    target = torch.zeros(1, 1, 32, 32, 1, dtype=torch.float64)
    pred = error[None, None, ..., None]
    n_mid = brute_force_band_count((32, 32), 4, 12)
    close(summary("frmse_mid", pred, target), [math.sqrt(2 * 0.25 / n_mid)])
    close(summary("frmse_low", pred, target), [0.0])
    close(summary("frmse_high", pred, target), [0.0])


def test_3d_high_band_includes_the_cutoff_wavenumber():
    # (-1)^z on 24 points is the Nyquist mode k_z = 12 = 24 // 2: one coefficient of modulus 1.
    z = torch.arange(24, dtype=torch.float64)
    error = ((-1.0) ** z).reshape(1, 1, 24).expand(24, 24, 24)
    target = torch.zeros(1, 1, 24, 24, 24, 1, dtype=torch.float64)
    pred = error[None, None, ..., None]
    n_high = brute_force_band_count((24, 24, 24), 12, None)
    close(summary("frmse_high", pred, target), [math.sqrt(1 / n_high)])
    close(summary("frmse_mid", pred, target), [0.0])


def test_unknown_fourier_band_is_rejected():
    with pytest.raises(ValueError, match="unknown Fourier band 'ultra'"):
        M.fourier_band_mask((16,), "ultra")


# ------------------------------------------------------------- nrmse versus l2re


def test_nrmse_and_l2re_differ_by_sqrt2_when_error_sits_in_one_of_two_steps():
    """l2re pools the steps before the ratio, nrmse averages per-step ratios.

    Same target energy at both steps, zero error at step 0 and relative error a at
    step 1: nrmse = a / 2 and l2re = a / sqrt(2).
    """
    x = torch.linspace(0, 1, 16, dtype=torch.float64)
    field = torch.sin(2 * math.pi * x) + 2
    target = field.reshape(1, 1, 16, 1).repeat(1, 2, 1, 1)
    pred = target.clone()
    pred[0, 1] *= 1.3  # relative error a = 0.3 at step 1
    close(summary("nrmse", pred, target), [0.3 / 2], rel=1e-12)
    close(summary("l2re", pred, target), [0.3 / math.sqrt(2)], rel=1e-8)
    close(summary("l2re", pred, target) / summary("nrmse", pred, target), [math.sqrt(2)], rel=1e-8)


def test_nrmse_and_l2re_agree_for_a_constant_relative_error():
    x = torch.linspace(0, 1, 16, dtype=torch.float64)
    amplitude = torch.tensor([1.0, 0.5, 0.1], dtype=torch.float64).reshape(3, 1)
    target = (amplitude * (torch.cos(2 * math.pi * x) + 1.5)).reshape(1, 3, 16, 1)
    pred = 1.2 * target
    close(summary("nrmse", pred, target), [0.2], rel=1e-12)
    close(summary("l2re", pred, target), [0.2], rel=1e-8)


# ------------------------------------------------------------- the three views


# Grids of at least 24 points per axis, so that every Fourier band holds modes.
@pytest.mark.parametrize("spatial", [(32,), (24, 26), (24, 24, 24)])
@pytest.mark.parametrize("name", list(M.METRICS))
def test_shape_contract_and_consistency(spatial, name):
    generator = torch.Generator().manual_seed(len(spatial))
    pred = torch.randn(3, 4, *spatial, 2, generator=generator)
    target = torch.randn(3, 4, *spatial, 2, generator=generator) + 3
    mask = torch.tensor([[True, True], [True, False], [False, True]])

    views = scores(name, pred, target, mask)
    values, steps, channels = views.summary, views.per_step, views.per_channel
    assert values.shape == (3,) and steps.shape == (3, 4) and channels.shape == (3, 2)
    assert values.dtype == steps.dtype == channels.dtype == torch.float64
    assert bool(torch.isnan(channels[~mask]).all())

    if M.METRICS[name].reduction == "max":
        close(steps.amax(dim=1), values.tolist())
        close(torch.nan_to_num(channels, nan=-1.0).amax(dim=1), values.tolist())
    else:
        close(torch.where(mask, channels, 0.0).sum(dim=1) / mask.sum(dim=1), values.tolist())
        if M.METRICS[name].finish is None:  # l2re pools the steps, so its curve does not average to it
            close(steps.mean(dim=1), values.tolist())


@pytest.mark.parametrize("spatial", [(32,), (24, 26)])
def test_one_call_gives_what_scoring_each_step_and_each_channel_alone_gives(spatial):
    """The per-step curve is each step scored as a one-frame rollout and the per-channel
    value is the metric with only that channel real (how evaluation used to get them)."""
    generator = torch.Generator().manual_seed(5)
    pred = torch.randn(2, 3, *spatial, 3, generator=generator)
    target = torch.randn(2, 3, *spatial, 3, generator=generator) + 2
    mask = torch.tensor([True, True, False])
    for name in M.METRICS:
        views = scores(name, pred, target, mask)
        for t in range(3):
            close(views.per_step[:, t], summary(name, pred[:, t:t + 1], target[:, t:t + 1], mask).tolist(),
                  rel=1e-13)
        for c in range(2):
            alone = torch.arange(3) == c
            close(views.per_channel[:, c], summary(name, pred, target, alone).tolist(), rel=1e-13)


def test_samples_are_scored_independently():
    generator = torch.Generator().manual_seed(0)
    pred = torch.randn(4, 3, 8, 8, 2, generator=generator)
    target = torch.randn(4, 3, 8, 8, 2, generator=generator)
    for name in M.METRICS:
        batched = summary(name, pred, target)
        one_by_one = torch.cat([summary(name, pred[i : i + 1], target[i : i + 1]) for i in range(4)])
        close(batched, one_by_one.tolist(), rel=1e-12)


def test_metrics_sharing_a_pair_match_metrics_on_fresh_pairs():
    generator = torch.Generator().manual_seed(2)
    pred = torch.randn(2, 3, 24, 24, 2, generator=generator)
    target = torch.randn(2, 3, 24, 24, 2, generator=generator)
    shared = M.Pair(pred, target)
    for name, metric in M.METRICS.items():
        together, alone = metric.score(shared, [False, True]), scores(name, pred, target, [False, True])
        for view in ("summary", "per_step", "per_channel"):
            assert torch.equal(getattr(together, view).nan_to_num(-1), getattr(alone, view).nan_to_num(-1))


def test_the_error_spectrum_is_computed_once_per_pair(monkeypatch):
    calls = []
    fftn = torch.fft.fftn
    monkeypatch.setattr(torch.fft, "fftn", lambda *a, **k: calls.append(1) or fftn(*a, **k))
    pair = M.Pair(torch.randn(2, 3, 32, 32, 1), torch.randn(2, 3, 32, 32, 1))
    for band in ("low", "mid", "high"):
        M.METRICS[f"frmse_{band}"].score(pair)
    assert len(calls) == 1


def test_low_precision_inputs_are_scored_in_float64():
    p, y = PRED_1D.to(torch.bfloat16), TARGET_1D.to(torch.bfloat16)  # these values are exact in bf16
    result = summary("rmse", p, y)
    assert result.dtype == torch.float64
    close(result, [(1 + math.sqrt(0.5)) / 2])


def test_per_step_l2re_equals_per_step_nrmse_up_to_epsilon():
    p, y = PRED_1D, TARGET_1D
    close(per_step("l2re", p, y), per_step("nrmse", p, y).tolist(), rel=1e-8)


def test_vrmse_of_predicting_the_spatial_mean_is_one():
    generator = torch.Generator().manual_seed(1)
    target = torch.randn(2, 3, 16, 16, 1, generator=generator, dtype=torch.float64)
    pred = target.mean(dim=(2, 3), keepdim=True).expand_as(target)
    close(summary("vrmse", pred, target), [1.0, 1.0], rel=1e-6)


@pytest.mark.parametrize(
    "pred_shape, target_shape, mask, message",
    [
        ((2, 3, 8, 1), (2, 3, 8, 2), None, "differ in shape"),
        ((2, 3, 1), (2, 3, 1), None, "1 to 3 spatial axes"),
        ((2, 3, 2, 2, 2, 2, 1), (2, 3, 2, 2, 2, 2, 1), None, "1 to 3 spatial axes"),
        ((2, 3, 8, 2), (2, 3, 8, 2), [True], "channel_mask has shape"),
        ((2, 3, 8, 2), (2, 3, 8, 2), [False, False], "no real channel"),
        ((2, 3, 8, 2), (2, 3, 8, 2), [[True, True], [False, False]], "no real channel"),
        ((2, 3, 8, 2), (2, 3, 8, 2), [0.5, 1.0], "booleans"),
        ((2, 0, 8, 2), (2, 0, 8, 2), None, "empty"),
    ],
)
def test_bad_inputs_are_rejected(pred_shape, target_shape, mask, message):
    with pytest.raises(ValueError, match=message):
        summary("rmse", torch.zeros(pred_shape), torch.ones(target_shape), mask)


# ------------------------------------------------------------- declaring a metric


def test_a_pooled_metric_adds_partial_sums_over_the_steps_of_each_view():
    """A metric declared with ``finish`` pools its partial sums over the steps, as l2re does."""
    def abs_sums(pair):
        return pair.error.abs().sum(dim=pair.spatial), pair.target.abs().sum(dim=pair.spatial)

    pooled = M.Metric("relative_l1", abs_sums, finish=lambda error, target: error / target)
    p, y = PRED_1D, TARGET_1D  # |e| sums 2 and 2, |y| sums 10 and 12
    views = pooled.score(M.Pair(p, y))
    close(views.summary, [4 / 22])
    close(views.per_step, [[2 / 10, 2 / 12]])
    close(views.per_channel, [[4 / 22]])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"reduction": "median"}, "metric 'm': unknown reduction 'median'; use one of mean, max"),
        ({"values": "rmse"}, "metric 'm': pass a function values"),
        ({"finish": 1e-8}, "metric 'm': finish must be a function"),
    ],
)
def test_bad_declarations_are_rejected_in_one_line(kwargs, message):
    with pytest.raises(UsageError, match=message):
        M.Metric(**{"name": "m", "values": lambda pair: pair.mse, **kwargs})


def test_a_metric_returning_one_value_per_sample_is_told_the_contract():
    old_style = M.Metric("old", lambda pair: pair.mse.mean(dim=(1, 2)))
    with pytest.raises(UsageError, match=r"metric 'old' gave values of shape \(1,\); a metric returns \(1, 2, 1\)"):
        old_style.score(M.Pair(PRED_1D, TARGET_1D))


def test_partial_sums_that_finish_cannot_take_are_told_the_contract():
    one_sum = M.Metric("rel", lambda pair: pair.error.abs().sum(dim=pair.spatial), finish=lambda a, b: a / b)
    with pytest.raises(UsageError, match=r"metric 'rel' returned 1 partial sum\(s\), which its finish \(a, b\) "
                                         r"cannot take; return a tuple with one \(B, T, C\) tensor per argument"):
        one_sum.score(M.Pair(PRED_1D, TARGET_1D))


# ------------------------------------------------------------- the builtin plugin


def collect_registrations() -> dict[str, tuple]:
    pm = pluggy.PluginManager("pdeb")
    pm.add_hookspecs(hookspecs)
    pm.register(builtin_metrics, name="builtin-metrics-under-test")
    seen: dict[str, tuple] = {}

    def register(name, fn, **card):
        assert name not in seen
        seen[name] = (fn, card)

    pm.hook.register_metrics(register=register)
    return seen


def test_plugin_registers_every_metric_with_its_reduction():
    seen = collect_registrations()
    assert list(seen) == list(M.METRICS)
    for name, (fn, card) in seen.items():
        assert card["reduction"] == ("max" if name == "max_error" else "mean")
        assert (card["finish"] is not None) == (name == "l2re")  # the only one pooled over steps
        assert card["higher_is_better"] is False
        assert card["description"] and card["formula"]
        assert fn is M.METRICS[name].values


def test_the_registry_holds_each_builtin_metric_as_declared():
    for name, metric in M.METRICS.items():
        component = plugins.get("metric", name)
        assert (component.factory.values, component.factory.reduction, component.factory.finish) == (
            metric.values, metric.reduction, metric.finish)
        assert component.card["reduction"] == metric.reduction  # shown by `pdeb metrics`


def test_a_plugin_metric_is_scored_through_the_registry():
    from pdebench_core.workflow import metric_functions

    class MaePlugin:
        @staticmethod
        @hookimpl
        def register_metrics(register):
            register("mae", lambda pair: pair.error.abs().mean(dim=pair.spatial), reduction="mean",
                     description="Mean absolute error")

    plugins.register_plugin(MaePlugin, name="mae-plugin")
    try:
        mae = metric_functions(["mae"])["mae"]
        close(mae.score(M.Pair(PRED_1D, TARGET_1D)).summary, [(0.5 + 0.5) / 2])
        assert plugins.get("metric", "mae").card == {"reduction": "mean", "description": "Mean absolute error"}
    finally:
        plugins.unregister_plugin("mae-plugin")


def test_a_metric_with_an_unknown_reduction_disables_its_plugin(capsys):
    class Median:
        @staticmethod
        @hookimpl
        def register_metrics(register):
            register("median_error", lambda pair: pair.mse, reduction="median")

    plugins.register_plugin(Median, name="median-plugin")
    try:
        assert "median_error" not in plugins.registries()["metric"] and "l2re" in plugins.registries()["metric"]
        error = {i.name: i for i in plugins.plugin_infos()}["median-plugin"].error
        assert "unknown reduction 'median'; use one of mean, max" in error
        assert capsys.readouterr().err.count("median-plugin") == 1
    finally:
        plugins.unregister_plugin("median-plugin")


def test_importing_and_registering_the_metrics_does_not_import_torch():
    code = ("import sys, pdebench_core.builtin.metrics; from pdebench_core import plugins; "
            "assert 'l2re' in plugins.registries()['metric']; assert 'torch' not in sys.modules, 'torch imported'")
    repo_root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo_root)
    assert result.returncode == 0, result.stderr
