"""Reader for the FNO Navier-Stokes ``.mat`` files (Li et al., 2021).

The files hold ``u`` with MATLAB shape ``(N, X, Y, T)`` (trajectories, two spatial
axes, time), ``a`` the initial field ``(N, X, Y)`` and ``t`` the stored times.
Trajectory ``n`` comes out as ``(T, X, Y, 1)`` with
``traj[t, i, j, 0] == u[n, i, j, t]`` in MATLAB's indexing (1-based there).

MATLAB v7.3 files are HDF5 files with a 512-byte MATLAB header. MATLAB writes
arrays column-major and HDF5 is row-major, so h5py shows every variable with its
axes reversed: ``u`` appears as ``(T, Y, X, N)``. The reader reverses the spatial
axes back, so ``X`` is MATLAB's second axis, as in FNO's own ``MatReader``.
(DPOT's preprocessing permutes the h5py array with ``(3, 1, 2, 0)``, which leaves
``X`` and ``Y`` swapped relative to this.)

Because the trajectory axis is the *fastest* varying one on disk, reading one
trajectory touches the whole variable. The reader therefore caches a block of
neighbouring trajectories (one chunk wide for chunked files), which makes
sequential passes cheap; for training with random access, convert the file once
with ``pdeb data convert`` (which streams it frame by frame).

Older (v5/v7) ``.mat`` files are read whole with :func:`scipy.io.loadmat`.
``a`` is not prepended to ``u``: like FNO and DPOT, the trajectory is ``u`` alone.
"""

from __future__ import annotations

from pdebench_core.data.layouts.common import (
    BLOCK_BYTES, Found, H5Files, Reader, Trajectories, first_line, uniform_step,
)
from pdebench_core.data.trajectories import as_float32
from pdebench_core.errors import DataError

VARIABLE = "u"


def mat_version(path: str) -> str | None:
    """``"7.3"`` or ``"5"`` from a ``.mat`` file's 128-byte header, ``None`` if not a MAT-file."""
    try:
        with open(path, "rb") as f:
            header = f.read(128)
    except OSError:
        return None
    if not header.startswith(b"MATLAB"):
        return None
    return "7.3" if b"MATLAB 7.3" in header else "5"


class MatV73Reader(Reader):
    """``u`` as h5py sees it, ``(T, *reversed(S), N)``; reads blocks of trajectories."""

    def __init__(self, path: str, shape: tuple[int, ...], chunks: tuple[int, ...] | None, dtype: str,
                 itemsize: int) -> None:
        self.path = path
        self.n = int(shape[-1])
        spatial = tuple(int(s) for s in reversed(shape[1:-1]))
        self.traj_shape = (int(shape[0]),) + spatial + (1,)
        self.dtype = dtype
        self.label = path
        stored_bytes = itemsize
        for s in shape[:-1]:
            stored_bytes *= int(s)
        self.block = int(chunks[-1]) if chunks else max(1, BLOCK_BYTES // stored_bytes)
        self.files = H5Files()
        self._cached: tuple[int, object] | None = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_cached"] = None
        return state

    def _to_traj(self, array):
        """``(t, *reversed(S), ...)`` -> ``(t, *S, ...)``: reverse the spatial axes."""
        n_space = len(self.traj_shape) - 2
        order = (0,) + tuple(range(n_space, 0, -1)) + tuple(range(n_space + 1, array.ndim))
        return array.transpose(order)

    def _read(self, index: int, frames: slice):
        start = index - index % self.block
        if self._cached is None or self._cached[0] != start:
            ds = self.files.get(self.path)[VARIABLE]
            self._cached = (start, ds[..., start:min(start + self.block, self.n)])  # (T, *rev S, B)
        block = self._cached[1]
        return self._to_traj(block[..., index - start])[frames][..., None]  # (t, *S, 1)

    def read_frames(self, frames: slice):
        """Frames ``frames`` of every trajectory, ``(N, t, *S, 1)``; reads whole contiguous planes."""
        import numpy as np

        planes = self.files.get(self.path)[VARIABLE][frames]  # (t, *rev S, N)
        planes = np.moveaxis(planes, -1, 0)  # (N, t, *rev S)
        n_space = len(self.traj_shape) - 2
        order = (0, 1) + tuple(range(n_space + 1, 1, -1))
        return as_float32(planes.transpose(order), f"frames {frames.start}:{frames.stop} of {self.label}")[..., None]


class MatV5Reader(Reader):
    """``u`` ``(N, *S, T)`` loaded by scipy (whole variable, on first use in each process)."""

    def __init__(self, path: str, shape: tuple[int, ...], dtype: str, u=None) -> None:
        self.path = path
        self.n = int(shape[0])
        self.traj_shape = (int(shape[-1]),) + tuple(int(s) for s in shape[1:-1]) + (1,)
        self.dtype = dtype
        self.label = path
        self._u = u

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_u"] = None
        return state

    def _read(self, index: int, frames: slice):
        import numpy as np

        if self._u is None:
            self._u = _loadmat(self.path)[VARIABLE]
        return np.moveaxis(self._u[index], -1, 0)[frames][..., None]  # (t, *S, 1)


def _loadmat(path: str) -> dict:
    try:
        import scipy.io
    except ImportError:
        raise DataError(f"{path} is an old-style (v5) MATLAB file; reading it needs scipy "
                        f"(pip install scipy), or re-save it with save(..., '-v7.3')") from None
    try:
        return scipy.io.loadmat(path, variable_names=[VARIABLE, "t"])
    except Exception as exc:  # scipy raises several types for corrupt files
        raise DataError(f"cannot read MATLAB file {path}: {first_line(exc)}") from None


def open_fno_mat(path: str) -> Found:
    """Describe an FNO ``.mat`` file (v7.3 through h5py, v5 through scipy)."""
    import numpy as np

    notes: list[str] = []
    if mat_version(path) == "5":
        content = _loadmat(path)
        if VARIABLE not in content:
            names = sorted(k for k in content if not k.startswith("__"))
            raise DataError(f"{path}: no variable '{VARIABLE}' (found {names})")
        u = content[VARIABLE]
        if not 3 <= u.ndim <= 5:
            raise DataError(f"{path}: '{VARIABLE}' has shape {u.shape}; expected (N, X[, Y[, Z]], T)")
        reader: Reader = MatV5Reader(path, u.shape, str(u.dtype), u=u)
        t = content.get("t")
        notes.append("old-style MATLAB file: the whole of 'u' is held in memory")
    else:
        files = H5Files()
        f = files.get(path)
        if VARIABLE not in f:
            raise DataError(f"{path}: no variable '{VARIABLE}' (found {sorted(f.keys())})")
        ds = f[VARIABLE]
        if not 3 <= ds.ndim <= 5:
            raise DataError(f"{path}: '{VARIABLE}' has MATLAB shape {tuple(reversed(ds.shape))}; "
                            f"expected (N, X[, Y[, Z]], T)")
        reader = MatV73Reader(path, ds.shape, ds.chunks, str(ds.dtype), ds.dtype.itemsize)
        t = np.asarray(f["t"][...]) if "t" in f else None
        files.close()
        notes.append("MATLAB v7.3: h5py axes reversed back to MATLAB order (N, X, Y, T)")
    dt = uniform_step(t, "t", notes) if t is not None else None
    return Found(layout="fno-mat", path=path, pools={"all": Trajectories(reader)}, dt=dt, notes=notes)
