"""Reader for The Well's HDF5 layout (Ohana et al., NeurIPS 2024 Datasets and Benchmarks).

A Well file holds the trajectories of one simulation setting:

* ``t0_fields``, ``t1_fields``, ``t2_fields``: scalar, vector and tensor fields, one array
  per field, named in the group attribute ``field_names``. Each array's attributes say
  which axes it has: ``sample_varying`` (a leading trajectory axis), ``time_varying`` (a
  time axis), ``dim_varying`` (one flag per spatial axis; a missing axis means the field
  is constant along it). A ``t1`` field ends with one axis of ``n_spatial_dims``
  components, a ``t2`` field with two.
* ``dimensions``: ``time`` and one coordinate array per spatial axis, named in the
  attribute ``spatial_dims``.
* ``boundary_conditions``: one group per boundary, with ``bc_type`` (``PERIODIC``,
  ``WALL``, ``OPEN``) and the ``associated_dims`` it lies on.
* ``scalars``: the simulation parameters, named in ``field_names``.

pdeb reads every field into channels in The Well's own order (``WellDataset`` with
``flatten_tensors``): the time-varying fields of ``t0``, then ``t1``, then ``t2``, each
in ``field_names`` order, a vector as ``<name>_<dim>`` (``velocity_x``, ``velocity_y``),
a tensor as ``<name>_<dim><dim>`` (``D_xx``, ``D_xy``, ...). Fields that do not vary in
time come after them, repeated on every frame (``constants="repeat"``, the default), and
the spec's ``scored_fields`` parameter lists only the time-varying ones, so metrics never
score a constant input; ``constants="drop"`` leaves them out. Fields stored without a
spatial axis are repeated along it.

The directory layout ``<dataset>/data/{train,valid,test}/*.hdf5`` gives the splits
(``valid`` becomes ``val``); files are read in sorted path order, as ``WellDataset``
reads them. The dataset's ``stats.yaml`` (per-field ``mean``, ``std``, ``rms`` of the
train split) is found next to ``data/``.
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any, Sequence

from pdebench_core.data.layouts.common import Found, H5Files, Reader, Trajectories, uniform_step
from pdebench_core.errors import DataError, UsageError

FIELD_GROUPS = ("t0_fields", "t1_fields", "t2_fields")
#: Every group a Well file has (``WellDataset`` reads all of them).
REQUIRED_GROUPS = ("dimensions", "boundary_conditions", "scalars", *FIELD_GROUPS)
#: Split folders of a Well dataset and the pdeb split each becomes.
SPLIT_FOLDERS = {"train": "train", "valid": "val", "test": "test"}
#: What to do with fields that do not vary in time.
CONSTANT_MODES = ("repeat", "drop")
STATS_FILE = "stats.yaml"
SUFFIXES = (".hdf5", ".h5")


def _names(value: Any) -> list[str]:
    """An HDF5 attribute holding names (a string, bytes, or an array of them; empty arrays too)."""
    import numpy as np

    if value is None:
        return []
    if isinstance(value, bytes):
        return [value.decode()]
    if isinstance(value, str):
        return [value]
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(value).reshape(-1).tolist()]


def looks_like_well(f) -> bool:
    """Whether an open HDF5 file is laid out as The Well's (any of its field groups, or both
    ``dimensions`` and ``boundary_conditions``); incomplete files count, so that reading
    them names what is missing."""
    return any(g in f for g in FIELD_GROUPS) or ("dimensions" in f and "boundary_conditions" in f)


def _hdf5_files(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix in SUFFIXES), key=str)


def _split_root(folder: Path) -> Path | None:
    """The folder holding ``train/``, ``valid/``, ``test/`` of Well files, if any."""
    for root in (folder / "data", folder):
        if any((root / s).is_dir() and _hdf5_files(root / s) for s in SPLIT_FOLDERS):
            return root
    return None


def _first_file(folder: Path) -> Path | None:
    root = _split_root(folder)
    if root is not None:
        return next(f for s in SPLIT_FOLDERS if (root / s).is_dir() for f in _hdf5_files(root / s))
    files = _hdf5_files(folder)
    return files[0] if files else None


def is_well_folder(path: str | Path) -> bool:
    """Whether a folder holds Well files: a dataset (``data/train/...``), its ``data/``
    folder, or one split folder of them."""
    first = _first_file(Path(path))
    if first is None:
        return False
    files = H5Files(max_open=1)
    try:
        return looks_like_well(files.get(str(first)))
    except DataError:
        return False
    finally:
        files.close()


def find_stats_file(path: str | Path) -> Path | None:
    """The dataset's ``stats.yaml`` for a Well dataset folder, its ``data/`` or split folder,
    or one of its files (``None`` when there is none)."""
    p = Path(path).resolve()
    folders = ([p] if p.is_dir() else []) + list(p.parents)[:3]
    for folder in folders:
        candidate = folder / STATS_FILE
        if candidate.is_file() and (folder == p or (folder / "data").is_dir()):
            return candidate
    return None


@dataclass(frozen=True)
class Field:
    """One stored field and the channels it becomes.

    Attributes:
        group: ``t0_fields``, ``t1_fields`` or ``t2_fields``.
        name: The field's name (``velocity``).
        order: Tensor order (0, 1 or 2).
        time_varying: Whether it has a time axis.
        sample_varying: Whether it has a trajectory axis.
        dim_varying: Per spatial axis, whether the array has it.
        channels: Channel names (``velocity_x``, ``velocity_y``).
    """

    group: str
    name: str
    order: int  # 0: scalar, 1: vector, 2: tensor
    time_varying: bool
    sample_varying: bool
    dim_varying: tuple[bool, ...]
    channels: tuple[str, ...]

    def axes(self, dims: Sequence[str]) -> list[str]:
        """Names of the stored array's axes, for messages."""
        axes = (["trajectory"] if self.sample_varying else []) + (["time"] if self.time_varying else [])
        axes += [d for d, used in zip(dims, self.dim_varying) if used]
        return axes + ["component"] * self.order


