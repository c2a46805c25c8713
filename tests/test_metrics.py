"""Metrics against hand-computed values, in 1D, 2D and 3D."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
from pathlib import Path

import pluggy
import pytest
import torch

from pdebench_core import hookspecs
from pdebench_core import metrics as M
from pdebench_core.builtin import metrics as builtin_metrics

FAMILY = ("rmse", "nrmse", "crmse", "brmse", "vrmse", "frmse_low", "frmse_mid", "frmse_high")


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
    close(M.rmse(p, y), [(1 + math.sqrt(0.5)) / 2])
    close(M.nrmse(p, y), [(1 / math.sqrt(7.5) + math.sqrt(0.5) / math.sqrt(10)) / 2])
    close(M.l2re(p, y), [math.sqrt(6) / (math.sqrt(70) + 1e-8)])
    close(M.crmse(p, y), [(0.5 + 0.0) / 2])
    # boundary = points 0 and 3: errors [0, 2] then [1, 0]
    close(M.brmse(p, y), [(math.sqrt(2) + math.sqrt(0.5)) / 2])
    close(M.vrmse(p, y), [(math.sqrt(1 / (1.25 + 1e-7)) + math.sqrt(0.5 / (1 + 1e-7))) / 2])
    close(M.max_error(p, y), [2.0])
    # N = 4: cut-off 2, so the low band holds all 4 modes and Parseval gives rmse / 2 per step.
    close(M.frmse_low(p, y), [(0.5 + math.sqrt(0.5) / 2) / 2])
    assert math.isnan(M.frmse_mid(p, y).item()) and math.isnan(M.frmse_high(p, y).item())


def test_1d_per_step_curves():
    p, y = PRED_1D, TARGET_1D
    close(M.per_step_error(p, y, "rmse"), [[1.0, math.sqrt(0.5)]])
    close(M.per_step_error(p, y, "l2re"), [[2 / (math.sqrt(30) + 1e-8), math.sqrt(2) / (math.sqrt(40) + 1e-8)]])
    close(M.per_step_error(p, y, "max_error"), [[2.0, 1.0]])
    close(M.per_step_error(p, y, "crmse"), [[0.5, 0.0]])


def test_1d_matches_pdebench_reference_at_batch_size_one():
    """Values from PDEBench's metric_func on this input (batch of one sample).

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
    close(M.rmse(p, y), [0.146468592711], rel=1e-10)
    close(M.nrmse(p, y), [0.0844866047227], rel=1e-10)
    close(M.crmse(p, y), [0.025], rel=1e-10)
    close(M.brmse(p, y), [0.174836463627], rel=1e-10)
    close(M.max_error(p, y), [0.35], rel=1e-10)


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
    close(M.rmse(p, y, mask), [math.sqrt(10 / 9)])
    close(M.nrmse(p, y, mask), [math.sqrt(10 / 33)])
    close(M.l2re(p, y, mask), [math.sqrt(10) / (math.sqrt(33) + 1e-8)])
    close(M.crmse(p, y, mask), [4 / 9])
    close(M.brmse(p, y, mask), [math.sqrt(1 / 8)])  # 8 boundary points, one error of 1
    close(M.vrmse(p, y, mask), [math.sqrt((10 / 9) / (128 / 81 + 1e-7))])
    close(M.max_error(p, y, mask), [3.0])


def test_padded_channel_changes_the_unmasked_result_and_not_the_masked_one():
    p, y = _case_2d()
    # Unmasked, the padded channel counts: rmse averages sqrt(10/9) with 7.
    close(M.rmse(p, y), [(math.sqrt(10 / 9) + 7) / 2])
    assert M.max_error(p, y).item() == 7.0
    # nrmse of an all-zero target is inf; the mask keeps it out.
    assert math.isinf(M.nrmse(p, y).item())
    for name in M.METRIC_NAMES:
        single = M.METRICS[name](p[..., :1], y[..., :1])
        for mask in ([True, False], (True, False), torch.tensor([True, False]), torch.tensor([[True, False]])):
            close(M.METRICS[name](p, y, mask), single.tolist())


