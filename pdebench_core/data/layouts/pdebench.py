"""Readers for the two PDEBench layouts.

Single file (``.hdf5``), one array per quantity, trajectories first:

* scalar equations: ``tensor`` ``(N, T, X[, Y[, Z]])`` plus ``x-coordinate``
  (``y-``, ``z-``) and ``t-coordinate`` (which may hold ``T`` or ``T + 1`` values);
* compressible CFD: ``density``, ``pressure``, ``Vx``, ``Vy``, ``Vz`` (those present),
  each ``(N, T, X[, Y[, Z]])``; channels come out in that order.

Multi-group (``.h5``): one group per sample (``"0000"``, ``"0001"``, ...) holding
``data`` ``(T, X[, Y], C)`` and ``grid/x`` (``grid/y``), ``grid/t``.
"""

from __future__ import annotations

from pdebench_core.data.layouts.common import Found, H5Files, Reader, Trajectories, uniform_step
from pdebench_core.errors import DataError

CFD_FIELDS = ("density", "pressure", "Vx", "Vy", "Vz")
COORD_KEYS = ("x-coordinate", "y-coordinate", "z-coordinate")
# PDEBench's merged files state their PDE parameters as root attributes (Data_Merge.py); the
# two whose pdeb name differs are renamed.
PARAM_NAMES = {"M": "mach", "Nu": "nu"}


class TensorReader(Reader):
    """``tensor`` ``(N, T, *S)``: one scalar field, a channel axis is appended."""

    def __init__(self, path: str, shape: tuple[int, ...], dtype: str) -> None:
        self.path = path
        self.n = int(shape[0])
        self.traj_shape = tuple(int(s) for s in shape[1:]) + (1,)
        self.dtype = dtype
        self.label = path
        self.files = H5Files()

    def _read(self, index: int, frames: slice):
        return self.files.get(self.path)["tensor"][index, frames][..., None]  # (t, *S, 1)


class FieldsReader(Reader):
    """Several arrays ``(N, T, *S)``, one per field, stacked on a last channel axis."""

    def __init__(self, path: str, keys: tuple[str, ...], shape: tuple[int, ...], dtype: str) -> None:
        self.path, self.keys = path, keys
        self.n = int(shape[0])
        self.traj_shape = tuple(int(s) for s in shape[1:]) + (len(keys),)
        self.dtype = dtype
        self.label = path
        self.files = H5Files()

    def _read(self, index: int, frames: slice):
        import numpy as np

        f = self.files.get(self.path)
        return np.stack([f[k][index, frames] for k in self.keys], axis=-1)  # (t, *S, C)


def open_pdebench(path: str) -> Found:
    """Describe a PDEBench single-file ``.hdf5`` (``tensor`` or CFD fields)."""
    import numpy as np

    files = H5Files()
    f = files.get(path)
    notes: list[str] = []
    if "tensor" in f:
        ds = f["tensor"]
        if not 3 <= ds.ndim <= 5:
            raise DataError(f"{path}: 'tensor' has shape {ds.shape}; expected (N, T, X[, Y[, Z]])")
        reader: Reader = TensorReader(path, ds.shape, str(ds.dtype))
        fields = None
    else:
        keys = tuple(k for k in CFD_FIELDS if k in f)
        if not keys:
            raise DataError(f"{path}: neither 'tensor' nor any of {', '.join(CFD_FIELDS)} found")
        shapes = {k: f[k].shape for k in keys}
        if len(set(shapes.values())) != 1:
            raise DataError(f"{path}: CFD fields differ in shape: {shapes}")
        shape = shapes[keys[0]]
        if not 3 <= len(shape) <= 5:
            raise DataError(f"{path}: '{keys[0]}' has shape {shape}; expected (N, T, X[, Y[, Z]])")
        reader = FieldsReader(path, keys, shape, str(f[keys[0]].dtype))
        fields = keys
    n_space = len(reader.traj_shape) - 2
    coords = [np.asarray(f[k][...]).reshape(-1) for k in COORD_KEYS[:n_space] if k in f]
    dt = uniform_step(f["t-coordinate"][...], "t-coordinate", notes) if "t-coordinate" in f else None
    if "t-coordinate" in f:
        n_t, n_frames = f["t-coordinate"].size, reader.traj_shape[0]
        if n_t == n_frames + 1:
            notes.append(f"t-coordinate holds {n_t} values for {n_frames} frames (PDEBench stores the end time too)")
    params = stated_params(f.attrs)
    files.close()
    return Found(
        layout="pdebench", path=path, pools={"all": Trajectories(reader)}, fields=fields, dt=dt,
        coords=coords if len(coords) == n_space else None, notes=notes, params=params,
    )


