"""Reader for PDEArena Navier-Stokes 2D files (Gupta & Brandstetter, 2022).

Each ``.h5`` file holds one or more of the groups ``train``, ``valid``, ``test``;
each group has ``u`` (smoke density), ``vx``, ``vy``, each ``(n, T, 128, 128)``,
plus ``t`` ``(n, T)``, ``dt`` ``(n,)``, ``x``, ``y`` and ``buo_y``. The published set
is a folder of many such shards; a folder is read as the concatenation of its
``.h5`` files in name order. Channels are ``u, vx, vy``; ``valid`` becomes ``val``.
"""

from __future__ import annotations

from pathlib import Path

from pdebench_core.data.layouts.common import Found, H5Files, Reader, Trajectories, uniform_step
from pdebench_core.errors import DataError

GROUPS = {"train": "train", "valid": "val", "test": "test"}
FIELDS = ("u", "vx", "vy")


def is_pdearena_group(group) -> bool:
    """Whether an h5py group holds PDEArena Navier-Stokes arrays."""
    import h5py

    return isinstance(group, h5py.Group) and all(k in group for k in FIELDS)


class ShardsReader(Reader):
    """One split spread over shards: ``[(file, group, n), ...]`` concatenated in order."""

    def __init__(self, shards: list[tuple[str, str, int]], shape: tuple[int, ...], dtype: str,
                 label: str) -> None:
        self.shards = shards
        self.starts = []
        total = 0
        for _, _, n in shards:
            self.starts.append(total)
            total += n
        self.n = total
        self.traj_shape = tuple(int(s) for s in shape[1:]) + (len(FIELDS),)
        self.dtype = dtype
        self.label = label
        self.files = H5Files()

    def _read(self, index: int, frames: slice):
        import bisect

        import numpy as np

        shard = bisect.bisect_right(self.starts, index) - 1
        path, group, _ = self.shards[shard]
        g = self.files.get(path)[group]
        local = index - self.starts[shard]
        return np.stack([g[k][local, frames] for k in FIELDS], axis=-1)  # (t, X, Y, 3)


def open_pdearena(path: str) -> Found:
    """Describe a PDEArena file or folder of shards."""
    p = Path(path)
    shard_files = sorted(q for q in p.iterdir() if q.suffix in (".h5", ".hdf5")) if p.is_dir() else [p]
    if not shard_files:
        raise DataError(f"{path}: no .h5 files")
    splits: dict[str, list[tuple[str, str, int]]] = {}
    shape = dtype = None
    dts: list[float] = []
    notes: list[str] = []
    files = H5Files(max_open=4)
    for q in shard_files:
        f = files.get(str(q))
        for group, split in GROUPS.items():
            if group not in f or not is_pdearena_group(f[group]):
                continue
            g = f[group]
            if len({g[k].shape for k in FIELDS}) != 1:
                raise DataError(f"{q}:/{group}: u, vx and vy differ in shape")
            if shape is None:
                shape, dtype = tuple(g["u"].shape), str(g["u"].dtype)
                if len(shape) != 4:
                    raise DataError(f"{q}:/{group}: 'u' has shape {shape}; expected (n, T, X, Y)")
                if "dt" in g and g["dt"].size:
                    dts.append(float(g["dt"][0]))
                elif "t" in g and g["t"].shape[-1] > 1:
                    step = uniform_step(g["t"][0], "t", notes)
                    if step is not None:
                        dts.append(step)
            elif tuple(g["u"].shape[1:]) != shape[1:]:
                raise DataError(f"{q}:/{group}: trajectories {g['u'].shape[1:]} differ from {shape[1:]}")
            splits.setdefault(split, []).append((str(q), group, int(g["u"].shape[0])))
    files.close()
    if not splits:
        raise DataError(f"{path}: no train/valid/test groups with u, vx, vy")
    label = str(p)
    pools = {s: Trajectories(ShardsReader(shards, shape, dtype, f"{label} ({s})"))
             for s, shards in splits.items()}
    if len(shard_files) > 1:
        notes.append(f"{len(shard_files)} shard files")
    return Found(layout="pdearena", path=path, pools=pools, fields=FIELDS, dt=dts[0] if dts else None,
                 notes=notes)
