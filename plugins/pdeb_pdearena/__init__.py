"""PDEArena's 2D Navier-Stokes (smoke buoyancy) files, read as pdeb datasets.

Reader-only: PDEArena's data comes from its own PhiFlow simulations, which pdeb does
not re-implement. Two datasets:

* ``pdearena-ns``: NavierStokes2D, buoyancy 0.5, 14 frames per trajectory;
* ``pdearena-ns-cond``: NavierStokes2D conditioned on the buoyancy (each shard of 32
  trajectories has its own value from U(0.2, 0.5)), 56 frames per trajectory. The
  buoyancy is the ``buoyancy`` parameter of the spec: the single value, or ``[min, max]``
  over the trajectories in the splits (``buoyancy_of(dataset.split(s))`` from
  ``pdebench_core.data.layouts`` gives each trajectory's value).

Point ``data.<name>.path`` at a downloaded ``.h5`` file or a folder of them (the files'
own ``train``/``valid``/``test`` groups become the splits), or at DPOT's preprocessed
folder (``ns2d_pda``, ``ns2d_cond_pda``: ``train/`` and ``test/`` of ``data_<i>.hdf5``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pdebench_core import hookimpl
from pdebench_core.data.config import FileDatasetConfig
from pdebench_core.errors import UsageError

NAME = "pdearena-ns"
COND_NAME = "pdearena-ns-cond"
FIELDS = ("u", "vx", "vy")
#: What a run without ``path`` is told to give.
PATH_HELP = {
    NAME: "PDEArena's NavierStokes2D HDF5 files: their folder, or one file",
    COND_NAME: "PDEArena's conditioned NavierStokes2D HDF5 files (their folder, or one file), or DPOT's preprocessed "
               "folder of them",
}
_VARIANTS = {NAME: "ns", COND_NAME: "ns-cond"}


@dataclass
class PdearenaNsConfig(FileDatasetConfig):
    """Settings of ``pdearena-ns`` (``data.pdearena-ns.<key>``); ``path`` is required.

    The inherited ``n_train``/``n_val``/``n_test`` cap how many trajectories of each of
    the file's own splits are used.
    """

    path: str = field(metadata={"help": PATH_HELP[NAME]})
    n_train: int = 5200
    n_val: int = 1300
    n_test: int = 1300


@dataclass
class PdearenaNsCondConfig(FileDatasetConfig):
    """Settings of ``pdearena-ns-cond`` (``data.pdearena-ns-cond.<key>``); ``path`` is required.

    Defaults are PDEArena's split sizes (6656/1664/1664). With DPOT's preprocessed
    folder, whose ``train/`` holds PDEArena's train and valid trajectories, val is cut
    from ``train/`` after the first ``n_train``.
    """

    path: str = field(metadata={"help": PATH_HELP[COND_NAME]})
    n_train: int = 6656
    n_val: int = 1664
    n_test: int = 1664


def make_spec(cfg: Any):
    """What the ``pdearena-ns`` files do not say about themselves."""
    from pdebench_core.spec import DataSpec

    # Frames are every fourth solver step of 1.5 time units (PDEArena: sample_rate=4).
    return DataSpec(name=NAME, fields=FIELDS, spatial_shape=(128, 128), t_in=int(cfg.t_in), dt=6.0,
                    domain=((0.0, 32.0), (0.0, 32.0)), boundary="dirichlet/neumann",
                    params={"buoyancy": 0.5, "nu": 0.01}, horizon=cfg.horizon)


def make_cond_spec(cfg: Any):
    """What the ``pdearena-ns-cond`` files do not say about themselves (DPOT's drop the buoyancy)."""
    from pdebench_core.data.layouts.pdearena import COND_BUOYANCY_RANGE
    from pdebench_core.spec import DataSpec

    return DataSpec(name=COND_NAME, fields=FIELDS, spatial_shape=(128, 128), t_in=int(cfg.t_in), dt=1.5,
                    domain=((0.0, 32.0), (0.0, 32.0)), boundary="dirichlet/neumann",
                    params={"buoyancy": list(COND_BUOYANCY_RANGE), "nu": 0.01}, horizon=cfg.horizon)


def _read(cfg: Any, name: str, defaults: Any):
    """Open ``cfg.path``, refuse the other PDEArena set, then cut the splits."""
    if not cfg.path:
        raise UsageError(f"{name} has no built-in solver; download PDEArena's NavierStokes2D "
                         f"{'conditioned ' if name == COND_NAME else ''}files and pass "
                         f"data.{name}.path=FILE_OR_FOLDER")
    from pdebench_core.data.layouts import load_found, open_layout
    from pdebench_core.data.layouts.pdearena import buoyancy_of, buoyancy_params, variant_of

    found = open_layout(cfg.path, cfg.format)
    variant = variant_of(found)
    other = {v: n for n, v in _VARIANTS.items()}.get(variant)
    if other is not None and other != name:
        raise UsageError(f"{cfg.path} holds PDEArena's {'conditioned ' if other == COND_NAME else ''}"
                         f"Navier-Stokes set, not {name}'s; read it with --data {other}")
    dataset = load_found(found, cfg, name, defaults)
    # The spec states the buoyancy of the trajectories in use, not of the whole folder.
    used = [v for split in ("train", "val", "test") for v in (buoyancy_of(dataset.split(split)) or [])]
    if used:
        dataset.spec = dataset.spec.replace(params={**dataset.spec.params, **buoyancy_params(used, [])})
    return dataset


def build(cfg: Any):
    """Read the PDEArena NavierStokes2D files at ``cfg.path``."""
    return _read(cfg, NAME, make_spec(cfg))


def build_cond(cfg: Any):
    """Read the PDEArena conditioned NavierStokes2D files at ``cfg.path``."""
    return _read(cfg, COND_NAME, make_cond_spec(cfg))


_CARD = dict(
    pde="incompressible Navier-Stokes with a buoyancy-driven scalar (PhiFlow)", dims=2, fields=list(FIELDS),
    resolution="128x128", boundary="Dirichlet velocity, Neumann scalar", source="Gupta & Brandstetter, PDEArena (2022)",
    license="MIT (PDEArena data)", horizon="all frames after the first t_in", reader_only=True,
)


@hookimpl
def register_datasets(register: Any) -> None:
    """Register ``pdearena-ns`` and ``pdearena-ns-cond``."""
    register(
        NAME, build, config=PdearenaNsConfig,
        description="PDEArena 2D Navier-Stokes with smoke buoyancy (reader only: needs data.pdearena-ns.path)",
        dt=6.0, parameters="buoyancy 0.5, viscosity 0.01; 14 frames", **_CARD,
    )
    register(
        COND_NAME, build_cond, config=PdearenaNsCondConfig,
        description="PDEArena 2D Navier-Stokes conditioned on the buoyancy "
                    "(reader only: needs data.pdearena-ns-cond.path)",
        dt=1.5, parameters="buoyancy U(0.2, 0.5) per shard of 32 trajectories, viscosity 0.01; 56 frames", **_CARD,
    )
