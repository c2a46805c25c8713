"""Small files in published layouts, for tests and examples.

Each writer stores arrays exactly as the published files do (keys, float64, axis order,
file names) and returns what a pdeb reader must give back: per split, an array
``(N, T, *S, C)`` in pdeb's order, trajectories in the order pdeb reads them. Values are
distinct and bounded (each encodes its position), so a swapped axis or channel shows.

Layouts covered: CFDBench as DPOT preprocessed it (:func:`write_cfdbench`), PDEArena's
Navier-Stokes shards, plain or conditioned (:func:`write_pdearena_shard`,
:func:`write_pdearena_ns_cond`), and DPOT's per-trajectory folders
(:func:`write_dpot_folder`, :func:`write_ns_cond_dpot` for PDEArena NS-cond as DPOT
stores it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from pdebench_core.data.layouts.cfdbench import FILE_NAMES as CFDBENCH_FILES
from pdebench_core.data.layouts.pdearena import FIELDS as PDEARENA_FIELDS


def coded(shape: Sequence[int], offset: float = 0.0) -> np.ndarray:
    """float64 values in ``[offset, offset + 1)``, each one distinct and encoding its position."""
    size = int(np.prod(shape))
    return np.arange(size, dtype=np.float64).reshape(tuple(shape)) / max(size, 1) + offset


def fluid_mask(grid: Sequence[int]) -> np.ndarray:
    """A CFDBench-like mask ``(X, Y)``: 0 on the walls (first/last row, first column), 1 inside."""
    mask = np.ones(tuple(grid))
    mask[0, :] = mask[-1, :] = 0.0
    mask[:, 0] = 0.0
    return mask


def write_cfdbench(folder: str | Path, n_train: int = 6, n_test: int = 2, grid: Sequence[int] = (8, 8),
                   frames: int = 20) -> dict[str, np.ndarray]:
    """Write DPOT's CFDBench pair ``ns2d_cdb_train.hdf5`` / ``ns2d_cdb_test.hdf5`` into ``folder``.

    Each file holds ``data`` ``(N, X, Y, T, 3)`` float64 (channels ``u``, ``v``, ``mask``),
    as DPOT's ``save_data.py`` writes it (published: 64 x 64, 20 frames).

    Returns:
        ``{"train": (N, T, X, Y, 3), "test": ...}`` in pdeb's order.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for number, (split, name, n) in enumerate(zip(("train", "test"), CFDBENCH_FILES, (n_train, n_test))):
        velocity = coded((n, frames, *grid, 2), offset=2.0 * number)
        mask = np.broadcast_to(fluid_mask(grid)[None, None, ..., None], (n, frames, *grid, 1))
        trajectories = np.concatenate([velocity, mask], axis=-1)  # (N, T, X, Y, 3)
        with h5py_file(folder / name) as f:
            f.create_dataset("data", data=np.moveaxis(trajectories, 1, 3))  # (N, X, Y, T, 3)
        out[split] = trajectories
    return out


def write_pdearena_shard(path: str | Path, groups: Mapping[str, int], frames: int = 14,
                         grid: Sequence[int] = (8, 8), buoyancy: float = 0.5, dt: float = 6.0,
                         offset: float = 0.0) -> dict[str, np.ndarray]:
    """Write one PDEArena Navier-Stokes shard as PDEArena's generator does.

    Each group (``train``, ``valid``, ``test``) gets ``u``, ``vx``, ``vy`` ``(n, T, X, Y)``,
    ``t`` ``(n, T)``, ``dt``, ``dx``, ``dy``, ``buo_y`` ``(n,)`` and ``x`` ``(n, X)``,
    ``y`` ``(n, Y)``, all float64, on the domain ``[0, 32]^2``. Published: 128^2; the
    plain set has 14 frames with ``dt = 6``, the conditioned set 56 with ``dt = 1.5``.

    Returns:
        ``{group: (n, T, X, Y, 3)}`` with channels ``u, vx, vy``.
    """
    out = {}
    with h5py_file(path) as f:
        for number, (group, n) in enumerate(groups.items()):
            g = f.create_group(group)
            fields = coded((n, frames, *grid, len(PDEARENA_FIELDS)), offset=offset + 2.0 * number)
            for c, key in enumerate(PDEARENA_FIELDS):
                g.create_dataset(key, data=fields[..., c])
            # PDEArena stores t = linspace(18, 102, T) whatever the frame spacing; dt is the spacing.
            g["t"] = np.tile(np.linspace(18.0, 102.0, frames), (n, 1))
            g["dt"] = np.full(n, dt)
            g["x"] = np.tile(np.linspace(0.0, 32.0, grid[0]), (n, 1))
            g["dx"] = np.full(n, 32.0 / (grid[0] - 1))
            g["y"] = np.tile(np.linspace(0.0, 32.0, grid[1]), (n, 1))
            g["dy"] = np.full(n, 32.0 / (grid[1] - 1))
            g["buo_y"] = np.full(n, float(buoyancy))
            out[group] = fields
    return out


