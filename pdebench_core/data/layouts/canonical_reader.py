"""Reader for pdeb's own canonical HDF5 file (see :mod:`pdebench_core.data.canonical`)."""

from __future__ import annotations

from pdebench_core.data.canonical import spec_mismatches, stored_spec
from pdebench_core.data.layouts.common import Found, H5Files, Reader, Trajectories, dataset_label
from pdebench_core.errors import DataError

SPLIT_KEYS = ("train", "val", "test")


class DatasetReader(Reader):
    """One HDF5 dataset ``(N, T, *S, C)`` whose first axis indexes trajectories."""

    def __init__(self, path: str, key: str, shape: tuple[int, ...], dtype: str) -> None:
        self.path, self.key = path, key
        self.n = int(shape[0])
        self.traj_shape = tuple(int(s) for s in shape[1:])
        self.dtype = dtype
        self.label = dataset_label(path, key)
        self.files = H5Files()

    def _read(self, index: int, frames: slice):
        return self.files.get(self.path)[self.key][index, frames]


def open_canonical_layout(path: str) -> Found:
    """Describe a canonical file: its splits, stored spec and provenance."""
    files = H5Files()
    f = files.get(path)
    try:
        spec = stored_spec(f.attrs, path, required=False)
    except DataError:
        files.close()
        raise
    pools = {}
    for key in SPLIT_KEYS:
        if key in f:
            ds = f[key]
            if ds.ndim < 3:
                raise DataError(f"{path}: split '{key}' has shape {ds.shape}; expected (N, T, *S, C)")
            pools[key] = Trajectories(DatasetReader(path, key, ds.shape, str(ds.dtype)))
    files.close()
    if not pools:
        raise DataError(f"{path}: canonical file without any of the splits {', '.join(SPLIT_KEYS)}")
    first = next(iter(pools.values()))
    mismatches = spec_mismatches(spec, (len(first), *first.shape)) if spec else []
    if mismatches:
        raise DataError(f"{path}: {mismatches[0]}; 'pdeb data verify {path}' lists every problem")
    fields = tuple(spec["fields"]) if spec and spec.get("fields") else None
    return Found(
        layout="canonical", path=path, pools=pools, fields=fields,
        dt=spec.get("dt") if spec else None, params=dict(spec.get("params") or {}) if spec else {},
        spec=spec,
    )