def test_2d_matches_pdebench_reference_at_batch_size_one():
    """PDEBench's metric_func on this 8x8 input; its bRMSE counts the 4 corners twice
    (0.0647071226277), pdeb counts each boundary point once."""
    g = torch.arange(8, dtype=torch.float64) / 8
    X, Y = torch.meshgrid(g, g, indexing="ij")
    t = torch.arange(2, dtype=torch.float64).reshape(2, 1, 1)
    y = (torch.cos(2 * math.pi * X) * torch.sin(2 * math.pi * Y) + 2 + t)[None, ..., None]
    p = y + (0.2 * X * Y)[None, None, ..., None]
    close(M.rmse(p, y), [0.0546875], rel=1e-10)
    close(M.nrmse(p, y), [0.0222542366124], rel=1e-10)
    close(M.crmse(p, y), [0.03828125], rel=1e-10)
    close(M.max_error(p, y), [0.153125], rel=1e-10)
    # Each boundary point once: 28 points on an 8x8 grid.
    on_face = M.boundary_mask((8, 8))
    squared = (0.2 * X * Y)[on_face].pow(2)
    close(M.brmse(p, y), [math.sqrt(squared.mean().item())], rel=1e-10)


# ------------------------------------------------------------------ 3D, by hand


def test_3d_hand_computed_values_two_samples():
    y = torch.arange(3, dtype=torch.float64).reshape(3, 1, 1).expand(3, 3, 3)  # y = i
    target = y.reshape(1, 1, 3, 3, 3, 1).repeat(2, 2, 1, 1, 1, 1)  # (B=2, T=2, 3, 3, 3, 1)
    pred = target.clone()
    pred[0, 0, 1, 1, 1, 0] += 4  # sample 0, step 0: error 4 at the only interior point
    pred[0, 1] += 1  # sample 0, step 1: error 1 everywhere
    # Per step: mean y^2 = 5/3, var y = 2/3, sum y^2 = 45.
    rmse0 = (4 / math.sqrt(27) + 1) / 2
    close(M.rmse(pred, target), [rmse0, 0.0])
    close(M.nrmse(pred, target), [rmse0 / math.sqrt(5 / 3), 0.0])
    close(M.l2re(pred, target), [math.sqrt(16 + 27) / (math.sqrt(90) + 1e-8), 0.0])
    close(M.crmse(pred, target), [(4 / 27 + 1) / 2, 0.0])
    close(M.brmse(pred, target), [(0 + 1) / 2, 0.0])  # 26 boundary points, none at step 0
    close(M.vrmse(pred, target), [(math.sqrt((16 / 27) / (2 / 3 + 1e-7)) + math.sqrt(1 / (2 / 3 + 1e-7))) / 2, 0.0])
    close(M.max_error(pred, target), [4.0, 0.0])
    # Cut-off 1: the low band holds the 7 modes with |k| <= 1. A point error 4 has
    # |F_k| = 4/27 at every k; a uniform error 1 has F_0 = 1 and nothing else.
    close(M.frmse_low(pred, target), [(4 / 27 + math.sqrt(1 / 7)) / 2, 0.0])


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
    close(M.frmse_low(pred, target), [0.0])
    close(M.frmse_mid(pred, target), [math.sqrt(2 * 0.15**2 / 16)])
    close(M.frmse_high(pred, target), [0.0])


def test_1d_bands_split_the_mse_exactly():
    """In 1D no mode lies beyond the cut-off, so sum_band n_band * frmse_band^2 = mse."""
    generator = torch.Generator().manual_seed(3)
    pred = torch.randn(1, 1, 32, 1, generator=generator, dtype=torch.float64)
    target = torch.randn(1, 1, 32, 1, generator=generator, dtype=torch.float64)
    total = 7 * M.frmse_low(pred, target) ** 2 + 16 * M.frmse_mid(pred, target) ** 2 + 9 * M.frmse_high(pred, target) ** 2
    close(total, (M.rmse(pred, target) ** 2).tolist(), rel=1e-12)