def stated_params(attrs) -> dict[str, float]:
    """The numeric scalar attributes of a PDEBench file (``M``, ``eta``, ``zeta``, ``Nu``, ``beta``,
    ...), under pdeb's parameter names."""
    import numpy as np

    params = {}
    for key, value in attrs.items():
        value = np.asarray(value)
        if value.shape == () and np.issubdtype(value.dtype, np.number):
            params[PARAM_NAMES.get(key, key)] = float(value)
    return params


class GroupsReader(Reader):
    """One group per trajectory, each with ``data`` ``(T, *S, C)`` (or ``(T, *S)``)."""

    def __init__(self, path: str, groups: list[str], shape: tuple[int, ...], add_channel: bool,
                 dtype: str) -> None:
        self.path, self.groups, self.add_channel = path, groups, add_channel
        self.n = len(groups)
        self.traj_shape = tuple(int(s) for s in shape) + ((1,) if add_channel else ())
        self.dtype = dtype
        self.label = path
        self.files = H5Files()

    def _read(self, index: int, frames: slice):
        data = self.files.get(self.path)[self.groups[index]]["data"]
        if tuple(data.shape) != self.traj_shape[: data.ndim]:
            raise DataError(f"{self.path}: sample '{self.groups[index]}' has shape {data.shape}, "
                            f"the first sample {self.traj_shape}")
        array = data[frames]  # (t, *S, C) or (t, *S)
        return array[..., None] if self.add_channel else array


def open_pdebench_multi(path: str) -> Found:
    """Describe a PDEBench multi-group ``.h5`` (diffusion-reaction, shallow water, ...)."""
    import h5py
    import numpy as np

    files = H5Files()
    f = files.get(path)
    groups = sorted(k for k, v in f.items() if isinstance(v, h5py.Group) and "data" in v)
    if not groups:
        raise DataError(f"{path}: no sample groups with a 'data' array")
    first = f[groups[0]]
    shape = tuple(first["data"].shape)
    grid = first.get("grid")
    axes = [a for a in ("x", "y", "z") if grid is not None and a in grid]
    # With grid axes the channel axis is known to exist iff data has one more axis.
    n_space = len(axes) if axes else len(shape) - 2
    if len(shape) == n_space + 1:
        add_channel = True
    elif len(shape) == n_space + 2:
        add_channel = False
    else:
        raise DataError(f"{path}: sample '{groups[0]}' data has shape {shape} but {len(axes)} grid axes")
    last_shape = tuple(f[groups[-1]]["data"].shape)
    if last_shape != shape:
        raise DataError(f"{path}: samples differ in shape ({groups[0]}: {shape}, {groups[-1]}: {last_shape})")
    notes: list[str] = []
    dt = uniform_step(grid["t"][...], "grid/t", notes) if grid is not None and "t" in grid else None
    coords = [np.asarray(grid[a][...]).reshape(-1) for a in axes] if axes else None
    reader = GroupsReader(path, groups, shape, add_channel, str(first["data"].dtype))
    files.close()
    return Found(layout="pdebench-multi", path=path, pools={"all": Trajectories(reader)}, dt=dt,
                 coords=coords, notes=notes)