#: Shards of :func:`write_pdearena_ns_cond` by default: (group, buoyancy, trajectories).
COND_SHARDS = (("train", 0.25, 3), ("train", 0.41, 3), ("valid", 0.33, 2), ("test", 0.47, 2))


@dataclass
class CondFiles:
    """What :func:`write_pdearena_ns_cond` wrote.

    Attributes:
        paths: The shard files, in name order (the order pdeb reads them).
        splits: ``{"train"|"val"|"test": (N, T, X, Y, 3)}`` in pdeb's order.
        buoyancy: ``{split: [buoyancy of each trajectory]}`` in the same order.
    """

    paths: list[Path]
    splits: dict[str, np.ndarray] = field(default_factory=dict)
    buoyancy: dict[str, list[float]] = field(default_factory=dict)


def write_pdearena_ns_cond(folder: str | Path, shards: Sequence[tuple[str, float, int]] = COND_SHARDS,
                           frames: int = 56, grid: Sequence[int] = (8, 8), seed: int = 197910) -> CondFiles:
    """Write PDEArena's conditioned Navier-Stokes set as a folder of shards.

    PDEArena's ``smoke_cond`` generator writes one file per buoyancy value, named
    ``NavierStokes2D_<group>_<seed>_<buoyancy:.5f>[_<n>].h5`` (``_<n>`` on train files
    only), holding one group; frames are ``dt = 1.5`` apart (published: 56 frames, 128^2).

    Args:
        folder: Folder to fill (created).
        shards: ``(group, buoyancy, trajectories)`` per file.
        frames: Frames per trajectory.
        grid: ``(X, Y)``.
        seed: The seed in the file names (PDEArena adds 100/200/300 per group).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for number, (group, buoyancy, n) in enumerate(shards):
        file_seed = seed + {"train": 100, "valid": 200, "test": 300}[group]
        suffix = f"_{n}" if group == "train" else ""
        path = folder / f"NavierStokes2D_{group}_{file_seed}_{buoyancy:.5f}{suffix}.h5"
        arrays = write_pdearena_shard(path, {group: n}, frames=frames, grid=grid, buoyancy=buoyancy, dt=1.5,
                                      offset=10.0 * number)
        written.append((path, group, arrays[group], buoyancy))
    result = CondFiles(paths=sorted(p for p, *_ in written))
    split_names = {"train": "train", "valid": "val", "test": "test"}
    for path, group, array, buoyancy in sorted(written, key=lambda w: w[0]):
        split = split_names[group]
        result.splits[split] = np.concatenate([result.splits[split], array]) if split in result.splits else array
        result.buoyancy.setdefault(split, []).extend([float(buoyancy)] * len(array))
    return result


def write_dpot_folder(root: str | Path, splits: Mapping[str, np.ndarray]) -> None:
    """DPOT's "scattered" storage: ``root/<split>/data_<i>.hdf5``, each ``data`` ``(X, Y, T, C)``.

    Args:
        root: The dataset folder (created).
        splits: ``{"train"|"test": (N, T, *S, C)}`` in pdeb's order.
    """
    for split, trajectories in splits.items():
        folder = Path(root) / split
        folder.mkdir(parents=True, exist_ok=True)
        for i, trajectory in enumerate(trajectories):
            with h5py_file(folder / f"data_{i}.hdf5") as f:
                f.create_dataset("data", data=np.moveaxis(trajectory, 0, -2))  # (*S, T, C)


def write_ns_cond_dpot(root: str | Path, n_train: int = 4, n_test: int = 2, grid: Sequence[int] = (8, 8),
                       frames: int = 56) -> dict[str, np.ndarray]:
    """PDEArena NS-cond as DPOT preprocessed it: ``root/train`` and ``root/test`` of ``data_<i>.hdf5``.

    DPOT names the folder ``ns2d_cond_pda``; each file holds one trajectory ``(X, Y, T, 3)``
    float64 with channels ``u, vx, vy`` (published: 128^2, 56 frames; PDEArena's train and
    valid trajectories both went to ``train``). The buoyancy is not kept.

    Returns:
        ``{"train": (N, T, X, Y, 3), "test": ...}`` in pdeb's order.
    """
    splits = {"train": coded((n_train, frames, *grid, 3)), "test": coded((n_test, frames, *grid, 3), offset=2.0)}
    write_dpot_folder(root, splits)
    return splits


def h5py_file(path: str | Path):
    """A new HDF5 file for writing (parent folders are created)."""
    import h5py

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return h5py.File(path, "w")
