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

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from pdebench_core.data.trajectories import LazyTrajectories, as_float32
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
    """Write splits to a canonical HDF5 file atomically, with each split's digest.

    Args:
        path: Destination file.
        splits: ``{"train": array (N, T, *S, C), ...}``; numpy arrays (memory maps stream
            block by block) or torch tensors.
        spec: The dataset's self-description, stored as JSON.
        provenance: Where the data came from (generator, version, seed, ...).

    Returns:
        The path written.
    """
    from pdebench_core.data.integrity import split_digest
    from pdebench_core.diskspace import check_free_space

    path = Path(path)
    arrays = {name: _as_split(array) for name, array in splits.items()}
    for name, array in arrays.items():
        if array.ndim < 4:
            raise DataError(f"split '{name}' must be (N, T, *S, C), got shape {array.shape}")
    # Read on the disk of the folder's nearest existing parent: the folder may not exist yet.
    check_free_space(path.parent, sum(4 * int(np.prod(a.shape)) for a in arrays.values()), f"data file {path.name}")
    with CanonicalWriter(path, spec, provenance) as writer:
        for name, array in arrays.items():
            writer.create(name, array.shape[0], array.shape[1:])
            for start in range(0, array.shape[0], _WRITE_BLOCK):  # large memory-mapped splits stream
                writer.write_trajectories(name, start, array[start:start + _WRITE_BLOCK])
        # Checked when the file is reused as a cache: damaged bytes mean "generate again".
        writer.attrs["content_sha256"] = json.dumps({name: split_digest(array) for name, array in arrays.items()})
    return path


