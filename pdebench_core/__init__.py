"""pdeb: a plugin-based framework for training and benchmarking neural PDE solvers."""

from pdebench_core.hookspecs import hookimpl
from pdebench_core.sink import Sink
from pdebench_core.spec import DataSpec

__version__ = "0.1.0"
__all__ = ["DataSpec", "Sink", "hookimpl", "__version__"]