def _flag(attrs, key: str, where: str) -> bool:
    if key not in attrs:
        raise DataError(f"{where} lacks the attribute '{key}' that every Well field has; the file does not "
                        f"follow The Well's layout")
    return bool(attrs[key])


def _fields_of(f, path: str, dims: Sequence[str]) -> list[Field]:
    """Every field of the file, in The Well's channel order before the constant split."""
    fields = []
    for order, group in enumerate(FIELD_GROUPS):
        for name in _names(f[group].attrs.get("field_names")):
            where = f"{path}: field '{group}/{name}'"
            if name not in f[group]:
                raise DataError(f"{where} is named in field_names but not stored; the file is incomplete")
            attrs = f[group][name].attrs
            used = tuple(bool(v) for v in attrs["dim_varying"]) if "dim_varying" in attrs else (True,) * len(dims)
            if len(used) != len(dims):
                raise DataError(f"{where} has {len(used)} dim_varying flags for {len(dims)} spatial axes")
            suffixes = ["".join(c) for c in itertools.product(dims, repeat=order)]
            channels = tuple(f"{name}_{s}" if s else name for s in suffixes)
            fields.append(Field(group, name, order, _flag(attrs, "time_varying", where),
                                _flag(attrs, "sample_varying", where), used, channels))
    return fields


def _check_field(f, path: str, field: Field, dims: Sequence[str], n: int, n_frames: int,
                 grid: Sequence[int]) -> None:
    """Refuse a field whose rank or axis sizes disagree with its attributes.

    An axis the field does not vary along (``dim_varying`` False) may be left out or kept
    with size 1 (what ``WellDataset`` repeats).
    """
    shape = tuple(f[field.group][field.name].shape)
    axes = field.axes(dims)
    lead = ([n] if field.sample_varying else []) + ([n_frames] if field.time_varying else [])
    tail = [len(dims)] * field.order
    absent = lead + [g for g, used in zip(grid, field.dim_varying) if used] + tail
    kept = lead + [g if used else 1 for g, used in zip(grid, field.dim_varying)] + tail
    if len(shape) not in (len(absent), len(kept)):
        raise DataError(f"{path}: field '{field.group}/{field.name}' has rank {len(shape)} (shape {shape}) but a "
                        f"t{field.order} field with these attributes has rank {len(axes)}: ({', '.join(axes)}); "
                        f"the file does not follow The Well's layout")
    if shape not in (tuple(absent), tuple(kept)):
        raise DataError(f"{path}: field '{field.group}/{field.name}' has shape {shape}, expected {tuple(absent)} "
                        f"({', '.join(axes)})")


