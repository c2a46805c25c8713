"""Evaluation metrics for neural PDE solvers, as plain torch functions.

Every metric takes ``pred`` and ``target`` shaped ``(B, T, *S, C)`` (batch, time
steps, 1 to 3 spatial axes, channels) and an optional ``channel_mask`` (``True`` =
a real field, ``False`` = a padded channel that must not count), and returns one
value per sample, shape ``(B,)``, in float64. How the per-sample values of a whole
test set are combined is the metric's *reduction* (:func:`reduce_samples`): the
mean over the true number of samples for every metric except ``max_error``,
which takes the maximum.

Definitions (``docs/metrics.md`` has the full formulas and the differences from
the reference implementations):

* ``l2re``: DPOT's relative L2 error. Per sample and channel,
  ``||pred - target||_2 / (||target||_2 + 1e-8)`` over all time steps and grid
  points together, then the mean over real channels.
* The PDEBench family (``rmse``, ``nrmse``, ``crmse``, ``brmse``, ``vrmse``,
  ``frmse_low``, ``frmse_mid``, ``frmse_high``): one value per sample, step and
  channel, computed over the grid of that step; then the mean over steps and
  over real channels.
* ``max_error``: the largest absolute error over all steps, grid points and real
  channels of a sample.

:func:`per_step_error` gives the ``(B, T)`` error curves of a rollout,
:func:`per_channel_error` the ``(B, C)`` values per field, and
:func:`compute_metrics` several metrics of one batch at once.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Sequence, Union

import torch

ChannelMask = Union[torch.Tensor, Sequence[bool], None]

L2RE_EPS = 1e-8
"""Added to ``||target||_2`` in :func:`l2re`, as DPOT's relative L2 loss does."""

VRMSE_EPS = 1e-7
"""Added to the spatial variance of the target in :func:`vrmse`, as the Well does."""

FOURIER_BANDS: dict[str, tuple[int, int | None]] = {
    "low": (0, 4),
    "mid": (4, 12),
    "high": (12, None),
}
"""Radial wavenumber bands ``[start, stop)``; ``None`` means "up to and including
the cut-off ``min(S) // 2``". Every band is also clipped to that cut-off."""


# --------------------------------------------------------------------------- helpers


def _check_shapes(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"pred and target differ in shape: {tuple(pred.shape)} vs {tuple(target.shape)}")
    if pred.ndim not in (4, 5, 6):
        raise ValueError(
            f"expected tensors shaped (B, T, *S, C) with 1 to 3 spatial axes, got shape {tuple(pred.shape)}"
        )
    if any(size == 0 for size in pred.shape):
        raise ValueError(f"cannot score an empty tensor of shape {tuple(pred.shape)}")


def _work_dtype(device: torch.device) -> torch.dtype:
    # Sums over 128^3 grids and long rollouts lose digits in float32; MPS has no float64.
    return torch.float32 if device.type == "mps" else torch.float64


def _spatial_dims(x: torch.Tensor) -> tuple[int, ...]:
    return tuple(range(2, x.ndim - 1))


def _channel_mask(channel_mask: ChannelMask, batch: int, channels: int, device: torch.device) -> torch.Tensor:
    """Return a ``(B, C)`` bool mask; accepts ``None``, a ``(C,)`` or a ``(B, C)`` mask."""
    if channel_mask is None:
        return torch.ones(batch, channels, dtype=torch.bool, device=device)
    mask = torch.as_tensor(channel_mask, device=device)
    if mask.dtype != torch.bool:
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError("channel_mask must hold booleans (True = real channel)")
        mask = mask.bool()
    if mask.shape == (channels,):
        mask = mask.expand(batch, channels)
    elif mask.shape != (batch, channels):
        raise ValueError(
            f"channel_mask has shape {tuple(mask.shape)}; expected ({channels},) or ({batch}, {channels})"
        )
    if not bool(mask.any(dim=1).all()):
        raise ValueError("channel_mask marks no real channel for at least one sample")
    return mask


