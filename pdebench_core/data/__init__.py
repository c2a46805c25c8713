"""Data contract helpers: canonical HDF5 files, lazy trajectory access, caching."""

from pdebench_core.data.base import TrajectoryDataset
from pdebench_core.data.canonical import H5Trajectories, open_canonical, write_canonical

__all__ = ["H5Trajectories", "TrajectoryDataset", "open_canonical", "write_canonical"]
