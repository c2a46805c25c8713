"""Per-channel normalisation statistics of a dataset's train split: mean, std and RMS.

:func:`channel_stats` reads the train split once, one block of frames at a time, and
merges each block's count, mean and sum of squared deviations in float64 (Chan, Golub
and LeVeque's pairwise update), so the result does not lose digits on large or offset
data and memory stays at one block. ``std`` is the population standard deviation and
``rms = sqrt(mean^2 + std^2)``, the definitions of The Well's ``stats.yaml``.

The outcome is remembered with the data checks (``$PDEB_HOME/data/.checks``), keyed by
the identity of the files read (path, size, modification time), which trajectories
form the split and the channel names, so it is computed again only when the data
changes. A Well dataset that ships ``stats.yaml`` is answered from that file unless the
statistics are asked to be computed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pdebench_core.data.layouts.common import BLOCK_BYTES, frame_blocks, split_label
from pdebench_core.errors import DataError, UsageError

STATS_VERSION = 1
#: Where a statistic came from.
COMPUTED, CACHED, PUBLISHED = "computed", "cache", "stats.yaml"


@dataclass(frozen=True)
class ChannelStats:
    """Statistics of every channel of one split.

    Attributes:
        fields: Channel names.
        mean: Per-channel mean.
        std: Per-channel population standard deviation.
        rms: Per-channel root mean square.
        count: Values per channel that were read (``None`` when taken from ``stats.yaml``).
        source: ``computed``, ``cache`` (computed earlier for the same files) or
            ``stats.yaml`` (The Well's published statistics).
        where: The files the split was read from, or the ``stats.yaml`` used.
        blocks: Blocks of frames read to compute them (0 when not computed now).
    """

    fields: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    rms: tuple[float, ...]
    count: int | None
    source: str
    where: str | None = None
    blocks: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form: ``{"channels": {name: {mean, std, rms}}, ...}``."""
        channels = {name: {"mean": m, "std": s, "rms": r}
                    for name, m, s, r in zip(self.fields, self.mean, self.std, self.rms, strict=True)}
        return {"channels": channels, "count": self.count, "source": self.source, "where": self.where,
                "blocks": self.blocks}

    def as_tensors(self, dtype: Any = None) -> tuple[Any, Any, Any]:
        """``(mean, std, rms)`` as ``(C,)`` torch tensors (float32 unless ``dtype``), for normalising."""
        import torch

        dtype = dtype or torch.float32
        return tuple(torch.tensor(values, dtype=dtype) for values in (self.mean, self.std, self.rms))


class RunningMoments:
    """Count, mean and sum of squared deviations per channel, merged block by block (float64).

    Args:
        channels: Number of channels ``C``.
    """

    def __init__(self, channels: int) -> None:
        self.count = 0
        self.mean = np.zeros(channels, dtype=np.float64)
        self.m2 = np.zeros(channels, dtype=np.float64)

    def add(self, block: np.ndarray) -> None:
        """Merge a block ``(..., C)`` of values."""
        values = np.asarray(block, dtype=np.float64).reshape(-1, self.mean.size)
        n = values.shape[0]
        if n == 0:
            return
        mean = values.mean(axis=0)
        m2 = ((values - mean) ** 2).sum(axis=0)
        total = self.count + n
        delta = mean - self.mean
        # Chan et al.'s update: exact for any split of the data, stable when means are large.
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta ** 2 * (self.count * n / total)
        self.count = total

    @property
    def variance(self) -> np.ndarray:
        """Population variance per channel."""
        return self.m2 / max(self.count, 1)

    @property
    def rms(self) -> np.ndarray:
        """Root mean square per channel."""
        return np.sqrt(self.mean ** 2 + self.variance)


def _frames_of(trajectories: Sequence, i: int, frames: slice) -> np.ndarray:
    if hasattr(trajectories, "window"):
        return np.asarray(trajectories.window(i, frames.start, frames.stop - frames.start))
    trajectory = trajectories[i]
    if hasattr(trajectory, "detach"):
        trajectory = trajectory.detach().cpu().numpy()
    return np.asarray(trajectory[frames])


def _shape_of(trajectories: Sequence) -> tuple[int, ...]:
    shape = getattr(trajectories, "shape", None)
    if shape:
        return tuple(int(s) for s in shape)
    return tuple(int(s) for s in np.asarray(trajectories[0]).shape)


def compute_moments(trajectories: Sequence, chunk_bytes: int = BLOCK_BYTES) -> tuple[RunningMoments, int]:
    """Stream every trajectory of a split through :class:`RunningMoments`.

    Args:
        trajectories: ``(T, *S, C)`` trajectories; lazy sequences are read one block of
            frames at a time (``window``).
        chunk_bytes: Largest block read at once, in float32 bytes.

    Returns:
        The moments and the number of blocks read.

    Raises:
        DataError: the split is empty or holds NaN/Inf.
    """
    if not len(trajectories):
        raise DataError("the train split is empty; there is nothing to compute statistics from")
    shape = _shape_of(trajectories)
    frame_bytes = 4 * int(np.prod(shape[1:]))
    moments = RunningMoments(shape[-1])
    blocks = 0
    for i in range(len(trajectories)):
        for frames in frame_blocks(shape[0], frame_bytes, budget=chunk_bytes):
            block = _frames_of(trajectories, i, frames)
            if not np.isfinite(block).all():
                source = getattr(trajectories, "path", None)
                raise DataError(f"train trajectory {i}{f' of {source}' if source else ''} holds NaN or Inf "
                                f"values; fix or drop it before computing statistics")
            moments.add(block)
            blocks += 1
    return moments, blocks


def _identity(trajectories: Sequence, fields: Sequence[str]) -> dict[str, Any] | None:
    """What the statistics depend on: the files read, which trajectories, the channel names."""
    from pdebench_core.data.integrity import file_identity

    source = getattr(trajectories, "path", None)
    identity = file_identity(split_label(source)[0]) if source else None  # the file is what changes
    if identity is None:
        return None
    identity["label"] = str(source)
    indices = list(getattr(trajectories, "indices", None) or range(len(trajectories)))
    identity["indices"] = hashlib.sha256(json.dumps(indices).encode()).hexdigest()[:16]
    identity["key"] = getattr(trajectories, "key", None)
    identity["fields"] = list(fields)
    identity["shape"] = list(_shape_of(trajectories))
    identity["version"] = STATS_VERSION
    return identity


def _published(trajectories: Sequence, fields: Sequence[str]) -> ChannelStats | None:
    """The Well's ``stats.yaml`` for these channels, when the split's reader found one."""
    reader = getattr(trajectories, "reader", None)
    stats_file = getattr(reader, "stats_file", None)
    if not stats_file:
        return None
    from pdebench_core.data.layouts.well import published_stats

    values = published_stats(stats_file, reader.sources)
    if values is None:
        return None
    return ChannelStats(tuple(fields), tuple(values["mean"]), tuple(values["std"]), tuple(values["rms"]),
                        None, PUBLISHED, str(stats_file))


def split_stats(trajectories: Sequence, fields: Sequence[str], compute: bool = False,
                chunk_bytes: int = BLOCK_BYTES, use_cache: bool = True) -> ChannelStats:
    """Statistics of one split (see :func:`channel_stats`)."""
    from pdebench_core.data.integrity import remember, remembered

    fields = tuple(fields)
    if not compute:
        published = _published(trajectories, fields)
        if published is not None:
            return published
    identity = _identity(trajectories, fields)
    where = getattr(trajectories, "path", None)
    known = remembered("stats", identity) if use_cache else None
    if known and _usable(known, len(fields)):  # a damaged or edited record is computed again
        return ChannelStats(fields, tuple(known["mean"]), tuple(known["std"]), tuple(known["rms"]),
                            int(known["count"]), CACHED, where)
    moments, blocks = compute_moments(trajectories, chunk_bytes)
    result = ChannelStats(fields, tuple(moments.mean.tolist()), tuple(np.sqrt(moments.variance).tolist()),
                          tuple(moments.rms.tolist()), moments.count, COMPUTED, where, blocks)
    remember("stats", identity, {"mean": list(result.mean), "std": list(result.std), "rms": list(result.rms),
                                 "count": result.count})
    return result


def _usable(record: Any, n_channels: int) -> bool:
    """Whether a remembered statistics record holds finite values for every channel (std >= 0)."""
    try:
        values = [np.asarray(record[key], dtype=np.float64) for key in ("mean", "std", "rms")]
        count = int(record["count"])
    except (KeyError, TypeError, ValueError):
        return False
    return count > 0 and all(v.shape == (n_channels,) and np.isfinite(v).all() for v in values) \
        and bool((values[1] >= 0).all())


def _train_of_path(path: str | Path, format: str) -> tuple[Sequence, tuple[str, ...]]:
    """The train split of a published file, as ``pdeb data convert`` would cut it."""
    from pdebench_core.data.layouts import open_layout, plan_splits
    from pdebench_core.data.layouts.loading import placeholder_fields

    found = open_layout(path, format)
    try:
        plan, _ = plan_splits({k: len(v) for k, v in found.pools.items()}, {})
    except DataError as exc:
        raise DataError(f"{path}: {exc}, so it has no train split to describe; convert it with every trajectory "
                        f"for training ('pdeb data convert {path} OUT.h5 --n-val 0 --n-test 0') and ask for the "
                        f"statistics of OUT.h5") from None
    pool, indices = plan["train"]
    trajectories = found.pools[pool].subset(list(indices))
    n_channels = found.traj_shape[-1]
    fields = tuple(found.fields) if found.fields and len(found.fields) == n_channels else \
        placeholder_fields(n_channels)
    return trajectories, fields


def channel_stats(dataset_or_path: Any, compute: bool = False, chunk_bytes: int = BLOCK_BYTES,
                  format: str = "auto", use_cache: bool = True) -> ChannelStats:
    """Per-channel mean, std and RMS of the train split only.

    Args:
        dataset_or_path: A dataset (``.spec``, ``.split("train")``) or a published file or
            folder in any supported layout. A file without splits contributes its train
            share (the first 80 %, as ``pdeb data convert`` cuts it).
        compute: Read the data even when The Well's ``stats.yaml`` is there.
        chunk_bytes: Largest block of frames read at once, in float32 bytes.
        format: Layout of a path (``auto`` detects it).
        use_cache: Reuse statistics computed earlier for the same files.

    Returns:
        The statistics, with where they came from.

    Raises:
        UsageError: ``dataset_or_path`` is neither a dataset nor a path.
        DataError: unreadable data, an empty train split, or NaN/Inf values.
    """
    if chunk_bytes < 1:
        raise UsageError(f"chunk_bytes={chunk_bytes} must be positive")
    if isinstance(dataset_or_path, (str, Path)):
        trajectories, fields = _train_of_path(dataset_or_path, format)
    elif hasattr(dataset_or_path, "split") and hasattr(dataset_or_path, "spec"):
        trajectories, fields = dataset_or_path.split("train"), tuple(dataset_or_path.spec.fields)
    else:
        raise UsageError(f"channel_stats needs a dataset or a path, not {type(dataset_or_path).__name__}")
    return split_stats(trajectories, fields, compute=compute, chunk_bytes=chunk_bytes, use_cache=use_cache)
