"""Any dataset of The Well (Ohana et al., NeurIPS 2024 Datasets and Benchmarks), read as a pdeb dataset.

Reader-only: The Well's simulations come from many solvers (Dedalus, Athena++, ...),
which pdeb does not re-implement. Point ``data.well.path`` at a Well dataset folder
(``datasets/<name>``, with ``data/{train,valid,test}/*.hdf5``), its ``data/`` folder, one
split folder or one ``.hdf5`` file. A dataset folder's own splits are used (``valid`` is
the validation split); a single file or a flat folder is cut in index order like other
files without splits.

Channels follow ``WellDataset``'s order (time-varying ``t0``, ``t1``, ``t2`` fields, vector
and tensor components as ``velocity_x``, ``D_xy``, ...). Fields that do not vary in time
are repeated on every frame after them and never scored (``constants=repeat``), or left
out (``constants=drop``). The spec takes ``dt`` from ``dimensions/time``, the boundary from
``boundary_conditions`` and the parameters from ``scalars``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from pdebench_core import hookimpl
from pdebench_core.data.config import FileDatasetConfig
from pdebench_core.errors import UsageError

__version__ = "0.1.0"

NAME = "well"
#: What a run without ``path`` is told to give.
PATH_HELP = "a Well dataset's folder or HDF5 file, e.g. from 'pdeb data download well-<dataset>' or the_well's own tool"


@dataclass
class WellConfig(FileDatasetConfig):
    """Settings of ``well`` (``data.well.<key>``); ``path`` is required.

    ``n_train``/``n_val``/``n_test`` cap how many trajectories of each split are used
    (``None``: all of them). ``t_in`` defaults to 4, The Well's benchmark setting.

    Attributes:
        constants: ``repeat`` (constant fields become extra input channels, repeated on
            every frame and never scored) or ``drop`` (left out).
    """

    path: str = field(metadata={"help": PATH_HELP})
    n_train: Optional[int] = None
    n_val: Optional[int] = None
    n_test: Optional[int] = None
    t_in: int = 4
    constants: str = "repeat"


#: Split caps per profile: a few trajectories for tests, a laptop-sized share, then everything.
PROFILES = {
    "smoke": {"n_train": 8, "n_val": 2, "n_test": 2},
    "small": {"n_train": 64, "n_val": 8, "n_test": 16},
    "paper": {},
}


def make_spec(cfg: Any):
    """What a Well file does not say about itself (it states fields, grid, dt, boundary, parameters)."""
    from pdebench_core.spec import DataSpec

    return DataSpec(name=NAME, fields=(), spatial_shape=(), t_in=int(cfg.t_in), boundary="open",
                    horizon=cfg.horizon)


def build(cfg: Any):
    """Read the Well dataset, folder or file at ``cfg.path``."""
    if not cfg.path:
        raise UsageError(f"{NAME} has no built-in solver; download a Well dataset and pass "
                         f"data.{NAME}.path=DATASET_FOLDER_OR_FILE")
    from pdebench_core.data.layouts import detect_layout, load_found, open_layout, open_well

    format = str(cfg.format or "auto").strip().lower()
    if format not in ("auto", "well", "canonical"):
        raise UsageError(f"data.{NAME}.format={cfg.format} is not a layout {NAME} reads; leave it at auto, or set "
                         f"well, or canonical (a Well file converted by 'pdeb data convert')")
    layout = detect_layout(cfg.path) if format == "auto" else format
    if layout == "canonical":  # converted from a Well file: it keeps the fields, grid and spec
        return load_found(open_layout(str(cfg.path), "canonical"), cfg, NAME, make_spec(cfg))
    if layout != "well":
        raise UsageError(f"{cfg.path} holds the '{layout}' layout, not The Well's; read it with the dataset made for "
                         f"it (see 'pdeb datasets'; 'pdeb data info {cfg.path}' shows what it holds)")
    return load_found(open_well(str(cfg.path), constants=str(cfg.constants)), cfg, NAME, make_spec(cfg))


@hookimpl
def register_datasets(register: Any) -> None:
    """Register ``well``."""
    register(
        NAME, build, config=WellConfig, profiles=PROFILES,
        description="any dataset of The Well, from its HDF5 files (reader only: needs data.well.path)",
        pde="the file's: fluid dynamics, MHD, astrophysics, acoustics, active matter, reaction-diffusion, ...",
        dims=[2, 3], fields=["<t0 field>", "<t1 field>_<dim>", "<t2 field>_<dim><dim>"],
        resolution="the file's grid", dt="the file's time coordinate",
        boundary="the file's boundary_conditions (periodic, wall, open)",
        parameters="the file's constant scalars; constant fields repeated as unscored inputs (constants=repeat)",
        source="Ohana et al., The Well (NeurIPS 2024 Datasets and Benchmarks), Polymathic AI",
        license="CC BY 4.0 (The Well's dataset cards)",
        horizon="all frames after the first t_in", reader_only=True,
    )
