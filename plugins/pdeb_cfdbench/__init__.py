"""CFDBench (cavity, cylinder and tube flows) as DPOT preprocessed it, read as a pdeb dataset.

Reader-only: CFDBench's data comes from ANSYS Fluent simulations, which pdeb does not
re-implement. Point ``data.cfdbench.path`` at DPOT's ``ns2d_cdb_train.hdf5`` or
``ns2d_cdb_test.hdf5`` (either one: the other of the pair is found next to it), or at
the folder holding them. The train file gives train (and val, cut after the first
``n_train``), the test file gives test, as DPOT splits them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pdebench_core import hookimpl
from pdebench_core.data.config import FileDatasetConfig
from pdebench_core.errors import UsageError

__version__ = "0.1.0"

NAME = "cfdbench"
FIELDS = ("u", "v", "mask")
#: What a run without ``path`` is told to give.
PATH_HELP = ("DPOT's file ns2d_cdb_train.hdf5: download CFDBench and preprocess it with DPOT's "
             "data_generation/cfdbench/save_data.py")


@dataclass
class CfdbenchConfig(FileDatasetConfig):
    """Settings of ``cfdbench`` (``data.cfdbench.<key>``); ``path`` is required.

    Defaults follow DPOT's dataset table: the first 9000 trajectories of the train file
    for training, the first 1000 of the test file for testing, 10 input frames. DPOT has
    no validation split; ``n_val`` trajectories are cut from the train file after the
    first ``n_train`` (0 by default).
    """

    path: str = field(metadata={"help": PATH_HELP})
    n_train: int = 9000
    n_val: int = 0
    n_test: int = 1000


def make_spec(cfg: Any):
    """What DPOT's files do not say about themselves."""
    from pdebench_core.spec import DataSpec

    return DataSpec(name=NAME, fields=FIELDS, spatial_shape=(64, 64), t_in=int(cfg.t_in), dt=0.1,
                    domain=None, boundary="dirichlet/neumann",
                    params={"problems": ["cavity", "cylinder", "tube"], "scored_fields": ["u", "v"]},
                    horizon=cfg.horizon)


def build(cfg: Any):
    """Read DPOT's CFDBench files at ``cfg.path``."""
    if not cfg.path:
        raise UsageError(f"{NAME} has no built-in solver; download CFDBench, preprocess it with DPOT's "
                         f"data_generation/cfdbench/save_data.py and pass data.{NAME}.path=ns2d_cdb_train.hdf5")
    from pdebench_core.data.generation import read_published

    return read_published(cfg, NAME, make_spec(cfg))


@hookimpl
def register_datasets(register: Any) -> None:
    """Register ``cfdbench``."""
    register(
        NAME, build, config=CfdbenchConfig,
        description="CFDBench cavity, cylinder and tube flows as DPOT preprocessed them "
                    "(reader only: needs data.cfdbench.path)",
        pde="incompressible Navier-Stokes (ANSYS Fluent), varying boundary conditions, geometry and fluid "
            "properties",
        dims=2, fields=list(FIELDS), resolution="64x64 (resized by DPOT)", dt=0.1,
        boundary="no-slip walls, velocity inlet, outlet (per problem)",
        parameters="per case: inlet/lid velocity, density, viscosity, geometry (not stored in DPOT's files)",
        source="Luo, Chen & Zhang, CFDBench (2023), preprocessed by DPOT (Hao et al., ICML 2024)",
        license="not stated in the CFDBench repository; check its dataset page",
        horizon="all frames after the first t_in (10 of 20)",
        reader_only=True,
    )