def _masked_channel_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the last (channel) axis of ``values`` ``(B, ..., C)``, real channels only."""
    mask = mask.reshape(mask.shape[0], *([1] * (values.ndim - 2)), mask.shape[1])
    # torch.where, not a product: a padded channel may hold NaN (0/0) and NaN * 0 is NaN.
    total = torch.where(mask, values, torch.zeros((), dtype=values.dtype, device=values.device)).sum(-1)
    return total / mask.sum(-1)


def _masked_channel_max(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over the last (channel) axis of ``values`` ``(B, ..., C)``, real channels only."""
    mask = mask.reshape(mask.shape[0], *([1] * (values.ndim - 2)), mask.shape[1])
    lowest = torch.full((), float("-inf"), dtype=values.dtype, device=values.device)
    return torch.where(mask, values, lowest).amax(-1)


def boundary_mask(spatial_shape: Sequence[int], device: torch.device | str | None = None) -> torch.Tensor:
    """Grid points on any face of the grid: index 0 or ``N - 1`` along any axis.

    Args:
        spatial_shape: Grid size per spatial axis, e.g. ``(64, 64)``.
        device: Where to put the mask.

    Returns:
        A bool tensor shaped ``spatial_shape``; every boundary point appears once
        (edges and corners are not counted twice).
    """
    interior = torch.zeros(tuple(spatial_shape), dtype=torch.bool, device=device)
    interior[tuple(slice(1, -1) for _ in spatial_shape)] = True
    return ~interior


