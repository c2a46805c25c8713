"""Declarations of ``cfd2d`` and ``cfd3d``: generated (and cached) compressible flows.

Trajectories follow PDEBench's compressible Navier-Stokes "Rand" sets: random
periodic initial states (:mod:`pdeb_cfd.initial`) evolved by the finite-volume solver
(:mod:`pdeb_cfd.solver`) on the unit box, stored as primitive fields in PDEBench's
order: density, pressure, Vx, Vy(, Vz). Generated files are cached as canonical HDF5
under ``$PDEB_HOME/data`` and read lazily. With ``path`` set, a published PDEBench
file is read through the core's layout readers instead; the package declares the
two datasets (:class:`~pdebench_core.data.generation.GeneratedDataset`) from the
pieces here.

Nothing heavy is imported at module level: torch, numpy and h5py load inside the
factories, so importing the plugin stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass
from typing import TYPE_CHECKING, Any

from pdebench_core.data.config import GeneratedConfig
from pdebench_core.data.generation import ExplicitScheme, SolverBatch
from pdebench_core.errors import UsageError

if TYPE_CHECKING:  # annotations only: importing the plugin stays cheap
    import numpy as np

    from pdebench_core.spec import DataSpec

# Bump when a change to the solver or the sampling changes the generated numbers,
# so that stale cached files are never reused.
GENERATOR_VERSION = 1
FIELDS = {2: ("density", "pressure", "Vx", "Vy"), 3: ("density", "pressure", "Vx", "Vy", "Vz")}
# The order DPOT's preprocessing (data_generation/preprocess.py) stacks PDEBench's CFD fields in;
# its files name no channels.
DPOT_FIELDS = {2: ("Vx", "Vy", "density", "pressure"), 3: ("Vx", "Vy", "Vz", "pressure", "density")}
# Spectral decay of the initial modes, as in PDEBench's 2D and 3D "Rand" generators.
DECAY = {2: 0.5, 3: 1.0}
# Cells solved together when batch_size is 0 (auto): small batches stay in the CPU
# caches; a GPU wants as many as memory allows.
AUTO_BATCH_CELLS = {"cpu": 1 << 14, "cuda": 1 << 22}


@dataclass
class CfdConfig(GeneratedConfig):
    """Settings of generated compressible Navier-Stokes data (``data.<name>.<key>``).

    The inherited ``resolution`` is the number of cells per axis (0 means the
    dataset's default); stored trajectories are ``(n_frames, *S, C)`` with spatial
    axes in x, y(, z) order and channels density, pressure, Vx, Vy(, Vz).

    Attributes:
        mach: RMS Mach number of the initial velocity relative to the background
            sound speed (PDEBench: 0.1 or 1).
        eta: Shear viscosity (PDEBench 2D: 0.1, 0.01 or 1e-8; 3D: 1e-8). As in
            PDEBench it is multiplied by the local density (a kinematic viscosity).
        zeta: Bulk viscosity (PDEBench uses zeta = eta).
        gamma: Ratio of specific heats of the ideal gas (PDEBench: 5/3).
        t_end: Time of the last stored frame (PDEBench: 1).
        n_frames: Stored frames equally spaced on ``[0, t_end]``, the initial state
            included (PDEBench: 21, so frames are 0.05 apart).
        cfl: Courant number of the unsplit time step, in ``(0, 1]``; 0.5 is the
            strong-stability limit of MUSCL with SSP-RK2.
        k_max: Largest integer wavenumber per axis of the random initial modes
            (PDEBench: 4).
        window_prob: Probability that a trajectory's perturbation is confined to a
            random box (PDEBench: 0.5).
        limiter: Slope limiter of the MUSCL reconstruction, ``"mc"`` or ``"minmod"``.
        integrator: Time stepping, ``"ssprk2"`` or ``"ssprk3"``.
        batch_size: Trajectories solved together; 0 (the default here) chooses from the
            grid size and device.
    """

    n_train: int = 16
    n_val: int = 4
    n_test: int = 4
    resolution: int = 0
    mach: float = 1.0  # RMS, relative to the background sound speed
    eta: float = 0.01
    zeta: float = 0.01
    gamma: float = 5.0 / 3.0  # a monatomic ideal gas
    t_end: float = 1.0
    n_frames: int = 21
    cfl: float = 0.5  # strong-stability limit of MUSCL with SSP-RK2
    k_max: int = 4
    window_prob: float = 0.5
    limiter: str = "mc"
    integrator: str = "ssprk2"
    batch_size: int = 0  # 0: chosen from the grid size and device


@dataclass
class Cfd2dConfig(CfdConfig):
    """``cfd2d`` settings; the defaults are the ``small`` profile (64x64, M = 1, eta = zeta = 0.01).

    Attributes:
        resolution: Cells per axis (0 means 64).
    """

    resolution: int = 64


@dataclass
class Cfd3dConfig(CfdConfig):
    """``cfd3d`` settings; the defaults are the ``small`` profile (32^3, M = 1, eta = zeta = 1e-8).

    Attributes:
        resolution: Cells per axis (0 means 32).
        n_train: Trajectories in the train split (3D trajectories are costly on a CPU).
        n_val: Trajectories in the validation split.
        n_test: Trajectories in the test split.
        eta: Shear viscosity (PDEBench's 3D set: 1e-8, practically inviscid).
        zeta: Bulk viscosity (PDEBench's 3D set: 1e-8).
    """

    resolution: int = 32
    n_train: int = 4  # a 3D trajectory is costly on a CPU
    n_val: int = 1
    n_test: int = 1
    eta: float = 1e-8  # PDEBench's 3D set is practically inviscid
    zeta: float = 1e-8


#: The ``smoke`` and ``paper`` profiles' overrides by dimension; ``small`` is the config defaults,
#: and ``paper`` keeps the config's PDE parameters (each ``cfd2d`` preset its own). PDEBench's
#: 2D Rand sets (``2D_CFD_Rand_M*_Eta*_Zeta*_periodic_128``) hold 10000 trajectories each, its 3D
#: set (``3D_CFD_Rand_M1.0_Eta1e-08_Zeta1e-08_periodic``) 100 trajectories of 128^3.
SMOKE = {2: {"n_frames": 12, "resolution": 32}, 3: {"n_frames": 12, "resolution": 16}}
PAPER = {
    2: {"resolution": 128, "n_frames": 21, "t_end": 1.0, "n_train": 8000, "n_val": 1000, "n_test": 1000},
    3: {"resolution": 128, "n_frames": 21, "t_end": 1.0, "n_train": 80, "n_val": 10, "n_test": 10},
}


#: DPOT's four Table 1 columns of PDEBench's 2D Rand sets, each a ``cfd2d`` preset:
#: name -> (mach, eta = zeta).
CNS_PRESETS: dict[str, tuple[float, float]] = {
    "cfd2d-m1-eta1e-1": (1.0, 0.1), "cfd2d-m1-eta1e-2": (1.0, 0.01),
    "cfd2d-m1e-1-eta1e-1": (0.1, 0.1), "cfd2d-m1e-1-eta1e-2": (0.1, 0.01),
}


def preset_config(name: str) -> type:
    """:class:`Cfd2dConfig` with the Mach number and viscosities of preset ``name`` as defaults."""
    mach, viscosity = CNS_PRESETS[name]
    config = make_dataclass(
        "Cfd2dConfig_" + name.split("-", 1)[1].replace("-", "_"),
        [("mach", float, field(default=mach)), ("eta", float, field(default=viscosity)),
         ("zeta", float, field(default=viscosity))], bases=(Cfd2dConfig,))
    config.__doc__ = f"``{name}`` settings: :class:`Cfd2dConfig` with M = {mach:g}, eta = zeta = {viscosity:g}."
    config.__module__ = __name__
    return config


#: Limits of the finite-volume scheme: ``cfl`` up to 1 (see :attr:`CfdConfig.cfl`).
SCHEME = ExplicitScheme(max_cfl=1)


def check_config(cfg: Any, where: str) -> None:
    """Refuse initial modes the grid cannot hold, negative viscosities, ``gamma <= 1`` or unknown choices."""
    res = int(cfg.resolution)
    if int(cfg.k_max) < 1 or res <= 2 * int(cfg.k_max):
        raise UsageError(f"{where}: resolution {res} must exceed 2 * k_max = {2 * int(cfg.k_max)} (k_max >= 1)")
    if float(cfg.eta) < 0 or float(cfg.zeta) < 0 or float(cfg.mach) < 0:
        raise UsageError(f"{where}: eta, zeta and mach must be non-negative")
    if not float(cfg.gamma) > 1:
        raise UsageError(f"{where}.gamma must exceed 1, got {cfg.gamma}")
    if not 0 <= float(cfg.window_prob) <= 1:
        raise UsageError(f"{where}.window_prob must be in [0, 1], got {cfg.window_prob}")
    for key, allowed in (("limiter", ("mc", "minmod")), ("integrator", ("ssprk2", "ssprk3"))):
        if getattr(cfg, key) not in allowed:
            raise UsageError(f"{where}.{key} must be one of {', '.join(allowed)}; got '{getattr(cfg, key)}'")


def physical_params(cfg: Any) -> dict[str, float]:
    """PDE parameters recorded in the spec."""
    return {"mach": float(cfg.mach), "eta": float(cfg.eta), "zeta": float(cfg.zeta), "gamma": float(cfg.gamma)}


def physics_spec(cfg: Any, ndim: int) -> "DataSpec":
    """The :class:`DataSpec` of generated data: ``n_frames`` frames on ``[0, t_end]`` in the unit box."""
    from pdebench_core.spec import DataSpec

    frames = int(cfg.n_frames)
    return DataSpec(name=f"cfd{ndim}d", fields=FIELDS[ndim], spatial_shape=(int(cfg.resolution),) * ndim,
                    dt=float(cfg.t_end) / (frames - 1), domain=((0.0, 1.0),) * ndim, boundary="periodic",
                    params=physical_params(cfg), n_frames=frames)


def solve_trajectories(cfg: Any, batch: SolverBatch, ndim: int) -> "np.ndarray":
    """Draw each initial state from its seed and evolve the batch: float32 ``(b, T, *S, C)``."""
    from pdeb_cfd.initial import random_batch
    from pdeb_cfd.solver import GasModel, default_save_times, simulate

    res = int(cfg.resolution)
    rho, vel, p = random_batch((res,) * ndim, batch.seeds, float(cfg.mach), float(cfg.gamma), int(cfg.k_max),
                               DECAY[ndim], float(cfg.window_prob))
    gas = GasModel(gamma=float(cfg.gamma), eta=float(cfg.eta), zeta=float(cfg.zeta))
    frames = simulate(
        rho.to(batch.device, batch.dtype), vel.to(batch.device, batch.dtype), p.to(batch.device, batch.dtype),
        [1.0 / res] * ndim, default_save_times(float(cfg.t_end), int(cfg.n_frames)), gas, cfl=float(cfg.cfl),
        limiter=str(cfg.limiter), integrator=str(cfg.integrator), progress=batch.advance,
    )  # (b, T, C, *S); progress reports simulated time
    return frames.movedim(2, -1).numpy()  # (b, T, *S, C)


def auto_batch_size(cfg: Any, device, ndim: int) -> int:
    """Trajectories per solver call when ``batch_size=0``: a cell budget that suits the device."""
    budget = AUTO_BATCH_CELLS["cuda" if device.type == "cuda" else "cpu"]
    return max(1, budget // int(cfg.resolution) ** ndim)