def test_2d_single_mode_lands_in_its_band():
    g = torch.arange(32, dtype=torch.float64) / 32
    X, Y = torch.meshgrid(g, g, indexing="ij")
    error = torch.cos(2 * math.pi * (3 * X + 4 * Y))  # |k| = 5: coefficients 1/2 at +-(3, 4)
    target = torch.zeros(1, 1, 32, 32, 1, dtype=torch.float64)
    pred = error[None, None, ..., None]
    n_mid = brute_force_band_count((32, 32), 4, 12)
    close(M.frmse_mid(pred, target), [math.sqrt(2 * 0.25 / n_mid)])
    close(M.frmse_low(pred, target), [0.0])
    close(M.frmse_high(pred, target), [0.0])


def test_3d_high_band_includes_the_cutoff_wavenumber():
    # (-1)^z on 24 points is the Nyquist mode k_z = 12 = 24 // 2: one coefficient of modulus 1.
    z = torch.arange(24, dtype=torch.float64)
    error = ((-1.0) ** z).reshape(1, 1, 24).expand(24, 24, 24)
    target = torch.zeros(1, 1, 24, 24, 24, 1, dtype=torch.float64)
    pred = error[None, None, ..., None]
    n_high = brute_force_band_count((24, 24, 24), 12, None)
    close(M.frmse_high(pred, target), [math.sqrt(1 / n_high)])
    close(M.frmse_mid(pred, target), [0.0])


def test_fourier_band_rmse_names_the_same_values():
    p, y = PRED_1D, TARGET_1D
    close(M.fourier_band_rmse(p, y, "low"), M.frmse_low(p, y).tolist())
    with pytest.raises(ValueError, match="unknown Fourier band"):
        M.fourier_band_rmse(p, y, "ultra")


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
    close(M.nrmse(pred, target), [0.3 / 2], rel=1e-12)
    close(M.l2re(pred, target), [0.3 / math.sqrt(2)], rel=1e-8)
    close(M.l2re(pred, target) / M.nrmse(pred, target), [math.sqrt(2)], rel=1e-8)


def test_nrmse_and_l2re_agree_for_a_constant_relative_error():
    x = torch.linspace(0, 1, 16, dtype=torch.float64)
    amplitude = torch.tensor([1.0, 0.5, 0.1], dtype=torch.float64).reshape(3, 1)
    target = (amplitude * (torch.cos(2 * math.pi * x) + 1.5)).reshape(1, 3, 16, 1)
    pred = 1.2 * target
    close(M.nrmse(pred, target), [0.2], rel=1e-12)
    close(M.l2re(pred, target), [0.2], rel=1e-8)


# ------------------------------------------------------------- shape contract


# Grids of at least 24 points per axis, so that every Fourier band holds modes.
@pytest.mark.parametrize("spatial", [(32,), (24, 26), (24, 24, 24)])
@pytest.mark.parametrize("name", M.METRIC_NAMES)
def test_shape_contract_and_consistency(spatial, name):
    generator = torch.Generator().manual_seed(len(spatial))
    pred = torch.randn(3, 4, *spatial, 2, generator=generator)
    target = torch.randn(3, 4, *spatial, 2, generator=generator) + 3
    mask = torch.tensor([[True, True], [True, False], [False, True]])

    values = M.METRICS[name](pred, target, mask)
    assert values.shape == (3,) and values.dtype == torch.float64

    steps = M.per_step_error(pred, target, name, mask)
    channels = M.per_channel_error(pred, target, name, mask)
    assert steps.shape == (3, 4) and channels.shape == (3, 2)
    assert bool(torch.isnan(channels[~mask]).all())

    if name == "max_error":
        close(steps.amax(dim=1), values.tolist())
        close(torch.nan_to_num(channels, nan=-1.0).amax(dim=1), values.tolist())
    else:
        close(torch.where(mask, channels, 0.0).sum(dim=1) / mask.sum(dim=1), values.tolist())
        if name != "l2re":  # l2re pools the steps, so its curve does not average to it
            close(steps.mean(dim=1), values.tolist())


def test_samples_are_scored_independently():
    generator = torch.Generator().manual_seed(0)
    pred = torch.randn(4, 3, 8, 8, 2, generator=generator)
    target = torch.randn(4, 3, 8, 8, 2, generator=generator)
    for name in M.METRIC_NAMES:
        batched = M.METRICS[name](pred, target)
        one_by_one = torch.cat([M.METRICS[name](pred[i : i + 1], target[i : i + 1]) for i in range(4)])
        close(batched, one_by_one.tolist(), rel=1e-12)


