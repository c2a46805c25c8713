"""Shared pieces of the layout readers: per-process file handles, lazy trajectory
sequences, and the description of what a reader found at a path.

A *reader* knows one on-disk layout. It exposes ``n`` (trajectories it holds),
``traj_shape`` (``(T, *S, C)`` of one trajectory, from metadata only), ``dtype``
(the stored numeric type) and ``read(index, frames)`` returning float32
``(t, *S, C)``. :class:`Trajectories` turns a reader plus a list of indices into
the lazy sequence that datasets hand out.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Sequence

from pdebench_core.data.trajectories import LazyTrajectories, as_float32
from pdebench_core.errors import DataError

#: Largest block, in bytes, that readers and writers move at once when streaming.
BLOCK_BYTES = 64 * 2**20


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (h5py errors can span several)."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


class H5Files:
    """Per-process cache of open read-only HDF5 handles.

    Handles are never pickled: a copy sent to a DataLoader worker starts empty and
    opens its own. At most ``max_open`` files stay open (least recently used closes
    first), so a folder of thousands of per-trajectory files never exhausts file
    descriptors. A URL is read through :mod:`pdebench_core.data.remote` (ranged reads
    with a local block cache).
    """

    def __init__(self, max_open: int = 32) -> None:
        self.max_open = max_open
        self._open: OrderedDict[str, Any] = OrderedDict()
        self._streams: dict[str, Any] = {}
        self._pid = os.getpid()

    def get(self, path: str):
        """An open ``h5py.File`` for ``path``; raises :class:`DataError` if unreadable."""
        if self._pid != os.getpid():  # forked: never share the parent's handles
            self._open, self._streams = OrderedDict(), {}
            self._pid = os.getpid()
        handle = self._open.get(path)
        if handle is not None:
            self._open.move_to_end(path)
            return handle
        self._open[path] = self._open_file(path)
        while len(self._open) > self.max_open:
            oldest, handle = self._open.popitem(last=False)
            self._close(oldest, handle)
        return self._open[path]

    def _open_file(self, path: str):
        import h5py

        from pdebench_core.data import remote

        url = remote.as_url(path)
        source = remote.open_for_reading(url) if url else path
        try:
            handle = h5py.File(source, "r")
        except (OSError, ValueError) as exc:
            if not isinstance(source, str):
                source.close()
            raise DataError(f"cannot read HDF5 file {url or path}: {first_line(exc)}") from None
        if not isinstance(source, str):
            self._streams[path] = source  # h5py does not close a file object it was given
        return handle

    def _close(self, path: str, handle) -> None:
        handle.close()
        stream = self._streams.pop(path, None)
        if stream is not None:
            stream.close()

    def close(self) -> None:
        """Close every handle this process opened."""
        for path, handle in list(self._open.items()):
            self._close(path, handle)
        self._open.clear()

    def __getstate__(self) -> dict:
        return {"max_open": self.max_open}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["max_open"])


# "FILE:/dataset", the dataset maybe in a group ("a.h5:/group/train"); two characters at least
# before ":/" ("C:/x.h5" is a drive) and none after it ("http://..." keeps its "//")
_DATASET_LABEL = re.compile(r"(.{2,}?):/([^/:][^:]*)")


def dataset_label(path: str, dataset: str) -> str:
    """The label of one HDF5 dataset of a file, as readers show it: ``"FILE:/dataset"``."""
    return f"{path}:/{dataset}"


def split_label(label: str) -> tuple[str, str | None]:
    """A reader's label as ``(file, dataset)``: ``"a.h5:/train"`` -> ``("a.h5", "train")``,
    ``"a.h5"`` -> ``("a.h5", None)``; a URL keeps its ``://`` (``"http://h/a.h5:/train"`` ->
    ``("http://h/a.h5", "train")``)."""
    match = _DATASET_LABEL.fullmatch(str(label))
    return (match.group(1), match.group(2)) if match else (str(label), None)


class Reader:
    """Base class of the layout readers (see the module docstring).

    Subclasses set ``n``, ``traj_shape`` and ``dtype`` in ``__init__`` and implement
    :meth:`_read`. :meth:`read` adds bounds checks and the float32 conversion.
    """

    n: int = 0
    traj_shape: tuple[int, ...] = ()
    dtype: str = "float32"
    label: str = ""

    def read(self, index: int, frames: slice = slice(None)):
        """Trajectory ``index`` (frames ``frames``) as float32 ``(t, *S, C)``."""
        import numpy as np

        if not 0 <= index < self.n:
            raise IndexError(f"trajectory {index} out of range 0..{self.n - 1} in {self.label}")
        try:
            array = self._read(index, frames)
        except DataError:
            raise
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            raise DataError(f"cannot read trajectory {index} of {self.label}: {first_line(exc)}") from None
        if np.iscomplexobj(array):  # float32 would keep the real part and drop the rest without a word
            raise complex_data(self.label, np.asarray(array).dtype)
        return as_float32(array, f"trajectory {index} of {self.label}")

    def _read(self, index: int, frames: slice):
        raise NotImplementedError

    @property
    def traj_bytes(self) -> int:
        """Size of one float32 trajectory in bytes."""
        size = 4
        for n in self.traj_shape:
            size *= n
        return size


def complex_data(label: str, dtype: Any) -> DataError:
    """The error for complex-valued data, which pdeb does not read as real."""
    return DataError(f"{label} stores complex values ({dtype}); pdeb reads real data: store the real and imaginary "
                     f"parts as two channels")


class Trajectories(LazyTrajectories):
    """Lazy, picklable sequence of float32 trajectories ``(T, *S, C)``.

    ``seq[i]`` reads one trajectory; ``seq.window(i, start, length)`` reads only
    frames ``start:start+length`` where the layout allows it. Nothing is read at
    construction unless ``preload`` is set.

    Args:
        reader: The layout reader that holds the data.
        indices: Which of the reader's trajectories, in order (default: all).
        preload: Read every selected trajectory into memory now.
    """

    def __init__(self, reader: Reader, indices: Sequence[int] | None = None, preload: bool = False) -> None:
        self.reader = reader
        self.indices = list(range(reader.n) if indices is None else indices)
        self._cache = None
        if preload:
            self._preload()

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape ``(T, *S, C)`` of one trajectory, from metadata (nothing is read)."""
        return tuple(self.reader.traj_shape)

    @property
    def path(self) -> str:
        """The file or folder the trajectories come from."""
        return self.reader.label

    def _read(self, position: int, frames: slice = slice(None)):
        return self.reader.read(self.indices[position], frames)

    def subset(self, positions: Sequence[int], preload: bool = False) -> "Trajectories":
        """The trajectories at ``positions`` of this sequence, as a new lazy sequence."""
        return Trajectories(self.reader, [self.indices[p] for p in positions], preload=preload)

    def __repr__(self) -> str:
        return f"Trajectories({self.reader.label}: {len(self)} x {self.shape})"


