"""Training windows served from tensors on the training device (``train.data_on_device``).

A GPU step of a small model takes well under a millisecond; reading, resizing and copying
windows on the host cannot keep up with that. When the training data fits in the device's
memory, every trajectory is conformed (resized to the model grid, channels padded) once,
kept on the device, and each batch is one gather of the sampled windows there. The
sampler is the same :class:`~pdebench_core.data.mixture.MixtureBatchSampler`, so batches,
their order and resumption are exactly those of the host loader.
"""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import torch

from pdebench_core.data.windows import WindowDataset, conform
from pdebench_core.diskspace import human_bytes
from pdebench_core.errors import UsageError


class _Part:
    """One dataset's trajectories ``(N, T, *grid, C)`` on the device and how windows index them."""

    def __init__(self, windows: WindowDataset, device: torch.device) -> None:
        frames = [conform(windows.trajectories[i], windows.grid, windows.n_channels)
                  for i in range(windows.n_trajectories)]
        self.data = torch.stack(frames).to(device)  # (N, T, *grid, C)
        self.per_trajectory, self.stride = windows.starts_per_trajectory, windows.stride
        self.t_in, self.length = windows.t_in, windows.t_in + windows.t_out
        self.mask = torch.zeros(self.data.shape[-1], dtype=torch.bool, device=device)
        self.mask[: windows.real_channels] = True

    def gather(self, local: torch.Tensor) -> torch.Tensor:
        """Windows ``(b, t_in + t_out, *grid, C)`` for window indices local to this part."""
        trajectory = local // self.per_trajectory
        start = (local % self.per_trajectory) * self.stride
        frame = trajectory[:, None] * self.data.shape[1] + start[:, None] + torch.arange(self.length,
                                                                                       device=local.device)
        flat = self.data.flatten(0, 1)  # (N * T, *grid, C): one index_select, one contiguous copy
        return flat.index_select(0, frame.flatten()).unflatten(0, frame.shape)  # (b, L, *grid, C)


class DeviceWindows:
    """Every window of a mixture's split, gathered on the device.

    Args:
        parts: One :class:`WindowDataset` per dataset, in the sampler's order.
        device: Where the data lives and batches are made.
    """

    def __init__(self, parts: Sequence[WindowDataset], device: torch.device) -> None:
        check_fits_on_device(parts, device)
        self.device = torch.device(device)
        self.parts = [_Part(p, device) for p in parts]
        # On the host: a batch is routed to its parts without waiting for the device's queue.
        self.offsets = torch.tensor([0, *[len(p) for p in parts]]).cumsum(0)  # (P + 1,)

    def batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x, y, mask)`` for global window indices (the numbering of the host loader)."""
        index = torch.as_tensor(list(indices), dtype=torch.long)  # (b,) on the host
        part_of = torch.bucketize(index, self.offsets[1:], right=True)  # (b,)
        present = part_of.unique().tolist()
        if len(present) == 1:  # the usual case: one dataset, one gather
            part = self.parts[present[0]]
            frames = part.gather(self._on_device(index - self.offsets[present[0]]))
            masks = part.mask.expand(len(index), -1)
        else:  # datasets of one grid share a batch: gather each, then put rows back in order
            first = self.parts[present[0]]
            frames = torch.empty((len(index), first.length, *first.data.shape[2:]), device=self.device)
            masks = torch.empty((len(index), first.data.shape[-1]), dtype=torch.bool, device=self.device)
            for p in present:
                rows = (part_of == p).nonzero().flatten()
                on_device = self._on_device(rows)
                frames[on_device] = self.parts[p].gather(self._on_device(index[rows] - self.offsets[p]))
                masks[on_device] = self.parts[p].mask
        t_in = self.parts[present[0]].t_in
        return frames[:, :t_in], frames[:, t_in:], masks  # (b, t_in, ...), (b, t_out, ...), (b, C)

    def _on_device(self, host: torch.Tensor) -> torch.Tensor:
        """An index tensor copied to the device without waiting for the work queued there."""
        if self.device.type == "cuda":
            host = host.pin_memory()
        return host.to(self.device, non_blocking=True)


class DeviceLoader:
    """Iterates the sampler's micro-batches as device tensors (a drop-in for the DataLoader)."""

    def __init__(self, windows: DeviceWindows, sampler) -> None:
        self.windows, self.sampler = windows, sampler

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        for indices in self.sampler:
            yield self.windows.batch(indices)


def device_bytes(parts: Sequence[WindowDataset]) -> int:
    """Bytes the conformed float32 trajectories of ``parts`` take."""
    total = 0
    for p in parts:
        if not p.n_trajectories:
            continue
        first = conform(p.trajectories[0], p.grid, p.n_channels)  # (T, *grid, C)
        total += 4 * p.n_trajectories * math.prod(first.shape)
    return total


def check_fits_on_device(parts: Sequence[WindowDataset], device: torch.device) -> None:
    """Refuse ``train.data_on_device`` when the data would not leave room on the device."""
    needed = device_bytes(parts)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        room = free // 2  # the other half is for the model, its optimizer and activations
    else:
        from pdebench_core.memory import available_memory

        room = (available_memory() or needed) // 2
    if needed > room:
        raise UsageError(f"train.data_on_device needs {human_bytes(needed)} for the training data, but only "
                         f"{human_bytes(room)} can be spared on {device}; set train.data_on_device=false")
