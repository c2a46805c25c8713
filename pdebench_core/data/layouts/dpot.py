"""Readers for DPOT's preprocessed HDF5 data (thu-ml/DPOT ``data_generation``).

DPOT stores time *after* space:

* one file with key ``data`` ``(N, X, Y, T, C)`` (``(N, X, Y, Z, T, C)`` in 3D, or
  ``(N, X, Y, T)`` for single-field sets), usually as a pair
  ``<name>_train.hdf5`` / ``<name>_test.hdf5``; pointing at either file of a pair
  uses both (train file -> train and val, test file -> test);
* "scattered" storage: a folder with ``train/`` and ``test/`` sub-folders of
  ``data_<i>.hdf5`` files, each with ``data`` ``(X, Y, T, C)`` for one trajectory
  (a folder of ``data_<i>.hdf5`` without sub-folders is one unsplit pool).

Every trajectory comes out as ``(T, X, Y, C)``.
"""

from __future__ import annotations

import re
from pathlib import Path

from pdebench_core.data.layouts.common import Found, H5Files, Reader, Trajectories
from pdebench_core.errors import DataError

_INDEXED = re.compile(r"data_(\d+)\.(h5|hdf5)$")


def _time_first(array, n_space: int, has_channel: bool):
    """``(*S, T[, C])`` -> ``(T, *S, C)``."""
    import numpy as np

    array = np.moveaxis(array, n_space, 0)
    return array if has_channel else array[..., None]


class DpotArrayReader(Reader):
    """One file, ``data`` ``(N, *S, T[, C])``."""

    def __init__(self, path: str, shape: tuple[int, ...], dtype: str) -> None:
        self.path = path
        self.has_channel = len(shape) != 4  # (N, X, Y, T) is the only channel-less form
        self.n_space = len(shape) - (3 if self.has_channel else 2)
        spatial = tuple(int(s) for s in shape[1:1 + self.n_space])
        n_frames = int(shape[1 + self.n_space])
        channels = int(shape[-1]) if self.has_channel else 1
        self.n = int(shape[0])
        self.traj_shape = (n_frames,) + spatial + (channels,)
        self.dtype = dtype
        self.label = path
        self.files = H5Files()

    def _read(self, index: int, frames: slice):
        data = self.files.get(self.path)["data"]
        selection = (index,) + (slice(None),) * self.n_space + (frames,)
        return _time_first(data[selection], self.n_space, self.has_channel)  # (t, *S, C)


class DpotFilesReader(Reader):
    """A list of files, each with ``data`` ``(*S, T[, C])`` for one trajectory."""

    def __init__(self, files: list[str], shape: tuple[int, ...], dtype: str, label: str) -> None:
        self.paths = files
        self.has_channel = len(shape) != 3  # (X, Y, T) is the only channel-less form
        self.n_space = len(shape) - (2 if self.has_channel else 1)
        spatial = tuple(int(s) for s in shape[: self.n_space])
        channels = int(shape[-1]) if self.has_channel else 1
        self.n = len(files)
        self.traj_shape = (int(shape[self.n_space]),) + spatial + (channels,)
        self.dtype = dtype
        self.label = label
        self.files = H5Files(max_open=8)

    def _read(self, index: int, frames: slice):
        data = self.files.get(self.paths[index])["data"]
        expected = self.traj_shape[1:-1]
        if tuple(data.shape[: self.n_space]) != expected:
            raise DataError(f"{self.paths[index]}: data has shape {data.shape}, other files {expected} in space")
        selection = (slice(None),) * self.n_space + (frames,)
        return _time_first(data[selection], self.n_space, self.has_channel)  # (t, *S, C)


def _array_pool(path: str) -> Trajectories:
    files = H5Files()
    f = files.get(path)
    if "data" not in f:
        raise DataError(f"{path}: no 'data' array (found {sorted(f.keys())})")
    ds = f["data"]
    if not 4 <= ds.ndim <= 6:
        raise DataError(f"{path}: 'data' has shape {ds.shape}; expected (N, X, Y, T, C)")
    pool = Trajectories(DpotArrayReader(path, ds.shape, str(ds.dtype)))
    files.close()
    return pool


def _sibling(path: Path, own: str, other: str) -> Path | None:
    stem = path.stem
    if not stem.endswith(f"_{own}"):
        return None
    candidate = path.with_name(stem[: -len(own)] + other + path.suffix)
    return candidate if candidate.exists() else None


def open_dpot_file(path: str) -> Found:
    """Describe a single DPOT file, pairing ``*_train`` with ``*_test`` when both exist."""
    p = Path(path)
    notes: list[str] = []
    test_file = _sibling(p, "train", "test")
    train_file = _sibling(p, "test", "train")
    if test_file is not None:
        pools = {"train": _array_pool(path), "test": _array_pool(str(test_file))}
        notes.append(f"paired with {test_file.name} for the test split")
    elif train_file is not None:
        pools = {"train": _array_pool(str(train_file)), "test": _array_pool(path)}
        notes.append(f"paired with {train_file.name} for the train split")
    else:
        pools = {"all": _array_pool(path)}
    shapes = {k: v.shape[1:] for k, v in pools.items()}
    if len(set(shapes.values())) != 1:
        raise DataError(f"{path}: train and test files differ in grid or channels: {shapes}")
    return Found(layout="dpot", path=path, pools=pools, notes=notes)


def indexed_files(folder: Path) -> list[Path]:
    """``data_<i>.hdf5`` files of a folder in numeric order of ``i``."""
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _INDEXED.search(p.name))]
    return [p for _, p in sorted(found)]


def _files_pool(folder: Path) -> Trajectories:
    files = indexed_files(folder)
    if not files:
        raise DataError(f"{folder}: no data_<i>.hdf5 files")
    handles = H5Files()
    f = handles.get(str(files[0]))
    if "data" not in f:
        raise DataError(f"{files[0]}: no 'data' array (found {sorted(f.keys())})")
    ds = f["data"]
    if not 3 <= ds.ndim <= 5:
        raise DataError(f"{files[0]}: 'data' has shape {ds.shape}; expected (X, Y, T, C)")
    pool = Trajectories(DpotFilesReader([str(p) for p in files], ds.shape, str(ds.dtype), str(folder)))
    handles.close()
    return pool


def open_dpot_folder(path: str) -> Found:
    """Describe a DPOT folder of per-trajectory files (with or without train/test sub-folders)."""
    root = Path(path)
    notes: list[str] = []
    if root.name in ("train", "test") and not (root / "train").is_dir():
        parent = root.parent
        if (parent / "train").is_dir() and (parent / "test").is_dir():
            notes.append(f"using the train/ and test/ folders of {parent}")
            root = parent
    subfolders = {k: root / k for k in ("train", "test") if (root / k).is_dir()}
    if subfolders:
        pools = {k: _files_pool(v) for k, v in subfolders.items()}
    else:
        pools = {"all": _files_pool(root)}
    shapes = {k: v.shape[1:] for k, v in pools.items()}
    if len(set(shapes.values())) != 1:
        raise DataError(f"{path}: train and test trajectories differ in grid or channels: {shapes}")
    return Found(layout="dpot", path=str(root), pools=pools, notes=notes)
