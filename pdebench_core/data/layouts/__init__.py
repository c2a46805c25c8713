"""Readers for the data layouts users already have on disk.

Supported layouts (``format=`` names): ``canonical`` (pdeb's own HDF5),
``pdebench`` (single-file ``.hdf5``: ``tensor`` or compressible-CFD fields),
``pdebench-multi`` (one group per sample), ``fno-mat`` (FNO Navier-Stokes ``.mat``,
v7.3 or v5), ``dpot`` (DPOT preprocessed arrays or per-trajectory folders) and
``pdearena`` (PDEArena Navier-Stokes shards). Every reader yields float32
trajectories ``(T, *S, C)``, one at a time. See ``docs/data-format.md``.

Public entry points:

* :func:`detect_layout` - which layout a path holds;
* :func:`load_path` - a published file as a :class:`TrajectoryDataset`;
* :func:`describe_path` - what ``pdeb data info`` shows;
* :func:`convert` - any layout to a canonical file, streaming.
"""

from pdebench_core.data.layouts.common import Found, Trajectories
from pdebench_core.data.layouts.conversion import CanonicalWriter, convert
from pdebench_core.data.layouts.loading import (
    FRACTIONS, LAYOUTS, SplitWarning, describe_path, detect_layout, load_path, make_spec, open_layout,
    plan_splits,
)

__all__ = [
    "FRACTIONS", "LAYOUTS", "CanonicalWriter", "Found", "SplitWarning", "Trajectories", "convert",
    "describe_path", "detect_layout", "load_path", "make_spec", "open_layout", "plan_splits",
]
