"""Data contract helpers: canonical HDF5 files, lazy trajectory access, caching.

Names are imported on first use so that importing a plugin (which imports
``pdebench_core.data.config``) stays cheap.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "TrajectoryDataset": "pdebench_core.data.base",
    "CanonicalWriter": "pdebench_core.data.canonical",
    "H5Trajectories": "pdebench_core.data.canonical",
    "FileTrajectories": "pdebench_core.data.trajectories",
    "open_canonical": "pdebench_core.data.canonical",
    "write_canonical": "pdebench_core.data.canonical",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'pdebench_core.data' has no attribute '{name}'")
