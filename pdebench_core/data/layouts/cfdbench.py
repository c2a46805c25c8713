"""Reader for CFDBench as DPOT preprocessed it (thu-ml/DPOT ``data_generation/cfdbench``).

DPOT took the ``cavity``, ``cylinder`` and ``tube`` problems of CFDBench (Luo et al.,
2023), each with all three of its subsets (boundary conditions, geometry, physical
properties), shuffled the cases of each problem (seed 0), kept the first 80 % of them for
training and the last 10 % for testing (CFDBench's middle 10 %, its dev set, was dropped),
and wrote two files:

* ``ns2d_cdb_train.hdf5`` and ``ns2d_cdb_test.hdf5``, each with one array ``data``
  ``(N, 64, 64, 20, 3)`` stored as float64, in DPOT's usual order: space, then time,
  then channels;
* every case (``u``, ``v`` and a fluid mask, ``(T, height, width)``, after padding the
  inlet and wall columns/rows) was resized to 64 x 64 (bilinear, corner-aligned) and cut
  into consecutive pieces of 20 frames, ``dt = 0.1`` s apart; the last piece is filled up
  by repeating the case's last frame. A "trajectory" of the file is one such piece; the
  pieces of one case follow each other.

The first spatial axis is CFDBench's height (``y``, rows), the second its width
(``x``, columns). Channels are ``u`` (x velocity), ``v`` (y velocity) and ``mask`` (1 in
the fluid, 0 on walls and obstacles, blended where the resize crosses a boundary). DPOT
feeds all three to the model and scores only ``u`` and ``v`` (``pred_channels = 2``).
"""

from __future__ import annotations

import re
from pathlib import Path

from pdebench_core.data.layouts.common import Found, H5Files
from pdebench_core.errors import DataError

FIELDS = ("u", "v", "mask")
#: Fields DPOT scores (the mask is an input only).
SCORED_FIELDS = ("u", "v")
DT = 0.1
#: File names DPOT writes; the reader also accepts any name containing ``cfdbench``.
FILE_NAMES = ("ns2d_cdb_train.hdf5", "ns2d_cdb_test.hdf5")
_NAME = re.compile(r"(^|[_\-.])cdb([_\-.]|$)|cfdbench", re.IGNORECASE)


def has_cfdbench_name(path: str | Path) -> bool:
    """Whether a file's name marks it as DPOT's CFDBench file (``*_cdb_*`` or ``*cfdbench*``)."""
    p = Path(path)
    return p.suffix in (".h5", ".hdf5") and bool(_NAME.search(p.stem))


def has_cfdbench_shape(shape: tuple[int, ...]) -> bool:
    """Whether a DPOT ``data`` array shape is ``(N, X, Y, T, 3)``: 2D, three channels."""
    return len(shape) == 5 and int(shape[-1]) == len(FIELDS)


def cfdbench_file_in(folder: str | Path) -> Path | None:
    """The file of a folder to open: DPOT's train file if present, else its test file."""
    folder = Path(folder)
    for name in FILE_NAMES:
        if (folder / name).is_file():
            return folder / name
    candidates = sorted(p for p in folder.iterdir() if p.is_file() and has_cfdbench_name(p))
    return candidates[0] if candidates else None


def is_cfdbench(path: str | Path) -> bool:
    """Whether ``path`` holds CFDBench as DPOT preprocessed it (reads metadata only).

    A file matches when its name is DPOT's (``ns2d_cdb_train.hdf5``, ``..._test``) or
    contains ``cfdbench``, and its ``data`` array is ``(N, X, Y, T, 3)``. A folder
    matches when it holds such a file.
    """
    import h5py

    p = Path(path)
    if p.is_dir():
        found = cfdbench_file_in(p)
        return found is not None and is_cfdbench(found)
    if not p.is_file() or not has_cfdbench_name(p):
        return False
    try:
        with h5py.File(p, "r") as f:
            data = f.get("data")
            return isinstance(data, h5py.Dataset) and has_cfdbench_shape(data.shape)
    except (OSError, ValueError):
        return False


def open_cfdbench(path: str) -> Found:
    """Describe DPOT's CFDBench file pair (or a folder holding it).

    Pointing at either file of the pair uses both: the train file for train (and a
    validation split cut after it), the test file for test.

    Raises:
        DataError: no such file in a folder, or ``data`` is not ``(N, X, Y, T, 3)``.
    """
    from pdebench_core.data.layouts.dpot import open_dpot_file

    p = Path(path)
    notes: list[str] = []
    if p.is_dir():
        chosen = cfdbench_file_in(p)
        if chosen is None:
            raise DataError(f"{path}: no CFDBench file in this folder (expected {' or '.join(FILE_NAMES)})")
        notes.append(f"using {chosen.name}")
        p = chosen
    dpot = open_dpot_file(str(p))
    shape = _data_shape(str(p))
    if not has_cfdbench_shape(shape):
        raise DataError(f"{p}: 'data' has shape {shape}; CFDBench as DPOT stores it is (N, X, Y, T, 3) "
                        f"with channels {', '.join(FIELDS)}")
    notes += dpot.notes
    notes.append("channels u, v, mask: DPOT feeds the mask (1 in the fluid, 0 on walls and obstacles) to the "
                 "model and scores u and v only")
    notes.append("the first spatial axis is CFDBench's height (y), the second its width (x); each trajectory is "
                 "a 20-frame piece of a longer case, the pieces of one case are consecutive")
    return Found(layout="cfdbench", path=str(p), pools=dpot.pools, fields=FIELDS, dt=DT, notes=notes)


def _data_shape(path: str) -> tuple[int, ...]:
    files = H5Files()
    try:
        return tuple(int(s) for s in files.get(path)["data"].shape)
    finally:
        files.close()
