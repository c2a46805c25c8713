"""Cutting trajectories into training windows, on a common grid and channel count."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from pdebench_core.data.trajectories import as_float32

# Missing channels are filled with ones, the convention of the official DPOT code;
# padded channels are flagged in the channel mask: metrics never score them, and the
# training loss covers them only with train.loss_on_padding.
PAD_VALUE = 1.0


def resize_frames(frames: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """Interpolate ``(T, *S, C)`` frames onto ``grid`` (linear in each axis).

    Args:
        frames: Tensor shaped ``(T, *S, C)``.
        grid: Target spatial shape, same number of axes as ``S``.

    Returns:
        ``(T, *grid, C)``; the input itself when the grid already matches.
    """
    grid = tuple(int(g) for g in grid)
    if tuple(frames.shape[1:-1]) == grid:
        return frames
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(grid)]
    moved = frames.movedim(-1, 1)  # (T, C, *S)
    out = F.interpolate(moved, size=grid, mode=mode, align_corners=False)  # (T, C, *grid)
    return out.movedim(1, -1).contiguous()  # (T, *grid, C)


def pad_channels(frames: torch.Tensor, n_channels: int) -> torch.Tensor:
    """Pad the last axis of ``(..., C)`` with :data:`PAD_VALUE` up to ``n_channels``."""
    missing = n_channels - frames.shape[-1]
    if missing <= 0:
        return frames
    pad = frames.new_full((*frames.shape[:-1], missing), PAD_VALUE)
    return torch.cat([frames, pad], dim=-1)


def reset_padding(frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Put padded channels back to :data:`PAD_VALUE`, so predicted padding is never fed back.

    Args:
        frames: ``(B, T, *S, C)``.
        mask: ``(C,)`` or ``(B, C)`` bool, True for real channels.

    Returns:
        ``frames`` with every padded channel equal to :data:`PAD_VALUE`.
    """
    if mask.device.type == "cpu" and bool(mask.all()):  # on a GPU the check would wait for the device
        return frames
    keep = mask.to(frames.device)
    keep = keep.reshape(keep.shape[0] if keep.ndim == 2 else 1, *([1] * (frames.ndim - 2)), frames.shape[-1])
    return torch.where(keep, frames, torch.full_like(frames, PAD_VALUE))


def conform(frames, grid: Sequence[int] | None, n_channels: int | None) -> torch.Tensor:
    """float32 tensor ``(T, *S, C)`` resized to ``grid`` and padded to ``n_channels``."""
    if isinstance(frames, np.ndarray):
        frames = as_float32(frames, "a trajectory of the data")
        if not frames.flags.writeable:
            frames = frames.copy()  # a read-only array (a memory map): torch may not share it
    frames = torch.as_tensor(frames, dtype=torch.float32)
    if grid is not None:
        frames = resize_frames(frames, grid)
    if n_channels is not None:
        frames = pad_channels(frames, n_channels)
    return frames


def n_frames_of(trajectories: Sequence) -> int:
    """Frames per trajectory (all trajectories of a split share it).

    A split is either a sequence of ``(T, *S, C)`` trajectories, whose lazy readers state
    that per-trajectory shape as ``.shape``, or one stacked ``(N, T, *S, C)`` array.
    """
    import numpy as np

    if isinstance(trajectories, (np.ndarray, torch.Tensor)):
        return int(trajectories.shape[1])  # stacked: axis 0 counts trajectories
    shape = getattr(trajectories, "shape", None)
    if shape:
        return int(shape[0])
    return int(trajectories[0].shape[0])


class WindowDataset(torch.utils.data.Dataset):
    """``(x, y, mask)`` windows cut from trajectories.

    ``x`` is ``(t_in, *grid, C)``, ``y`` is ``(t_out, *grid, C)``, ``mask`` a bool
    ``(C,)`` flagging real channels. Only the frames of one window are read.

    Args:
        trajectories: Sequence of ``(T, *S, c)`` trajectories.
        t_in: Input frames.
        t_out: Target frames.
        grid: Model grid (``None`` keeps the data's).
        n_channels: Channels after padding (``None`` keeps the data's).
        stride: Step between window starts.
    """

    def __init__(self, trajectories: Sequence, t_in: int, t_out: int, grid: Sequence[int] | None = None,
                 n_channels: int | None = None, stride: int = 1) -> None:
        self.trajectories = trajectories
        self.t_in, self.t_out = t_in, t_out
        self.grid = tuple(grid) if grid is not None else None
        self.n_channels = n_channels
        n_frames = n_frames_of(trajectories) if len(trajectories) else 0
        self.starts_per_trajectory = max(0, (n_frames - t_in - t_out) // stride + 1)
        self.stride = stride
        first = trajectories[0] if len(trajectories) else None
        self.real_channels = int(first.shape[-1]) if first is not None else 0

    @property
    def n_trajectories(self) -> int:
        """Trajectories the windows are cut from (window ``k`` belongs to trajectory
        ``k // starts_per_trajectory``)."""
        return len(self.trajectories)

    def __len__(self) -> int:
        return len(self.trajectories) * self.starts_per_trajectory

    def __getitem__(self, k: int):
        i, j = divmod(int(k), self.starts_per_trajectory)
        start, length = j * self.stride, self.t_in + self.t_out
        if hasattr(self.trajectories, "window"):
            frames = self.trajectories.window(i, start, length)
        else:
            frames = self.trajectories[i][start:start + length]
        frames = conform(frames, self.grid, self.n_channels)  # (t_in + t_out, *grid, C)
        mask = torch.zeros(frames.shape[-1], dtype=torch.bool)
        mask[: self.real_channels] = True
        return frames[: self.t_in], frames[self.t_in:], mask
