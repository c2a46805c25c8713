"""The canonical on-disk format: one HDF5 file, one float32 array per split.

Layout::

    /train, /val, /test    float32 (N, T, *S, C), chunked one trajectory per chunk
    attrs["pdeb_format"]   "canonical"
    attrs["format_version"] 1
    attrs["spec"]          JSON of DataSpec.to_dict()
    attrs["provenance"]    JSON: generator, version, seed, ...

Files are written to a temporary name and renamed, so a crash never leaves a
half-written file under the final name. Reading is lazy: each process opens its
own handle on first use (safe with DataLoader workers) and reads one trajectory,
or one window of it, at a time.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from pdebench_core.errors import DataError
from pdebench_core.spec import DataSpec

FORMAT_NAME = "canonical"
FORMAT_VERSION = 1


def write_canonical(
    path: str | os.PathLike,
    splits: Mapping[str, Any],
    spec: DataSpec,
    provenance: Mapping[str, Any] | None = None,
) -> Path:
    """Write splits to a canonical HDF5 file atomically.

    Args:
        path: Destination file.
        splits: ``{"train": array (N, T, *S, C), ...}``; numpy arrays or torch tensors.
        spec: The dataset's self-description, stored as JSON.
        provenance: Where the data came from (generator, version, seed, ...).

    Returns:
        The path written.
    """
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["pdeb_format"] = FORMAT_NAME
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["spec"] = json.dumps(spec.to_dict())
            f.attrs["provenance"] = json.dumps(dict(provenance or {}), default=str)
            for name, array in splits.items():
                array = _as_numpy(array)
                if array.ndim < 4:
                    raise DataError(f"split '{name}' must be (N, T, *S, C), got shape {array.shape}")
                chunks = (1,) + array.shape[1:] if array.shape[0] else None
                f.create_dataset(name, data=array, chunks=chunks)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _as_numpy(array: Any) -> np.ndarray:
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    return np.ascontiguousarray(array, dtype=np.float32)


class H5Trajectories(Sequence):
    """Lazy sequence of trajectories stored in one HDF5 dataset.

    ``traj[i]`` reads trajectory ``i`` as float32 ``(T, *S, C)``; ``window(i, start,
    length)`` reads only frames ``start:start+length``. The file handle is opened per
    process on first access, so instances can be sent to DataLoader workers.

    Args:
        path: HDF5 file.
        key: Dataset key inside the file.
        indices: Optional subset of trajectory indices (for splits cut from one array).
        transform: Optional function applied to every array read, e.g. to reorder axes
            of a published layout; it receives ``(array, index)``.
        preload: Read everything into memory at once (small sets only).
    """

    def __init__(self, path: str | os.PathLike, key: str, indices: Sequence[int] | None = None,
                 transform: Any = None, preload: bool = False) -> None:
        self.path = str(path)
        self.key = key
        self.transform = transform
        self._handle = None
        self._pid = None
        if indices is None:
            indices = range(int(self._dataset().shape[0]))
        self.indices = list(indices)
        self._cache = [self._read(i) for i in range(len(self))] if preload else None

    def _dataset(self):
        import h5py

        if self._handle is None or self._pid != os.getpid():
            try:
                self._handle = h5py.File(self.path, "r")
            except OSError as exc:
                raise DataError(f"cannot read HDF5 file {self.path}: {exc}") from None
            self._pid = os.getpid()
        try:
            return self._handle[self.key]
        except KeyError:
            raise DataError(f"{self.path} has no dataset '{self.key}'") from None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_handle"] = None
        state["_pid"] = None
        return state

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one trajectory after ``transform``."""
        return tuple(self[0].shape) if len(self) else ()

    def _read(self, i: int, frames: slice = slice(None)) -> np.ndarray:
        index = self.indices[i]
        if self.transform is None:
            array = self._dataset()[index, frames]
        else:
            array = self.transform(self._dataset()[index], index)[frames]
        return np.asarray(array, dtype=np.float32)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        if self._cache is not None:
            return self._cache[i]
        return self._read(i)

    def window(self, i: int, start: int, length: int) -> np.ndarray:
        """Frames ``start:start+length`` of trajectory ``i``, reading only those."""
        if self._cache is not None:
            return self._cache[i][start:start + length]
        return self._read(i, slice(start, start + length))


def read_spec(path: str | os.PathLike) -> tuple[DataSpec, dict[str, Any]]:
    """Spec and provenance stored in a canonical file."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("pdeb_format") != FORMAT_NAME:
                raise DataError(f"{path} is not a canonical pdeb file (no pdeb_format attribute)")
            spec = DataSpec.from_dict(json.loads(f.attrs["spec"]))
            provenance = json.loads(f.attrs.get("provenance", "{}"))
    except OSError as exc:
        raise DataError(f"cannot read HDF5 file {path}: {exc}") from None
    return spec, provenance


def open_canonical(path: str | os.PathLike, preload: bool = False) -> tuple[DataSpec, dict[str, H5Trajectories]]:
    """Open a canonical file lazily.

    Returns:
        ``(spec, {split: H5Trajectories})`` for every split present.
    """
    import h5py

    spec, _ = read_spec(path)
    with h5py.File(path, "r") as f:
        names = [k for k in ("train", "val", "test") if k in f]
    return spec, {k: H5Trajectories(path, k, preload=preload) for k in names}