@dataclass(frozen=True)
class WellFile:
    """One file: its trajectories, frames and spatial grid."""

    path: str
    n: int
    n_frames: int
    grid: tuple[int, ...]
    dims: tuple[str, ...]
    fields: tuple[Field, ...]


def _describe_file(f, path: str) -> WellFile:
    """Check one open file's structure and list its fields (metadata only)."""
    missing = [g for g in REQUIRED_GROUPS if g not in f]
    if len(missing) == len(REQUIRED_GROUPS):
        raise DataError(f"{path}: not a Well file: it has none of the groups {', '.join(REQUIRED_GROUPS)}")
    if missing:
        raise DataError(f"{path}: not a complete Well file: group '{missing[0]}' is missing (a Well file has "
                        f"{', '.join(REQUIRED_GROUPS)}); download the file again")
    dims_group = f["dimensions"]
    dims = tuple(_names(dims_group.attrs.get("spatial_dims")))
    absent = [d for d in ("time", *dims) if d not in dims_group]
    if not dims or absent:
        what = f"coordinate '{absent[0]}'" if absent else "attribute 'spatial_dims'"
        raise DataError(f"{path}: 'dimensions' lacks its {what}; the file does not follow The Well's layout")
    grid = tuple(int(dims_group[d].shape[-1]) for d in dims)
    n_frames = int(dims_group["time"].shape[-1])
    fields = _fields_of(f, path, dims)
    if not any(field.time_varying for field in fields):
        raise DataError(f"{path}: no field varies in time; there is nothing to predict")
    n = _trajectory_count(f, path, fields)
    for field in fields:
        _check_field(f, path, field, dims, n, n_frames, grid)
    return WellFile(path, n, n_frames, grid, dims, tuple(fields))


def _trajectory_count(f, path: str, fields: Sequence[Field]) -> int:
    if "n_trajectories" in f.attrs:
        return int(f.attrs["n_trajectories"])
    varying = [field for field in fields if field.sample_varying]
    if varying:
        return int(f[varying[0].group][varying[0].name].shape[0])
    raise DataError(f"{path}: neither the attribute 'n_trajectories' nor a per-trajectory field says how many "
                    f"trajectories the file holds")


def _channel_layout(fields: Sequence[Field], constants: str) -> list[Field]:
    """Time-varying fields first, then (``repeat``) the constant ones: The Well's order."""
    varying = [field for field in fields if field.time_varying]
    fixed = [field for field in fields if not field.time_varying]
    return varying + (fixed if constants == "repeat" else [])


