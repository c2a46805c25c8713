"""Evaluation metrics: one value per sample, rollout step and channel, and how they reduce.

A metric is a :class:`Metric`: a function of a :class:`Pair` that returns values shaped
``(B, T, C)`` (batch, rollout step, channel), and a declared ``reduction``. A
:class:`Pair` holds the prediction and the target, ``(B, T, *S, C)`` with 1 to 3
spatial axes, cast to float64, and computes the error and its spectrum once for every
metric scored on it. :meth:`Metric.score` turns the values into the three views that
evaluation reports, in one call:

* ``summary`` ``(B,)``: steps combined, then real channels;
* ``per_step`` ``(B, T)``: real channels combined, step by step;
* ``per_channel`` ``(B, C)``: steps combined, channel by channel (NaN where padded).

``reduction="mean"`` averages over steps and real channels (and evaluation averages over
samples); ``"max"`` takes the maximum everywhere. A metric whose rollout value is not a
combination of its step values declares ``finish``: its function returns partial sums per
step, which are added over the steps of a view before ``finish`` turns them into values.
``l2re`` does so: it pools the squared norms of all steps before taking the ratio.

:data:`METRICS` is the one table of builtin metrics (``docs/metrics.md`` has the formulas
and the differences from the reference implementations); each is also an attribute of
this module (``metrics.l2re``). torch is imported inside the functions, so that
registering metrics (``pdeb metrics``, the leaderboard) does not load it.
"""

from __future__ import annotations

import inspect

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Sequence, Union

from pdebench_core.errors import UsageError

if TYPE_CHECKING:
    import torch

ChannelMask = Union["torch.Tensor", Sequence[bool], None]

REDUCTIONS = ("mean", "max")
"""How a metric's values combine over steps, channels and samples."""

L2RE_EPS = 1e-8
"""Added to ``||target||_2`` in ``l2re``, as DPOT's relative L2 loss does."""

VRMSE_EPS = 1e-7
"""Added to the spatial variance of the target in ``vrmse``, as the Well does."""

FOURIER_BANDS: dict[str, tuple[int, int | None]] = {
    "low": (0, 4),
    "mid": (4, 12),
    "high": (12, None),
}
"""Radial wavenumber bands ``[start, stop)``; ``None`` means "up to and including
the cut-off ``min(S) // 2``". Every band is also clipped to that cut-off."""


# --------------------------------------------------------------------------- grids


def boundary_mask(spatial_shape: Sequence[int], device: torch.device | str | None = None) -> torch.Tensor:
    """Grid points on any face of the grid: index 0 or ``N - 1`` along any axis.

    Args:
        spatial_shape: Grid size per spatial axis, e.g. ``(64, 64)``.
        device: Where to put the mask.

    Returns:
        A bool tensor shaped ``spatial_shape``; every boundary point appears once
        (edges and corners are not counted twice).
    """
    import torch

    interior = torch.zeros(tuple(spatial_shape), dtype=torch.bool, device=device)
    interior[tuple(slice(1, -1) for _ in spatial_shape)] = True
    return ~interior