def test_compute_metrics_matches_the_single_functions():
    generator = torch.Generator().manual_seed(2)
    pred = torch.randn(2, 3, 24, 24, 2, generator=generator)
    target = torch.randn(2, 3, 24, 24, 2, generator=generator)
    together = M.compute_metrics(pred, target, channel_mask=[False, True])
    assert list(together) == list(M.METRIC_NAMES)
    for name, values in together.items():
        close(values, M.METRICS[name](pred, target, [False, True]).tolist(), rel=1e-12)
    assert list(M.compute_metrics(pred, target, ["max_error", "l2re"])) == ["max_error", "l2re"]
    with pytest.raises(ValueError, match="unknown metric 'l2'"):
        M.compute_metrics(pred, target, ["l2"])


def test_low_precision_inputs_are_scored_in_float64():
    p, y = PRED_1D.to(torch.bfloat16), TARGET_1D.to(torch.bfloat16)  # these values are exact in bf16
    result = M.rmse(p, y)
    assert result.dtype == torch.float64
    close(result, [(1 + math.sqrt(0.5)) / 2])


def test_per_step_l2re_equals_per_step_nrmse_up_to_epsilon():
    p, y = PRED_1D, TARGET_1D
    close(M.per_step_error(p, y, "l2re"), M.per_step_error(p, y, "nrmse").tolist(), rel=1e-8)


def test_vrmse_of_predicting_the_spatial_mean_is_one():
    generator = torch.Generator().manual_seed(1)
    target = torch.randn(2, 3, 16, 16, 1, generator=generator, dtype=torch.float64)
    pred = target.mean(dim=(2, 3), keepdim=True).expand_as(target)
    close(M.vrmse(pred, target), [1.0, 1.0], rel=1e-6)


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
        M.rmse(torch.zeros(pred_shape), torch.ones(target_shape), mask)


def test_unknown_metric_name_is_rejected():
    with pytest.raises(ValueError, match="unknown metric 'rmsee'"):
        M.per_step_error(PRED_1D, TARGET_1D, "rmsee")


# ------------------------------------------------------------- reductions


def test_mean_reduction_uses_the_true_sample_count():
    batches = [torch.tensor([1.0, 2.0, 3.0]), torch.tensor([10.0])]  # a short last batch
    assert M.reduce_samples(batches, "mean") == 4.0  # 16 / 4 samples, not (2 + 10) / 2 batches
    assert M.reduce_samples(torch.tensor([1.0, 2.0, 3.0, 10.0]), "mean") == 4.0
    assert M.reduce_samples(batches, "max") == 10.0
    with pytest.raises(ValueError, match="unknown reduction"):
        M.reduce_samples(batches, "median")
    with pytest.raises(ValueError, match="no per-sample values"):
        M.reduce_samples([], "mean")


def test_max_error_reduction_is_the_worst_sample():
    p = torch.zeros(3, 1, 4, 1)
    y = torch.tensor([0.5, 2.0, 1.0]).reshape(3, 1, 1, 1).expand(3, 1, 4, 1)
    per_sample = M.max_error(p, y)
    close(per_sample, [0.5, 2.0, 1.0])
    assert M.reduce_samples(per_sample, "max") == 2.0


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
    assert set(seen) == set(M.METRIC_NAMES)
    for name, (fn, card) in seen.items():
        assert card["reduction"] == ("max" if name == "max_error" else "mean")
        assert card["higher_is_better"] is False
        assert card["description"] and card["formula"]
        assert fn.__name__ == name


def test_plugin_functions_compute_the_same_values():
    seen = collect_registrations()
    p, y = _case_2d()
    for name, (fn, _card) in seen.items():
        close(fn(p, y, channel_mask=[True, False]), M.METRICS[name](p, y, [True, False]).tolist())


def test_importing_the_plugin_does_not_import_torch():
    code = "import sys, pdebench_core.builtin.metrics; assert 'torch' not in sys.modules, 'torch imported'"
    repo_root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo_root)
    assert result.returncode == 0, result.stderr