class CanonicalWriter:
    """Write a canonical file split by split, trajectory by trajectory.

    Use as a context manager; on a clean exit the attributes are stored and the file is
    synced and renamed into place, on an exception the temporary file is removed (and any
    file already at ``path`` stays as it was)::

        with CanonicalWriter(dest, spec, provenance) as writer:
            writer.create("train", n, (T, *S, C))
            writer.write("train", 0, trajectory)            # (T, *S, C)
            writer.write("train", 1, frames, start=0)       # frames 0..k-1 only

    Args:
        path: Destination file.
        spec: Self-description stored in the ``spec`` attribute.
        provenance: Where the data came from.

    Attributes:
        attrs: Further file attributes, stored on a clean exit (``content_sha256``).
    """

    def __init__(self, path: str | os.PathLike, spec: DataSpec, provenance: Mapping[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.spec = spec
        self.provenance = dict(provenance or {})
        self.attrs: dict[str, Any] = {}
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self._file = None

    def __enter__(self) -> "CanonicalWriter":
        import h5py

        with self._writing():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # No chunk cache: every write goes straight to disk, so partial-chunk writes never
            # read a chunk back (chunks are uncompressed), and nothing is left to flush after a
            # failed write.
            self._file = h5py.File(self.tmp, "w", rdcc_nbytes=0)
        return self

    def create(self, split: str, n: int, traj_shape: Sequence[int]) -> None:
        """Pre-create split ``split`` for ``n`` trajectories of shape ``(T, *S, C)``."""
        shape = (int(n),) + tuple(int(s) for s in traj_shape)
        chunks = (1,) + shape[1:] if n else None
        with self._writing():
            self._file.create_dataset(split, shape=shape, dtype="float32", chunks=chunks, fill_time="never")

    def write(self, split: str, index: int, array: Any, start: int = 0) -> None:
        """Store ``array`` as frames ``start:start+len(array)`` of trajectory ``index``."""
        values = as_float32(array, f"trajectory {index} of split '{split}'")
        with self._writing():
            self._file[split][index, start:start + len(values)] = values

    def write_trajectories(self, split: str, first: int, block: Any) -> None:
        """Store ``block`` ``(k, T, *S, C)`` as trajectories ``first:first+k``, whole."""
        values = as_float32(block, f"trajectories {first}.. of split '{split}'")
        with self._writing():
            self._file[split][first:first + len(values)] = values

    def __exit__(self, exc_type, exc, tb) -> None:
        from pdebench_core.diskspace import fsync_file, fsync_folder

        try:
            if exc_type is not None:  # the temporary file goes; the error that stopped the writing stands
                close_abandoned(self._file, self.tmp)
                return
            try:
                with self._writing():
                    self._file.attrs["pdeb_format"] = FORMAT_NAME
                    self._file.attrs["format_version"] = FORMAT_VERSION
                    self._file.attrs["spec"] = json.dumps(self.spec.to_dict())
                    self._file.attrs["provenance"] = json.dumps(self.provenance, default=str)
                    for name, value in self.attrs.items():
                        self._file.attrs[name] = value
                    self._file.close()
            except BaseException:
                close_abandoned(self._file, self.tmp)
                raise
            with self._writing():
                fsync_file(self.tmp)
                os.replace(self.tmp, self.path)
                fsync_folder(self.path.parent)
        finally:
            if self.tmp.exists():
                self.tmp.unlink()

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """A failed write (a full disk surfaces from h5py as OSError or RuntimeError) as one line."""
        from pdebench_core.diskspace import write_failed
        from pdebench_core.signals import stop_behind

        try:
            yield
        except (OSError, RuntimeError) as exc:
            stop = stop_behind(exc)
            if stop is not None:  # a signal's stop met halfway, not a failed write
                raise stop from None
            raise write_failed(self.path, exc, "any previous file there is untouched") from None


def close_abandoned(handle: Any, tmp: Path) -> None:
    """Close an HDF5 file whose writing failed, to be deleted.

    The failure is often a full disk: closing flushes HDF5's metadata, which fails again, and
    the library retries at every object's release and at exit (printing tracebacks, then
    crashing the process). Emptying the file first gives back its space, so the flush succeeds.
    """
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
        return as_float32(array, f"trajectory {index} of {self.path}:{self.key}")


#: The keys a stored spec must have; the rest default (see :class:`DataSpec`).
REQUIRED_SPEC_KEYS = ("name", "fields", "spatial_shape")


def parse_spec(raw: Any) -> tuple[dict[str, Any] | None, str | None]:
    """A canonical file's ``spec`` attribute as a dict that makes a :class:`DataSpec`, or the
    problem that keeps it from being one: ``(spec, None)`` or ``(None, problem)``.

    The one reading of the attribute: ``pdeb data verify`` lists the problem, readers raise it.
    """
    from pdebench_core.data.layouts.common import first_line

    try:
        spec = json.loads(raw)
    except (TypeError, ValueError) as exc:
        return None, f"attribute 'spec' is not valid JSON ({first_line(exc)})"
    if not isinstance(spec, dict):
        return None, "attribute 'spec' is not a JSON object"
    missing = [k for k in REQUIRED_SPEC_KEYS if k not in spec]
    if missing:
        return None, f"spec lacks {', '.join(missing)}"
    try:
        built = DataSpec.from_dict(spec)
    except (TypeError, ValueError, AttributeError) as exc:
        return None, f"spec is malformed ({first_line(exc)})"
    for key, value, least in (("dt", built.dt, 0.0), ("t_in", built.t_in, 0), ("t_out", built.t_out, 0)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > least:
            return None, f"spec {key} is {value!r}; it must be a positive number"
    return spec, None


def spec_mismatches(spec: Mapping[str, Any], shape: Sequence[int]) -> list[str]:
    """Where a stored spec contradicts the arrays it describes, ``(N, T, *S, C)``."""
    n_frames, spatial, channels = shape[1], tuple(shape[2:-1]), shape[-1]
    out = []
    if tuple(spec.get("spatial_shape") or ()) != spatial:
        out.append(f"spec spatial_shape {spec.get('spatial_shape')} but the data grid is {list(spatial)}")
    if len(spec.get("fields") or ()) != channels:
        out.append(f"spec names {len(spec.get('fields') or ())} fields but the data has {channels} channels")
    if spec.get("n_frames") is not None and spec["n_frames"] != n_frames:
        out.append(f"spec n_frames {spec['n_frames']} but trajectories have {n_frames} frames")
    mask = spec.get("channel_mask")
    if mask is not None and len(mask) != channels:
        out.append(f"spec channel_mask has {len(mask)} entries for {channels} channels")
    return out


def format_version_problem(version: Any) -> str | None:
    """Why a file's ``format_version`` attribute is not one this pdeb reads, or None."""
    if version is None:
        return "missing attribute 'format_version'"
    try:
        number = int(version)
    except (TypeError, ValueError):
        return f"format_version {version!r} is not a number"
    if number == FORMAT_VERSION:
        return None
    newer = "; it was written by a newer pdeb: upgrade pdeb to read it" if number > FORMAT_VERSION else ""
    return f"format_version {number} is not supported (this pdeb reads {FORMAT_VERSION}){newer}"


def stored_spec(attrs: Mapping[str, Any], path: Any, required: bool = True) -> dict[str, Any] | None:
    """The spec a canonical file's attributes hold (``None`` when it has none and none is
    ``required``), checked with its ``format_version`` (files without one predate it).

    Raises:
        DataError: The one-line problem :func:`parse_spec` or :func:`format_version_problem` finds.
    """
    if "spec" in attrs:
        spec, problem = parse_spec(attrs["spec"])
    else:
        spec, problem = None, "missing attribute 'spec'" if required else None
    if "format_version" in attrs:
        problem = format_version_problem(attrs["format_version"]) or problem
    if problem is not None:
        raise DataError(f"{path}: {problem}; 'pdeb data verify {path}' lists every problem")
    return spec


def read_spec(path: str | os.PathLike) -> tuple[DataSpec, dict[str, Any]]:
    """Spec and provenance stored in a canonical file.

    Raises:
        DataError: Not a canonical file, or its spec or provenance cannot be read.
    """
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("pdeb_format") != FORMAT_NAME:
                raise DataError(f"{path} is not a canonical pdeb file (no pdeb_format attribute)")
            spec = stored_spec(f.attrs, path)
            try:
                provenance = json.loads(f.attrs.get("provenance", "{}"))
            except (TypeError, ValueError):
                provenance = {}  # what generated the data is a record, not needed to read it
    except OSError as exc:
        raise DataError(f"cannot read HDF5 file {path}: {exc}") from None
    return DataSpec.from_dict(spec), provenance if isinstance(provenance, dict) else {}


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