class WellReader(Reader):
    """One split: the trajectories of its files, concatenated in sorted path order.

    Attributes:
        files: The split's files.
        fields: Fields in channel order.
        sources: Per channel, ``(field name, component index)``: where its statistics
            sit in ``stats.yaml``.
        stats_file: The dataset's ``stats.yaml`` when found, else ``None``.
    """

    def __init__(self, files: Sequence[WellFile], fields: Sequence[Field], n_frames: int, dtype: str,
                 label: str, stats_file: str | None = None) -> None:
        self.files = list(files)
        self.starts = list(itertools.accumulate([0] + [wf.n for wf in self.files[:-1]]))
        self.n = sum(wf.n for wf in self.files)
        self.fields = list(fields)
        self.grid = self.files[0].grid
        self.traj_shape = (n_frames, *self.grid, sum(len(field.channels) for field in self.fields))
        self.dtype = dtype
        self.label = label
        self.stats_file = stats_file
        self.sources = [(field.name, k) for field in self.fields for k in range(len(field.channels))]
        self.handles = H5Files()

    def _read(self, index: int, frames: slice):
        import numpy as np

        number = bisect.bisect_right(self.starts, index) - 1
        sample = index - self.starts[number]
        f = self.handles.get(self.files[number].path)
        start, stop, step = frames.indices(self.traj_shape[0])
        window = slice(start, stop, step)
        count = len(range(start, stop, step))
        parts = [self._field(f, field, sample, window, count) for field in self.fields]
        return np.concatenate(parts, axis=-1)  # (t, *S, C)

    def _field(self, f, field: Field, sample: int, window: slice, count: int):
        """One field's frames as ``(t, *S, components)``, missing axes repeated."""
        import numpy as np

        index = ((sample,) if field.sample_varying else ()) + ((window,) if field.time_varying else ())
        data = np.asarray(f[field.group][field.name][index])
        if not field.time_varying:
            data = data[None]
        if data.ndim < 1 + len(self.grid) + field.order:  # axes it does not vary along are left out
            for axis, used in enumerate(field.dim_varying):
                if not used:
                    data = np.expand_dims(data, 1 + axis)
        data = data.reshape(data.shape[:1 + len(self.grid)] + (-1,))  # components flattened row-major
        return np.broadcast_to(data, (count, *self.grid, data.shape[-1]))


@dataclass
class WellFound(Found):
    """What :func:`open_well` found: :class:`Found` plus the boundary the file states.

    Attributes:
        boundary: ``periodic``, ``wall``, ``open``, or per axis (``x: periodic, y: wall``)
            when the axes differ; ``None`` when the file states none.
        stats_file: The dataset's ``stats.yaml``, when present.
    """

    boundary: str | None = None
    stats_file: str | None = None


def _split_files(path: Path) -> dict[str, list[Path]]:
    """``{split: files}``: the dataset's own splits, or one pool ``all``."""
    if path.is_file():
        return {"all": [path]}
    root = _split_root(path)
    if root is None:
        files = _hdf5_files(path)
        if not files:
            raise DataError(f"{path}: no .hdf5 files and no train/valid/test folders of them")
        return {"all": files}
    return {split: _hdf5_files(root / folder) for folder, split in SPLIT_FOLDERS.items()
            if (root / folder).is_dir() and _hdf5_files(root / folder)}


def _same_layout(first: WellFile, other: WellFile) -> None:
    if other.grid != first.grid or other.dims != first.dims:
        raise DataError(f"{other.path}: grid {other.grid} over {other.dims} differs from {first.path}'s "
                        f"{first.grid} over {first.dims}; one dataset holds one resolution")
    if [(fd.group, fd.name, fd.time_varying) for fd in other.fields] != \
            [(fd.group, fd.name, fd.time_varying) for fd in first.fields]:
        raise DataError(f"{other.path}: fields differ from those of {first.path}; point at one Well dataset")


def _boundary(f) -> str | None:
    """``periodic`` when every axis is, else ``x: periodic, y: wall/open`` in axis order, the
    kind at the low end of an axis first (from each group's ``mask``; in group order without one)."""
    dims = _names(f["dimensions"].attrs.get("spatial_dims"))
    kinds: dict[str, list[tuple[int, str]]] = {d: [] for d in dims}  # (position, kind)
    for name in f["boundary_conditions"]:
        group = f["boundary_conditions"][name]
        kind = _names(group.attrs.get("bc_type"))
        if not kind:
            continue
        for position in _sides(group):
            for dim in _names(group.attrs.get("associated_dims")):
                if dim in kinds:
                    kinds[dim].append((position, kind[0].lower()))
    stated = {}
    for dim, found in kinds.items():
        ordered = [kind for _, kind in sorted(found, key=lambda item: item[0])]
        unique = [kind for i, kind in enumerate(ordered) if kind not in ordered[:i]]
        if unique:
            stated[dim] = "/".join(unique)
    if not stated:
        return None
    if len(set(stated.values())) == 1 and len(stated) == len(dims):
        return next(iter(stated.values()))
    return ", ".join(f"{d}: {stated.get(d, 'not stated')}" for d in dims)