def integer_wavenumbers(n: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Integer wavenumbers of an ``n``-point FFT in FFT order: ``0, 1, ..., -2, -1``."""
    index = torch.arange(n, device=device)
    return torch.where(index < (n + 1) // 2, index, index - n)


def fourier_band_mask(
    spatial_shape: Sequence[int], band: str, device: torch.device | str | None = None
) -> torch.Tensor:
    """Modes of the full ``fftn`` spectrum that fall in a radial wavenumber band.

    ``|k| = sqrt(k_1^2 + ... + k_d^2)`` over integer wavenumbers of every spatial
    axis. Band ``(start, stop)`` keeps ``start <= |k| < stop`` and ``|k| <= K``,
    with the cut-off ``K = min(spatial_shape) // 2``; the high band keeps
    ``start <= |k| <= K``. Modes beyond ``K`` (the corners of a 2D or 3D
    spectrum) belong to no band.

    Args:
        spatial_shape: Grid size per spatial axis.
        band: ``"low"``, ``"mid"`` or ``"high"`` (see :data:`FOURIER_BANDS`).
        device: Where to put the mask.

    Returns:
        A bool tensor shaped ``spatial_shape``, in FFT order.
    """
    if band not in FOURIER_BANDS:
        raise ValueError(f"unknown Fourier band '{band}'; choose from {sorted(FOURIER_BANDS)}")
    start, stop = FOURIER_BANDS[band]
    axes = [integer_wavenumbers(n, device) for n in spatial_shape]
    # Squared integer radii are exact, so the band edges never suffer rounding.
    radius_sq = sum(k.pow(2) for k in torch.meshgrid(*axes, indexing="ij"))
    cutoff = min(spatial_shape) // 2
    keep = (radius_sq >= start**2) & (radius_sq <= cutoff**2)
    if stop is not None:
        keep &= radius_sq < stop**2
    return keep


# ------------------------------------------------- per (sample, step, channel) maps


class _Pair:
    """Prediction and target in the working dtype, with shared intermediates cached.

    Scoring several metrics on one pair computes the error and its spectrum once.
    """

    def __init__(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        _check_shapes(pred, target)
        dtype = _work_dtype(pred.device)
        self.pred = pred.to(dtype)  # (B, T, *S, C)
        self.target = target.to(dtype)  # (B, T, *S, C)
        self.spatial = _spatial_dims(self.pred)
        self.grid = tuple(self.pred.shape[2:-1])
        self._error: torch.Tensor | None = None
        self._power: torch.Tensor | None = None

    @property
    def error(self) -> torch.Tensor:
        if self._error is None:
            self._error = self.pred - self.target  # (B, T, *S, C)
        return self._error

    @property
    def power(self) -> torch.Tensor:
        """``|F_k|^2`` of the error, with ``F = fftn(p - y) / N`` over the spatial axes."""
        if self._power is None:
            # norm="forward" divides by the number of grid points: coefficients are mode amplitudes.
            spectrum = torch.fft.fftn(self.error, dim=self.spatial, norm="forward")  # (B, T, *S, C)
            self._power = spectrum.real.pow(2) + spectrum.imag.pow(2)
        return self._power


# Each map takes a _Pair and returns (B, T, C): one value per sample, step and channel.


def _rmse_map(pair: _Pair) -> torch.Tensor:
    return pair.error.pow(2).mean(dim=pair.spatial).sqrt()  # (B, T, C)


def _nrmse_map(pair: _Pair) -> torch.Tensor:
    target_rms = pair.target.pow(2).mean(dim=pair.spatial).sqrt()  # (B, T, C)
    return _rmse_map(pair) / target_rms


def _crmse_map(pair: _Pair) -> torch.Tensor:
    # The spatial mean is the discrete "conserved quantity" (mass, momentum, ...).
    return pair.error.mean(dim=pair.spatial).abs()  # (B, T, C)


def _brmse_map(pair: _Pair) -> torch.Tensor:
    on_boundary = boundary_mask(pair.grid, pair.pred.device)  # (*S,)
    # Indexing with a mask over all spatial axes flattens them: one row per boundary point.
    boundary_error = pair.error[:, :, on_boundary]  # (B, T, n_boundary, C)
    return boundary_error.pow(2).mean(dim=2).sqrt()  # (B, T, C)


def _vrmse_map(pair: _Pair) -> torch.Tensor:
    mse = pair.error.pow(2).mean(dim=pair.spatial)  # (B, T, C)
    variance = pair.target.var(dim=pair.spatial, correction=0)  # (B, T, C), population variance
    return (mse / (variance + VRMSE_EPS)).sqrt()


def _frmse_map(pair: _Pair, band: str) -> torch.Tensor:
    in_band = fourier_band_mask(pair.grid, band, pair.pred.device)  # (*S,)
    if not bool(in_band.any()):  # the grid is too coarse to resolve this band
        batch, steps, channels = pair.pred.shape[0], pair.pred.shape[1], pair.pred.shape[-1]
        return torch.full((batch, steps, channels), float("nan"), dtype=pair.pred.dtype, device=pair.pred.device)
    return pair.power[:, :, in_band].mean(dim=2).sqrt()  # (B, T, n_modes, C) -> (B, T, C)


def _l2re_step_map(pair: _Pair) -> torch.Tensor:
    error_norm = pair.error.pow(2).sum(dim=pair.spatial).sqrt()  # (B, T, C)
    target_norm = pair.target.pow(2).sum(dim=pair.spatial).sqrt()  # (B, T, C)
    return error_norm / (target_norm + L2RE_EPS)


def _max_error_map(pair: _Pair) -> torch.Tensor:
    return pair.error.abs().amax(dim=pair.spatial)  # (B, T, C)


_STEP_MAPS: dict[str, Callable[[_Pair], torch.Tensor]] = {
    "l2re": _l2re_step_map,
    "rmse": _rmse_map,
    "nrmse": _nrmse_map,
    "crmse": _crmse_map,
    "brmse": _brmse_map,
    "vrmse": _vrmse_map,
    "frmse_low": partial(_frmse_map, band="low"),
    "frmse_mid": partial(_frmse_map, band="mid"),
    "frmse_high": partial(_frmse_map, band="high"),
    "max_error": _max_error_map,
}

METRIC_NAMES: tuple[str, ...] = tuple(_STEP_MAPS)
"""Every metric name this module defines, in display order."""


def _check_name(metric: str) -> None:
    if metric not in _STEP_MAPS:
        raise ValueError(f"unknown metric '{metric}'; choose from {', '.join(METRIC_NAMES)}")


def _l2re_per_channel(pair: _Pair) -> torch.Tensor:
    # One norm over every step and grid point: steps are pooled before the ratio.
    dims = (1, *pair.spatial)
    error_norm = pair.error.pow(2).sum(dim=dims).sqrt()  # (B, C)
    target_norm = pair.target.pow(2).sum(dim=dims).sqrt()  # (B, C)
    return error_norm / (target_norm + L2RE_EPS)


def _per_channel(metric: str, pair: _Pair) -> torch.Tensor:
    """(B, C) values of ``metric``, before masking."""
    if metric == "l2re":
        return _l2re_per_channel(pair)
    values = _STEP_MAPS[metric](pair)  # (B, T, C)
    return values.amax(dim=1) if metric == "max_error" else values.mean(dim=1)


def _combine_channels(metric: str, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    if metric == "max_error":
        return _masked_channel_max(values, mask)
    return _masked_channel_mean(values, mask)


def _mask_for(pair: _Pair, channel_mask: ChannelMask) -> torch.Tensor:
    return _channel_mask(channel_mask, pair.pred.shape[0], pair.pred.shape[-1], pair.pred.device)


def _metric(metric: str, pred: torch.Tensor, target: torch.Tensor, channel_mask: ChannelMask) -> torch.Tensor:
    _check_name(metric)
    pair = _Pair(pred, target)
    return _combine_channels(metric, _per_channel(metric, pair), _mask_for(pair, channel_mask))


# ------------------------------------------------------------------- public metrics


def l2re(pred: torch.Tensor, target: torch.Tensor, channel_mask: ChannelMask = None) -> torch.Tensor:
    """DPOT's relative L2 error (the L2RE of the DPOT paper).

    Per sample ``b`` and channel ``c``, over every step ``t`` and grid point ``x``:
    ``sqrt(sum_{t,x} (p - y)^2) / (sqrt(sum_{t,x} y^2) + 1e-8)``; then the mean
    over real channels.

    Args:
        pred: Prediction ``(B, T, *S, C)``.
        target: Ground truth, same shape.
        channel_mask: ``(C,)`` or ``(B, C)`` booleans, ``True`` for real channels.

    Returns:
        ``(B,)`` float64 values.
    """
    return _metric("l2re", pred, target, channel_mask)


def rmse(pred: torch.Tensor, target: torch.Tensor, channel_mask: ChannelMask = None) -> torch.Tensor:
    """Root mean squared error over the grid, per step and channel, then averaged.

    ``mean_{t,c} sqrt(mean_x (p - y)^2)`` over real channels ``c``.

    Args:
        pred: Prediction ``(B, T, *S, C)``.
        target: Ground truth, same shape.
        channel_mask: ``(C,)`` or ``(B, C)`` booleans, ``True`` for real channels.

    Returns:
        ``(B,)`` float64 values.
    """
    return _metric("rmse", pred, target, channel_mask)


def nrmse(pred: torch.Tensor, target: torch.Tensor, channel_mask: ChannelMask = None) -> torch.Tensor:
    """RMSE divided by the RMS of the target, per step and channel, then averaged.

    ``mean_{t,c} sqrt(mean_x (p - y)^2) / sqrt(mean_x y^2)`` (no epsilon, as in
    PDEBench: a real channel whose target is zero at some step gives inf or NaN).

    Args:
        pred: Prediction ``(B, T, *S, C)``.
        target: Ground truth, same shape.
        channel_mask: ``(C,)`` or ``(B, C)`` booleans, ``True`` for real channels.

    Returns:
        ``(B,)`` float64 values.
    """
    return _metric("nrmse", pred, target, channel_mask)


def crmse(pred: torch.Tensor, target: torch.Tensor, channel_mask: ChannelMask = None) -> torch.Tensor:
    """Error of the spatial mean (the conserved quantity), per step and channel.

    ``mean_{t,c} |mean_x p - mean_x y|``: for one sample, step and channel the
    root mean square of a single number is its absolute value.

    Args:
        pred: Prediction ``(B, T, *S, C)``.
        target: Ground truth, same shape.
        channel_mask: ``(C,)`` or ``(B, C)`` booleans, ``True`` for real channels.

    Returns:
        ``(B,)`` float64 values.
    """
    return _metric("crmse", pred, target, channel_mask)


def brmse(pred: torch.Tensor, target: torch.Tensor, channel_mask: ChannelMask = None) -> torch.Tensor:
    """RMSE over the boundary points only (index 0 or ``N - 1`` along any axis).

    ``mean_{t,c} sqrt(mean_{x in boundary} (p - y)^2)``; each boundary point is
    counted once (see :func:`boundary_mask`).

    Args:
        pred: Prediction ``(B, T, *S, C)``.
        target: Ground truth, same shape.
        channel_mask: ``(C,)`` or ``(B, C)`` booleans, ``True`` for real channels.

    Returns:
        ``(B,)`` float64 values.
    """
    return _metric("brmse", pred, target, channel_mask)


def vrmse(pred: torch.Tensor, target: torch.Tensor, channel_mask: ChannelMask = None) -> torch.Tensor:
    """Variance-scaled RMSE (the Well): RMSE over the target's spatial spread.

    ``mean_{t,c} sqrt(mean_x (p - y)^2 / (var_x y + 1e-7))`` with the population
    variance ``var_x y = mean_x (y - mean_x y)^2``. Predicting the spatial mean of
    the target scores (almost exactly) 1.

    Args:
        pred: Prediction ``(B, T, *S, C)``.
        target: Ground truth, same shape.
        channel_mask: ``(C,)`` or ``(B, C)`` booleans, ``True`` for real channels.

    Returns:
        ``(B,)`` float64 values.
    """
    return _metric("vrmse", pred, target, channel_mask)


def frmse_low(pred: torch.Tensor, target: torch.Tensor, channel_mask: ChannelMask = None) -> torch.Tensor:
    """RMS error of the Fourier coefficients with ``0 <= |k| < 4``.

    See :func:`fourier_band_rmse` for the normalisation.

    Args:
        pred: Prediction ``(B, T, *S, C)``.
        target: Ground truth, same shape.
        channel_mask: ``(C,)`` or ``(B, C)`` booleans, ``True`` for real channels.

    Returns:
        ``(B,)`` float64 values.
    """
    return _metric("frmse_low", pred, target, channel_mask)


def frmse_mid(pred: torch.Tensor, target: torch.Tensor, channel_mask: ChannelMask = None) -> torch.Tensor:
    """RMS error of the Fourier coefficients with ``4 <= |k| < 12``.

    See :func:`fourier_band_rmse` for the normalisation.

    Args:
        pred: Prediction ``(B, T, *S, C)``.
        target: Ground truth, same shape.
        channel_mask: ``(C,)`` or ``(B, C)`` booleans, ``True`` for real channels.

    Returns:
        ``(B,)`` float64 values.
    """
    return _metric("frmse_mid", pred, target, channel_mask)


def frmse_high(pred: torch.Tensor, target: torch.Tensor, channel_mask: ChannelMask = None) -> torch.Tensor:
    """RMS error of the Fourier coefficients with ``12 <= |k| <= min(S) // 2``.

    See :func:`fourier_band_rmse` for the normalisation. NaN on grids with
    fewer than 24 points along some axis, where the band is empty.

    Args:
        pred: Prediction ``(B, T, *S, C)``.
        target: Ground truth, same shape.
        channel_mask: ``(C,)`` or ``(B, C)`` booleans, ``True`` for real channels.

    Returns:
        ``(B,)`` float64 values.
    """
    return _metric("frmse_high", pred, target, channel_mask)


def fourier_band_rmse(
    pred: torch.Tensor, target: torch.Tensor, band: str, channel_mask: ChannelMask = None
) -> torch.Tensor:
    """RMS error of the Fourier coefficients in one radial wavenumber band.

    Per sample, step and channel: ``F = fftn(p - y) / N`` over all spatial axes
    (``N`` = number of grid points, so a mode ``A cos(2 pi k x)`` has coefficients
    of modulus ``A / 2`` at ``+k`` and ``-k``); then
    ``sqrt(mean_{k in band} |F_k|^2)`` over the modes of the full spectrum in the
    band (:func:`fourier_band_mask`); then the mean over steps and real channels.
    An empty band gives NaN.

    Args:
        pred: Prediction ``(B, T, *S, C)``.
        target: Ground truth, same shape.
        band: ``"low"``, ``"mid"`` or ``"high"``.
        channel_mask: ``(C,)`` or ``(B, C)`` booleans, ``True`` for real channels.

    Returns:
        ``(B,)`` float64 values.
    """
    if band not in FOURIER_BANDS:
        raise ValueError(f"unknown Fourier band '{band}'; choose from {sorted(FOURIER_BANDS)}")
    return _metric(f"frmse_{band}", pred, target, channel_mask)


def max_error(pred: torch.Tensor, target: torch.Tensor, channel_mask: ChannelMask = None) -> torch.Tensor:
    """Largest absolute error of a sample: ``max_{t,x,c} |p - y|`` over real channels.

    Reduced over samples with ``max`` (the worst case of the test set).

    Args:
        pred: Prediction ``(B, T, *S, C)``.
        target: Ground truth, same shape.
        channel_mask: ``(C,)`` or ``(B, C)`` booleans, ``True`` for real channels.

    Returns:
        ``(B,)`` float64 values.
    """
    return _metric("max_error", pred, target, channel_mask)


METRICS: dict[str, Callable[..., torch.Tensor]] = {
    "l2re": l2re,
    "rmse": rmse,
    "nrmse": nrmse,
    "crmse": crmse,
    "brmse": brmse,
    "vrmse": vrmse,
    "frmse_low": frmse_low,
    "frmse_mid": frmse_mid,
    "frmse_high": frmse_high,
    "max_error": max_error,
}
"""Name -> per-sample metric function."""


def compute_metrics(
    pred: torch.Tensor,
    target: torch.Tensor,
    names: Sequence[str] | None = None,
    channel_mask: ChannelMask = None,
) -> dict[str, torch.Tensor]:
    """Several metrics of one batch at once, sharing the error and its spectrum.

    Gives the same values as calling each metric function on its own, faster.

    Args:
        pred: Prediction ``(B, T, *S, C)``.
        target: Ground truth, same shape.
        names: Metrics to compute (default: all of :data:`METRIC_NAMES`).
        channel_mask: ``(C,)`` or ``(B, C)`` booleans, ``True`` for real channels.

    Returns:
        Name -> ``(B,)`` float64 values, in the order of ``names``.
    """
    names = list(METRIC_NAMES if names is None else names)
    for name in names:
        _check_name(name)
    pair = _Pair(pred, target)
    mask = _mask_for(pair, channel_mask)
    return {name: _combine_channels(name, _per_channel(name, pair), mask) for name in names}


# ------------------------------------------------------------ curves and reductions


def per_step_error(
    pred: torch.Tensor, target: torch.Tensor, metric: str = "l2re", channel_mask: ChannelMask = None
) -> torch.Tensor:
    """Error of every rollout step: one curve per sample.

    Each step is scored on its own grid and the channels are combined as in the
    metric itself (mean over real channels; max for ``max_error``). For
    ``l2re`` the step value is ``||p_t - y_t|| / (||y_t|| + 1e-8)`` per channel,
    so the mean of the curve is *not* the pooled :func:`l2re` but (up to the
    epsilon) the :func:`nrmse` of the rollout. For every PDEBench-family metric
    the mean of the curve over steps equals the metric.

    Args:
        pred: Prediction ``(B, T, *S, C)``.
        target: Ground truth, same shape.
        metric: One of :data:`METRIC_NAMES`.
        channel_mask: ``(C,)`` or ``(B, C)`` booleans, ``True`` for real channels.

    Returns:
        ``(B, T)`` float64 values.
    """
    _check_name(metric)
    pair = _Pair(pred, target)
    values = _STEP_MAPS[metric](pair)  # (B, T, C)
    return _combine_channels(metric, values, _mask_for(pair, channel_mask))


def per_channel_error(
    pred: torch.Tensor, target: torch.Tensor, metric: str = "l2re", channel_mask: ChannelMask = None
) -> torch.Tensor:
    """The metric for each channel (field) separately.

    Averaging the real channels of the result gives the metric itself (the max,
    for ``max_error``).

    Args:
        pred: Prediction ``(B, T, *S, C)``.
        target: Ground truth, same shape.
        metric: One of :data:`METRIC_NAMES`.
        channel_mask: ``(C,)`` or ``(B, C)`` booleans, ``True`` for real channels.

    Returns:
        ``(B, C)`` float64 values; padded channels are NaN.
    """
    _check_name(metric)
    pair = _Pair(pred, target)
    mask = _mask_for(pair, channel_mask)
    values = _per_channel(metric, pair)  # (B, C)
    return torch.where(mask, values, torch.full((), float("nan"), dtype=values.dtype, device=values.device))


def reduce_samples(values: torch.Tensor | Sequence[torch.Tensor], reduction: str = "mean") -> float:
    """Combine per-sample values of a whole test set into one number.

    Args:
        values: A ``(N,)`` tensor, or the ``(B,)`` outputs of several batches
            (batches may differ in size).
        reduction: ``"mean"`` (sum over the true sample count, so a short last
            batch weighs no more than its samples) or ``"max"``.

    Returns:
        The reduced value as a Python float.
    """
    parts = [values] if isinstance(values, torch.Tensor) else list(values)
    flat = torch.cat([torch.as_tensor(v).detach().reshape(-1).to("cpu", torch.float64) for v in parts]
                     if parts else [torch.zeros(0, dtype=torch.float64)])
    if flat.numel() == 0:
        raise ValueError("no per-sample values to reduce")
    if reduction == "mean":
        return float(flat.sum() / flat.numel())
    if reduction == "max":
        return float(flat.max())
    raise ValueError(f"unknown reduction '{reduction}'; choose 'mean' or 'max'")
