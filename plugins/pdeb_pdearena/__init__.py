"""PDEArena's 2D Navier-Stokes (smoke buoyancy) files, read as a pdeb dataset.

Reader-only: PDEArena's data comes from its own PhiFlow simulations, which pdeb does
not re-implement. Point ``data.pdearena-ns.path`` at a downloaded ``.h5`` file or a
folder of them; the files' own ``train``/``valid``/``test`` groups become the splits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pdebench_core import hookimpl
from pdebench_core.data.config import DatasetConfig
from pdebench_core.errors import UsageError

NAME = "pdearena-ns"
FIELDS = ("u", "vx", "vy")


@dataclass
class PdearenaNsConfig(DatasetConfig):
    """Settings of ``pdearena-ns`` (``data.pdearena-ns.<key>``); ``path`` is required.

    The inherited ``n_train``/``n_val``/``n_test`` cap how many trajectories of each of
    the file's own splits are used.
    """

    format: str = "pdearena"
    n_train: int = 5200
    n_val: int = 1300
    n_test: int = 1300


def make_spec(cfg: Any):
    """What the files do not say about themselves."""
    from pdebench_core.spec import DataSpec

    return DataSpec(name=NAME, fields=FIELDS, spatial_shape=(128, 128), t_in=int(cfg.t_in), dt=1.5,
                    domain=((0.0, 32.0), (0.0, 32.0)), boundary="dirichlet/neumann",
                    params={"buoyancy": 0.5, "nu": 0.01}, horizon=cfg.horizon)


def build(cfg: Any):
    """Read the PDEArena files at ``cfg.path``."""
    if not cfg.path:
        raise UsageError(f"{NAME} has no built-in solver; download PDEArena's NavierStokes2D files and pass "
                         f"data.{NAME}.path=FILE_OR_FOLDER")
    from pdebench_core.data.generation import read_published

    return read_published(cfg, NAME, make_spec(cfg))


@hookimpl
def register_datasets(register: Any) -> None:
    """Register ``pdearena-ns``."""
    register(
        NAME, build, config=PdearenaNsConfig,
        description="PDEArena 2D Navier-Stokes with smoke buoyancy (reader only: needs data.pdearena-ns.path)",
        pde="incompressible Navier-Stokes with a buoyancy-driven scalar (PhiFlow)", dims=2, fields=list(FIELDS),
        resolution="128x128", dt=1.5, boundary="Dirichlet velocity, Neumann scalar",
        parameters="buoyancy 0.5, viscosity 0.01", source="Gupta & Brandstetter, PDEArena (2022)",
        license="MIT (PDEArena data)", horizon="all frames after the first t_in", reader_only=True,
    )