def _sides(group) -> tuple[int, ...]:
    """Where a boundary group sits along its axis: 0 (low end), 1 (high end) or both, from its
    one-dimensional ``mask``; (2,) when it has none (after the masked ones, in group order)."""
    import numpy as np

    mask = group.get("mask")
    if mask is None or mask.ndim != 1 or mask.shape[0] < 2:
        return (2,)
    values = np.asarray(mask[()], dtype=bool)
    return tuple(side for side, on in ((0, values[0]), (1, values[-1])) if on) or (2,)


def _scalar_values(f, values: dict[str, list[float]], notes: list[str]) -> None:
    """Collect the constant scalars (simulation parameters) of one file."""
    import numpy as np

    group = f["scalars"]
    for name in _names(group.attrs.get("field_names")):
        if name not in group:
            continue
        if bool(group[name].attrs.get("time_varying", False)):
            note = f"time-varying scalar '{name}' is not used (trajectories hold fields only)"
            if note not in notes:
                notes.append(note)
            continue
        values.setdefault(name, []).extend(float(v) for v in np.asarray(group[name][()]).reshape(-1))


def _params(values: dict[str, list[float]], notes: list[str]) -> dict[str, Any]:
    """One value per parameter, or ``[min, max]`` when it varies between trajectories or files."""
    params: dict[str, Any] = {}
    for name, seen in values.items():
        low, high = min(seen), max(seen)
        if low == high:
            params[name] = low
        else:
            params[name] = [low, high]
            notes.append(f"parameter '{name}' varies: {len(set(seen))} values in [{low:g}, {high:g}]")
    return params


def _time_step(f, notes: list[str]) -> float | None:
    time = f["dimensions"]["time"]
    values = time[0] if time.ndim > 1 else time[()]
    return uniform_step(values, "time", notes)


def _coords(f, dims: Sequence[str]) -> list[Any]:
    import numpy as np

    group = f["dimensions"]
    out = []
    for d in dims:
        values = np.asarray(group[d][()])
        out.append(values[0] if values.ndim > 1 else values)
    return out


@dataclass
class _Facts:
    """What the first file says for the whole dataset (grid, time step, boundary, ...)."""

    first: WellFile
    boundary: str | None
    dt: float | None
    coords: list[Any]
    dtype: str
    name: str | None
    other_boundaries: set = dataclass_field(default_factory=set)


def _facts(f, info: WellFile, notes: list[str]) -> _Facts:
    dtype = str(next(f[fd.group][fd.name].dtype for fd in info.fields if fd.time_varying))
    name = _names(f.attrs.get("dataset_name"))
    return _Facts(info, _boundary(f), _time_step(f, notes), _coords(f, info.dims), dtype, name[0] if name else None)


def _note_boundary(f, path: str, facts: _Facts, notes: list[str]) -> None:
    """Say so when a later file states another boundary than the first (which the spec keeps)."""
    boundary = _boundary(f)
    if boundary != facts.boundary and boundary not in facts.other_boundaries:
        facts.other_boundaries.add(boundary)  # once per distinct boundary, not once per file
        notes.append(f"{Path(path).name} states the boundary '{boundary}', the first file '{facts.boundary}' "
                     f"(the spec keeps the first)")


