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

from pdebench_core.data.trajectories import LazyTrajectories
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

    from pdebench_core.data.integrity import split_digest
    from pdebench_core.diskspace import check_free_space, fsync_file, fsync_folder, write_failed

    path = Path(path)
    arrays = {name: _as_split(array) for name, array in splits.items()}
    for name, array in arrays.items():
        if array.ndim < 4:
            raise DataError(f"split '{name}' must be (N, T, *S, C), got shape {array.shape}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_failed(path, exc) from None
    check_free_space(path.parent, sum(4 * int(np.prod(a.shape)) for a in arrays.values()), f"data file {path.name}")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        f = h5py.File(tmp, "w", rdcc_nbytes=0)  # no chunk cache: nothing left to flush after a failed write
        try:
            f.attrs["pdeb_format"] = FORMAT_NAME
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["spec"] = json.dumps(spec.to_dict())
            f.attrs["provenance"] = json.dumps(dict(provenance or {}), default=str)
            digests = {}
            for name, array in arrays.items():
                chunks = (1,) + tuple(array.shape[1:]) if array.shape[0] else None
                dataset = f.create_dataset(name, shape=array.shape, dtype=np.float32, chunks=chunks)
                for start in range(0, array.shape[0], _WRITE_BLOCK):  # large memory-mapped splits stream
                    dataset[start:start + _WRITE_BLOCK] = np.asarray(array[start:start + _WRITE_BLOCK],
                                                                     dtype=np.float32)
                digests[name] = split_digest(array)
            # Checked when the file is reused as a cache: damaged bytes mean "generate again".
            f.attrs["content_sha256"] = json.dumps(digests)
            f.close()
        except (OSError, RuntimeError) as exc:  # a full disk surfaces as either, from h5py
            failure = write_failed(path, exc)  # the free space as the write met it
            close_abandoned(f, tmp)
            raise failure from None
        except BaseException:
            close_abandoned(f, tmp)
            raise
        fsync_file(tmp)
        os.replace(tmp, path)
        fsync_folder(path.parent)
    except (OSError, RuntimeError) as exc:  # a full disk surfaces as either, from h5py
        raise write_failed(path, exc) from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def close_abandoned(handle: Any, tmp: Path) -> None:
    """Close an HDF5 file whose writing failed, to be deleted.

    The failure is often a full disk: closing flushes HDF5's metadata, which fails again, and
    the library retries at every object's release and at exit (printing tracebacks, then
    crashing the process). Emptying the file first gives back its space, so the flush succeeds.
    """
    import contextlib

    with contextlib.suppress(OSError):
        os.truncate(tmp, 0)
    with contextlib.suppress(Exception):
        handle.close()


_WRITE_BLOCK = 64  # trajectories written per HDF5 call


def _as_split(array: Any) -> Any:
    """A numpy array or memory map as it is (read block by block), a tensor as numpy."""
    if hasattr(array, "detach"):
        return array.detach().cpu().numpy()
    return array if isinstance(array, np.ndarray) else np.asarray(array, dtype=np.float32)


class H5Trajectories(LazyTrajectories):
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
        self._cache = None
        if preload:
            self._preload()

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
