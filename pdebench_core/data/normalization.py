"""Per-channel normalisation any model can use (``data.<name>.normalize=true``).

The model trains and rolls out on ``(x - mean) / std`` per channel, with the statistics of
the train split (:func:`pdebench_core.data.stats.channel_stats`); evaluation turns its
predictions and the targets back into physical values before any metric sees them, so
scores are comparable with runs that did not normalise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: Channels whose spread is below this are only shifted, not scaled (a constant field).
MIN_STD = 1e-12


class NormalizedTrajectories(Sequence):
    """A split whose trajectories (and windows) come out normalised; everything else
    (``path``, ``indices``, ``shape``, ...) is the wrapped split's."""

    def __init__(self, inner: Sequence, mean: np.ndarray, std: np.ndarray) -> None:
        self.inner, self.mean, self.std = inner, mean, std

    def __len__(self) -> int:
        return len(self.inner)

    def _apply(self, frames: Any) -> np.ndarray:
        return ((np.asarray(frames, dtype=np.float32) - self.mean) / self.std).astype(np.float32)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self._apply(self.inner[i])

    def window(self, i: int, start: int, length: int) -> np.ndarray:
        """Frames ``start:start+length`` of trajectory ``i``, normalised."""
        if hasattr(self.inner, "window"):
            return self._apply(self.inner.window(i, start, length))
        return self._apply(self.inner[i][start:start + length])

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (unpickling): avoid recursion
            raise AttributeError(name)
        return getattr(self.inner, name)


class NormalizedDataset:
    """A dataset whose splits are normalised with its train split's per-channel statistics.

    Attributes:
        normalization: ``(mean, std)`` float32 arrays ``(C,)``, for evaluation to undo.
    """

    def __init__(self, inner: Any, mean: np.ndarray, std: np.ndarray) -> None:
        self.inner = inner
        self.normalization = (mean.astype(np.float32), std.astype(np.float32))

    @property
    def spec(self):
        return self.inner.spec

    def split(self, name: str) -> NormalizedTrajectories:
        """One split, normalised."""
        return NormalizedTrajectories(self.inner.split(name), *self.normalization)

    def __getattr__(self, name: str) -> Any:
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)  # fingerprint and anything else a plugin's dataset carries


def normalized(dataset: Any) -> NormalizedDataset:
    """``dataset`` normalised per channel with the mean and std of its train split."""
    from pdebench_core.data.stats import channel_stats

    stats = channel_stats(dataset)
    mean = np.asarray(stats.mean, dtype=np.float64)
    std = np.asarray(stats.std, dtype=np.float64)
    std = np.where(std > MIN_STD, std, 1.0)
    return NormalizedDataset(dataset, mean, std)


def to_physical(values: Any, normalization: tuple[np.ndarray, np.ndarray] | None) -> Any:
    """Undo the normalisation on the first ``C`` channels of ``(..., C')`` tensors (padding stays)."""
    if normalization is None:
        return values
    import torch

    mean, std = (torch.as_tensor(a, dtype=values.dtype, device=values.device) for a in normalization)
    real = mean.shape[0]
    physical = values[..., :real] * std + mean
    return torch.cat([physical, values[..., real:]], dim=-1) if values.shape[-1] > real else physical
