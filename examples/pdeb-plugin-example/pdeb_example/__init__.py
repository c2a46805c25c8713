"""Example pdeb plugin: the ``heat1d`` dataset and the ``conv-stepper`` model.

Importing this module is cheap: torch is imported inside the factories only.
"""

from __future__ import annotations

from dataclasses import dataclass

from pdebench_core import hookimpl
from pdebench_core.data.config import GeneratedConfig
from pdebench_core.data.generation import GeneratedDataset


@dataclass
class Heat1dConfig(GeneratedConfig):
    """Settings of ``heat1d`` (``data.heat1d.<key>``); the defaults are the ``small`` profile.

    Attributes:
        diffusivity: Heat diffusivity ``kappa`` in ``u_t = kappa * u_xx``.
        n_frames: Stored frames per trajectory.
        dt: Time between stored frames.
        n_modes: Fourier modes of the random initial condition.
    """

    resolution: int = 64
    diffusivity: float = 0.01
    n_frames: int = 30
    dt: float = 0.05
    n_modes: int = 8


# Defaults per profile: `smoke` finishes in seconds (tests use it), `small` is the config
# defaults, `paper` a larger setting for GPUs.
HEAT1D_PROFILES = {
    "smoke": {"resolution": 32, "n_frames": 14, "n_train": 8, "n_val": 2, "n_test": 2},
    "small": {},
    "paper": {"resolution": 256, "n_frames": 50, "n_train": 1024, "n_val": 128, "n_test": 128},
}
CONV_STEPPER_PROFILES = {"smoke": {"width": 8, "depth": 2}, "small": {}, "paper": {"width": 64, "depth": 5}}


def _solve(cfg, batch):
    from pdeb_example.heat import solve_trajectories  # torch is imported only when data is made

    return solve_trajectories(cfg, batch)


def _spec(cfg):
    from pdeb_example.heat import heat_spec

    return heat_spec(cfg)


# The core derives the cache key from every setting (and this version: bump it when the
# solver's numbers change), seeds each trajectory, cuts the splits, reads `path=` files.
HEAT1D = GeneratedDataset(name="heat1d", config=Heat1dConfig, solve=_solve, spec=_spec, version=1,
                          profiles=HEAT1D_PROFILES,
                          provenance={"reference": "exact Fourier solution of the heat equation"})


@dataclass
class ConvStepperConfig:
    """Hyperparameters of ``conv-stepper`` (``model.<key>``).

    Attributes:
        width: Hidden channels.
        depth: Convolution layers.
        kernel_size: Odd kernel size of every convolution (circular padding).
    """

    width: int = 32
    depth: int = 3
    kernel_size: int = 5


def build_conv_stepper(cfg: ConvStepperConfig, spec):
    """Build the convolutional stepper for ``spec``."""
    from pdeb_example.stepper import ConvStepper

    return ConvStepper(cfg, spec)


@hookimpl
def register_datasets(register):
    """Add ``heat1d``."""
    HEAT1D.register(
        register, dims=(1,),
        description="1D heat equation, exact Fourier solution", pde="u_t = kappa u_xx", fields=["u"],
        resolution="32 (smoke), 64 (small), 256 (paper)", dt=0.05, boundary="periodic",
        parameters="kappa = 0.01; 8 random Fourier modes", source="generated (exact solution)", license="MIT",
        horizon=None,
    )


@hookimpl
def register_models(register):
    """Add ``conv-stepper``."""
    register(
        "conv-stepper", build_conv_stepper, config=ConvStepperConfig, profiles=CONV_STEPPER_PROFILES,
        description="residual CNN predicting the next frames", paper="none (an example)", dims=(1, 2),
    )