def open_well(path: str, constants: str = "repeat") -> WellFound:
    """Describe a Well file, split folder or dataset folder (metadata and scalars only).

    Args:
        path: A ``.hdf5`` file, a folder of them, or a dataset folder with
            ``data/{train,valid,test}/``.
        constants: ``repeat`` (constant fields become channels after the time-varying
            ones, repeated on every frame) or ``drop``.

    Raises:
        UsageError: an unknown ``constants`` mode.
        DataError: a missing group, a field of unexpected rank, files that disagree.
    """
    if constants not in CONSTANT_MODES:
        raise UsageError(f"constants='{constants}' is not one of {', '.join(CONSTANT_MODES)}; "
                         f"write constants=repeat or constants=drop")
    if not Path(path).exists():
        raise DataError(f"{path}: no such file or folder")
    handles = H5Files(max_open=4)
    notes: list[str] = []
    described: dict[str, list[WellFile]] = {}
    scalars: dict[str, list[float]] = {}
    facts: _Facts | None = None
    try:
        for split, files in _split_files(Path(path)).items():
            for file in files:
                f = handles.get(str(file))
                info = _describe_file(f, str(file))
                if facts is None:
                    facts = _facts(f, info, notes)
                else:
                    _same_layout(facts.first, info)
                    _note_boundary(f, info.path, facts, notes)
                _scalar_values(f, scalars, notes)
                described.setdefault(split, []).append(info)
    finally:
        handles.close()
    return _found(path, described, facts, constants, _params(scalars, notes), notes)


def _found(path: str, described: dict[str, list[WellFile]], facts: _Facts, constants: str,
           params: dict[str, Any], notes: list[str]) -> WellFound:
    """Assemble the :class:`WellFound` from the described files."""
    frames = [wf.n_frames for files in described.values() for wf in files]
    n_frames = min(frames)
    if len(set(frames)) > 1:
        notes.append(f"files hold {min(frames)} to {max(frames)} frames; every trajectory is cut to {n_frames}")
    fields = _channel_layout(facts.first.fields, constants)
    fixed = [fd.channels for fd in facts.first.fields if not fd.time_varying]
    fixed_names = ", ".join(c for channels in fixed for c in channels)
    if fixed and constants == "repeat":
        params["scored_fields"] = [c for fd in fields if fd.time_varying for c in fd.channels]
        notes.append(f"constant fields {fixed_names} are repeated on every frame after the time-varying ones "
                     f"and are not scored")
    elif fixed:
        notes.append(f"constant fields {fixed_names} are left out")
    if facts.name:
        notes.append(f"The Well dataset '{facts.name}'")
    if facts.boundary:
        notes.append(f"boundary (from boundary_conditions): {facts.boundary}")
    stats = find_stats_file(path)
    stats_file = str(stats) if stats else None
    pools = {}
    for split, files in described.items():
        label = str(Path(files[0].path).parent) if len(files) > 1 or Path(path).is_dir() else files[0].path
        pools[split] = Trajectories(WellReader(files, fields, n_frames, facts.dtype, label, stats_file))
    return WellFound(layout="well", path=str(path), pools=pools, fields=tuple(c for fd in fields for c in fd.channels),
                     dt=facts.dt, coords=facts.coords, params=params, notes=notes, boundary=facts.boundary,
                     stats_file=stats_file)


def published_stats(stats_file: str | Path, sources: Sequence[tuple[str, int]]) -> dict[str, list[float]] | None:
    """Per-channel ``mean``, ``std`` and ``rms`` from a Well ``stats.yaml``.

    Args:
        stats_file: The dataset's ``stats.yaml``.
        sources: Per channel, ``(field name, component index)`` (a reader's ``sources``).

    Returns:
        ``{"mean": [...], "std": [...], "rms": [...]}`` in channel order, or ``None`` when
        the file lacks a statistic or a field, or cannot be read as YAML: the statistics are
        then computed from the data, as for a dataset without the file.
    """
    import numpy as np
    import yaml

    try:
        stats = yaml.safe_load(Path(stats_file).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    out: dict[str, list[float]] = {}
    for key in ("mean", "std", "rms"):
        table = (stats or {}).get(key) if isinstance(stats, dict) else None
        if not isinstance(table, dict) or any(name not in table for name, _ in sources):
            return None
        values = []
        for name, component in sources:
            flat = np.asarray(table[name], dtype=np.float64).reshape(-1)
            if component >= flat.size:
                return None
            values.append(float(flat[component]))
        out[key] = values
    return out
