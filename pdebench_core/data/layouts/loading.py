"""Layout detection, the splitting rule, and turning a published file into a dataset."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from pdebench_core.data.layouts.common import Found, first_line
from pdebench_core.data.remote import as_url, local_copy, open_for_reading, stat
from pdebench_core.errors import DataError, UsageError, did_you_mean
from pdebench_core.spec import DataSpec

SPLITS = ("train", "val", "test")
#: Shares used when the requested counts do not fit in a file without splits.
FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}


class SplitWarning(UserWarning):
    """A request did not fit the file (split sizes, horizon); a documented fallback was used."""



def _openers() -> dict[str, Callable[[str], Found]]:
    from pdebench_core.data.layouts.canonical_reader import open_canonical_layout
    from pdebench_core.data.layouts.cfdbench import open_cfdbench
    from pdebench_core.data.layouts.dpot import open_dpot_file, open_dpot_folder
    from pdebench_core.data.layouts.matlab import open_fno_mat
    from pdebench_core.data.layouts.pdearena import open_pdearena
    from pdebench_core.data.layouts.pdebench import open_pdebench, open_pdebench_multi
    from pdebench_core.data.layouts.well import open_well

    def dpot(path: str) -> Found:
        return open_dpot_folder(path) if Path(path).is_dir() else open_dpot_file(path)

    return {
        "canonical": open_canonical_layout,
        "pdebench": open_pdebench,
        "pdebench-multi": open_pdebench_multi,
        "fno-mat": open_fno_mat,
        "dpot": dpot,
        "pdearena": open_pdearena,
        "cfdbench": open_cfdbench,
        "well": open_well,
    }


#: Layout name -> one-line description (``format=`` accepts these names).
LAYOUTS = {
    "canonical": "pdeb canonical HDF5: /train, /val, /test (N, T, *S, C) + spec attributes",
    "pdebench": "PDEBench single file: 'tensor' (N, T, X[, Y]) or CFD 'density', 'pressure', 'Vx', ...",
    "pdebench-multi": "PDEBench multi-group .h5: one group per sample with 'data' (T, X[, Y], C)",
    "fno-mat": "FNO Navier-Stokes .mat: 'u' (N, X, Y, T) in MATLAB order (v7.3 or v5)",
    "dpot": "DPOT preprocessed: 'data' (N, X, Y, T, C), or folders of data_<i>.hdf5 (X, Y, T, C)",
    "pdearena": "PDEArena Navier-Stokes (plain or conditioned): groups train/valid/test with u, vx, vy "
                "(n, T, X, Y) and buo_y (n,)",
    "cfdbench": "CFDBench as DPOT preprocessed it: ns2d_cdb_train.hdf5 / ns2d_cdb_test.hdf5, 'data' "
                "(N, X, Y, T, 3) with channels u, v, mask",
    "well": "The Well: t0/t1/t2_fields, dimensions, boundary_conditions, scalars; one file, a folder of them, "
            "or a dataset folder with data/{train,valid,test}/",
}
ALIASES = {"auto": "auto", "pdeb": "canonical", "mat": "fno-mat", "pdebench-single": "pdebench",
           "pdebench-h5": "pdebench-multi"}


def _normalise_format(format: str | None) -> str:
    name = (format or "auto").strip().lower()
    name = ALIASES.get(name, name)
    if name != "auto" and name not in LAYOUTS:
        raise UsageError(f"unknown data format '{format}'{did_you_mean(name, list(LAYOUTS))}; "
                         f"known formats: auto, {', '.join(LAYOUTS)}")
    return name


def detect_layout(path: str | Path) -> str:
    """Name of the layout at ``path``, found by inspecting keys and attributes.

    Rules, in order: a folder with ``train/``/``test/`` sub-folders or ``data_<i>.hdf5``
    files is ``dpot``; a folder holding DPOT's CFDBench file (``ns2d_cdb_train.hdf5``...)
    is ``cfdbench``; a folder of ``.h5`` files with PDEArena groups is ``pdearena``;
    a folder of Well files (or a Well dataset folder with ``data/train/``...) is ``well``;
    a v5 MAT-file header is ``fno-mat``; then, inside HDF5: ``pdeb_format`` attribute
    -> ``canonical``; any of The Well's groups ``t0_fields``, ``t1_fields``, ``t2_fields``
    (or both ``dimensions`` and ``boundary_conditions``) -> ``well``; ``tensor`` or
    ``density``/``Vx``... -> ``pdebench``; groups ``train``/``valid``/``test`` with ``u``, ``vx``, ``vy`` -> ``pdearena``; a MATLAB 7.3
    header or ``MATLAB_class`` attributes with ``u`` -> ``fno-mat``; a root ``data``
    array ``(N, X, Y, T, 3)`` in a file named like DPOT's CFDBench file (``*_cdb_*``,
    ``*cfdbench*``) -> ``cfdbench``; any other root ``data`` array -> ``dpot``; groups
    each holding ``data`` -> ``pdebench-multi``. A URL names one file and follows the
    file rules, read in ranges (:mod:`pdebench_core.data.remote`).

    Raises:
        DataError: the path is missing, unreadable or matches no known layout.
    """
    from pdebench_core.data.layouts.cfdbench import is_cfdbench
    from pdebench_core.data.layouts.common import H5Files
    from pdebench_core.data.layouts.dpot import indexed_files
    from pdebench_core.data.layouts.matlab import mat_version
    from pdebench_core.data.layouts.pdearena import GROUPS, is_pdearena_group
    from pdebench_core.data.layouts.well import is_well_folder

    url = as_url(path)
    if url is not None:  # one file, read in ranges (see pdebench_core.data.remote)
        return _file_layout(url, _remote_mat_version(url))
    p = Path(path)
    if not p.exists():
        raise DataError(f"{path}: no such file or folder")
    if p.is_dir():
        for sub in (p, p / "train", p / "test"):
            if sub.is_dir() and indexed_files(sub):
                return "dpot"
        if is_cfdbench(p):
            return "cfdbench"
        shards = sorted(q for q in p.iterdir() if q.suffix in (".h5", ".hdf5"))
        if shards:
            files = H5Files()
            f = files.get(str(shards[0]))
            found = any(g in f and is_pdearena_group(f[g]) for g in GROUPS)
            files.close()
            if found:
                return "pdearena"
        if is_well_folder(p):
            return "well"
        raise DataError(f"{path}: folder matches no known layout (expected DPOT data_<i>.hdf5 files, "
                        f"train/ and test/ folders of them, DPOT's CFDBench files, PDEArena .h5 shards or Well "
                        f".hdf5 files); write the arrays as a canonical file, or read the folder in a dataset "
                        f"plugin with FileTrajectories (docs/data-format.md, docs/writing-plugins.md)")
    return _file_layout(str(p), mat_version(str(p)))


def _file_layout(path: str, version: str | None) -> str:
    """The layout of one file (local or a URL), given its MAT-file version (``None``: not one)."""
    from pdebench_core.data.layouts.common import H5Files

    if version == "5":
        return "fno-mat"
    files = H5Files()
    f = files.get(path)
    try:
        layout, keys = _layout_of_hdf5(f, version)
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        raise DataError(f"cannot inspect {path}: {first_line(exc)}") from None
    finally:
        files.close()
    if layout is not None:
        return layout
    shown = ", ".join(keys[:8]) + (", ..." if len(keys) > 8 else "")
    raise DataError(f"{path}: no layout pdeb reads matches it (top-level keys: {shown or 'none'}); if it is meant "
                    f"to be one of {', '.join(LAYOUTS)}, give that format to see what does not fit, else write "
                    f"the arrays as a canonical file (docs/data-format.md)")


def _remote_mat_version(url: str) -> str | None:
    """``"7.3"``, ``"5"`` or ``None`` from the 128-byte header of a remote file (as ``mat_version``)."""
    from pdebench_core.data.layouts.matlab import mat_version

    source = open_for_reading(url)
    if isinstance(source, str):
        return mat_version(source)
    try:
        header = source.read(128)
    finally:
        source.close()
    if not header.startswith(b"MATLAB"):
        return None
    return "7.3" if b"MATLAB 7.3" in header else "5"


def _layout_of_hdf5(f, version: str | None) -> tuple[str | None, list[str]]:
    import h5py

    from pdebench_core.data.layouts.cfdbench import has_cfdbench_name, has_cfdbench_shape
    from pdebench_core.data.layouts.matlab import VARIABLE
    from pdebench_core.data.layouts.pdearena import GROUPS, is_pdearena_group
    from pdebench_core.data.layouts.pdebench import CFD_FIELDS
    from pdebench_core.data.layouts.well import looks_like_well

    keys = list(f.keys())
    groups = sorted(k for k in keys if isinstance(f[k], h5py.Group))
    for layout, test in (
        ("canonical", lambda: f.attrs.get("pdeb_format") is not None),
        ("well", lambda: looks_like_well(f)),
        ("pdebench", lambda: "tensor" in f or any(k in f for k in CFD_FIELDS)),
        ("pdearena", lambda: any(g in f and is_pdearena_group(f[g]) for g in GROUPS)),
        ("fno-mat", lambda: VARIABLE in f and (version == "7.3" or "MATLAB_class" in f[VARIABLE].attrs)),
        ("cfdbench", lambda: isinstance(f.get("data"), h5py.Dataset) and has_cfdbench_name(f.filename)
         and has_cfdbench_shape(f["data"].shape)),
        ("dpot", lambda: isinstance(f.get("data"), h5py.Dataset)),
        ("pdebench-multi", lambda: any(isinstance(f[k].get("data"), h5py.Dataset) for k in groups[:1])),
    ):
        if test():
            return layout, keys
    return None, keys


def open_layout(path: str | Path, format: str | None = "auto") -> Found:
    """Open ``path`` (a file, a folder or a URL) lazily in the given (or detected) layout;
    reads metadata only, of a URL through ranged reads."""
    name = _normalise_format(format)
    url = as_url(path)
    if name == "auto":
        name = detect_layout(path)
    elif url is not None:
        stat(url)  # an unreachable host or a missing file, in one line, before a reader tries
    elif not Path(path).exists():
        raise DataError(f"{path}: no such file or folder")
    if url is not None and name == "fno-mat" and _remote_mat_version(url) == "5":
        path = local_copy(url, why="MATLAB v5 files cannot be read in ranges")
    try:
        try:
            found = _openers()[name](str(path))
        except DataError:
            raise
        except (OSError, KeyError, ValueError, RuntimeError, TypeError) as exc:
            raise DataError(f"cannot read {path} as {name}: {first_line(exc)}") from None
    except DataError as exc:
        detected = _detected_otherwise(path, name, format)
        if detected is None:
            raise
        raise DataError(f"{exc}; auto-detection reads it as a {detected} file: give format auto or {detected}"
                        ) from None
    if url is not None and as_url(found.path) == url:
        found.path = url  # readers that go through pathlib fold '//' to '/'
    return found


def _detected_otherwise(path: str | Path, name: str, format: str | None) -> str | None:
    """The layout detection finds where a layout the user named failed, if another one: the
    likely cause is then the format, not the file."""
    if _normalise_format(format) == "auto":
        return None
    try:
        detected = detect_layout(path)
    except DataError:
        return None
    return detected if detected != name else None


def plan_splits(pool_sizes: Mapping[str, int], wanted: Mapping[str, int | None]
                ) -> tuple[dict[str, tuple[str, range]], list[str]]:
    """Decide which trajectories form each split.

    Splits the file defines are used as they are (the first ``n`` of each). A split
    the file lacks is cut from the ``"all"`` pool (files without splits) or else from
    ``"train"``, in the order train, val, test: first ``n_train``, then ``n_val``, then
    ``n_test`` trajectories. A count left open (``None``) takes its share by the 80/10/10
    rule (val and test 10 % each, at least one trajectory; train what the others leave).
    When the requested counts do not fit, the whole pool is shared by that rule (a split
    asked for 0 stays empty).

    Args:
        pool_sizes: Trajectories per pool (``"all"`` or the file's own split names).
        wanted: Requested count per split; ``None`` means "as many as the rule gives".

    Returns:
        ``({split: (pool, range of indices in the pool)}, messages)``; messages say
        where the fallback rule was used (callers turn them into warnings).
    """
    donors = [p for p in ("all", "train") if p in pool_sizes] or list(pool_sizes)
    members: dict[str, list[str]] = {}
    for split in SPLITS:
        pool = split if split in pool_sizes else donors[0]
        members.setdefault(pool, []).append(split)
    plan: dict[str, tuple[str, range]] = {}
    messages: list[str] = []
    for pool, splits in members.items():
        size = int(pool_sizes[pool])
        asked = [wanted.get(s) for s in splits]
        if len(splits) == 1:
            n = size if asked[0] is None else min(int(asked[0]), size)
            if asked[0] is not None and asked[0] > size:
                messages.append(f"split '{splits[0]}' has only {size} trajectories "
                                f"({asked[0]} asked); using all {size}")
            plan[splits[0]] = (pool, range(n))
            continue
        counts = _asked_counts(size, splits, asked)
        if counts is None:
            counts = _fractional_counts(size, splits, asked, pool)
            if any(a is not None for a in asked):
                requested = "/".join("all" if a is None else str(a) for a in asked)
                messages.append(f"asked for {requested} {'/'.join(splits)} trajectories but '{pool}' holds "
                                f"{size}; using {'/'.join(str(c) for c in counts)} (80/10/10 rule)")
        start = 0
        for split, count in zip(splits, counts, strict=True):
            plan[split] = (pool, range(start, start + count))
            start += count
    return plan, messages


def _asked_counts(size: int, splits: list[str], asked: list[int | None]) -> list[int] | None:
    """The counts asked for, a split left open (``None``) taking its share of the pool by the
    80/10/10 rule (the first split: what the others leave); None when they do not fit."""
    counts = [int(a) if a is not None else max(1, int(size * FRACTIONS[split]))
              for split, a in zip(splits, asked, strict=True)]
    if asked[0] is None:
        counts[0] = size - sum(counts[1:])
    return counts if counts[0] >= 0 and sum(counts) <= size and (asked[0] is not None or counts[0] >= 1) else None


def _fractional_counts(size: int, splits: list[str], asked: list[int | None], pool: str) -> list[int]:
    """Each split after the first gets its share of the pool (at least 1); the first the rest."""
    counts = [0] * len(splits)
    for i, (split, a) in enumerate(zip(splits, asked, strict=True)):
        if i > 0 and a != 0:
            counts[i] = max(1, int(size * FRACTIONS[split]))
    counts[0] = size - sum(counts) if asked[0] != 0 else 0
    if asked[0] != 0 and counts[0] < 1:
        raise DataError(f"'{pool}' holds {size} trajector{'y' if size == 1 else 'ies'}, too few for the splits "
                        f"{', '.join(splits)}")
    return counts


def placeholder_fields(n_channels: int) -> tuple[str, ...]:
    """Names for unnamed channels: ``u`` for one, ``c0``, ``c1``, ... for several."""
    return ("u",) if n_channels == 1 else tuple(f"c{i}" for i in range(n_channels))


def _domain_from_coords(coords: list[Any] | None, n_space: int, notes: list[str]):
    import numpy as np

    if not coords or len(coords) != n_space:
        return None
    domain = []
    for c in coords:
        c = np.asarray(c, dtype=np.float64)
        if c.size < 2:
            return None
        step = float(np.median(np.diff(c)))
        domain.append((float(c[0] - step / 2), float(c[-1] + step / 2)))
    notes.append("domain estimated from the stored coordinates, taken as cell centres")
    return tuple(domain)


def make_spec(found: Found, name: str, defaults: DataSpec, t_in: int | None = None,
              horizon: int | None = None, check: bool = True,
              layout_fields: Mapping[str, Sequence[str]] | None = None) -> DataSpec:
    """Combine what the file states with the dataset's defaults.

    The file decides the shape, the number of frames, ``dt`` (from its time
    coordinate) and the field names; ``defaults`` supplies the name, field names when
    the file has none, the boundary, the domain and the parameters (file parameters
    win on conflicts). A canonical file's stored spec stands in for the defaults.

    Args:
        found: What :func:`open_layout` found.
        name: Registered dataset name for the spec.
        defaults: The dataset plugin's own spec.
        t_in: Frames a model receives (default: the stored or default spec's).
        horizon: Evaluation horizon (default: the stored or default spec's).
        check: Raise when ``t_in`` leaves no frame to predict, or when the file's spatial
            dimension or channel count is not the dataset's (``defaults``, where it states
            them); cap ``horizon``.
        layout_fields: Field names by layout, for layouts that store channels unnamed in an
            order of their own (DPOT's preprocessed CFD files: ``Vx, Vy, density, pressure``).

    Raises:
        DataError: With ``check``: the file holds data of another dimension or channel count
            than the dataset's, or too few frames for ``t_in``.
    """
    shape = found.traj_shape
    n_frames, spatial, n_channels = shape[0], tuple(shape[1:-1]), shape[-1]
    base = DataSpec.from_dict(found.spec) if found.spec else defaults
    if check:
        check_fits_dataset(found, name, defaults)
    in_layout_order = (layout_fields or {}).get(found.layout)
    if found.fields and len(found.fields) == n_channels:
        fields = tuple(found.fields)
    elif in_layout_order and len(in_layout_order) == n_channels:
        fields = tuple(in_layout_order)
        found.notes.append(f"channels named in the order the {found.layout} layout stores them: {', '.join(fields)}")
    elif defaults.fields and len(defaults.fields) == n_channels:
        fields = tuple(defaults.fields)
    else:
        fields = placeholder_fields(n_channels)
        if defaults.fields:
            found.notes.append(f"the file has {n_channels} unnamed channels, the dataset names "
                               f"{len(defaults.fields)}; calling them {', '.join(fields)}")
    domain = base.domain if base.domain and len(base.domain) == len(spatial) else None
    domain = domain or _domain_from_coords(found.coords, len(spatial), found.notes)
    mask = base.channel_mask if base.channel_mask and len(base.channel_mask) == n_channels else None
    for key, value in found.params.items():
        setting = defaults.params.get(key)
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (value, setting))
        if numbers and setting != value:
            found.notes.append(f"the file states {key}={value:g}; that is used, not the dataset's setting "
                               f"{key}={setting:g}")
    t_in = int(t_in if t_in is not None else base.t_in)
    horizon = horizon if horizon is not None else base.horizon
    if check:
        if t_in >= n_frames:
            raise DataError(f"{found.path}: trajectories have {n_frames} frames; t_in={t_in} leaves none to predict")
        if horizon is not None and t_in + horizon > n_frames:
            warnings.warn(f"{found.path}: horizon {horizon} after t_in={t_in} exceeds the {n_frames} stored "
                          f"frames; using {n_frames - t_in}", SplitWarning, stacklevel=3)
            horizon = n_frames - t_in
    return DataSpec(
        name=name, fields=fields, spatial_shape=spatial, t_in=t_in, t_out=base.t_out,
        dt=float(found.dt if found.dt else base.dt), domain=domain,
        boundary=getattr(found, "boundary", None) or base.boundary,  # a layout that states it (The Well) wins
        params={**dict(defaults.params), **dict(base.params), **found.params}, horizon=horizon,
        n_frames=n_frames, channel_mask=mask,
    )


def check_fits_dataset(found: Found, name: str, defaults: DataSpec, fix: str | None = None) -> None:
    """Refuse a file whose spatial dimension or channel count is not the dataset's.

    Only what ``defaults`` states is checked: a dataset that reads any data (no grid or no
    fields in its spec) accepts any. ``fix`` replaces the advice (pointing
    ``data.<name>.path`` at other data).
    """
    shape = found.traj_shape
    spatial, n_channels = tuple(shape[1:-1]), shape[-1]
    if defaults.spatial_shape and len(defaults.spatial_shape) != len(spatial):
        raise DataError(f"{found.path} holds {len(spatial)}D trajectories (grid {'x'.join(map(str, spatial))}); "
                        f"dataset '{name}' is {len(defaults.spatial_shape)}D: " + (fix or (
                            f"point data.{name}.path at {len(defaults.spatial_shape)}D data, or read this file "
                            f"with a {len(spatial)}D dataset")))
    if defaults.fields and len(defaults.fields) != n_channels:
        stated = f" ({', '.join(found.fields)})" if found.fields else ""
        raise DataError(f"{found.path} holds {n_channels} channels{stated}; dataset '{name}' has "
                        f"{len(defaults.fields)} ({', '.join(defaults.fields)}): " + (fix or (
                            f"point data.{name}.path at {name} data, or read this file with a dataset of its "
                            f"fields")))


def as_spec(defaults: DataSpec | Mapping[str, Any] | None, name: str) -> DataSpec:
    """A :class:`DataSpec` from a spec, a dict of spec fields (missing ones empty) or ``None``."""
    if isinstance(defaults, DataSpec):
        return defaults
    if defaults is None:
        return DataSpec(name=name, fields=(), spatial_shape=())
    if isinstance(defaults, Mapping):
        return DataSpec.from_dict({"name": name, "fields": (), "spatial_shape": (), **dict(defaults)})
    raise UsageError(f"spec defaults for '{name}' must be a DataSpec or a dict, not {type(defaults).__name__}")


def load_path(cfg: Any, name: str, spec_defaults: DataSpec | Mapping[str, Any],
              layout_fields: Mapping[str, Sequence[str]] | None = None):
    """Open a published file or folder as a dataset (lazily).

    Args:
        cfg: A :class:`~pdebench_core.data.config.DatasetConfig` (or omegaconf object
            with its attributes): ``path``, ``format``, ``n_train``, ``n_val``,
            ``n_test``, ``t_in``, ``horizon``, ``preload``.
        name: The registered dataset name.
        spec_defaults: The dataset's own spec (field names, parameters, boundary...);
            a dict of :class:`DataSpec` fields is accepted too. Where it states a grid or
            fields, a file of another dimension or channel count is refused.
        layout_fields: See :func:`make_spec`.

    Returns:
        A :class:`~pdebench_core.data.base.TrajectoryDataset` whose splits read one
        trajectory at a time (everything in memory when ``cfg.preload``).

    Raises:
        DataError: unreadable file, unknown layout, too few trajectories or frames, data of
            another dimension or channel count than the dataset's.
    """
    path = getattr(cfg, "path", None)
    if not path:
        raise UsageError(f"data.{name}.path is not set")
    return load_found(open_layout(path, getattr(cfg, "format", "auto")), cfg, name, spec_defaults, layout_fields)


def load_found(found: Found, cfg: Any, name: str, spec_defaults: DataSpec | Mapping[str, Any],
               layout_fields: Mapping[str, Sequence[str]] | None = None):
    """The dataset :func:`load_path` makes, from a path already opened with :func:`open_layout`.

    Lets a dataset plugin look at what the file holds (its layout, parameters) before
    the splits are cut. ``cfg``, ``spec_defaults`` and ``layout_fields`` are as for
    :func:`load_path`.
    """
    from pdebench_core.data.base import TrajectoryDataset

    wanted = {s: getattr(cfg, f"n_{s}", None) for s in SPLITS}
    try:
        plan, messages = plan_splits({k: len(v) for k, v in found.pools.items()}, wanted)
    except DataError as exc:
        raise DataError(f"{found.path}: {exc}; point data.{name}.path at a file or folder with more "
                        f"trajectories (a dataset's folder rather than one of its files)") from None
    for message in messages:
        warnings.warn(f"{found.path}: {message}", SplitWarning, stacklevel=3)
    preload = bool(getattr(cfg, "preload", False))
    splits = {s: found.pools[pool].subset(list(r), preload=preload) for s, (pool, r) in plan.items()}
    spec = make_spec(found, name, as_spec(spec_defaults, name), t_in=getattr(cfg, "t_in", None),
                     horizon=getattr(cfg, "horizon", None), layout_fields=layout_fields)
    dataset = TrajectoryDataset(spec, splits)
    dataset.notes = list(found.notes)  # the reader's and make_spec's, for the run's log
    return dataset


def describe_path(path: str | Path, format: str = "auto") -> dict[str, Any]:
    """JSON-friendly summary of a file or folder, for ``pdeb data info``.

    Returns:
        ``layout``, ``fields`` (``None`` when unnamed), ``trajectory_shape``
        ``(T, *S, C)``, ``spatial_shape``, ``n_frames``, ``n_channels``, ``dt``,
        ``dtype``, ``splits`` (trajectories per split; ``{"all": N}`` when the file has
        none), ``own_splits``, ``params``, ``spec`` (canonical files) and ``notes``.
    """
    found = open_layout(path, format)
    shape = found.traj_shape
    order = [s for s in SPLITS if s in found.pools] + [s for s in found.pools if s not in SPLITS]
    return {
        "path": str(found.path),
        "layout": found.layout,
        "fields": list(found.fields) if found.fields else None,
        "trajectory_shape": list(shape),
        "spatial_shape": list(shape[1:-1]),
        "n_frames": shape[0],
        "n_channels": shape[-1],
        "dt": found.dt,
        "dtype": found.dtype,
        "splits": {s: len(found.pools[s]) for s in order},
        "own_splits": found.own_splits,
        "params": dict(found.params),
        "spec": found.spec,
        "notes": list(found.notes),
    }