@dataclass
class Found:
    """What a layout reader found at a path; only metadata has been read.

    Attributes:
        layout: Layout name (a key of ``LAYOUTS``).
        path: The file or folder.
        pools: Trajectories by split: the file's own splits (``"train"``, ``"val"``,
            ``"test"``, any subset) or, for files without splits, one pool ``"all"``.
        fields: Channel names the file states, or ``None`` when it names none.
        dt: Time between frames from the file's time coordinate, or ``None``.
        coords: One-dimensional coordinates per spatial axis, when stored.
        params: PDE parameters the file states.
        spec: The complete stored spec (canonical files only), as a dict.
        notes: Facts about how the file was interpreted, for ``pdeb data info``.
    """

    layout: str
    path: str
    pools: dict[str, Trajectories]
    fields: tuple[str, ...] | None = None
    dt: float | None = None
    coords: list[Any] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    spec: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def own_splits(self) -> bool:
        """Whether the file defines its own train/val/test splits."""
        return "all" not in self.pools

    @property
    def traj_shape(self) -> tuple[int, ...]:
        """``(T, *S, C)`` of one trajectory."""
        return next(iter(self.pools.values())).shape

    @property
    def dtype(self) -> str:
        """Stored numeric type (before the float32 conversion)."""
        return next(iter(self.pools.values())).reader.dtype


def uniform_step(values, what: str, notes: list[str]) -> float | None:
    """Spacing of a 1-D coordinate array; notes it when the spacing is not uniform."""
    import numpy as np

    single = np.asarray(values).dtype == np.float32
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size < 2:
        return None
    steps = np.diff(values)
    step = float(np.median(steps))
    if step <= 0 or not np.isfinite(step):
        notes.append(f"{what} is not increasing; its spacing was ignored")
        return None
    if np.max(np.abs(steps - step)) > 1e-3 * abs(step):
        notes.append(f"{what} is not uniformly spaced; using its median spacing {step:g}")
    else:  # the whole span over the steps: far less storage noise than one difference
        step = float((values[-1] - values[0]) / (values.size - 1))
    # Drop the rounding noise of differences (0.010000000000000009); float32 coordinates hold
    # only about 7 digits.
    return float(f"{step:.7g}") if single else float(f"{step:.10g}")


def frame_blocks(n_frames: int, frame_bytes: int, budget: int = BLOCK_BYTES) -> list[slice]:
    """Consecutive frame ranges of at most ``budget`` bytes each (at least one frame)."""
    per_block = max(1, budget // max(frame_bytes, 1))
    return [slice(t, min(t + per_block, n_frames)) for t in range(0, n_frames, per_block)]