def integer_wavenumbers(n: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Integer wavenumbers of an ``n``-point FFT in FFT order: ``0, 1, ..., -2, -1``."""
    import torch

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
    import torch

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


# --------------------------------------------------------------------------- the pair


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
    import torch

    # Sums over 128^3 grids and long rollouts lose digits in float32; MPS has no float64.
    return torch.float32 if device.type == "mps" else torch.float64


class Pair:
    """Prediction and target of one batch in the working dtype, with shared intermediates.

    Every metric scored on the same pair reuses the error, its square, the mean squared
    error and the error's spectrum, each computed on first use.

    Attributes:
        pred: Prediction ``(B, T, *S, C)`` in float64 (float32 on Apple MPS).
        target: Ground truth, same shape and dtype.
        spatial: The spatial axes, ``(2, ..., ndim - 2)``.
        grid: The spatial shape ``S``.
    """

    def __init__(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        _check_shapes(pred, target)
        dtype = _work_dtype(pred.device)
        self.pred = pred.to(dtype)
        self.target = target.to(dtype)
        self.spatial = tuple(range(2, self.pred.ndim - 1))
        self.grid = tuple(self.pred.shape[2:-1])
        self._cache: dict[str, torch.Tensor] = {}

    @property
    def values_shape(self) -> tuple[int, int, int]:
        """``(B, T, C)``: the shape of a metric's values on this pair."""
        return (self.pred.shape[0], self.pred.shape[1], self.pred.shape[-1])

    def _cached(self, key: str, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    @property
    def error(self) -> torch.Tensor:
        """``pred - target``, ``(B, T, *S, C)``."""
        return self._cached("error", lambda: self.pred - self.target)

    @property
    def squared_error(self) -> torch.Tensor:
        """``(pred - target)^2``, ``(B, T, *S, C)``."""
        return self._cached("squared_error", lambda: self.error.pow(2))

    @property
    def mse(self) -> torch.Tensor:
        """Mean squared error over the grid, ``(B, T, C)``."""
        return self._cached("mse", lambda: self.squared_error.mean(dim=self.spatial))

    @property
    def power(self) -> torch.Tensor:
        """``|F_k|^2`` of the error, with ``F = fftn(p - y) / N`` over the spatial axes."""
        return self._cached("power", self._power)

    def _power(self) -> torch.Tensor:
        import torch

        # norm="forward" divides by the number of grid points: coefficients are mode amplitudes.
        spectrum = torch.fft.fftn(self.error, dim=self.spatial, norm="forward")  # (B, T, *S, C)
        return spectrum.real.pow(2) + spectrum.imag.pow(2)

    def channel_mask(self, channel_mask: ChannelMask) -> torch.Tensor:
        """A ``(B, C)`` bool mask from ``None``, a ``(C,)`` or a ``(B, C)`` mask (``True`` = real)."""
        import torch

        batch, channels = self.pred.shape[0], self.pred.shape[-1]
        if channel_mask is None:
            return torch.ones(batch, channels, dtype=torch.bool, device=self.pred.device)
        mask = torch.as_tensor(channel_mask, device=self.pred.device)
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


# ------------------------------------------------------------------ scoring


@dataclass(frozen=True)
class Scores:
    """The three views of one metric on one batch, per sample.

    Attributes:
        summary: ``(B,)``: over every step and real channel.
        per_step: ``(B, T)``: over the real channels of each step.
        per_channel: ``(B, C)``: over the steps of each channel; NaN for padded channels.
    """

    summary: torch.Tensor
    per_step: torch.Tensor
    per_channel: torch.Tensor


def _combine_channels(values: torch.Tensor, mask: torch.Tensor, reduction: str) -> torch.Tensor:
    """Mean (or max) over the last, channel axis of ``values`` ``(B, ..., C)``, real channels only."""
    keep = mask.reshape(mask.shape[0], *([1] * (values.ndim - 2)), mask.shape[1])
    # masked_fill, not a product: a padded channel may hold NaN (0/0), and NaN * 0 is NaN.
    if reduction == "max":
        return values.masked_fill(~keep, float("-inf")).amax(-1)
    return values.masked_fill(~keep, 0.0).sum(-1) / keep.sum(-1)


def _combine_steps(values: torch.Tensor, reduction: str) -> torch.Tensor:
    """``(B, T, C)`` -> ``(B, C)``: mean (or max) over the steps."""
    return values.amax(dim=1) if reduction == "max" else values.mean(dim=1)


@dataclass(frozen=True)
class Metric:
    """One metric: its values per sample, step and channel, and how they reduce.

    Attributes:
        name: What users list in ``eval.metrics``.
        values: ``values(pair)`` returns a ``(B, T, C)`` tensor for a :class:`Pair`; with
            ``finish``, a tuple of ``(B, T, C)`` partial sums instead.
        reduction: ``"mean"`` or ``"max"``: how values combine over steps (unless
            ``finish`` is given), over real channels and over the samples of a test set.
        finish: ``finish(*sums)`` turns partial sums, added over the steps of a view, into
            values. ``None`` for metrics whose rollout value combines their step values.
        description: One line for ``pdeb metrics``.
        formula: The definition, in the notation of ``docs/metrics.md``.
        plugin: The plugin that registered it (named in errors of its values); empty for
            a metric built by hand.

    Raises:
        UsageError: a field is invalid (the message names the metric and the fix).
    """

    name: str
    values: Callable[[Pair], Any]
    reduction: str = "mean"
    finish: Callable[..., Any] | None = None
    description: str = ""
    formula: str = ""
    plugin: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise UsageError(f"a metric needs a non-empty name, got {self.name!r}")
        if not callable(self.values):
            raise UsageError(f"metric '{self.name}': pass a function values(pair) -> (B, T, C), "
                             f"not {type(self.values).__name__}")
        if self.reduction not in REDUCTIONS:
            raise UsageError(f"metric '{self.name}': unknown reduction {self.reduction!r}; "
                             f"use one of {', '.join(REDUCTIONS)}")
        if self.finish is not None and not callable(self.finish):
            raise UsageError(f"metric '{self.name}': finish must be a function of the summed partial sums "
                             f"or None, not {type(self.finish).__name__}")

    def score(self, pair: Pair, channel_mask: ChannelMask = None) -> Scores:
        """Summary, per-step and per-channel values of this metric, from one evaluation.

        Args:
            pair: The prediction and target (shared with the other metrics of the batch).
            channel_mask: ``(C,)`` or ``(B, C)`` booleans, ``True`` for real channels;
                ``None`` scores every channel.

        Returns:
            The three views, in the pair's dtype.
        """
        mask = pair.channel_mask(channel_mask)
        if self.finish is None:
            per_step = self._checked(self.values(pair), pair)
            pooled = _combine_steps(per_step, self.reduction)  # (B, C)
        else:
            sums = self._partial_sums(pair)
            per_step = self._checked(self.finish(*sums), pair)
            pooled = self.finish(*(part.sum(dim=1) for part in sums))  # steps pooled before finishing
        return Scores(
            summary=_combine_channels(pooled, mask, self.reduction),
            per_step=_combine_channels(per_step, mask, self.reduction),
            per_channel=pooled.masked_fill(~mask, float("nan")),
        )

    def _partial_sums(self, pair: Pair) -> tuple[torch.Tensor, ...]:
        sums = self.values(pair)
        parts = tuple(sums) if isinstance(sums, (tuple, list)) else (sums,)
        try:
            inspect.signature(self.finish).bind(*parts)
        except TypeError:
            raise UsageError(f"{self._label} returned {len(parts)} partial sum(s), which its finish "
                             f"{inspect.signature(self.finish)} cannot take; return a tuple with one (B, T, C) "
                             f"tensor per argument of finish") from None
        except ValueError:  # a builtin without a readable signature: let the call speak
            pass
        return tuple(self._checked(part, pair) for part in parts)

    @property
    def _label(self) -> str:
        return f"metric '{self.name}'" + (f" (plugin '{self.plugin}')" if self.plugin else "")

    def _checked(self, values: Any, pair: Pair) -> torch.Tensor:
        """``values`` as a ``(B, T, C)`` tensor in the pair's dtype, or a one-line error."""
        shape = tuple(getattr(values, "shape", ()))
        if shape != pair.values_shape:
            raise UsageError(f"{self._label} gave values of shape {shape}; a metric returns "
                             f"{pair.values_shape}, one value per sample, step and channel (B, T, C)")
        return values.to(pair.pred.dtype)


# ------------------------------------------ the builtin metrics' values (B, T, C)


def _l2re_sums(pair: Pair) -> tuple[torch.Tensor, torch.Tensor]:
    return pair.squared_error.sum(dim=pair.spatial), pair.target.pow(2).sum(dim=pair.spatial)


def _relative_l2(error_sq: torch.Tensor, target_sq: torch.Tensor) -> torch.Tensor:
    return error_sq.sqrt() / (target_sq.sqrt() + L2RE_EPS)


def _rmse(pair: Pair) -> torch.Tensor:
    return pair.mse.sqrt()


def _nrmse(pair: Pair) -> torch.Tensor:
    return pair.mse.sqrt() / pair.target.pow(2).mean(dim=pair.spatial).sqrt()


def _crmse(pair: Pair) -> torch.Tensor:
    # The spatial mean is the discrete "conserved quantity" (mass, momentum, ...).
    return pair.error.mean(dim=pair.spatial).abs()


def _brmse(pair: Pair) -> torch.Tensor:
    on_boundary = boundary_mask(pair.grid, pair.pred.device)  # (*S,)
    # Indexing with a mask over all spatial axes flattens them: one row per boundary point.
    return pair.squared_error[:, :, on_boundary].mean(dim=2).sqrt()  # (B, T, n_boundary, C) -> (B, T, C)


def _vrmse(pair: Pair) -> torch.Tensor:
    variance = pair.target.var(dim=pair.spatial, correction=0)  # population variance
    return (pair.mse / (variance + VRMSE_EPS)).sqrt()


def _band_rms(pair: Pair, band: str) -> torch.Tensor:
    in_band = fourier_band_mask(pair.grid, band, pair.pred.device)  # (*S,)
    if not bool(in_band.any()):  # the grid is too coarse to resolve this band
        return pair.pred.new_full(pair.values_shape, float("nan"))
    return pair.power[:, :, in_band].mean(dim=2).sqrt()  # (B, T, n_modes, C) -> (B, T, C)


def _max_abs_error(pair: Pair) -> torch.Tensor:
    return pair.error.abs().amax(dim=pair.spatial)


# Notation of the formulas: p = prediction, y = target, x = grid point, t = step,
# c = real channel, per sample.
METRICS: dict[str, Metric] = {metric.name: metric for metric in (
    Metric("l2re", _l2re_sums, finish=_relative_l2,
           description="DPOT's relative L2 error, rollout steps pooled",
           formula="mean_c sqrt(sum_{t,x} (p-y)^2) / (sqrt(sum_{t,x} y^2) + 1e-8)"),
    Metric("rmse", _rmse, description="Root mean squared error (PDEBench RMSE)",
           formula="mean_{t,c} sqrt(mean_x (p-y)^2)"),
    Metric("nrmse", _nrmse, description="RMSE over the target's RMS (PDEBench nRMSE)",
           formula="mean_{t,c} sqrt(mean_x (p-y)^2) / sqrt(mean_x y^2)"),
    Metric("crmse", _crmse, description="Error of the spatial mean (PDEBench cRMSE)",
           formula="mean_{t,c} |mean_x p - mean_x y|"),
    Metric("brmse", _brmse, description="RMSE on the boundary points (PDEBench bRMSE)",
           formula="mean_{t,c} sqrt(mean_{x on a face} (p-y)^2)"),
    Metric("vrmse", _vrmse, description="RMSE over the target's spatial std (the Well)",
           formula="mean_{t,c} sqrt(mean_x (p-y)^2 / (var_x y + 1e-7)), population variance"),
    Metric("frmse_low", partial(_band_rms, band="low"), description="Fourier-coefficient RMSE, 0 <= |k| < 4",
           formula="mean_{t,c} sqrt(mean_{0<=|k|<4} |F_k|^2), F = fftn(p-y)/N"),
    Metric("frmse_mid", partial(_band_rms, band="mid"), description="Fourier-coefficient RMSE, 4 <= |k| < 12",
           formula="mean_{t,c} sqrt(mean_{4<=|k|<12} |F_k|^2), F = fftn(p-y)/N"),
    Metric("frmse_high", partial(_band_rms, band="high"),
           description="Fourier-coefficient RMSE, 12 <= |k| <= min(S)/2",
           formula="mean_{t,c} sqrt(mean_{12<=|k|<=min(S)/2} |F_k|^2), F = fftn(p-y)/N"),
    Metric("max_error", _max_abs_error, reduction="max",
           description="Largest absolute error; worst sample of the set", formula="max_{t,x,c} |p-y|"),
)}
"""The builtin metrics, in display order: the one table that defines them."""


def __getattr__(name: str) -> Metric:
    """``metrics.l2re`` and friends: every builtin metric is also an attribute of this module."""
    try:
        return METRICS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
