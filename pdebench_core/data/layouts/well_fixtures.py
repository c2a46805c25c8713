"""Small files in The Well's layout, written with The Well's own writer, for tests.

:func:`write_well_file` calls ``the_well.utils.dummy_data.write_dummy_data`` (2
trajectories of 10 frames on a 32 x 32 grid: a vector field ``field``, a constant scalar
field ``constant_field``, scalars ``a``, ``b`` and a time-varying scalar), then optionally
replaces the random values with smooth travelling waves a model can learn, and adds fields
that exercise the rest of the layout (a time-varying scalar field, a tensor field, a field
stored without one spatial axis, a constant field shared by all trajectories).
:func:`write_well_dataset` lays such files out as ``<name>/data/{train,valid,test}/``.

Needs the ``the_well`` package (a test dependency of pdeb).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np


def _well_writer():
    try:
        from the_well.utils.dummy_data import write_dummy_data
    except ImportError:
        from pdebench_core.errors import UsageError

        raise UsageError("the Well fixtures need The Well's package; pip install the_well") from None
    return write_dummy_data


def _grid(f) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    dims = f["dimensions"]
    return np.asarray(dims["time"][()]), np.asarray(dims["x"][()]), np.asarray(dims["y"][()])


def _smooth(f, phase: float) -> None:
    """Travelling waves instead of The Well's random values (same shapes and dtypes)."""
    t, x, y = _grid(f)
    field = f["t1_fields/field"]
    n = field.shape[0]
    tt, xx, yy = np.meshgrid(t, x, y, indexing="ij")  # (T, X, Y)
    waves = []
    for i in range(n):
        shift = phase + 0.7 * i
        u = np.sin(2 * np.pi * (xx - 0.5 * tt) + shift) * np.cos(2 * np.pi * yy)
        v = np.cos(2 * np.pi * (yy + 0.5 * tt) + shift) * np.sin(2 * np.pi * xx)
        waves.append(np.stack([u, v], axis=-1))
    field[...] = np.stack(waves).astype(field.dtype)
    bump = np.exp(-((xx[0] - 0.5) ** 2 + (yy[0] - 0.5) ** 2) / 0.05)
    const = f["t0_fields/constant_field"]
    const[...] = np.stack([bump * (1 + 0.1 * i) for i in range(n)]).astype(const.dtype)


def _add_field(group, name: str, data: np.ndarray, time_varying: bool, sample_varying: bool,
               dim_varying: tuple[bool, bool]) -> None:
    """Add a field as The Well's writer stores one, and name it in ``field_names``."""
    dset = group.create_dataset(name, data=data.astype(np.float32))
    dset.attrs["dim_varying"] = list(dim_varying)
    dset.attrs["sample_varying"] = sample_varying
    dset.attrs["time_varying"] = time_varying
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in np.asarray(group.attrs["field_names"]).tolist()]
    group.attrs["field_names"] = names + [name]


def _add_fields(f, rng: np.random.Generator) -> None:
    """A time-varying scalar, a tensor, a field without the y axis, a constant field shared by all."""
    n, n_frames, nx, ny, _ = f["t1_fields/field"].shape
    t0 = f["t0_fields"]
    _add_field(t0, "pressure", rng.random((n, n_frames, nx, ny)), True, True, (True, True))
    _add_field(t0, "profile", rng.random((n, n_frames, nx, 1)), True, True, (True, False))  # y kept, size 1
    _add_field(t0, "mask", rng.random((nx, ny)), False, False, (True, True))
    _add_field(f["t2_fields"], "stress", rng.random((n, n_frames, nx, ny, 2, 2)), True, True, (True, True))


def write_well_file(path: str | Path, smooth: bool = True, phase: float = 0.0, extra_fields: bool = False,
                    seed: int = 0) -> Path:
    """Write one Well file with The Well's writer (see the module docstring).

    Args:
        path: The ``.hdf5`` file to write.
        smooth: Replace the random ``field`` and ``constant_field`` values by smooth waves.
        phase: Phase of the waves (files of one dataset differ by it).
        extra_fields: Add ``pressure`` (t0), ``profile`` (t0, no y axis), ``mask``
            (constant, shared by all trajectories) and ``stress`` (t2).
        seed: Seed of the extra fields' values.
    """
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _well_writer()(str(path))
    with h5py.File(path, "r+") as f:
        if smooth:
            _smooth(f, phase)
        if extra_fields:
            _add_fields(f, np.random.default_rng(seed))
    return path


def write_well_dataset(root: str | Path, name: str = "dummy", files: Mapping[str, int] | None = None,
                       stats: Mapping[str, Any] | None = None, **options: Any) -> Path:
    """Lay Well files out as ``root/<name>/data/{train,valid,test}/<name>_<i>.hdf5``.

    Args:
        root: Where the dataset folder goes.
        name: The dataset folder's name.
        files: Files per split folder (default: 2 train, 1 valid, 1 test).
        stats: Contents of a ``stats.yaml`` to write next to ``data/`` (none when ``None``).
        **options: Passed to :func:`write_well_file`.

    Returns:
        The dataset folder.
    """
    import yaml

    folder = Path(root) / name
    number = 0
    for split, count in (files or {"train": 2, "valid": 1, "test": 1}).items():
        for i in range(count):
            write_well_file(folder / "data" / split / f"{name}_{i}.hdf5", phase=0.37 * number, seed=number,
                            **options)
            number += 1
    if stats is not None:
        (folder / "stats.yaml").write_text(yaml.safe_dump(dict(stats)))
    return folder
