"""The lazy trajectory sequence every reader returns: selection, optional preload, item and window access.

Subclasses say only how one selected trajectory, or some of its frames, is read.
"""

from __future__ import annotations

from typing import Any, Sequence


class LazyTrajectories(Sequence):
    """Base of lazy sequences of float32 trajectories ``(T, *S, C)``.

    ``seq[i]`` reads trajectory ``i`` of the selection; ``seq.window(i, start, length)``
    reads only frames ``start:start+length``. Subclasses set ``indices`` (the selected
    trajectories of the source, in order), call :meth:`_preload` when asked to hold
    everything in memory, and implement :meth:`_read`.
    """

    indices: list[int]
    _cache: list[Any] | None = None

    def _read(self, position: int, frames: slice = slice(None)) -> Any:
        """Frames ``frames`` of the trajectory at ``position`` of the selection, from the source."""
        raise NotImplementedError

    def _preload(self) -> None:
        self._cache = [self._read(position) for position in range(len(self))]

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def shape(self) -> tuple[int, ...]:
        """``(T, *S, C)`` of one trajectory (the first); readers that know it from metadata override this."""
        import numpy as np

        return tuple(int(n) for n in np.shape(self[0]))

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

    def window(self, i: int, start: int, length: int) -> Any:
        """Frames ``start:start+length`` of trajectory ``i``, reading only those where the source allows."""
        if self._cache is not None:
            return self._cache[i][start:start + length]
        return self._read(i, slice(start, start + length))


class FileTrajectories(LazyTrajectories):
    """One trajectory per file, read when asked for: what a dataset plugin over its own folder
    of files returns as a split.

    ``.npy`` files are memory-mapped, so a training window reads only its frames; any other
    file needs ``read``. Every trajectory comes back as float32 ``(T, *S, C)``.

    Args:
        files: The split's files, in order.
        read: ``read(path)`` returns one file's ``(T, *S, C)`` array (e.g. from an ``.h5``
            key); default: ``numpy.load(path, mmap_mode="r")``.
        preload: Read every file now and keep them in memory (small splits).
    """

    def __init__(self, files: Sequence[Any], read: Any = None, preload: bool = False) -> None:
        from pathlib import Path

        self.files = [Path(f) for f in files]
        self.indices = list(range(len(self.files)))
        self.reader = read
        self._first_shape: tuple[int, ...] | None = None
        missing = [str(f) for f in self.files if not f.is_file()]
        if missing:
            from pdebench_core.errors import DataError

            raise DataError(f"trajectory file {missing[0]} does not exist"
                            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        if preload:
            self._preload()

    @property
    def shape(self) -> tuple[int, ...]:
        """``(T, *S, C)`` of the first file (an ``.npy`` file's header only), read once."""
        if self._first_shape is None:
            self._first_shape = tuple(int(n) for n in self._open(0).shape)
        return self._first_shape

    def _open(self, position: int) -> Any:
        import numpy as np

        path = self.files[self.indices[position]]
        if self.reader is not None:
            return self.reader(path)
        if path.suffix == ".npy":
            return np.load(path, mmap_mode="r")
        from pdebench_core.errors import DataError

        raise DataError(f"{path}: FileTrajectories reads .npy files by itself; pass read=... for other files")

    def _read(self, position: int, frames: slice = slice(None)) -> Any:
        import numpy as np

        array = self._open(position)
        if position and tuple(array.shape[1:]) != self.shape[1:]:  # one odd file would be rolled out as it is
            from pdebench_core.errors import DataError

            raise DataError(f"{self.files[self.indices[position]]}: a trajectory of shape {tuple(array.shape)}, but "
                            f"{self.files[self.indices[0]].name} is {self.shape}: every trajectory of a split needs "
                            f"the same grid and channels")
        part = array[frames]
        out = as_float32(part, str(self.files[self.indices[position]]))
        return out.copy() if np.may_share_memory(out, part) else out  # a copy: a memory map is read-only


def as_float32(array: Any, label: str) -> Any:
    """``array`` as contiguous float32; a finite value beyond float32's range (about 3.4e38,
    where the cast gives Inf) is refused in one line rather than stored or scored as Inf.

    Raises:
        DataError: The array holds such a value.
    """
    import numpy as np

    from pdebench_core.errors import DataError

    source = np.asarray(array)
    with np.errstate(over="ignore"):  # found below and said in one line, not as numpy's warning
        out = np.ascontiguousarray(source, dtype=np.float32)
    if out.dtype != source.dtype and not np.isfinite(out).all():
        overflowed = np.isfinite(source) & ~np.isfinite(out)
        if overflowed.any():
            largest = float(np.abs(source[overflowed]).max())
            raise DataError(f"{label} holds {largest:.3g}, beyond the float32 range pdeb stores and trains in "
                            f"(|x| < 3.4e38); rescale the data")
    return out
