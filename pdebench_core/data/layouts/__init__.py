"""Readers for the data layouts users already have on disk.

Supported layouts (``format=`` names): ``canonical`` (pdeb's own HDF5),
``pdebench`` (single-file ``.hdf5``: ``tensor`` or compressible-CFD fields),
``pdebench-multi`` (one group per sample), ``fno-mat`` (FNO Navier-Stokes ``.mat``,
v7.3 or v5), ``dpot`` (DPOT preprocessed arrays or per-trajectory folders), ``pdearena``
(PDEArena Navier-Stokes shards, plain or conditioned), ``cfdbench`` (CFDBench as
DPOT preprocessed it) and ``well`` (The Well: one file, a folder of them, or a dataset
folder with ``data/{train,valid,test}/``). Every reader yields float32
trajectories ``(T, *S, C)``, one at a time. See ``docs/data-format.md``.

Public entry points:

* :func:`detect_layout` - which layout a path holds;
* :func:`load_path` - a published file as a :class:`TrajectoryDataset`
  (:func:`load_found` when the plugin opened it first);
* :func:`describe_path` - what ``pdeb data info`` shows;
* :func:`convert` - any layout to a canonical file, streaming;
* :func:`is_cfdbench`, :func:`ns_variant` - whether a path holds CFDBench (as DPOT
  stores it) or which PDEArena Navier-Stokes set it holds;
* :func:`open_well` - a Well file or folder, with the choice for constant fields.

Small files in these layouts, for tests: :mod:`pdebench_core.data.layouts.fixtures`.
"""

from pdebench_core.data.layouts.cfdbench import is_cfdbench
from pdebench_core.data.layouts.common import Found, Trajectories
from pdebench_core.data.layouts.conversion import CanonicalWriter, convert
from pdebench_core.data.layouts.loading import (
    FRACTIONS, LAYOUTS, SplitWarning, describe_path, detect_layout, load_found, load_path, make_spec,
    open_layout, plan_splits,
)
from pdebench_core.data.layouts.pdearena import buoyancy_of, ns_variant
from pdebench_core.data.layouts.well import open_well

__all__ = [
    "FRACTIONS", "LAYOUTS", "CanonicalWriter", "Found", "SplitWarning", "Trajectories", "buoyancy_of", "convert",
    "describe_path", "detect_layout", "is_cfdbench", "load_found", "load_path", "make_spec", "ns_variant",
    "open_layout", "open_well", "plan_splits",
]
